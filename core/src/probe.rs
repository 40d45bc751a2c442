//! Linear probes per layer (paper §5, Table 7): fix a trained network, take
//! the features of each layer for a labelled dataset, train a softmax and a
//! linear SVM on them, and test on held-out images. Deeper layers should
//! carry more linearly separable features.
//!
//! Features: a conv layer's block output (after its ReLU, and its max-pool
//! and LRN where it has them), average-pooled to a GRID x GRID grid and
//! flattened; a hidden fc layer's output after its ReLU.

use crate::checkpoint::{ClassInfo, ModelDir};
use crate::classify::{Linear, Loss};
use crate::data;
use crate::net::{Layer, Net, NetSpec};
use crate::preprocess::{self, Preprocess};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Side of the grid conv features are average-pooled to.
pub const GRID: i64 = 4;

/// A layer whose output is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureLayer {
    /// `conv1`..`conv5`, `fc6`, `fc7` (checkpoint names for imported networks).
    pub name: String,
    /// Index in the layer list of the output taken.
    pub at: usize,
    pub conv: bool,
}

/// Every conv layer (its block's output) and every hidden fc layer, in order.
pub fn feature_layers(spec: &NetSpec) -> Vec<FeatureLayer> {
    let mut out: Vec<FeatureLayer> = spec
        .convs()
        .iter()
        .map(|c| {
            let mut end = c.index;
            // Its activation (any: SiLU, GELU… too), norms and pools.
            while spec.nodes.get(end + 1).is_some_and(|n| {
                n.op.is_map_activation()
                    || matches!(
                        n.op,
                        Layer::Lrn { .. }
                            | Layer::Affine { .. }
                            | Layer::MaxPool { .. }
                            | Layer::AvgPool { .. }
                            | Layer::Dropout { .. }
                    )
            }) {
                end += 1;
            }
            FeatureLayer {
                name: c.name.clone(),
                at: end,
                conv: true,
            }
        })
        .collect();
    out.extend(
        spec.hidden_fcs()
            .into_iter()
            .map(|(at, name)| FeatureLayer {
                name,
                at,
                conv: false,
            }),
    );
    out
}

/// Features of `layers` for a batch of network inputs: [N, D] each.
pub fn features_of(net: &Net, x: &Tensor, layers: &[FeatureLayer]) -> Vec<Tensor> {
    let at: Vec<usize> = layers.iter().map(|l| l.at).collect();
    net.outputs_at(x, &at)
        .into_iter()
        .zip(layers)
        .map(|(h, l)| {
            let h = if l.conv {
                h.adaptive_avg_pool2d([GRID, GRID])
            } else {
                h
            };
            h.flatten(1, -1).to_device(Device::Cpu).to_kind(Kind::Float)
        })
        .collect()
}

