//! The correspondence test (paper Table 1): occlude the same part (left eye,
//! right eye, nose, …) in several images, or a random location. With x_i and
//! x̃_i the features of image i before and after occlusion at layer l (5:
//! conv5 maps after ReLU, flattened; 7: fc7 after ReLU), ε_i = x_i − x̃_i;
//! the distance of two images is the fraction of positions where sign(ε_i)
//! and sign(ε_j) differ. Reported: mean and (population) standard deviation
//! over all unordered image pairs, per part. Lower = more consistent.

use crate::net::Net;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The paper's Table 1 (mean over pairs): (part, layer 5, layer 7).
pub const PAPER: [(&str, f64, f64); 4] = [
    ("eye_right", 0.067, 0.069),
    ("eye_left", 0.069, 0.068),
    ("nose", 0.079, 0.069),
    ("random", 0.107, 0.073),
];

/// The paper's Table 1 row of one part.
#[derive(Debug, Clone, Serialize)]
pub struct PaperRow {
    pub part: &'static str,
    pub layer5: f64,
    pub layer7: f64,
}

/// One image: its normalised crop [3, S, S] and named points in crop pixels.
pub struct CorrImage {
    pub label: String,
    pub input: Tensor,
    pub parts: BTreeMap<String, (f64, f64)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartResult {
    pub layer5: Stat,
    pub layer7: Stat,
}

#[derive(Debug, Clone, Serialize)]
pub struct Squares {
    pub label: String,
    /// Top-left (x, y) of each part's square, and of the random one.
    pub squares: BTreeMap<String, (i64, i64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorrespondenceResult {
    pub size: i64,
    pub seed: u64,
    pub pairs: usize,
    pub parts: BTreeMap<String, PartResult>,
    pub images: Vec<Squares>,
    /// The paper's Table 1, to show beside ours.
    pub paper: Vec<PaperRow>,
    /// The model's names of the layers measured as "layer 5" (its last conv)
    /// and "layer 7" (its last hidden fc layer).
    pub layer_names: LayerNames,
}

/// Which of the model's layers the paper's "layer N" columns measure.
#[derive(Debug, Clone, Serialize)]
pub struct LayerNames {
    pub layer5: String,
    pub layer7: String,
}

#[derive(Debug, Clone)]
pub struct CorrespondenceRequest {
    pub size: i64,
    pub seed: u64,
}

/// Square of side `size` centred on `p`: top-left = p − size/2 (integer
/// division), clipped so that it stays inside the `s`x`s` input.
pub fn square_at(p: (f64, f64), size: i64, s: i64) -> (i64, i64) {
    let c = |v: f64| (v.floor() as i64 - size / 2).clamp(0, s - size);
    (c(p.0), c(p.1))
}

fn overlaps(a: (i64, i64), b: (i64, i64), size: i64) -> bool {
    a.0 < b.0 + size && b.0 < a.0 + size && a.1 < b.1 + size && b.1 < a.1 + size
}

/// A random square (top-left) that overlaps none of `avoid`, drawn from a
/// generator seeded by (seed, image index): reproducible.
pub fn random_square(
    seed: u64,
    index: usize,
    avoid: &[(i64, i64)],
    size: i64,
    s: i64,
) -> Result<(i64, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(index as u64),
    );
    for _ in 0..100_000 {
        let q = (
            rng.random_range(0..=s - size),
            rng.random_range(0..=s - size),
        );
        if !avoid.iter().any(|&a| overlaps(a, q, size)) {
            return Ok(q);
        }
    }
    bail!("no random location avoids the named parts with a {size} px square")
}

/// Fraction of positions where two sign vectors differ.
pub fn sign_distance(a: &Tensor, b: &Tensor) -> f64 {
    a.ne_tensor(b)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Mean and population std of the distances over all unordered pairs.
pub fn pair_stats(signs: &[Tensor]) -> Stat {
    let mut d = vec![];
    for i in 0..signs.len() {
        for j in i + 1..signs.len() {
            d.push(sign_distance(&signs[i], &signs[j]));
        }
    }
    let n = d.len().max(1) as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Stat {
        mean,
        std: var.sqrt(),
    }
}

pub fn correspondence(
    net: &Net,
    images: &[CorrImage],
    req: &CorrespondenceRequest,
) -> Result<CorrespondenceResult> {
    let s = net.spec.input_size;
    if images.len() < 2 || images.len() > 10 {
        bail!(
            "the correspondence test takes 2 to 10 images, got {}",
            images.len()
        );
    }
    if req.size < 1 || req.size > s / 2 {
        bail!(
            "the occluder size must be 1..={} px, got {}",
            s / 2,
            req.size
        );
    }
    // Parts named in every image.
    let mut parts: Vec<String> = images[0].parts.keys().cloned().collect();
    parts.retain(|p| images.iter().all(|im| im.parts.contains_key(p)));
    parts.retain(|p| p != "random");
    if parts.is_empty() {
        bail!("no part is named in every image");
    }
    let mut all = parts.clone();
    all.push("random".into());
    // signs[part][image] = (layer 5 signs, layer 7 signs)
    let mut signs: BTreeMap<String, (Vec<Tensor>, Vec<Tensor>)> = BTreeMap::new();
    let mut squares = vec![];
    for (i, im) in images.iter().enumerate() {
        let mut sq: BTreeMap<String, (i64, i64)> = parts
            .iter()
            .map(|p| (p.clone(), square_at(im.parts[p], req.size, s)))
            .collect();
        let avoid: Vec<(i64, i64)> = sq.values().copied().collect();
        sq.insert(
            "random".into(),
            random_square(req.seed, i, &avoid, req.size, s)?,
        );
        let x = im
            .input
            .to_device(net.device())
            .view([1, net.spec.in_channels, s, s]);
        let mut xs = vec![x.shallow_clone()];
        for p in &all {
            let (x0, y0) = sq[p];
            xs.push(crate::occlusion::occluded(&x, y0, x0, req.size));
        }
        // One forward per input (batch 1 each): features the square cannot
        // reach come out bit-identical, so their ε is exactly 0.
        let traces: Vec<_> = xs.iter().map(|xi| net.trace(xi)).collect();
        let f5 = Tensor::cat(
            &traces
                .iter()
                .map(|t| t.last_maps.flatten(1, -1))
                .collect::<Vec<_>>(),
            0,
        );
        let f7 = Tensor::cat(
            &traces
                .iter()
                .map(|t| t.last_hidden().shallow_clone())
                .collect::<Vec<_>>(),
            0,
        );
        for (k, p) in all.iter().enumerate() {
            let e5 = (f5.get(0) - f5.get(k as i64 + 1)).sign();
            let e7 = (f7.get(0) - f7.get(k as i64 + 1)).sign();
            let entry = signs.entry(p.clone()).or_default();
            entry.0.push(e5);
            entry.1.push(e7);
        }
        squares.push(Squares {
            label: im.label.clone(),
            squares: sq,
        });
    }
    let results = signs
        .iter()
        .map(|(p, (s5, s7))| {
            (
                p.clone(),
                PartResult {
                    layer5: pair_stats(s5),
                    layer7: pair_stats(s7),
                },
            )
        })
        .collect();
    let n = images.len();
    Ok(CorrespondenceResult {
        size: req.size,
        seed: req.seed,
        pairs: n * (n - 1) / 2,
        parts: results,
        images: squares,
        paper: PAPER
            .iter()
            .map(|&(part, layer5, layer7)| PaperRow {
                part,
                layer5,
                layer7,
            })
            .collect(),
        layer_names: LayerNames {
            layer5: net.units[net.last_unit() - 1].name.clone(),
            layer7: net.last_hidden_name(),
        },
    })
}

/// A landmarks file: `{"file.jpg": {"eye_left": [x, y], …}, …}`, file names
/// relative to the landmarks file, points in original image pixels.
/// Named points of one image, in its pixels.
pub type Points = BTreeMap<String, (f64, f64)>;

pub fn read_landmarks(path: &Path) -> Result<Vec<(PathBuf, Points)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: BTreeMap<String, BTreeMap<String, [f64; 2]>> = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{}: expected {{\"file\": {{\"part\": [x, y]}}}}",
                path.display()
            )
        })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    for (file, parts) in v {
        if file.contains("..") || file.starts_with('/') {
            bail!(
                "{}: image {file:?} must be relative to the landmarks file",
                path.display()
            );
        }
        out.push((
            dir.join(&file),
            parts.into_iter().map(|(k, [x, y])| (k, (x, y))).collect(),
        ));
    }
    Ok(out)
}

/// Store a landmarks file's images and the set of their parts (what the
/// web view's "Load images + landmarks.json" does); returns the set id and
/// each image's (id, file).
pub fn store_landmarks(
    store: &crate::store::ImageStore,
    path: &Path,
) -> Result<(String, Vec<(String, PathBuf)>)> {
    use crate::store::{CorrSet, CorrSetImage};
    let mut images = vec![];
    let mut files = vec![];
    for (file, parts) in read_landmarks(path)? {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let s = store
            .put(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        files.push((s.id.clone(), file));
        images.push(CorrSetImage {
            id: s.id,
            parts: parts.into_iter().map(|(k, p)| (k, [p.0, p.1])).collect(),
        });
    }
    let set = store
        .put_set(&CorrSet { images })
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok((set, files))
}
