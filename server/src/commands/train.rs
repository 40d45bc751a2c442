//! `zfvis train` (a ZFNet or AlexNet with snapshots, paper §2) and
//! `zfvis eval` (top-1/top-5 over a folder of class folders).

use super::args::{DeviceArg, ModelArgs, Output};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::PathBuf;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::net::Arch;
use zfvis_core::tch;
use zfvis_core::train::{self, Schedule, TrainConfig};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// zfnet or alexnet
    #[arg(long, default_value = "zfnet")]
    arch: String,
    /// Conv width multiplier (1.0 = the paper's)
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// fc width multiplier (default: --width)
    #[arg(long)]
    fc_width: Option<f64>,
    /// ImageFolder dataset: train/<class>/*, val/<class>/*, optional classes.json
    #[arg(long)]
    data: PathBuf,
    /// Model folder to write
    #[arg(long)]
    out: PathBuf,
    /// Epochs to train
    #[arg(long, default_value_t = 70)]
    epochs: u32,
    /// Epochs at which snapshots are written (the last epoch always is)
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,30,40,64")]
    snapshots: Vec<u32>,
    /// Images per step
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate (the peak one for --schedule modern)
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Turn feature-scale clipping off (the paper's ablation)
    #[arg(long)]
    no_clip: bool,
    /// paper (N(0,0.01) init, step lr) or modern (He init, warm-up + cosine)
    #[arg(long, default_value = "paper")]
    schedule: String,
    /// libtorch threads (default: all cores)
    #[arg(long)]
    threads: Option<i32>,
    #[command(flatten)]
    device: DeviceArg,
    /// Continue from the last completed epoch in --out
    #[arg(long)]
    resume: bool,
    /// Seed of the initial weights, the crops and the order of the images
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Store snapshots as fp16 (loaded as fp32)
    #[arg(long)]
    half: bool,
    /// Use at most N training images (0 = all)
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Stop after this epoch as if killed (continue later with --resume)
    #[arg(long)]
    stop_after: Option<u32>,
    /// Train on these classes only: WordNet ids or names, comma-separated,
    /// or a file listing them one a line
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Decoded-image cache budget in GB; larger datasets are streamed
    #[arg(long, default_value_t = 8.0)]
    cache_gb: f64,
}

fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// libtorch's and rayon's threads.
fn set_threads(threads: Option<i32>) -> Result<()> {
    if let Some(t) = threads {
        if t < 1 {
            bail!("--threads must be at least 1");
        }
        tch::set_num_threads(t);
        rayon::ThreadPoolBuilder::new()
            .num_threads(t as usize)
            .build_global()
            .ok();
    }
    Ok(())
}

impl TrainArgs {
    fn config(self) -> Result<TrainConfig> {
        let schedule = match self.schedule.as_str() {
            "paper" => Schedule::Paper,
            "modern" => Schedule::Modern,
            s => bail!("unknown --schedule {s:?}: expected paper or modern"),
        };
        let arch: Arch = self.arch.parse()?;
        let provenance = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "git_revision": git_rev(),
            "started": format!("{:?}", std::time::SystemTime::now()),
        });
        Ok(TrainConfig {
            arch,
            width: self.width,
            fc_width: self.fc_width,
            data: self.data,
            out: self.out,
            epochs: self.epochs,
            snapshots: self.snapshots,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            clip: !self.no_clip,
            schedule,
            device: self.device.get()?,
            resume: self.resume,
            seed: self.seed,
            half: self.half,
            cache_bytes: (self.cache_gb * 1e9) as usize,
            provenance,
            limit: self.limit,
            stop_after: self.stop_after,
            classes: self.classes,
        })
    }
}

pub fn train(a: TrainArgs) -> Result<()> {
    set_threads(a.threads)?;
    let r = train::train(&a.config()?)?;
    eprintln!(
        "done: epoch {}, val top-1 {:?}, top-5 {:?}, {} images skipped",
        r.final_epoch, r.metrics.val_top1, r.metrics.val_top5, r.skipped
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of class folders (WordNet ids or class names of the model)
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    output: Output,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let model = ModelDir::open(&a.model.model)?;
    let r = train::eval(&model, a.model.snapshot, &a.data, a.model.device.get()?)?;
    for u in &r.unknown {
        eprintln!("warning: skipping folder {u}: not a class of this model");
    }
    let v = json!({"top1": r.top1, "top5": r.top5, "n": r.n});
    a.output.print(&v, || {
        println!(
            "top-1 {:.4}  top-5 {:.4}  over {} images ({} unreadable)",
            r.top1, r.top5, r.n, r.skipped
        );
    })
}
