//! XGrad-CAM (Fu et al. 2020), as the grad-cam package's `XGradCAM`:
//! w_c = Σ_ij G·A / (ΣA + 1e-7), then the package's finish.

use super::{cam, Attribution, Info, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Xgradcam;
pub const XGRADCAM: Method = Method(&Xgradcam);

static INFO: Info = Info {
    needs: Needs {
        layer: true,
        ..Needs::NONE
    },
    per_pixel: true,
    rule: Some(crate::deconv::Rule::GRADIENT),
    ..Info::new(
        "xgradcam",
        "XGrad-CAM",
        "XGrad-CAM (Fu et al. 2020): maps weighted by their activation-weighted gradients",
        "#6c5ce7",
    )
};

impl Attribution for Xgradcam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let g = cam::gradients(e, target.class(), o.cam_layer);
        let a = cam::activations(e, o.cam_layer);
        let w = cam::spatial_sum(&(g * a / (cam::spatial_sum(a) + 1e-7))).view([1, -1]);
        cam::finish(e, &cam::weighted(&w, a))
    }
}
