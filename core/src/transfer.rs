//! Few-shot transfer (paper §5.1, Fig. 9, Tables 4–5): for n training
//! images a class, (a) a softmax on the frozen network's last hidden fc
//! features, (b) the same architecture trained from random weights on those
//! images with zfvis's trainer; test accuracy on `val/`, over K draws.

use crate::checkpoint::ModelDir;
use crate::classify::{Linear, Loss};
use crate::probe::{
    classes_and_val, extract, feature_layers, first_n, for_each_batch, train_files,
};
use crate::train::{self, Schedule, TrainConfig};
use anyhow::{bail, Context, Result};
use rand::{seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransferRequest {
    pub model: PathBuf,
    pub snapshot: Option<u32>,
    pub data: PathBuf,
    pub classes: Vec<String>,
    /// Training images a class, e.g. [1, 5, 10, 20, 50].
    pub per_class: Vec<usize>,
    /// Draws of training images (seeds 0..seeds).
    pub seeds: usize,
    /// Epochs of from-scratch training (0: skip the scratch arm).
    pub scratch_epochs: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    /// Mean and sample standard deviation (0 for one value).
    pub fn of(v: &[f64]) -> MeanStd {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        MeanStd {
            mean,
            std: var.sqrt(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransferResult {
    pub model: String,
    pub snapshot: u32,
    /// The frozen features: the last hidden fc layer.
    pub layer: String,
    pub per_class: Vec<usize>,
    pub seeds: usize,
    pub pretrained: Vec<MeanStd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<Vec<MeanStd>>,
    pub scratch_epochs: u32,
    pub test_images: usize,
    pub classes: Vec<String>,
}

/// Seed `s`'s draw: each class's files in a random order of that seed (so
/// the n images of a smaller n are among those of a larger one).
fn draw(per: &[Vec<PathBuf>], seed: u64) -> Vec<Vec<PathBuf>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    per.iter()
        .map(|f| {
            let mut f = f.clone();
            f.shuffle(&mut rng);
            f
        })
        .collect()
}

pub fn transfer(
    req: &TransferRequest,
    device: Device,
    progress: &dyn Fn(&str, usize, usize) -> Result<()>,
) -> Result<TransferResult> {
    if req.per_class.is_empty() || req.per_class.contains(&0) {
        bail!("--per-class: give one or more counts of at least 1, e.g. 1,5,10");
    }
    if req.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let model = ModelDir::open(&req.model)?;
    let net = model.load(req.snapshot, device)?;
    let snapshot = model.manifest.snapshot(req.snapshot)?.epoch;
    let (classes, val) = classes_and_val(&req.data, &req.classes)?;
    let per = train_files(&req.data, &classes)?;
    let most = *req.per_class.iter().max().expect("not empty");
    // Every class must have the largest n asked for.
    first_n(&per, &classes, Some(most))?;
    let fc = feature_layers(&net.spec)
        .into_iter()
        .rfind(|l| !l.conv)
        .context("the model has no hidden fc layer to transfer")?;
    let layers = [fc.clone()];
    let pre = model.manifest.preprocess();
    let k = classes.len() as i64;
    let runs = req.seeds * req.per_class.len();
    let with_scratch = req.scratch_epochs > 0;
    let steps = runs * (1 + with_scratch as usize) + 1;
    let mut step = 0;
    progress("features", step, steps)?;
    // Each batch re-reports the step: the check of a cancelled job.
    let xte = extract(&net, &pre, &val.files, &layers, &|_| {
        progress("features", 0, steps)
    })?
    .remove(0);
    let yte = val.labels();
    step += 1;

    let mut pre_acc = vec![vec![]; req.per_class.len()];
    let mut scratch_acc = vec![vec![]; req.per_class.len()];
    for seed in 0..req.seeds {
        let order = draw(&per, seed as u64);
        // Features of the largest draw once; smaller draws are its prefixes.
        let pool: Vec<PathBuf> = order.iter().flat_map(|f| f[..most].to_vec()).collect();
        let xpool = extract(&net, &pre, &pool, &layers, &|_| {
            progress("pretrained softmax", step, steps)
        })?
        .remove(0);
        for (i, &n) in req.per_class.iter().enumerate() {
            let rows: Vec<i64> = (0..classes.len())
                .flat_map(|c| (0..n).map(move |j| (c * most + j) as i64))
                .collect();
            let rows = Tensor::from_slice(&rows);
            let ytr = Tensor::from_slice(
                &(0..k)
                    .flat_map(|c| std::iter::repeat_n(c, n))
                    .collect::<Vec<i64>>(),
            );
            let m = Linear::fit(Loss::Softmax, &xpool.index_select(0, &rows), &ytr, k)?;
            pre_acc[i].push(m.accuracy(&xte, &yte));
            step += 1;
            progress("pretrained softmax", step, steps)?;
            if with_scratch {
                let files: Vec<Vec<PathBuf>> = order.iter().map(|f| f[..n].to_vec()).collect();
                let acc = scratch(
                    &model,
                    &classes_ids(&classes),
                    &files,
                    &val,
                    req,
                    seed,
                    device,
                )?;
                scratch_acc[i].push(acc);
                step += 1;
                progress("training from scratch", step, steps)?;
            }
        }
    }
    Ok(TransferResult {
        model: model.name(),
        snapshot,
        layer: fc.name,
        per_class: req.per_class.clone(),
        seeds: req.seeds,
        pretrained: pre_acc.iter().map(|v| MeanStd::of(v)).collect(),
        scratch: with_scratch.then(|| scratch_acc.iter().map(|v| MeanStd::of(v)).collect()),
        scratch_epochs: req.scratch_epochs,
        test_images: val.files.len(),
        classes: classes.iter().map(|c| c.name.clone()).collect(),
    })
}

fn classes_ids(classes: &[crate::checkpoint::ClassInfo]) -> Vec<String> {
    classes.iter().map(|c| c.id.clone()).collect()
}

/// Train the model's architecture from random weights on `files` (a list a
/// class, in the order of `ids`) with zfvis's trainer and the bundled recipe
/// (modern schedule, lr 0.02), and return its accuracy on `val`.
fn scratch(
    model: &ModelDir,
    ids: &[String],
    files: &[Vec<PathBuf>],
    val: &crate::probe::Split,
    req: &TransferRequest,
    seed: usize,
    device: Device,
) -> Result<f64> {
    let preset = model.manifest.spec()?.preset.context(
        "training from scratch needs a zfnet/alexnet preset model (use --scratch-epochs 0)",
    )?;
    let dir = tempdir(&format!("scratch-{seed}-{}", files[0].len()))?;
    for (id, fs) in ids.iter().zip(files) {
        let d = dir.join("data/train").join(id);
        std::fs::create_dir_all(&d)?;
        for f in fs {
            let target = std::fs::canonicalize(f)?;
            std::os::unix::fs::symlink(&target, d.join(f.file_name().context("file name")?))?;
        }
    }
    let n: usize = files.iter().map(Vec::len).sum();
    let cfg = TrainConfig {
        arch: preset.arch,
        width: preset.width,
        fc_width: Some(preset.fc_width),
        data: dir.join("data"),
        out: dir.join("model"),
        epochs: req.scratch_epochs,
        snapshots: vec![req.scratch_epochs],
        batch: n.min(64),
        lr: 0.02,
        momentum: 0.9,
        weight_decay: 5e-4,
        clip: true,
        schedule: Schedule::Modern,
        device,
        resume: false,
        seed: seed as u64,
        half: false,
        cache_bytes: 1 << 30,
        provenance: serde_json::json!({"command": "zfvis transfer (scratch arm)"}),
        limit: 0,
        stop_after: None,
        classes: vec![],
    };
    train::train(&cfg)?;
    let trained = ModelDir::open(dir.join("model"))?;
    let net = trained.load(None, device)?;
    let pre = trained.manifest.preprocess();
    let mut pred: Vec<Tensor> = vec![];
    for_each_batch(&pre, &val.files, |x| {
        pred.push(
            tch::no_grad(|| net.forward_t(&x.to_device(net.device()), false))
                .argmax(-1, false)
                .to_device(Device::Cpu),
        );
        Ok(())
    })?;
    let right = Tensor::cat(&pred, 0)
        .eq_tensor(&val.labels())
        .to_kind(Kind::Int64)
        .sum(Kind::Int64)
        .int64_value(&[]);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(right as f64 / val.files.len() as f64)
}

fn tempdir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("zfvis-transfer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}
