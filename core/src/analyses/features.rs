//! The "Feature analysis" view (paper §5, Table 7 and Fig. 9): the linear
//! probes of every layer and the few-shot transfer curve of one snapshot on
//! the server's dataset, computed as a background job (the page shows the
//! paper's own numbers beside them).

use crate::analysis::Job;
use crate::checkpoint::ModelDir;
use crate::classify::Loss;
use crate::engine::Context;
use crate::error::{bad, bad_input, Error, Result};
use crate::params::ModelName;
use crate::probe::{self, ProbeRequest, ProbeResult};
use crate::transfer::{self, TransferRequest, TransferResult};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn d_train() -> usize {
    30
}
fn d_shots() -> String {
    "1,5,10,20".into()
}
fn d_seeds() -> usize {
    2
}
fn d_scratch() -> u32 {
    10
}

/// `?model=M&epoch=E&train_per_class=30&shots=1,5,10,20&seeds=2&scratch_epochs=10&classes=a,b`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeaturesRequest {
    pub model: ModelName,
    pub epoch: Option<u32>,
    /// Training images a class of the probes (the first N by file name).
    #[serde(default = "d_train")]
    pub train_per_class: usize,
    /// Training images a class of the transfer curve, comma-separated.
    #[serde(default = "d_shots")]
    pub shots: String,
    #[serde(default = "d_seeds")]
    pub seeds: usize,
    /// Epochs of the from-scratch arm (0: skip it).
    #[serde(default = "d_scratch")]
    pub scratch_epochs: u32,
    /// Class ids or names, comma-separated (default: every class).
    #[serde(default)]
    pub classes: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeaturesResult {
    /// The dataset folder used (train/ and val/ under it).
    pub dataset: String,
    pub probe: ProbeResult,
    pub transfer: TransferResult,
}

/// The folder with `train/` and `val/` for the server's `--dataset`: the
/// folder itself, or its parent (so `--dataset woofnette/val` works too).
pub fn labelled_root(dataset: &std::path::Path) -> Option<PathBuf> {
    let ok = |d: &std::path::Path| d.join("train").is_dir() && d.join("val").is_dir();
    if ok(dataset) {
        return Some(dataset.to_path_buf());
    }
    dataset.parent().filter(|p| ok(p)).map(|p| p.to_path_buf())
}

pub struct FeatureAnalysis;

/// The request's counts, the labelled dataset's root and the model, or why not.
fn checked(ctx: &Context, r: &FeaturesRequest) -> Result<(Vec<usize>, PathBuf, ModelDir)> {
    if !(1..=500).contains(&r.train_per_class) {
        return Err(bad("train_per_class must be 1..=500"));
    }
    if !(1..=5).contains(&r.seeds) || r.scratch_epochs > 50 {
        return Err(bad("seeds must be 1..=5 and scratch_epochs 0..=50"));
    }
    let shots: Vec<usize> = r
        .shots
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("shots: comma-separated counts, e.g. 1,5,10,20"))?;
    if shots.is_empty() || shots.len() > 8 || shots.iter().any(|&n| n == 0 || n > 500) {
        return Err(bad("shots: 1 to 8 counts of 1..=500"));
    }
    let dataset = ctx.given_dataset()?.to_path_buf();
    let root = labelled_root(&dataset).ok_or_else(|| {
            Error::NotFound(format!(
                "the dataset {} has no train/ and val/ folders (nor has its parent): feature analysis needs labelled images",
                dataset.display()
            ))
        })?;
    let m = ctx.snapshot(&r.model, r.epoch)?;
    Ok((shots, root, m))
}

impl Job for FeatureAnalysis {
    type Request = FeaturesRequest;
    type Result = FeaturesResult;

    fn check(ctx: &Context, r: &FeaturesRequest) -> Result<()> {
        checked(ctx, r).map(|_| ())
    }

    fn run(
        ctx: &Context,
        r: &FeaturesRequest,
        progress: &mut crate::progress::Report<'_>,
    ) -> Result<FeaturesResult> {
        let (shots, root, m) = checked(ctx, r)?;
        let classes: Vec<String> = r
            .classes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        // Progress on one scale of 200: the probe's features (0..50) and
        // classifiers (50..100), then the transfer's steps (100..200).
        let progress = std::sync::Mutex::new(progress);
        let report = |base: usize| {
            let p = &progress;
            move |stage: &str, done: usize, total: usize| {
                let part = done * 50 / total.max(1);
                let at = match (base, stage) {
                    (0, "features") => part,
                    (0, _) => 50 + part,
                    _ => base + 2 * part,
                };
                match p.lock() {
                    Ok(mut f) => (*f)(at, 200),
                    Err(_) => Ok(()),
                }
            }
        };
        let probe = probe::probe(
            &ProbeRequest {
                model: m.dir.clone(),
                snapshot: r.epoch,
                data: root.clone(),
                classes: classes.clone(),
                train_per_class: Some(r.train_per_class),
                classifiers: vec![Loss::Softmax, Loss::Svm],
            },
            ctx.device,
            &report(0),
        )
        .map_err(bad_input)?;
        let transfer = transfer::transfer(
            &TransferRequest {
                model: m.dir.clone(),
                snapshot: r.epoch,
                data: root.clone(),
                classes,
                per_class: shots,
                seeds: r.seeds,
                scratch_epochs: r.scratch_epochs,
            },
            ctx.device,
            &report(100),
        )
        .map_err(bad_input)?;
        Ok(FeaturesResult {
            dataset: root.display().to_string(),
            probe,
            transfer,
        })
    }
}

crate::names_models! {
    FeaturesRequest: model;
}
