//! XGrad-CAM (Fu et al. 2020), as the grad-cam package's `XGradCAM`:
//! w_c = Σ_ij G·A / (ΣA + 1e-7), then the package's finish.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Xgradcam;
pub const XGRADCAM: Method = Method(&Xgradcam);

static INFO: Info = cam::info(
    "xgradcam",
    "XGrad-CAM",
    "XGrad-CAM (Fu et al. 2020): maps weighted by their activation-weighted gradients",
    "#6c5ce7",
    true,
);

impl Attribution for Xgradcam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        cam::from_gradients(e, target, o, |a, g| {
            cam::weighted(
                &cam::spatial_sum(&(g * a / (cam::spatial_sum(a) + 1e-7))),
                a,
            )
        })
    }
}
