//! AlexNet against ZFNet (paper §4.1, Fig. 6): layer-1 filters and layer-2
//! projections of two models (or two snapshots), with three numbers each.
//!
//! - `dead_filters`: layer-1 filters whose RMS is below [`DEAD_RMS_SHARE`]
//!   (10%) of the layer's median filter RMS, plus, with a dataset, filters
//!   whose conv1 map (after ReLU) never exceeds [`ACTIVE_EPS`] on any of the
//!   images measured and up to [`MAX_ACTIVITY`] more of the dataset (evenly
//!   spaced over its sorted files; all of woofnette/val).
//! - `band_energy`: the layer-1 filters' spectral energy (each filter zero-
//!   padded to [`FFT_SIZE`]², power summed over colour channels and filters)
//!   split by radial frequency |f| in cycles per input pixel at
//!   [`BAND_EDGES`]: low < 1/8 <= mid < 1/4 <= high. 1/8 and 1/4 are the
//!   Nyquist frequencies of a stride-4 (AlexNet) and a stride-2 (ZFNet)
//!   conv1. Random (white) filters give about 0.05 / 0.15 / 0.80 (the
//!   bands' areas in the frequency square).
//! - `aliasing`: for each image, the layer-2 maps with the [`ALIAS_MAPS`]
//!   highest peaks are projected to pixels (strongest activation, as in the
//!   paper's figures); the share of each projection's spectral energy above
//!   the Nyquist frequency of the model's own conv1 stride, 1/(2 stride),
//!   averaged over projections. Energy there can only come from the spectral
//!   images that the strided transposed conv1 lets through, i.e. aliasing.
//!   `aliasing_common` is the same share above 1/8 for every model, for a
//!   comparison on one scale.

use crate::checkpoint::ModelDir;
use crate::deconv;
use crate::net::Net;
use crate::preprocess::{self, Preprocess};
use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

