//! Occlusion as a saliency map (Zeiler & Fergus 2014, Fig. 7): p0 - p of
//! the class over the grid of square positions, upsampled bilinearly.

use super::{Attribution, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Occlusion;
pub const OCCLUSION: Method = Method(&Occlusion);

impl Attribution for Occlusion {
    fn name(&self) -> &'static str {
        "occlusion"
    }
    fn label(&self) -> &'static str {
        "occlusion"
    }
    fn caption(&self) -> &'static str {
        "occlusion (Zeiler & Fergus 2014): drop of the class probability under a grey square"
    }
    fn colour(&self) -> &'static str {
        "#16a085"
    }
    fn needs(&self) -> Needs {
        Needs {
            window: true,
            ..Needs::default()
        }
    }
    fn per_pixel(&self) -> bool {
        true
    }
    fn by_default(&self) -> bool {
        false
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let req = crate::occlusion::OcclusionRequest {
            size: o.size,
            stride: o.stride,
            class: Some(target.class()),
            ..Default::default()
        };
        let r = crate::occlusion::occlude(e.net, &e.x, &req)?;
        let rows = r.class_prob.len() as i64;
        let cols = r.class_prob.first().map_or(0, |r| r.len()) as i64;
        let drop: Vec<f32> = r
            .class_prob
            .iter()
            .flatten()
            .map(|p| (r.unoccluded.class_prob - p) as f32)
            .collect();
        let side = e.net.spec.input_size;
        Ok(Tensor::from_slice(&drop)
            .view([1, 1, rows, cols])
            .upsample_bilinear2d([side, side], false, None, None)
            .get(0)
            .get(0)
            .to_device(e.net.device()))
    }
}
