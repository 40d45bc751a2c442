//! HiResCAM (Draelos & Carin 2020), as the grad-cam package's
//! `HiResCAM`: Σ_c G·A element-wise (no averaging of the gradient), then
//! the package's finish.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Hirescam;
pub const HIRESCAM: Method = Method(&Hirescam);

static INFO: Info = cam::info(
    "hirescam",
    "HiResCAM",
    "HiResCAM (Draelos & Carin 2020): maps times their gradients, position by position, summed",
    "#2d3436",
    true,
);

impl Attribution for Hirescam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        cam::from_gradients(e, target, o, |a, g| cam::channel_sum(&(g * a)))
    }
}
