//! HiResCAM (Draelos & Carin 2020), as the grad-cam package's
//! `HiResCAM`: Σ_c G·A element-wise (no averaging of the gradient), then
//! the package's finish.

use super::{cam, Attribution, Info, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Hirescam;
pub const HIRESCAM: Method = Method(&Hirescam);

static INFO: Info = Info {
    needs: Needs {
        layer: true,
        ..Needs::NONE
    },
    per_pixel: true,
    rule: Some(crate::deconv::Rule::GRADIENT),
    ..Info::new(
        "hirescam",
        "HiResCAM",
        "HiResCAM (Draelos & Carin 2020): maps times their gradients, position by position, summed",
        "#2d3436",
    )
};

impl Attribution for Hirescam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let g = cam::gradients(e, target.class(), o.cam_layer);
        let a = cam::activations(e, o.cam_layer);
        let sum = (g * a).sum_dim_intlist([1i64].as_slice(), true, tch::Kind::Float);
        cam::finish(e, &sum)
    }
}
