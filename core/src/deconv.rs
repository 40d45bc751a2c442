//! The deconvnet (paper.md §3, Fig. 1): from a conv layer's feature maps back
//! to pixels through unpool (switches, summed where they coincide) -> ReLU ->
//! transposed conv with the forward filters. LRN is skipped on the way down.

use crate::net::{Net, Trace};
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Unpool: the exact adjoint of max-pooling. `indices` are flat H*W indices
/// into the pre-pool map (as returned by `max_pool2d_with_indices`); values
/// whose switches coincide are summed.
pub fn unpool(x: &Tensor, indices: &Tensor, out_hw: (i64, i64)) -> Tensor {
    let (n, c) = (x.size()[0], x.size()[1]);
    let idx = indices
        .expand([n, c, indices.size()[2], indices.size()[3]], false)
        .reshape([n, c, -1]);
    Tensor::zeros([n, c, out_hw.0 * out_hw.1], (x.kind(), x.device()))
        .scatter_add(2, &idx, &x.reshape([n, c, -1]))
        .view([n, c, out_hw.0, out_hw.1])
}

/// Transposed conv of layer `l` (0-based) with output size `target`.
pub fn deconv_step(net: &Net, l: usize, x: &Tensor, target: i64) -> Tensor {
    let w = net.blocks[l].conv;
    let n = x.size()[2];
    let natural = (n - 1) * w.stride - 2 * w.pad + w.k;
    let op = target - natural;
    debug_assert!(op >= 0 && op < w.stride.max(1));
    x.conv_transpose2d(
        net.conv_weight(l),
        None::<Tensor>,
        [w.stride, w.stride],
        [w.pad, w.pad],
        [op, op],
        1,
        [1, 1],
    )
}

/// Project a signal living in layer `layer`'s feature maps (1-based,
/// [B, C, H, W]) down to pixels ([B, 3, S, S]). The trace must be of a single
/// image; its switches are shared across the batch.
pub fn project_signal(net: &Net, trace: &Trace, layer: usize, signal: &Tensor) -> Tensor {
    let sizes = net.spec.sizes();
    tch::no_grad(|| {
        let mut s = signal.to_device(net.device());
        for l in (0..layer).rev() {
            s = s.relu();
            s = deconv_step(net, l, &s, sizes[l].0);
            if l > 0 {
                if let Some(idx) = &trace.switches[l - 1] {
                    let m = sizes[l - 1].1;
                    s = unpool(&s, idx, (m, m));
                }
            }
        }
        s
    })
}

/// Which activations of the chosen map are kept before projecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The strongest activation of the map (ties: first in row-major order).
    Strongest,
    /// The activation at (y, x).
    At(i64, i64),
    /// Every activation of the map.
    All,
}

#[derive(Debug, Clone)]
pub struct ProjectRequest {
    pub layer: usize,
    pub map: i64,
    pub keep: Keep,
}

pub struct Projection {
    pub layer: usize,
    pub map: i64,
    /// Value and position of the kept activation (the strongest for `All`).
    pub value: f64,
    pub y: i64,
    pub x: i64,
    /// Receptive field (y0, x0, y1, x1) inclusive, clipped to the input.
    pub field: (i64, i64, i64, i64),
    /// [3, S, S] float projection.
    pub pixels: Tensor,
}

pub fn check_layer_map(net: &Net, layer: usize, map: i64) -> Result<()> {
    if !(1..=5).contains(&layer) {
        bail!("layer {layer} is out of range: expected 1..=5");
    }
    let c = net.blocks[layer - 1].out_c;
    if map < 0 || map >= c {
        bail!(
            "map {map} is out of range: layer {layer} has maps 0..{}",
            c - 1
        );
    }
    Ok(())
}

/// Strongest activation (value, y, x) of `map` in layer `layer` of image 0.
pub fn strongest(trace: &Trace, layer: usize, map: i64) -> (f64, i64, i64) {
    let m = trace.maps[layer - 1].get(0).get(map);
    let w = m.size()[1];
    let flat = m.reshape([-1]);
    let i = flat.argmax(0, false).int64_value(&[]);
    (flat.double_value(&[i]), i / w, i % w)
}

