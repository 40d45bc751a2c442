//! Layer-CAM (Jiang et al. 2021), as the grad-cam package's `LayerCAM`:
//! Σ_c relu(G)·A element-wise, then the package's finish.

use super::{cam, Attribution, Info, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Layercam;
pub const LAYERCAM: Method = Method(&Layercam);

static INFO: Info = Info {
    needs: Needs {
        layer: true,
        ..Needs::NONE
    },
    per_pixel: true,
    rule: Some(crate::deconv::Rule::GRADIENT),
    ..Info::new(
        "layercam",
        "Layer-CAM",
        "Layer-CAM (Jiang et al. 2021): maps times their positive gradients, position by position, summed",
        "#00cec9",
    )
};

impl Attribution for Layercam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let g = cam::gradients(e, target.class(), o.cam_layer);
        let a = cam::activations(e, o.cam_layer);
        let sum = (g.relu() * a).sum_dim_intlist([1i64].as_slice(), true, tch::Kind::Float);
        cam::finish(e, &sum)
    }
}