/// A filter is dead when its RMS is below this share of the layer's median.
pub const DEAD_RMS_SHARE: f64 = 0.1;
/// A conv1 map is active on an image when its maximum exceeds this.
pub const ACTIVE_EPS: f64 = 1e-6;
/// Radial band edges in cycles per input pixel.
pub const BAND_EDGES: [f64; 2] = [0.125, 0.25];
/// Zero-padded FFT size for the filters' spectra.
pub const FFT_SIZE: i64 = 64;
/// Layer-2 maps projected per image for the aliasing measure.
pub const ALIAS_MAPS: usize = 9;
/// Images used when no count is given.
pub const DEFAULT_IMAGES: usize = 64;
/// At most this many images.
pub const MAX_IMAGES: usize = 5000;
/// The activity rule reads up to this many dataset images (evenly spaced).
pub const MAX_ACTIVITY: usize = 2000;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Bands {
    pub low: f64,
    pub mid: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterInfo {
    pub filter: i64,
    pub rms: f64,
    pub dead: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conv1 {
    pub filters: i64,
    pub kernel: i64,
    pub stride: i64,
}

/// One model's (or snapshot's) numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub model: String,
    pub epoch: u32,
    pub architecture: String,
    pub conv1: Conv1,
    /// Dead layer-1 filters (by either rule), ascending.
    pub dead_filters: Vec<i64>,
    pub dead_count: usize,
    /// Filters dead by the RMS rule.
    pub low_rms: Vec<i64>,
    /// Filters never active on the images (None without images).
    pub never_active: Option<Vec<i64>>,
    /// The RMS threshold used (DEAD_RMS_SHARE x median).
    pub dead_rms_threshold: f64,
    pub band_energy: Bands,
    /// Share of layer-2 projection energy above `nyquist` (None without images).
    pub aliasing: Option<f64>,
    /// 1 / (2 x conv1 stride), cycles per pixel.
    pub nyquist: f64,
    /// Share of layer-2 projection energy above 1/8 cycle per pixel.
    pub aliasing_common: Option<f64>,
    /// Layer-1 filters, highest RMS first.
    pub filters: Vec<FilterInfo>,
    /// Dataset files of the activity rule that could not be read (skipped).
    pub unreadable: usize,
}

/// Where the images came from, and the constants used.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub images: usize,
    pub image_source: String,
    pub dead_rms_share: f64,
    pub active_eps: f64,
    pub band_edges: [f64; 2],
    pub alias_maps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareResult {
    pub a: Side,
    pub b: Side,
    pub method: Method,
}

/// The images to measure on: model-size RGB crops and a description.
pub struct ImageSet {
    pub crops: Vec<RgbImage>,
    pub source: String,
    /// Real dataset images: never-active filters count as dead. (Noise
    /// images still give `never_active`, for information.)
    pub dataset: bool,
    /// More dataset files for the activity rule alone (conv1 only), read in
    /// batches: up to [`MAX_ACTIVITY`] of the dataset, evenly spaced.
    pub files: Vec<std::path::PathBuf>,
}

/// RMS of each filter of a [F, C, k, k] weight.
pub fn filter_rms(w: &Tensor) -> Result<Vec<f64>> {
    let r = w
        .to_kind(Kind::Double)
        .square()
        .flatten(1, -1)
        .mean_dim(1, false, Kind::Double)
        .sqrt();
    crate::net::values(&r, "the filters' RMS")
}

/// Radial frequency |f| (cycles per pixel) of every bin of an h x w FFT.
fn radial(h: i64, w: i64) -> Tensor {
    let fy = Tensor::fft_fftfreq(h, 1.0, (Kind::Double, tch::Device::Cpu)).view([h, 1]);
    let fx = Tensor::fft_fftfreq(w, 1.0, (Kind::Double, tch::Device::Cpu)).view([1, w]);
    (fy.square() + fx.square()).sqrt()
}

/// Spectral energy of each item of `x` ([N, C, H, W]) per radial band,
/// [N, edges.len() + 1]. Channels are summed; `pad` zero-pads H and W first.
pub fn band_power(x: &Tensor, pad: Option<i64>, edges: &[f64]) -> Tensor {
    let x = x.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    let (h, w) = match pad {
        Some(p) => (p.max(x.size()[2]), p.max(x.size()[3])),
        None => (x.size()[2], x.size()[3]),
    };
    let power = x
        .fft_fft2([h, w].as_slice(), [-2i64, -1].as_slice(), "backward")
        .abs()
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double); // [N, H, W]
    let r = radial(h, w);
    let mut lo = f64::NEG_INFINITY;
    let mut cols = Vec::with_capacity(edges.len() + 1);
    for &hi in edges.iter().chain(std::iter::once(&f64::INFINITY)) {
        let mask = r.ge(lo).logical_and(&r.lt(hi)).to_kind(Kind::Double);
        cols.push((&power * &mask).sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double));
        lo = hi;
    }
    Tensor::stack(&cols, 1)
}

/// Share of the filters' total spectral energy per band (see module doc).
pub fn band_energy(w: &Tensor) -> Result<Bands> {
    let p = band_power(w, Some(FFT_SIZE), &BAND_EDGES).sum_dim_intlist(
        [0i64].as_slice(),
        false,
        Kind::Double,
    );
    let v: Vec<f64> = crate::net::values(&p, "the spectral energy per band")?;
    let total: f64 = v.iter().sum::<f64>().max(1e-300);
    Ok(Bands {
        low: v[0] / total,
        mid: v[1] / total,
        high: v[2] / total,
    })
}

/// Mean over items of the share of each item's spectral energy at radial
/// frequency >= `f` (items with no energy are skipped). None if none count.
pub fn share_above(x: &Tensor, f: f64) -> Result<Option<f64>> {
    let p = band_power(x, None, &[f]);
    let v: Vec<f64> = crate::net::values(&p, "the spectral energy per band")?;
    let shares: Vec<f64> = v
        .chunks(2)
        .filter(|c| c[0] + c[1] > 1e-30)
        .map(|c| c[1] / (c[0] + c[1]))
        .collect();
    Ok((!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64))
}

