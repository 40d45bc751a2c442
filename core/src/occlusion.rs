//! Occlusion sensitivity (paper §4, Fig. 7): a grey square (the model's mean
//! colour, 0 after normalisation) slid over the image; per position the
//! summed activation of the conv5 map strongest on the unoccluded image, the
//! probability of a class and the most probable label.
//!
//! Three evaluators with identical results: `Naive` (one forward per
//! position), `Batched` (full forwards in batches) and `Incremental` (per
//! position only the window of each layer that the square can change is
//! recomputed; the rest comes from the unoccluded pass, as in Krypton,
//! Nakandala et al., SIGMOD 2019).

use crate::net::Net;
use crate::picture::viridis;
use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Naive,
    Batched,
    #[default]
    Incremental,
}

#[derive(Debug, Clone)]
pub struct OcclusionRequest {
    /// Side of the grey square, px at input size.
    pub size: i64,
    pub stride: i64,
    /// Class whose probability is mapped (default: the unoccluded top class).
    pub class: Option<i64>,
    /// Positions evaluated per batch.
    pub batch: i64,
    pub method: Method,
}

/// The occluder's side and stride by default, px at the input size (the
/// paper's Fig. 7 grid at 224 px: 23 x 23 positions).
pub const DEFAULT_SIZE: i64 = 48;
/// Positions per batch of the full passes the incremental evaluator falls
/// back to (see [`occlude`]).
pub const FALLBACK_BATCH: usize = 8;

pub const DEFAULT_STRIDE: i64 = 8;

/// For serde defaults of the requests that take a window.
pub fn default_size() -> i64 {
    DEFAULT_SIZE
}
pub fn default_stride() -> i64 {
    DEFAULT_STRIDE
}

