//! Invariance curves (paper Fig. 5): vertical translation, scale and
//! rotation of the model crop; per transform the Euclidean distance between
//! the original and transformed feature vectors at layer 1 (conv1 maps after
//! ReLU, flattened) and layer 7 (fc7 after ReLU), and a class probability.
//!
//! Fill rule (all transforms): the crop is resampled bilinearly; pixels that
//! enter the frame take the model's mean colour (0 after normalisation). The
//! identity (translation 0, scale 1, rotation 0 or 360) is the crop itself.

use crate::net::Net;
use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// Vertical shift in px at input size; positive moves the content down.
    Translate,
    /// Zoom about the centre; 1.0 is the crop, 1.8 magnifies 1.8 times.
    Scale,
    /// Rotation about the centre in degrees, counter-clockwise.
    Rotate,
}

impl Transform {
    pub fn range(&self) -> (f64, f64) {
        match self {
            Transform::Translate => (-60.0, 60.0),
            Transform::Scale => (1.0, 1.8),
            Transform::Rotate => (0.0, 360.0),
        }
    }
    pub fn identity(&self) -> f64 {
        match self {
            Transform::Scale => 1.0,
            _ => 0.0,
        }
    }
    fn is_identity(&self, v: f64) -> bool {
        match self {
            Transform::Rotate => {
                (v.rem_euclid(360.0)).abs() < 1e-9 || (v.rem_euclid(360.0) - 360.0).abs() < 1e-9
            }
            _ => (v - self.identity()).abs() < 1e-12,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Translate => "translate",
            Transform::Scale => "scale",
            Transform::Rotate => "rotate",
        }
    }
}

pub const TRANSFORMS: [Transform; 3] = [Transform::Translate, Transform::Scale, Transform::Rotate];

/// `steps` evenly spaced values over the transform's range, plus the
/// identity if it is not among them.
pub fn values(t: Transform, steps: usize) -> Vec<f64> {
    let (a, b) = t.range();
    let n = steps.max(2);
    let mut v: Vec<f64> = (0..n)
        .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
        .collect();
    if !v.iter().any(|&x| t.is_identity(x)) {
        v.push(t.identity());
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    }
    v
}

/// The transformed input ([1, 3, S, S], normalised) for one value.
pub fn apply(x: &Tensor, t: Transform, v: f64) -> Tensor {
    if t.is_identity(v) {
        return x.shallow_clone();
    }
    let s = x.size()[2] as f64;
    // theta maps output coordinates (-1..1) to input coordinates.
    let th: [f64; 6] = match t {
        Transform::Translate => [1.0, 0.0, 0.0, 0.0, 1.0, -2.0 * v / s],
        Transform::Scale => [1.0 / v, 0.0, 0.0, 0.0, 1.0 / v, 0.0],
        Transform::Rotate => {
            let r = v.to_radians();
            [r.cos(), r.sin(), 0.0, -r.sin(), r.cos(), 0.0]
        }
    };
    let theta = Tensor::from_slice(&th.map(|a| a as f32))
        .view([1, 2, 3])
        .to_device(x.device());
    let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
    // bilinear, zeros padding (= the mean colour after normalisation)
    x.grid_sampler(&grid, 0, 0, false)
}

#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub values: Vec<f64>,
    pub dist_layer1: Vec<f64>,
    pub dist_layer7: Vec<f64>,
    pub prob: Vec<f64>,
}

/// The model's names of the layers Fig. 5 calls "layer 1" (its first conv)
/// and "layer 7" (its last hidden fc layer).
#[derive(Debug, Clone, Serialize)]
pub struct CurveLayers {
    pub layer1: String,
    pub layer7: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvarianceResult {
    pub class: i64,
    pub layer_names: CurveLayers,
    pub translate: Curve,
    pub scale: Curve,
    pub rotate: Curve,
}

#[derive(Debug, Clone)]
pub struct InvarianceRequest {
    pub steps: usize,
    pub class: Option<i64>,
}

pub fn invariance(net: &Net, x: &Tensor, req: &InvarianceRequest) -> Result<InvarianceResult> {
    if req.steps < 2 || req.steps > 361 {
        bail!("steps must be 2..=361, got {}", req.steps);
    }
    let s = net.spec.input_size;
    let x = x
        .to_device(net.device())
        .view([1, net.spec.in_channels, s, s]);
    let base = net.trace(&x);
    let n_classes = base.logits.size()[1];
    let class = match req.class {
        Some(c) => {
            crate::net::check::class(c, n_classes)?;
            c
        }
        None => base.logits.get(0).argmax(0, false).int64_value(&[]),
    };
    let curve = |t: Transform| -> Result<Curve> {
        let vals = values(t, req.steps);
        let mut d1 = vec![];
        let mut d7 = vec![];
        let mut p = vec![];
        for chunk in vals.chunks(31) {
            // Row 0 is the original; the identity *is* the original, so it
            // reads row 0 instead of a copy in another batch position.
            let mut xs: Vec<Tensor> = vec![x.shallow_clone()];
            let rows: Vec<i64> = chunk
                .iter()
                .map(|&v| {
                    if t.is_identity(v) {
                        0
                    } else {
                        xs.push(apply(&x, t, v));
                        xs.len() as i64 - 1
                    }
                })
                .collect();
            let tr = net.trace(&Tensor::cat(&xs, 0));
            let idx = Tensor::from_slice(&rows).to_device(tr.logits.device());
            let f1 = tr.maps[0].flatten(1, -1);
            let (f1, f1_0) = (f1.index_select(0, &idx), f1.narrow(0, 0, 1));
            let (f7, f7_0) = (
                tr.last_hidden().index_select(0, &idx),
                tr.last_hidden().narrow(0, 0, 1),
            );
            let dist = |a: &Tensor, b: &Tensor| -> Result<Vec<f64>> {
                Ok(Vec::<f64>::try_from(
                    &(a - b)
                        .to_kind(Kind::Double)
                        .square()
                        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                        .sqrt(),
                )?)
            };
            d1.extend(dist(&f1, &f1_0)?);
            d7.extend(dist(&f7, &f7_0)?);
            p.extend(
                Vec::<f32>::try_from(&tr.probs().select(1, class).index_select(0, &idx))?
                    .into_iter()
                    .map(|v| v as f64),
            );
        }
        Ok(Curve {
            values: vals,
            dist_layer1: d1,
            dist_layer7: d7,
            prob: p,
        })
    };
    Ok(InvarianceResult {
        class,
        layer_names: CurveLayers {
            layer1: net.convs[0].name.clone(),
            layer7: net.last_hidden_name(),
        },
        translate: curve(Transform::Translate)?,
        scale: curve(Transform::Scale)?,
        rotate: curve(Transform::Rotate)?,
    })
}

impl InvarianceResult {
    /// `transform,value,dist_layer1,dist_layer7,prob` rows.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("transform,value,dist_layer1,dist_layer7,prob\n");
        for (name, c) in [
            ("translate", &self.translate),
            ("scale", &self.scale),
            ("rotate", &self.rotate),
        ] {
            for i in 0..c.values.len() {
                out.push_str(&format!(
                    "{name},{},{},{},{}\n",
                    c.values[i], c.dist_layer1[i], c.dist_layer7[i], c.prob[i]
                ));
            }
        }
        out
    }
}
