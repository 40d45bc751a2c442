//! The sanity check of saliency maps (Adebayo et al., NeurIPS 2018):
//! cascading model randomisation. Step k re-initialises the last k
//! parametrised layers (conv or linear, counted from the output) as
//! PyTorch's `reset_parameters()` would (uniform in ±1/sqrt(fan_in) for
//! weights and biases), from a generator seeded by the request; each
//! method's map for the trained model's top class is compared with the
//! trained model's by Spearman rank correlation (of |map| and of the signed
//! map), SSIM and the Pearson correlation of HOG descriptors.
//!
//! The similarity measures follow scipy and scikit-image's defaults exactly
//! (tested against them): `spearmanr` (average ranks), `structural_similarity`
//! (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, data range 1)
//! and `hog` (9 orientations, 8x8 cells, 3x3 blocks, L2-Hys).

use crate::explain::{Explainer, Options, Target};
use crate::methods::Method;
use crate::net::{Layer, Net};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tch::{Kind, Tensor};

/// One map's similarity to the trained model's; `None` where undefined
/// (a constant map).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Scores {
    pub spearman_abs: Option<f64>,
    pub spearman: Option<f64>,
    pub ssim: Option<f64>,
    pub hog: Option<f64>,
}

/// Pearson's correlation; None when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return None;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return None;
    }
    Some((sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks 1..n, ties given their average rank (scipy's `rankdata`).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (scipy's `spearmanr`).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    pearson(&ranks(a), &ranks(b))
}

/// Mean SSIM of two h x w images (scikit-image's `structural_similarity`
/// with its defaults and `data_range=1`): 7x7 uniform windows, the mean
/// over the positions whose window lies inside the image.
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> Option<f64> {
    const K: usize = 7;
    if h < K || w < K {
        return None;
    }
    let np = (K * K) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let mut count = 0usize;
    for y in 0..=h - K {
        for x in 0..=w - K {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..K {
                let row = (y + dy) * w + x;
                for i in row..row + K {
                    let (p, q) = (a[i], b[i]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ux, uy) = (sa / np, sb / np);
            let vx = cov_norm * (saa / np - ux * ux);
            let vy = cov_norm * (sbb / np - uy * uy);
            let vxy = cov_norm * (sab / np - ux * uy);
            let s = ((2.0 * ux * uy + c1) * (2.0 * vxy + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
            total += s;
            count += 1;
        }
    }
    let m = total / count as f64;
    m.is_finite().then_some(m)
}

/// scikit-image's `hog(image)` with its defaults: 9 orientations in
/// [0, 180), 8x8-px cells (hard binning, magnitude / 64), 3x3-cell blocks
/// normalised by L2-Hys, as one feature vector.
pub fn hog(img: &[f64], h: usize, w: usize) -> Vec<f64> {
    const ORI: usize = 9;
    const CELL: usize = 8;
    const BLOCK: usize = 3;
    let at = |y: usize, x: usize| img[y * w + x];
    let (mut mag, mut ang) = (vec![0.0; h * w], vec![0.0; h * w]);
    for y in 0..h {
        for x in 0..w {
            let gr = if y == 0 || y + 1 == h {
                0.0
            } else {
                at(y + 1, x) - at(y - 1, x)
            };
            let gc = if x == 0 || x + 1 == w {
                0.0
            } else {
                at(y, x + 1) - at(y, x - 1)
            };
            mag[y * w + x] = gc.hypot(gr);
            ang[y * w + x] = gr.atan2(gc).to_degrees().rem_euclid(180.0);
        }
    }
    let (cr, cc) = (h / CELL, w / CELL);
    let per = 180.0 / ORI as f64;
    let mut hist = vec![0.0; cr * cc * ORI];
    for r in 0..cr {
        for c in 0..cc {
            for o in 0..ORI {
                let (start, end) = (per * (o + 1) as f64, per * o as f64);
                let mut total = 0.0;
                for y in r * CELL..(r + 1) * CELL {
                    for x in c * CELL..(c + 1) * CELL {
                        let a = ang[y * w + x];
                        if a >= start || a < end {
                            continue;
                        }
                        total += mag[y * w + x];
                    }
                }
                hist[(r * cc + c) * ORI + o] = total / (CELL * CELL) as f64;
            }
        }
    }
    let eps2 = 1e-5f64 * 1e-5;
    let mut out = Vec::new();
    if cr < BLOCK || cc < BLOCK {
        return out;
    }
    for r in 0..=cr - BLOCK {
        for c in 0..=cc - BLOCK {
            let mut block = Vec::with_capacity(BLOCK * BLOCK * ORI);
            for br in 0..BLOCK {
                for bc in 0..BLOCK {
                    let s = ((r + br) * cc + c + bc) * ORI;
                    block.extend_from_slice(&hist[s..s + ORI]);
                }
            }
            let n = (block.iter().map(|v| v * v).sum::<f64>() + eps2).sqrt();
            block.iter_mut().for_each(|v| *v = (*v / n).min(0.2));
            let n = (block.iter().map(|v| v * v).sum::<f64>() + eps2).sqrt();
            out.extend(block.iter().map(|v| v / n));
        }
    }
    out
}

/// A map as the scores read it: (max-|value| per pixel, channel-summed
/// signed map), both H x W, row-major.
pub fn views(map: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let m = map.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    let (abs, signed) = if m.dim() == 3 {
        (
            m.abs().amax([0i64].as_slice(), false),
            m.sum_dim_intlist([0i64].as_slice(), false, Kind::Double),
        )
    } else {
        (m.abs(), m.shallow_clone())
    };
    Ok((
        crate::net::values(&abs, "a map's magnitudes")?,
        crate::net::values(&signed, "a map's signed values")?,
    ))
}

/// `v` scaled to [0, 1] by its max; None when the max is not positive.
fn unit_scaled(v: &[f64]) -> Option<Vec<f64>> {
    let m = v.iter().copied().fold(0.0, f64::max);
    (m > 0.0 && m.is_finite()).then(|| v.iter().map(|x| x / m).collect())
}

/// The four similarity scores of `map` against the trained model's `base`.
pub fn scores(base: &Tensor, map: &Tensor) -> Result<Scores> {
    let side = *base.size().last().unwrap_or(&0) as usize;
    let h = base.size()[base.dim() - 2] as usize;
    let (ba, bs) = views(base)?;
    let (ma, ms) = views(map)?;
    let (su, mu) = (unit_scaled(&ba), unit_scaled(&ma));
    let (ssim_v, hog_v) = match (&su, &mu) {
        (Some(a), Some(b)) => (
            ssim(a, b, h, side),
            pearson(&hog(a, h, side), &hog(b, h, side)),
        ),
        _ => (None, None),
    };
    Ok(Scores {
        spearman_abs: spearman(&ba, &ma),
        spearman: spearman(&bs, &ms),
        ssim: ssim_v,
        hog: hog_v,
    })
}

/// The parametrised layers (conv or linear) from the output down: (node, name).
pub fn parametrised(net: &Net) -> Vec<(usize, String)> {
    net.spec
        .ops()
        .enumerate()
        .rev()
        .filter(|(_, l)| matches!(l, Layer::Conv { .. } | Layer::Linear { .. }))
        .map(|(i, l)| (i, l.name().unwrap_or("?").to_string()))
        .collect()
}

/// Re-initialise node `i` (a conv or linear) as PyTorch's
/// `reset_parameters()`: weight and bias uniform in ±1/sqrt(fan_in).
pub fn reinit(net: &mut Net, i: usize, rng: &mut rand::rngs::StdRng) {
    tch::no_grad(|| {
        let p = net.params(i);
        let fan_in: i64 = p.weight.size()[1..].iter().product();
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        for t in [&p.weight, &p.bias] {
            let n = t.numel();
            let v: Vec<f32> = (0..n)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect();
            let mut t = t.shallow_clone();
            t.copy_(
                &Tensor::from_slice(&v)
                    .view(t.size().as_slice())
                    .to_device(t.device()),
            );
        }
    });
    net.for_inference();
}

/// One step of the cascade.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: usize,
    /// The layers re-initialised so far, from the output down.
    pub randomised: Vec<String>,
    /// Per method, in request order.
    pub scores: Vec<(Method, Scores)>,
    /// The maps, in request order ([C, S, S] or [S, S], network channel order).
    #[serde(skip)]
    pub maps: Vec<Tensor>,
}

/// The cascading randomisation of `net` (modified in place: load a copy)
/// for the trained model's top class on `x`; `steps` re-initialisations
/// after step 0; `progress(done, total)` after every step.
pub fn cascade(
    net: &mut Net,
    x: &Tensor,
    methods: &[Method],
    steps: usize,
    seed: u64,
    progress: &mut crate::progress::Report<'_>,
) -> Result<(i64, Vec<Step>)> {
    let layers = parametrised(net);
    let steps = steps.min(layers.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out: Vec<Step> = Vec::with_capacity(steps + 1);
    let mut class = 0;
    for k in 0..=steps {
        if k > 0 {
            reinit(net, layers[k - 1].0, &mut rng);
        }
        let e = Explainer::new(net, x);
        if k == 0 {
            class = e.top_class();
        }
        let o = Options::new(net);
        let maps = methods
            .iter()
            .map(|&m| m.map(&e, Target::Class(class), &o))
            .collect::<Result<Vec<_>>>()?;
        let scores = match out.first() {
            None => maps
                .iter()
                .map(|m| scores(m, m))
                .collect::<Result<Vec<_>>>()?,
            Some(s0) => s0
                .maps
                .iter()
                .zip(&maps)
                .map(|(b, m)| scores(b, m))
                .collect::<Result<Vec<_>>>()?,
        };
        out.push(Step {
            step: k,
            randomised: layers[..k].iter().map(|l| l.1.clone()).collect(),
            scores: methods.iter().copied().zip(scores).collect(),
            maps,
        });
        progress(k + 1, steps + 1)?;
    }
    Ok((class, out))
}