/// Every filter with its RMS and whether it is in `dead`, highest RMS first.
pub fn filter_list(rms: &[f64], dead: &[i64]) -> Vec<FilterInfo> {
    let mut filters: Vec<FilterInfo> = rms
        .iter()
        .enumerate()
        .map(|(i, &r)| FilterInfo {
            filter: i as i64,
            rms: r,
            dead: dead.contains(&(i as i64)),
        })
        .collect();
    filters.sort_by(|a, b| b.rms.total_cmp(&a.rms).then(a.filter.cmp(&b.filter)));
    filters
}

/// Dead filters by the RMS rule: (indices, threshold).
pub fn low_rms(rms: &[f64]) -> (Vec<i64>, f64) {
    let mut s = rms.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let median = if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    let t = DEAD_RMS_SHARE * median;
    let dead = rms
        .iter()
        .enumerate()
        .filter(|(_, &r)| r < t)
        .map(|(i, _)| i as i64)
        .collect();
    (dead, t)
}

/// Accumulates, image by image, what the numbers need from the forward pass.
struct Running {
    /// Largest conv1 activation per filter so far.
    peak: Option<Tensor>,
    alias: Vec<f64>,
    common: Vec<f64>,
}

/// Largest conv1 activation (after ReLU) per filter over a batch [N, 3, S, S].
fn conv1_peaks(net: &Net, x: &Tensor) -> Tensor {
    let c = &net.convs[0].window;
    tch::no_grad(|| {
        x.to_device(net.device())
            .conv2d(
                net.conv_weight(0),
                Some(net.conv_bias(0)),
                [c.stride, c.stride],
                [c.pad, c.pad],
                [1, 1],
                net.convs[0].groups,
            )
            .relu()
            .amax([0i64, 2, 3].as_slice(), false)
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Double)
    })
}

fn load_image(p: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    preprocess::decode(&bytes).with_context(|| format!("{}", p.display()))
}

fn load_crop(p: &Path, size: u32) -> Result<RgbImage> {
    Ok(preprocess::model_crop(&load_image(p)?, size))
}

fn observe(net: &Net, x: &Tensor, run: &mut Running) -> Result<()> {
    let trace = net.trace(&x.unsqueeze(0));
    let m1 = trace.maps[0]
        .get(0)
        .amax([1i64, 2].as_slice(), false)
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Double);
    run.peak = Some(match run.peak.take() {
        Some(p) => p.maximum(&m1),
        None => m1,
    });
    let reqs: Vec<_> = deconv::top_maps(&trace, 2, ALIAS_MAPS)?
        .into_iter()
        .filter(|&(_, peak)| peak > 0.0)
        .map(|(map, _)| deconv::ProjectRequest {
            layer: 2,
            map,
            keep: deconv::Keep::Strongest,
        })
        .collect();
    if reqs.is_empty() {
        return Ok(());
    }
    let proj = deconv::project(net, &trace, &reqs)?;
    let px = Tensor::stack(&proj.iter().map(|p| &p.pixels).collect::<Vec<_>>(), 0);
    let stride = net.convs[0].window.stride;
    if let Some(s) = share_above(&px, nyquist(stride))? {
        run.alias.push(s);
    }
    if let Some(s) = share_above(&px, BAND_EDGES[0])? {
        run.common.push(s);
    }
    Ok(())
}

