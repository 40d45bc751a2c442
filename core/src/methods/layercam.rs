//! Layer-CAM (Jiang et al. 2021), as the grad-cam package's `LayerCAM`:
//! Σ_c relu(G)·A element-wise, then the package's finish.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Layercam;
pub const LAYERCAM: Method = Method(&Layercam);

static INFO: Info = cam::info(
    "layercam",
    "Layer-CAM",
    "Layer-CAM (Jiang et al. 2021): maps times their positive gradients, position by position, summed",
    "#00cec9",
    true,
);

impl Attribution for Layercam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        cam::from_gradients(e, target, o, |a, g| cam::channel_sum(&(g.relu() * a)))
    }
}
