//! Grad-CAM++ (Chattopadhay et al. 2018), as the grad-cam package's
//! `GradCAMPlusPlus`: w_c = Σ_ij relu(G) a_ij with a_ij = G² / (2G² +
//! ΣA·G³ + 1e-6) (0 where G = 0), then the package's finish.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct GradcamPp;
pub const GRADCAM_PP: Method = Method(&GradcamPp);

static INFO: Info = cam::info(
    "gradcam++",
    "Grad-CAM++",
    "Grad-CAM++ (Chattopadhay et al. 2018): maps weighted by their positive gradients, each position weighted by higher-order terms",
    "#b7950b",
    true,
);

impl Attribution for GradcamPp {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        cam::from_gradients(e, target, o, |a, g| {
            let g2 = g.square();
            let g3 = &g2 * g;
            let aij = &g2 / (&g2 * 2.0 + cam::spatial_sum(a) * g3 + 1e-6);
            let aij = aij.where_self(&g.ne(0.0), &aij.zeros_like());
            cam::weighted(&cam::spatial_sum(&(g.relu() * aij)), a)
        })
    }
}