/// Decode and preprocess `files` in batches of 32 on the rayon pool, one
/// batch ahead of `f`, which receives each batch [B, 3, S, S] in order. A
/// file that cannot be decoded is an error naming it.
pub fn for_each_batch(
    pre: &Preprocess,
    files: &[PathBuf],
    mut f: impl FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    use rayon::prelude::*;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Tensor>>>(1);
        scope.spawn(move || {
            for chunk in files.chunks(32) {
                let batch = chunk
                    .par_iter()
                    .map(|p| -> Result<Tensor> {
                        let bytes = std::fs::read(p).with_context(|| format!("{}", p.display()))?;
                        let img = preprocess::decode(&bytes)
                            .with_context(|| format!("{}", p.display()))?;
                        Ok(pre.tensor(&pre.crop(&img)))
                    })
                    .collect::<Result<Vec<Tensor>>>();
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        // An error of `f` (a cancelled job) drops `rx`: the decoder stops.
        for batch in rx {
            f(Tensor::stack(&batch?, 0))?;
        }
        Ok(())
    })
}

/// Features of `layers` for every file; `progress(n)` after each batch of n
/// (an error from it, a cancelled job, stops the extraction).
pub fn extract(
    net: &Net,
    pre: &Preprocess,
    files: &[PathBuf],
    layers: &[FeatureLayer],
    progress: &dyn Fn(usize) -> Result<()>,
) -> Result<Vec<Tensor>> {
    if files.is_empty() {
        bail!("no images to extract features from");
    }
    let mut parts: Vec<Vec<Tensor>> = (0..layers.len()).map(|_| vec![]).collect();
    for_each_batch(pre, files, |x| {
        for (i, f) in features_of(net, &x, layers).into_iter().enumerate() {
            parts[i].push(f);
        }
        progress(x.size()[0] as usize)
    })?;
    Ok(parts.iter().map(|p| Tensor::cat(p, 0)).collect())
}

/// A labelled split: files and their class indices, sorted by file within class.
pub struct Split {
    pub files: Vec<PathBuf>,
    pub labels: Vec<i64>,
}

impl Split {
    pub fn labels(&self) -> Tensor {
        Tensor::from_slice(&self.labels)
    }
}

/// The classes of `data` (all, or those named) and its `val/` split.
pub fn classes_and_val(data: &Path, wanted: &[String]) -> Result<(Vec<ClassInfo>, Split)> {
    let classes = data::select_classes(data::classes(data)?, wanted)?;
    let val = data.join("val");
    if !val.is_dir() {
        bail!(
            "{}: no val/ folder (the test images, val/<class>/*)",
            data.display()
        );
    }
    let (items, _) = data::labelled(&val, &classes)?;
    for c in &classes {
        if !items.iter().any(|(_, y)| *y == c.index as i64) {
            bail!("{}: no val images of class {}", val.display(), c.id);
        }
    }
    Ok((classes, split(items)))
}

/// Every training file of each class (`data/train/<class>/`), sorted by name.
pub fn train_files(data: &Path, classes: &[ClassInfo]) -> Result<Vec<Vec<PathBuf>>> {
    let train = data.join("train");
    if !train.is_dir() {
        bail!("{}: no train/ folder", data.display());
    }
    let (items, _) = data::labelled(&train, classes)?;
    let mut per: Vec<Vec<PathBuf>> = vec![vec![]; classes.len()];
    for (p, y) in items {
        per[y as usize].push(p);
    }
    Ok(per)
}

/// The first `n` files of each class (all with None); an error when a class
/// has fewer than `n`.
pub fn first_n(
    per_class: &[Vec<PathBuf>],
    classes: &[ClassInfo],
    n: Option<usize>,
) -> Result<Split> {
    let mut items = vec![];
    for (c, files) in classes.iter().zip(per_class) {
        let k = n.unwrap_or(files.len());
        if files.len() < k.max(1) {
            bail!(
                "class {} has {} training images, fewer than the {} asked for",
                c.id,
                files.len(),
                k.max(1)
            );
        }
        items.extend(files[..k].iter().map(|p| (p.clone(), c.index as i64)));
    }
    Ok(split(items))
}

fn split(items: Vec<(PathBuf, i64)>) -> Split {
    let (files, labels) = items.into_iter().unzip();
    Split { files, labels }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeRequest {
    pub model: PathBuf,
    /// Epoch of the snapshot (None: the last).
    pub snapshot: Option<u32>,
    pub data: PathBuf,
    /// Class ids or names (empty: every class of the dataset).
    pub classes: Vec<String>,
    /// Training images a class: the first N by file name (None: all).
    pub train_per_class: Option<usize>,
    pub classifiers: Vec<Loss>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerAccuracy {
    pub layer: String,
    pub dims: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub softmax: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svm: Option<f64>,
    /// Penalties chosen by cross-validation, by classifier.
    pub lambda: std::collections::BTreeMap<String, f64>,
    /// Classifiers whose final fit stopped at its iteration cap before it
    /// converged (their accuracy is that of an unfinished fit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_converged: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    pub model: String,
    pub snapshot: u32,
    pub layers: Vec<LayerAccuracy>,
    pub train_per_class: Option<usize>,
    pub train_images: usize,
    pub test_images: usize,
    pub classes: Vec<String>,
    /// Conv features: average-pooled to grid x grid.
    pub grid: i64,
    /// Whether the penalties were chosen by cross-validation (false with
    /// fewer than 3 training images of some class: the grid's middle, 1e-2).
    #[serde(default = "yes")]
    pub cross_validated: bool,
}

fn yes() -> bool {
    true
}

/// Stages of a probe, for progress: images featurised, then layers fitted.
pub fn probe(
    req: &ProbeRequest,
    device: Device,
    progress: &dyn Fn(&str, usize, usize) -> Result<()>,
) -> Result<ProbeResult> {
    if req.classifiers.is_empty() {
        bail!("no classifier chosen (softmax, svm or both)");
    }
    if req.train_per_class == Some(0) {
        bail!("--train-per-class must be at least 1");
    }
    let model = ModelDir::open(&req.model)?;
    let net = model.load(req.snapshot, device)?;
    let snapshot = model.manifest.snapshot(req.snapshot)?.epoch;
    let (classes, val) = classes_and_val(&req.data, &req.classes)?;
    let per = train_files(&req.data, &classes)?;
    let train = first_n(&per, &classes, req.train_per_class)?;
    let layers = feature_layers(&net.spec);
    let pre = model.manifest.preprocess();
    let total = train.files.len() + val.files.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let step = |n: usize| {
        let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        progress("features", d, total)
    };
    let xtr = extract(&net, &pre, &train.files, &layers, &step)?;
    let xte = extract(&net, &pre, &val.files, &layers, &step)?;
    let (ytr, yte) = (train.labels(), val.labels());
    let k = classes.len() as i64;
    let mut out = vec![];
    let mut cross_validated = true;
    for (i, l) in layers.iter().enumerate() {
        progress("classifiers", i, layers.len())?;
        let mut row = LayerAccuracy {
            layer: l.name.clone(),
            dims: xtr[i].size()[1],
            softmax: None,
            svm: None,
            lambda: Default::default(),
            not_converged: vec![],
        };
        for &loss in &req.classifiers {
            let m = Linear::fit(loss, &xtr[i], &ytr, k)?;
            let acc = m.accuracy(&xte[i], &yte);
            let name = match loss {
                Loss::Softmax => {
                    row.softmax = Some(acc);
                    "softmax"
                }
                Loss::Svm => {
                    row.svm = Some(acc);
                    "svm"
                }
            };
            row.lambda.insert(name.into(), m.lambda);
            cross_validated &= m.cross_validated;
            if !m.converged {
                row.not_converged.push(name.into());
            }
        }
        out.push(row);
    }
    progress("classifiers", layers.len(), layers.len())?;
    Ok(ProbeResult {
        model: model.name(),
        snapshot,
        layers: out,
        train_per_class: req.train_per_class,
        train_images: train.files.len(),
        test_images: val.files.len(),
        classes: classes.iter().map(|c| c.name.clone()).collect(),
        grid: GRID,
        cross_validated,
    })
}