pub fn clipped_field(net: &Net, layer: usize, y: i64, x: i64) -> (i64, i64, i64, i64) {
    let (y0, x0, y1, x1) = net.spec.receptive_field(layer, y, x);
    let s = net.spec.input_size - 1;
    (y0.max(0), x0.max(0), y1.min(s), x1.min(s))
}

/// One projection per request, computed as one batch over the shared trace.
pub fn project(net: &Net, trace: &Trace, reqs: &[ProjectRequest]) -> Result<Vec<Projection>> {
    if reqs.is_empty() {
        return Ok(vec![]);
    }
    let layer = reqs[0].layer;
    for r in reqs {
        check_layer_map(net, r.layer, r.map)?;
        if r.layer != layer {
            bail!("one batch of projections must share its layer");
        }
    }
    let maps = trace.maps[layer - 1].get(0);
    let (c, h, w) = (maps.size()[0], maps.size()[1], maps.size()[2]);
    let signal = Tensor::zeros([reqs.len() as i64, c, h, w], (Kind::Float, maps.device()));
    let mut meta = Vec::with_capacity(reqs.len());
    tch::no_grad(|| -> Result<()> {
        for (b, r) in reqs.iter().enumerate() {
            let (value, y, x) = match r.keep {
                Keep::Strongest | Keep::All => strongest(trace, layer, r.map),
                Keep::At(y, x) => {
                    if y < 0 || y >= h || x < 0 || x >= w {
                        bail!("position ({y}, {x}) is outside layer {layer}'s {h}x{w} maps");
                    }
                    (maps.double_value(&[r.map, y, x]), y, x)
                }
            };
            let mut dst = signal.get(b as i64).get(r.map);
            match r.keep {
                Keep::All => {
                    dst.copy_(&maps.get(r.map));
                }
                _ => {
                    let _ = dst.get(y).get(x).fill_(value);
                }
            }
            meta.push((value, y, x));
        }
        Ok(())
    })?;
    let pixels = project_signal(net, trace, layer, &signal);
    Ok(reqs
        .iter()
        .zip(meta)
        .enumerate()
        .map(|(b, (r, (value, y, x)))| Projection {
            layer,
            map: r.map,
            value,
            y,
            x,
            field: clipped_field(net, layer, y, x),
            pixels: pixels.get(b as i64),
        })
        .collect())
}

/// The `n` maps of `layer` with the highest peaks, strongest first: (map, peak).
pub fn top_maps(trace: &Trace, layer: usize, n: usize) -> Vec<(i64, f64)> {
    let peaks = trace.maps[layer - 1]
        .get(0)
        .amax([1i64, 2].as_slice(), false);
    let n = (n as i64).min(peaks.size()[0]);
    let (v, i) = peaks.topk(n, 0, true, true);
    let v: Vec<f32> = Vec::try_from(&v).unwrap_or_default();
    let i: Vec<i64> = Vec::try_from(&i).unwrap_or_default();
    i.into_iter().zip(v.into_iter().map(|x| x as f64)).collect()
}

/// [`to_rgb8`] as an image.
pub fn to_image(pixels: &Tensor) -> image::RgbImage {
    let (w, h, rgb) = to_rgb8(pixels);
    image::RgbImage::from_raw(w, h, rgb).expect("buffer matches its size")
}

/// Contrast stretch for people: centre at 0 -> mid grey, scale so the largest
/// absolute value reaches black or white (symmetric, so the sign is visible).
/// Returns [H, W, 3] u8 data.
pub fn to_rgb8(pixels: &Tensor) -> (u32, u32, Vec<u8>) {
    let m = pixels.abs().max().double_value(&[]);
    to_rgb8_scaled(pixels, m)
}

/// As [`to_rgb8`], with `max_abs` (not the input's own) mapped to black/white.
pub fn to_rgb8_scaled(pixels: &Tensor, max_abs: f64) -> (u32, u32, Vec<u8>) {
    let p = pixels.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let m = max_abs.max(1e-12);
    let img = ((p / m) * 127.5 + 127.5)
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    let (h, w) = (img.size()[0] as u32, img.size()[1] as u32);
    let data: Vec<u8> = Vec::try_from(&img.reshape([-1])).unwrap_or_default();
    (w, h, data)
}
