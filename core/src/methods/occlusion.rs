//! Occlusion as a saliency map (Zeiler & Fergus 2014, Fig. 7): p0 - p of
//! the class under a grey square at each position of the grid, each pixel
//! the mean over the squares that cover it (Captum's `Occlusion`).

use super::{Attribution, Info, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Occlusion;
pub const OCCLUSION: Method = Method(&Occlusion);

static INFO: Info = Info {
    needs: Needs {
        window: true,
        ..Needs::NONE
    },
    per_pixel: true,
    by_default: false,
    ..Info::new(
        "occlusion",
        "occlusion",
        "occlusion (Zeiler & Fergus 2014): drop of the class probability under a grey square",
        "#16a085",
    )
};

impl Attribution for Occlusion {
    fn info(&self) -> &'static Info {
        &INFO
    }
    /// Captum's `Occlusion` convention: each pixel gets the mean, over
    /// the occluder positions that cover it, of p0 - p (0 where none does).
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let req = crate::occlusion::OcclusionRequest {
            size: o.size,
            stride: o.stride,
            class: Some(target.class()),
            ..Default::default()
        };
        let r = crate::occlusion::occlude(e.net, &e.x, &req)?;
        let side = e.net.spec.input_size;
        let opts = (tch::Kind::Double, tch::Device::Cpu);
        let (sum, count) = (
            Tensor::zeros([side, side], opts),
            Tensor::zeros([side, side], opts),
        );
        for (row, &y) in r.class_prob.iter().zip(&r.positions.y) {
            for (p, &x) in row.iter().zip(&r.positions.x) {
                let drop = r.unoccluded.class_prob - p;
                let _ = sum
                    .narrow(0, y, o.size)
                    .narrow(1, x, o.size)
                    .g_add_scalar_(drop);
                let _ = count
                    .narrow(0, y, o.size)
                    .narrow(1, x, o.size)
                    .g_add_scalar_(1.0);
            }
        }
        Ok((sum / count.clamp_min(1.0))
            .to_kind(tch::Kind::Float)
            .to_device(e.net.device()))
    }
}
