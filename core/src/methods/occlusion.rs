//! Occlusion as a saliency map (Zeiler & Fergus 2014, Fig. 7): p0 - p of
//! the class over the grid of square positions, upsampled bilinearly.

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