impl Default for OcclusionRequest {
    fn default() -> Self {
        OcclusionRequest {
            size: DEFAULT_SIZE,
            stride: DEFAULT_STRIDE,
            class: None,
            batch: 64,
            method: Method::Incremental,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Positions {
    pub x: Vec<i64>,
    pub y: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OcclusionResult {
    pub class: i64,
    pub size: i64,
    pub stride: i64,
    /// Top-left corners of the square along each axis.
    pub positions: Positions,
    /// [row][col], rows along y.
    pub class_prob: Vec<Vec<f64>>,
    pub top_label: Vec<Vec<i64>>,
    pub strongest_map: i64,
    pub map_activation: Vec<Vec<f64>>,
    /// The same three on the unoccluded image.
    pub unoccluded: Unoccluded,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unoccluded {
    pub class_prob: f64,
    pub top_label: i64,
    pub map_activation: f64,
}

/// The last conv layer's map with the highest peak in image 0 of the trace
/// (Fig. 7's conv5 map).
pub fn strongest_map(trace: &crate::net::Trace) -> i64 {
    last_maps(trace)
        .get(0)
        .amax([1i64, 2].as_slice(), false)
        .argmax(0, false)
        .int64_value(&[])
}

/// Top-left positions 0, stride, 2*stride, … while the square fits.
pub fn positions(input: i64, size: i64, stride: i64) -> Result<Vec<i64>> {
    if stride < 1 {
        bail!("stride must be at least 1, got {stride}");
    }
    if size < 1 || size > input {
        bail!("the occluder size must be 1..={input} px (the input size), got {size}");
    }
    Ok((0..)
        .map(|i| i * stride)
        .take_while(|p| p + size <= input)
        .collect())
}

/// The image with the square at (y, x) set to 0 (the mean colour).
pub fn occluded(x: &Tensor, y0: i64, x0: i64, size: i64) -> Tensor {
    let out = x.copy();
    let _ = out.narrow(-2, y0, size).narrow(-1, x0, size).fill_(0.0);
    out
}

/// Per-position outputs: conv5 maps' summed activation of `map`, softmax.
struct Outputs {
    map_sum: Vec<f64>,
    probs: Tensor,
}

/// The last conv layer's feature maps.
fn last_maps(trace: &crate::net::Trace) -> &Tensor {
    &trace.last_maps
}

/// From the last conv layer's maps to logits (pool5 -> fc6 -> fc7 -> fc8 for
/// ZFNet; eval: no dropout).
fn head(net: &Net, a5: &Tensor) -> Tensor {
    net.forward_from(net.spec.last_maps_node() + 1, a5)
}

/// Run occlusion over every position of the grid.
pub fn occlude(net: &Net, x: &Tensor, req: &OcclusionRequest) -> Result<OcclusionResult> {
    let s = net.spec.input_size;
    let ps = positions(s, req.size, req.stride)?;
    let x = x
        .to_device(net.device())
        .view([1, net.spec.in_channels, s, s]);
    let trace = net.trace(&x);
    let probs0 = trace.probs().get(0);
    let n_classes = probs0.size()[0];
    let class = match req.class {
        Some(c) => {
            crate::net::check::class(c, n_classes)?;
            c
        }
        None => probs0.argmax(0, false).int64_value(&[]),
    };
    let a5 = last_maps(&trace).get(0);
    let strongest_map = strongest_map(&trace);
    let unoccluded = Unoccluded {
        class_prob: probs0.double_value(&[class]),
        top_label: probs0.argmax(0, false).int64_value(&[]),
        map_activation: a5.get(strongest_map).sum(Kind::Double).double_value(&[]),
    };
    let grid: Vec<(i64, i64)> = ps
        .iter()
        .flat_map(|&y| ps.iter().map(move |&x| (y, x)))
        .collect();
    let mut batch = req.batch.max(1) as usize;
    // Where the incremental evaluator is not exact (squeeze-excite gates,
    // non-square kernels, padded average pools), batched full passes, of at
    // most FALLBACK_BATCH positions: measured on 2 cores, 2026-12-07,
    // EfficientNet-B0's 23x23 map takes 8.0 s at 8 against 12.6 s at 64,
    // Inception v3's 19.6 s against 20.3 s.
    let method = match req.method {
        Method::Incremental if !crate::incremental::applies(net) => {
            batch = batch.min(FALLBACK_BATCH);
            Method::Batched
        }
        m => m,
    };
    let mut map_sum = Vec::with_capacity(grid.len());
    let mut probs = Vec::with_capacity(grid.len().div_ceil(batch));
    tch::no_grad(|| -> Result<()> {
        match method {
            Method::Naive => {
                for &(y, xx) in &grid {
                    let o = forward_full(net, &occluded(&x, y, xx, req.size), strongest_map)?;
                    map_sum.extend(o.map_sum);
                    probs.push(o.probs);
                }
            }
            Method::Batched => {
                for chunk in grid.chunks(batch) {
                    let xs: Vec<Tensor> = chunk
                        .iter()
                        .map(|&(y, xx)| occluded(&x, y, xx, req.size))
                        .collect();
                    let o = forward_full(net, &Tensor::cat(&xs, 0), strongest_map)?;
                    map_sum.extend(o.map_sum);
                    probs.push(o.probs);
                }
            }
            Method::Incremental => {
                // Positions as far from the borders go in one batch: their
                // windows have the same extents, so none computes more than it needs.
                let last = s - req.size;
                let mut order: Vec<usize> = (0..grid.len()).collect();
                order.sort_by_key(|&i| {
                    let (y, x) = grid[i];
                    (y.min(last - y), x.min(last - x), y, x)
                });
                let base = crate::incremental::Base::new(net, &x);
                let c_in = net.spec.in_channels;
                let mut sums = vec![0.0; grid.len()];
                let mut rows: Vec<i64> = vec![0; grid.len()];
                for (k, chunk) in order.chunks(batch).enumerate() {
                    let pos: Vec<(i64, i64)> = chunk.iter().map(|&i| grid[i]).collect();
                    let full = base.forward(net, &pos, req.size, c_in);
                    let o = Outputs {
                        map_sum: map_sums(&full, strongest_map)?,
                        probs: head(net, &full).softmax(-1, Kind::Float),
                    };
                    for (j, &i) in chunk.iter().enumerate() {
                        sums[i] = o.map_sum[j];
                        rows[i] = (k * batch + j) as i64;
                    }
                    probs.push(o.probs);
                }
                // Back to grid order.
                let all = Tensor::cat(&probs, 0);
                probs =
                    vec![all.index_select(0, &Tensor::from_slice(&rows).to_device(all.device()))];
                map_sum = sums;
            }
        }
        Ok(())
    })?;
    let probs = Tensor::cat(&probs, 0).to_device(tch::Device::Cpu);
    let cp: Vec<f32> = crate::net::values(&probs.select(1, class), "the class probabilities")?;
    let tl: Vec<i64> = crate::net::values(&probs.argmax(1, false), "the top labels")?;
    let n = ps.len();
    for (what, len) in [
        ("class probabilities", cp.len()),
        ("top labels", tl.len()),
        ("map activations", map_sum.len()),
    ] {
        if len != n * n {
            bail!("occlusion: {len} {what} for a {n}x{n} grid");
        }
    }
    let rows = |v: Vec<f64>| v.chunks(n).map(|r| r.to_vec()).collect::<Vec<_>>();
    Ok(OcclusionResult {
        class,
        size: req.size,
        stride: req.stride,
        positions: Positions {
            x: ps.clone(),
            y: ps.clone(),
        },
        class_prob: rows(cp.into_iter().map(|v| v as f64).collect()),
        top_label: tl.chunks(n).map(|r| r.to_vec()).collect(),
        strongest_map,
        map_activation: rows(map_sum),
        unoccluded,
    })
}

/// Per image of a batch of conv5 maps [B, C, H, W]: the summed activation of `map`.
fn map_sums(a5: &Tensor, map: i64) -> Result<Vec<f64>> {
    let sums = a5
        .select(1, map)
        .sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double);
    crate::net::values(&sums, "the strongest map's activations")
}

fn forward_full(net: &Net, xs: &Tensor, map: i64) -> Result<Outputs> {
    let t = net.trace(xs);
    Ok(Outputs {
        map_sum: map_sums(last_maps(&t), map)?,
        probs: t.logits.softmax(-1, Kind::Float),
    })
}

/// One occluder position, for the live view: top-5 probabilities, the class
/// probability and the strongest map's summed activation.
pub struct LiveResult {
    pub probs: Tensor,
    pub map_activation: f64,
    pub strongest_map: i64,
}

/// Evaluate a single occluder position (one forward; `map` = the unoccluded
/// strongest conv5 map).
pub fn live(net: &Net, x: &Tensor, y0: i64, x0: i64, size: i64, map: i64) -> Result<LiveResult> {
    let s = net.spec.input_size;
    let x = x
        .to_device(net.device())
        .view([1, net.spec.in_channels, s, s]);
    let o = tch::no_grad(|| forward_full(net, &occluded(&x, y0, x0, size), map))?;
    Ok(LiveResult {
        probs: o.probs.get(0),
        map_activation: o.map_sum[0],
        strongest_map: map,
    })
}

/// Distinct colours for class labels by rank (Tableau 10, then black, white).
pub fn rank_colour(rank: usize) -> [u8; 3] {
    const P: [[u8; 3]; 12] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
        [0, 0, 0],
        [255, 255, 255],
    ];
    P[rank.min(P.len() - 1)]
}

/// The labels of a top-label map, most cells first (ties: lower label), as
/// the page orders its legend: the first ten get distinct colours.
pub fn label_order(grid: &[Vec<i64>]) -> Vec<i64> {
    let mut count = std::collections::BTreeMap::<i64, usize>::new();
    for &l in grid.iter().flatten() {
        *count.entry(l).or_default() += 1;
    }
    let mut order: Vec<(i64, usize)> = count.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(l, _)| l).collect()
}

/// Paint a grid over the crop: cell (row, col) is the `stride`-sized square
/// centred on that occluder position's centre, blended 75% over the image.
pub fn heatmap(
    crop: &image::RgbImage,
    r: &OcclusionResult,
    colour: impl Fn(usize, usize) -> [u8; 3],
) -> image::RgbImage {
    let mut out = crop.clone();
    let (w, h) = out.dimensions();
    let half = r.size / 2 - r.stride / 2;
    for (i, &y) in r.positions.y.iter().enumerate() {
        for (j, &x) in r.positions.x.iter().enumerate() {
            let c = colour(i, j);
            for yy in (y + half).max(0)..(y + half + r.stride).min(h as i64) {
                for xx in (x + half).max(0)..(x + half + r.stride).min(w as i64) {
                    let p = out.get_pixel_mut(xx as u32, yy as u32);
                    for (v, c) in p.0.iter_mut().zip(c) {
                        *v = ((*v as u32 + 3 * c as u32) / 4) as u8;
                    }
                }
            }
        }
    }
    out
}

/// The three heatmaps of Fig. 7 (b), (d), (e) as images over the crop.
pub fn heatmaps(
    crop: &image::RgbImage,
    r: &OcclusionResult,
) -> [(&'static str, image::RgbImage); 3] {
    let scale = |g: &Vec<Vec<f64>>| {
        let v: Vec<f64> = g.iter().flatten().copied().collect();
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (lo, (hi - lo).max(1e-12))
    };
    let (mlo, mrange) = scale(&r.map_activation);
    let (plo, prange) = scale(&r.class_prob);
    let order = label_order(&r.top_label);
    let rank = |l: i64| order.iter().position(|&o| o == l).unwrap_or(order.len());
    [
        (
            "map_activation",
            heatmap(crop, r, |i, j| {
                viridis((r.map_activation[i][j] - mlo) / mrange)
            }),
        ),
        (
            "class_prob",
            heatmap(crop, r, |i, j| viridis((r.class_prob[i][j] - plo) / prange)),
        ),
        (
            "top_label",
            heatmap(crop, r, |i, j| rank_colour(rank(r.top_label[i][j]))),
        ),
    ]
}

#[cfg(test)]
mod label_tests {
    #[test]
    fn labels_ranked_by_cells_then_index() {
        let grid = vec![vec![3, 3, 1], vec![1, 3, 2], vec![7, 2, 0]];
        assert_eq!(super::label_order(&grid), vec![3, 1, 2, 0, 7]);
        let colours: std::collections::HashSet<_> = (0..10).map(super::rank_colour).collect();
        assert_eq!(colours.len(), 10, "ten distinct colours");
        assert_eq!(super::rank_colour(11), super::rank_colour(50));
    }
}