pub fn nyquist(stride: i64) -> f64 {
    1.0 / (2.0 * stride as f64)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// One model's numbers. `set` holds model-size crops (may be empty) and
/// files for the activity rule; `progress(done)` is called as they pass.
pub fn side(
    net: &Net,
    model: &str,
    epoch: u32,
    pre: &Preprocess,
    set: &ImageSet,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Side> {
    let (mut peaks, unreadable) = file_peaks(&[(net, pre)], &set.files, &mut |i| progress(i))?;
    let n = set.files.len();
    let extra = peaks.pop().flatten();
    let mut s = side_with(net, model, epoch, pre, set, extra, &mut |i| progress(n + i))?;
    s.unreadable = unreadable;
    Ok(s)
}

/// Largest conv1 activation per filter of each net over `files`, decoded
/// once for all nets in batches of 32; unreadable files are skipped and
/// counted (the second value).
fn file_peaks(
    nets: &[(&Net, &Preprocess)],
    files: &[std::path::PathBuf],
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<(Vec<Option<Tensor>>, usize)> {
    let mut peaks: Vec<Option<Tensor>> = nets.iter().map(|_| None).collect();
    let mut done = 0;
    let mut unreadable = 0;
    for chunk in files.chunks(32) {
        // Decoded once, cropped by each network's own pipeline.
        let (images, bad) = {
            use rayon::prelude::*;
            readable(chunk.par_iter().map(|p| load_image(p)).collect())
        };
        unreadable += bad.len();
        if !images.is_empty() {
            for ((net, pre), peak) in nets.iter().zip(peaks.iter_mut()) {
                let x: Vec<Tensor> = images.iter().map(|i| pre.tensor(&pre.crop(i))).collect();
                let x = Tensor::stack(&x, 0);
                let p = conv1_peaks(net, &x);
                *peak = Some(match peak.take() {
                    Some(q) => q.maximum(&p),
                    None => p,
                });
            }
        }
        done += chunk.len();
        progress(done)?;
    }
    Ok((peaks, unreadable))
}

#[allow(clippy::too_many_arguments)]
fn side_with(
    net: &Net,
    model: &str,
    epoch: u32,
    pre: &Preprocess,
    set: &ImageSet,
    extra: Option<Tensor>,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Side> {
    let s = net.spec.input_size as u32;
    let w = net.conv_weight(0);
    let rms = filter_rms(w)?;
    let (low, threshold) = low_rms(&rms);
    let mut run = Running {
        peak: None,
        alias: vec![],
        common: vec![],
    };
    for (i, img) in set.crops.iter().enumerate() {
        if img.dimensions() != (s, s) {
            bail!(
                "image {i} is {}x{}, the model takes {s}x{s}",
                img.width(),
                img.height()
            );
        }
        let x = pre.tensor(img);
        observe(net, &x, &mut run)?;
        progress(i + 1)?;
    }
    if let Some(p) = extra {
        run.peak = Some(match run.peak.take() {
            Some(q) => q.maximum(&p),
            None => p,
        });
    }
    let never_active = run
        .peak
        .map(|p| {
            let v: Vec<f64> = crate::net::values(&p, "the filters' peak activity")?;
            anyhow::Ok(
                v.iter()
                    .enumerate()
                    .filter(|(_, &m)| m <= ACTIVE_EPS)
                    .map(|(i, _)| i as i64)
                    .collect::<Vec<i64>>(),
            )
        })
        .transpose()?;
    let mut dead: Vec<i64> = low.clone();
    if set.dataset {
        dead.extend(never_active.iter().flatten());
    }
    dead.sort();
    dead.dedup();
    let filters = filter_list(&rms, &dead);
    let c = &net.convs[0];
    Ok(Side {
        unreadable: 0,
        model: model.to_string(),
        epoch,
        architecture: net.spec.arch_name(),
        conv1: Conv1 {
            filters: c.out_c,
            kernel: c.window.k,
            stride: c.window.stride,
        },
        dead_count: dead.len(),
        dead_filters: dead,
        low_rms: low,
        never_active,
        dead_rms_threshold: threshold,
        band_energy: band_energy(w)?,
        aliasing: mean(&run.alias),
        nyquist: nyquist(c.window.stride),
        aliasing_common: mean(&run.common),
        filters,
    })
}

/// One of the two things compared: a loaded snapshot and its manifest's
/// normalisation.
pub struct Subject<'a> {
    pub net: &'a Net,
    pub model: &'a str,
    pub epoch: u32,
    pub pre: Preprocess,
}

/// Both sides over the same images; `progress(done, total)` per image.
pub fn compare(
    a: &Subject,
    b: &Subject,
    images: &ImageSet,
    progress: &mut crate::progress::Report<'_>,
) -> Result<CompareResult> {
    let (f, n) = (images.files.len(), images.crops.len());
    let total = f + 2 * n;
    let size = a.net.spec.input_size as u32;
    if b.net.spec.input_size as u32 != size {
        bail!("the two models take different input sizes");
    }
    let (mut peaks, unreadable) = file_peaks(
        &[(a.net, &a.pre), (b.net, &b.pre)],
        &images.files,
        &mut |i| progress(i, total),
    )?;
    let (pb, pa) = (peaks.pop().flatten(), peaks.pop().flatten());
    let mut one = |k: usize, s: &Subject, extra| {
        let mut side = side_with(s.net, s.model, s.epoch, &s.pre, images, extra, &mut |i| {
            progress(f + k * n + i, total)
        })?;
        side.unreadable = unreadable;
        anyhow::Ok(side)
    };
    Ok(CompareResult {
        a: one(0, a, pa)?,
        b: one(1, b, pb)?,
        method: method(images),
    })
}

/// What the CLI and the server do: load two snapshots of two model folders,
/// pick the images (`n` from `dataset`, or 1/f noise), compare.
pub fn compare_dirs(
    a: (&ModelDir, Option<u32>),
    b: (&ModelDir, Option<u32>),
    dataset: Option<&Path>,
    n: usize,
    device: tch::Device,
    progress: &mut crate::progress::Report<'_>,
) -> Result<CompareResult> {
    if n == 0 || n > MAX_IMAGES {
        bail!("the number of images must be 1..={MAX_IMAGES}, got {n}");
    }
    let (sa, sb) = (a.0.manifest.input_size, b.0.manifest.input_size);
    if sa != sb {
        bail!("the models take different input sizes ({sa} and {sb} px)");
    }
    let (ea, eb) = (
        a.0.manifest.snapshot(a.1)?.epoch,
        b.0.manifest.snapshot(b.1)?.epoch,
    );
    let (na, nb) = (a.0.load(Some(ea), device)?, b.0.load(Some(eb), device)?);
    let set = match dataset {
        Some(d) => dataset_images(d, n, sa as u32)?,
        None => noise_images(n, sa as u32)?,
    };
    let (name_a, name_b) = (a.0.name(), b.0.name());
    let subject = |net, model, epoch, m: &ModelDir| Subject {
        net,
        model,
        epoch,
        pre: m.manifest.preprocess(),
    };
    let mut r = compare(
        &subject(&na, &name_a, ea, a.0),
        &subject(&nb, &name_b, eb, b.0),
        &set,
        progress,
    )?;
    // The manifest's name for an imported network (`torchvision:resnet18`).
    r.a.architecture = a.0.manifest.architecture.clone();
    r.b.architecture = b.0.manifest.architecture.clone();
    Ok(r)
}

fn method(images: &ImageSet) -> Method {
    Method {
        images: images.crops.len(),
        image_source: images.source.clone(),
        dead_rms_share: DEAD_RMS_SHARE,
        active_eps: ACTIVE_EPS,
        band_edges: BAND_EDGES,
        alias_maps: ALIAS_MAPS,
    }
}

/// Layer-1 filters as enlarged RGB tiles, highest RMS first, `cols` per row,
/// 1 px white gaps. `per_filter`: each tile stretched to its own largest
/// |weight| (shapes); otherwise one scale for the layer (dead filters stay grey).
pub fn filter_tiles(net: &Net, tile: u32, cols: u32, per_filter: bool) -> Result<RgbImage> {
    let w = net
        .conv_weight(0)
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float);
    let rms = filter_rms(&w)?;
    let order: Vec<i64> = filter_list(&rms, &[]).iter().map(|f| f.filter).collect();
    let k = w.size()[2] as u32;
    let scale = (tile / k).max(1);
    let t = k * scale;
    let n = order.len() as u32;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let mut out = RgbImage::from_pixel(
        cols * (t + 1) + 1,
        rows * (t + 1) + 1,
        image::Rgb([255, 255, 255]),
    );
    let layer_max = w.abs().max().double_value(&[]).max(1e-12);
    for (slot, &f) in order.iter().enumerate() {
        let filt = w.get(f);
        let m = if per_filter {
            filt.abs().max().double_value(&[]).max(1e-12)
        } else {
            layer_max
        };
        let (_, _, data) = crate::picture::to_rgb8_scaled(&filt, m)?;
        let (ox, oy) = (
            (slot as u32 % cols) * (t + 1) + 1,
            (slot as u32 / cols) * (t + 1) + 1,
        );
        for y in 0..t {
            for x in 0..t {
                let i = (((y / scale) * k + x / scale) * 3) as usize;
                out.put_pixel(
                    ox + x,
                    oy + y,
                    image::Rgb([data[i], data[i + 1], data[i + 2]]),
                );
            }
        }
    }
    Ok(out)
}

/// `n` images of 1/f noise (the amplitude spectrum of natural images),
/// `size` square, deterministic in `seed`: used when no dataset is given.
pub fn pink_noise(n: usize, size: u32, seed: u64) -> Result<Vec<RgbImage>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let s = size as i64;
    let r = radial(s, s).clamp_min(1.0 / s as f64);
    (0..n)
        .map(|_| {
            let white: Vec<f64> = (0..3 * s * s)
                .map(|_| rng.random::<f64>() * 2.0 - 1.0)
                .collect();
            let x = Tensor::from_slice(&white).view([3, s, s]);
            let spec = x.fft_fft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward") / &r;
            let y = spec
                .fft_ifft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward")
                .real();
            let y = &y - y.mean(Kind::Double);
            crate::picture::to_image(&y)
        })
        .collect()
}

/// The images that were read, and the errors of those that were not.
fn readable(all: Vec<Result<RgbImage>>) -> (Vec<RgbImage>, Vec<anyhow::Error>) {
    let (ok, bad): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.is_ok());
    (
        ok.into_iter().flatten().collect(),
        bad.into_iter().filter_map(|r| r.err()).collect(),
    )
}

