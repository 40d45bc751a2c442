//! What the CAM family shares, as pytorch-grad-cam 1.5.7 (the `grad-cam`
//! package, `BaseCAM`) computes it: a unit's activations A and the class
//! logit's gradient G there, the weighted sum over maps, and the package's
//! finish: ReLU, min-max scaling, bilinear to the input
//! (`cv2.resize`), min-max again. Not a method: the CAM files use it.

use super::{Info, Needs};
use crate::deconv::{walk, Rule};
use crate::explain::{Explainer, Options, Target};
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// A CAM method's registry entry: a class's map at a unit, one value a
/// pixel; `gradients`: it reads the class's gradient (SmoothGrad applies).
pub const fn info(
    name: &'static str,
    label: &'static str,
    caption: &'static str,
    colour: &'static str,
    gradients: bool,
) -> Info {
    Info {
        needs: Needs {
            layer: true,
            ..Needs::NONE
        },
        per_pixel: true,
        rule: if gradients {
            Some(Rule::GRADIENT)
        } else {
            None
        },
        ..Info::new(name, label, caption, colour)
    }
}

/// The map of a CAM that reads the unit's maps A and the class's gradient
/// G: `cam(A, G)` ([1, 1, h, w]), finished as the package finishes.
pub fn from_gradients(
    e: &Explainer,
    target: Target,
    o: &Options,
    cam: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> Result<Tensor> {
    let g = gradients(e, target.class(), o.cam_layer);
    finish(e, &cam(activations(e, o.cam_layer), &g))
}

/// Σ_c over the maps of an element-wise product, kept as [1, 1, h, w].
pub fn channel_sum(t: &Tensor) -> Tensor {
    t.sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
}

/// The package's `1e-7` in `scale_cam_image`.
const EPS: f64 = 1e-7;

/// Unit `layer`'s maps A, [1, C, h, w] (from the explainer's trace).
pub fn activations<'a>(e: &'a Explainer, layer: usize) -> &'a Tensor {
    &e.trace.maps[layer - 1]
}

/// The gradient of `class`'s logit at unit `layer`'s maps, [1, C, h, w]
/// (zeros where the class does not depend on them).
pub fn gradients(e: &Explainer, class: i64, layer: usize) -> Tensor {
    let node = e.net.units[layer - 1].node;
    let (from, s) = e.start(Target::Class(class), 1);
    walk(
        e.net,
        &e.trace,
        from,
        &s,
        Rule::GRADIENT,
        Some((node, false)),
    )
    .1
    .unwrap_or_else(|| activations(e, layer).zeros_like())
}

/// Σ_c w_c A_c for weights `w` ([1, C] or [1, C, 1, 1]): [1, 1, h, w].
pub fn weighted(w: &Tensor, a: &Tensor) -> Tensor {
    let c = a.size()[1];
    channel_sum(&(w.view([1, c, 1, 1]) * a))
}

/// Σ over spatial positions, kept as [1, C, 1, 1].
pub fn spatial_sum(t: &Tensor) -> Tensor {
    t.sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float)
}

/// `scale_cam_image`: x − min, then / (1e-7 + max).
fn min_max(x: &Tensor) -> Tensor {
    let x = x - x.min();
    &x / (x.max() + EPS)
}

/// The package's finish of a cam [1, 1, h, w] (or [h, w]): ReLU, min-max,
/// bilinear to the input side (half-pixel centres, as `cv2.resize`), and
/// `aggregate_multi_layers`' ReLU and min-max: [S, S] in 0..1. NaNs (a 0/0
/// of the weights) are an error, not a picture.
pub fn finish(e: &Explainer, cam: &Tensor) -> Result<Tensor> {
    let side = e.net.spec.input_size;
    let (h, w) = {
        let s = cam.size();
        (s[s.len() - 2], s[s.len() - 1])
    };
    let cam = cam.to_kind(Kind::Float).view([1, 1, h, w]);
    if cam.isnan().any().int64_value(&[]) != 0 {
        bail!(
            "the weighted maps are not numbers (NaN): the class score is 0 or the maps are empty"
        );
    }
    let up = min_max(&cam.relu()).upsample_bilinear2d([side, side], false, None, None);
    Ok(min_max(&up.relu()).view([side, side]))
}
