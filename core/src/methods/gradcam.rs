//! Grad-CAM (Selvaraju et al. 2017): a unit's maps weighted by their mean
//! gradient for the class, summed, ReLU, upsampled bilinearly to the input:
//! Captum's `LayerGradCam(relu_attributions=True)` + `interpolate` (its
//! scale kept: the grad-cam package's map is this map min-max scaled).

use super::{cam, Attribution, Info, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Gradcam;
pub const GRADCAM: Method = Method(&Gradcam);

static INFO: Info = Info {
    needs: Needs {
        layer: true,
        ..Needs::NONE
    },
    per_pixel: true,
    rule: Some(Rule::GRADIENT),
    ..Info::new(
        "gradcam",
        "Grad-CAM",
        "Grad-CAM (Selvaraju et al. 2017): maps weighted by their mean gradient, ReLU, upsampled",
        "#d9822b",
    )
};

impl Attribution for Gradcam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        Ok(gradcam(e, target.class(), o.cam_layer))
    }
}

/// Grad-CAM of `class` at unit `layer` (1-based), upsampled to [S, S].
pub fn gradcam(e: &Explainer, class: i64, layer: usize) -> Tensor {
    let g = cam::gradients(e, class, layer);
    let a = cam::activations(e, layer);
    let w = g.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let cam = cam::weighted(&w, a).relu();
    let side = e.net.spec.input_size;
    cam.upsample_bilinear2d([side, side], false, None, None)
        .get(0)
        .get(0)
}