/// Up to `n` images evenly spaced over the sorted image files under `dir`,
/// as model crops of `size`. Unreadable files are skipped and said in the
/// description.
pub fn dataset_images(dir: &std::path::Path, n: usize, size: u32) -> Result<ImageSet> {
    let all = crate::data::list_images(dir)?;
    if all.is_empty() {
        bail!("no images under {}", dir.display());
    }
    let spaced = |n: usize| -> Vec<usize> {
        let n = n.clamp(1, all.len());
        (0..n).map(|i| i * all.len() / n).collect()
    };
    let picked = spaced(n);
    let (crops, bad) = {
        use rayon::prelude::*;
        readable(
            picked
                .par_iter()
                .map(|&i| load_crop(&all[i], size))
                .collect(),
        )
    };
    let skipped = match bad.first() {
        None => String::new(),
        Some(e) => format!("; {} unreadable, skipped (first: {e:#})", bad.len()),
    };
    // The activity rule also reads the rest, up to MAX_ACTIVITY in all.
    let files: Vec<std::path::PathBuf> = spaced(MAX_ACTIVITY.max(n))
        .into_iter()
        .filter(|i| picked.binary_search(i).is_err())
        .map(|i| all[i].clone())
        .collect();
    Ok(ImageSet {
        source: format!(
            "{} of {} images under {} ({} more for the activity rule){skipped}",
            crops.len(),
            all.len(),
            dir.display(),
            files.len()
        ),
        crops,
        dataset: true,
        files,
    })
}

pub fn noise_images(n: usize, size: u32) -> Result<ImageSet> {
    Ok(ImageSet {
        crops: pink_noise(n, size, 0)?,
        source: format!("{n} images of 1/f noise (seed 0), no dataset given"),
        dataset: false,
        files: vec![],
    })
}
