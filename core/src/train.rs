//! `zfvis train`: the paper's recipe (paper.md §2) with snapshots.
//!
//! Schedules:
//! - `paper`: N(0, 0.01) init, lr constant, divided by 10 after 50% and
//!   again after 75% of the epochs (the paper lowered it by hand on plateaus).
//! - `modern`: He init, one warm-up epoch (lr/10 -> lr), then cosine decay to
//!   0 per step, Nesterov momentum, label smoothing 0.1.
//!
//! Both: SGD with momentum, weight decay, dropout 0.5, feature-scale clipping
//! of conv filters at RMS 0.1 after every step (unless `clip` is false),
//! inputs resized to 256 (shorter side), centre 256 crop, random 224 crops
//! with horizontal flips, normalised with the manifest mean/std.

use crate::checkpoint::{self, ClassInfo, Manifest, Metrics, ModelDir, Snapshot};
use crate::data::{self, Decoded};
use crate::net::{Arch, Init, Net, NetSpec};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::preprocess::{MEAN, STD};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Paper,
    Modern,
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub arch: Arch,
    pub width: f64,
    pub fc_width: Option<f64>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub epochs: u32,
    pub snapshots: Vec<u32>,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub clip: bool,
    pub schedule: Schedule,
    pub device: Device,
    pub resume: bool,
    pub seed: u64,
    /// Store snapshots as fp16 (they load as fp32).
    pub half: bool,
    /// Decoded-cache budget in bytes; larger datasets are streamed.
    pub cache_bytes: usize,
    /// Free-form provenance stored in the manifest (command, git revision).
    pub provenance: serde_json::Value,
    /// Use at most this many training images (0 = all), for quick runs.
    pub limit: usize,
    /// Stop after this epoch as if killed (resumable); the schedule still
    /// spans `epochs`. For time-sliced training and tests.
    pub stop_after: Option<u32>,
    /// Train on these classes only (ids or names; see `data::select_classes`).
    pub classes: Vec<String>,
}

const RESIZE: u32 = 256;

#[derive(Serialize, Deserialize)]
struct TrainState {
    epoch: u32,
    wall_seconds: f64,
}

enum Source {
    Cached(Decoded),
    Stream(Vec<(PathBuf, i64)>),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Cached(d) => d.len(),
            Source::Stream(v) => v.len(),
        }
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// A batch: normalised [B, 3, 224, 224] inputs and labels.
type Batch = (Tensor, Tensor);

fn batches(
    src: Arc<Source>,
    order: Vec<usize>,
    batch: usize,
    crop: usize,
    seed: u64,
) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::sync_channel::<Batch>(3);
    std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for chunk in order.chunks(batch) {
            let aug: Vec<(usize, usize, bool)> = chunk
                .iter()
                .map(|_| {
                    let m = RESIZE as usize - crop;
                    (
                        rng.random_range(0..=m),
                        rng.random_range(0..=m),
                        rng.random_bool(0.5),
                    )
                })
                .collect();
            let plane = 3 * crop * crop;
            let mut buf = vec![0f32; chunk.len() * plane];
            let mut labels = vec![0i64; chunk.len()];
            // The j-th augmented crop of a decoded image whose sides are `side`.
            let mut put = |j: usize, img: &[u8], side: usize| {
                let (oy, ox, flip) = aug[j];
                let out = &mut buf[j * plane..(j + 1) * plane];
                data::write_crop(img, side, oy, ox, crop, flip, &MEAN, &STD, out);
            };
            match &*src {
                Source::Cached(d) => {
                    for (j, &i) in chunk.iter().enumerate() {
                        put(j, d.image(i), d.side);
                        labels[j] = d.labels[i];
                    }
                }
                Source::Stream(items) => {
                    use rayon::prelude::*;
                    let imgs: Vec<Option<Vec<u8>>> = chunk
                        .par_iter()
                        .map(|&i| match data::decode_one(&items[i].0, RESIZE, RESIZE) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                eprintln!("warning: skipping {}: {e}", items[i].0.display());
                                None
                            }
                        })
                        .collect();
                    for (j, (&i, img)) in chunk.iter().zip(imgs).enumerate() {
                        if let Some(img) = img {
                            put(j, &img, RESIZE as usize);
                        }
                        labels[j] = items[i].1;
                    }
                }
            }
            let x =
                Tensor::from_slice(&buf).view([chunk.len() as i64, 3, crop as i64, crop as i64]);
            let y = Tensor::from_slice(&labels);
            if tx.send((x, y)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Top-1 / top-5 (fractions) of `net` over decoded crops, in batches.
pub fn evaluate(net: &Net, d: &Decoded) -> (f64, f64) {
    evaluate_with(net, d, &MEAN, &STD)
}

/// Number of rows whose label is the arg-max, and among the top 5 (ties
/// broken by torch's topk order).
pub fn topk_hits(logits: &Tensor, labels: &Tensor) -> (i64, i64) {
    let k = logits.size()[1].min(5);
    let (_, top) = logits.topk(k, 1, true, true);
    let eq = top.eq_tensor(&labels.unsqueeze(1));
    let h1 = eq.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
    let h5 = eq.sum(Kind::Int64).int64_value(&[]);
    (h1, h5)
}

fn lr_at(cfg: &TrainConfig, epoch: u32, step: usize, steps: usize) -> f64 {
    let e = epoch as f64 - 1.0 + step as f64 / steps.max(1) as f64; // epochs done, fractional
    let total = cfg.epochs as f64;
    match cfg.schedule {
        Schedule::Paper => {
            if e < 0.5 * total {
                cfg.lr
            } else if e < 0.75 * total {
                cfg.lr * 0.1
            } else {
                cfg.lr * 0.01
            }
        }
        Schedule::Modern => {
            let warm = 1.0f64.min(total);
            if e < warm {
                cfg.lr * (0.1 + 0.9 * e / warm)
            } else {
                let t = (e - warm) / (total - warm).max(1e-9);
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
        }
    }
}

pub struct TrainReport {
    pub final_epoch: u32,
    pub metrics: Metrics,
    pub skipped: usize,
}

pub fn train(cfg: &TrainConfig) -> Result<TrainReport> {
    if cfg.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if cfg.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let classes: Vec<ClassInfo> = data::select_classes(data::classes(&cfg.data)?, &cfg.classes)?;
    let train_dir = if cfg.data.join("train").is_dir() {
        cfg.data.join("train")
    } else {
        cfg.data.clone()
    };
    let (mut items, _) = data::labelled(&train_dir, &classes)?;
    if cfg.limit > 0 && items.len() > cfg.limit {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        items.shuffle(&mut rng);
        items.truncate(cfg.limit);
        items.sort();
    }
    if items.is_empty() {
        bail!("{}: no training images", train_dir.display());
    }
    let val_items = if cfg.data.join("val").is_dir() {
        data::labelled(&cfg.data.join("val"), &classes)?.0
    } else {
        vec![]
    };

    let spec = NetSpec::preset(
        cfg.arch,
        cfg.width,
        cfg.fc_width.unwrap_or(cfg.width),
        classes.len() as i64,
    );
    spec.validate()?;

    // The model folder: new, or resumed.
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let manifest_path = cfg.out.join("manifest.json");
    let state_path = cfg.out.join("train-state.json");
    let last_path = cfg.out.join("last.safetensors");
    let init = match cfg.schedule {
        Schedule::Paper => Init::Paper,
        Schedule::Modern => Init::Kaiming,
    };
    tch::manual_seed(cfg.seed as i64);
    let mut net = Net::new(spec.clone(), cfg.device)?;
    net.init(init);
    let mut start_epoch = 1;
    let mut wall_before = 0.0;
    let mut model = if manifest_path.exists() {
        if !cfg.resume {
            bail!(
                "{} already holds a model: pass --resume to continue it, or choose another --out",
                cfg.out.display()
            );
        }
        let m = ModelDir::open(&cfg.out)?;
        if m.manifest.spec()? != spec {
            bail!(
                "{}: the existing model's architecture/width/classes differ from this command's",
                cfg.out.display()
            );
        }
        if let Ok(text) = std::fs::read_to_string(&state_path) {
            let st: TrainState = serde_json::from_str(&text).context("train-state.json")?;
            checkpoint::load_weights(&mut net, &last_path)?;
            start_epoch = st.epoch + 1;
            wall_before = st.wall_seconds;
        } else if let Some(e) = m.manifest.last_epoch() {
            checkpoint::load_weights(&mut net, &m.snapshot_path(Some(e))?)?;
            start_epoch = e + 1;
            wall_before = m
                .manifest
                .snapshot(Some(e))?
                .metrics
                .wall_seconds
                .unwrap_or(0.0);
        }
        eprintln!("resuming {} at epoch {start_epoch}", cfg.out.display());
        m
    } else {
        let mut manifest = Manifest::for_spec(&spec, classes.clone());
        manifest.fc_width = cfg.fc_width;
        ModelDir {
            dir: cfg.out.clone(),
            manifest,
        }
    };

    // Decode (cached when it fits, else streamed), in parallel.
    let crop = spec.input_size as usize;
    let per_image = (RESIZE as usize).pow(2) * 3;
    let source = if items.len() * per_image <= cfg.cache_bytes {
        let pb = bar(
            items.len() as u64,
            "decoding {bar:40} {pos}/{len} {per_sec} ETA {eta}",
        );
        if pb.is_hidden() {
            eprintln!("decoding {} training images", items.len());
        }
        let d = data::decode_all(&items, RESIZE, RESIZE, &pb);
        pb.finish_and_clear();
        Source::Cached(d)
    } else {
        Source::Stream(items.clone())
    };
    let skipped_train = match &source {
        Source::Cached(d) => d.skipped,
        _ => 0,
    };
    let val = data::decode_all(&val_items, crop as u32, crop as u32, &ProgressBar::hidden());
    let source = Arc::new(source);
    let n = source.len();
    if n == 0 {
        bail!("no readable training images");
    }
    eprintln!(
        "training {} width {} on {} images ({} classes), {} val images, {} skipped",
        cfg.arch,
        cfg.width,
        n,
        classes.len(),
        val.len(),
        skipped_train + val.skipped
    );

    let mut opt = nn::Sgd {
        momentum: cfg.momentum,
        dampening: 0.0,
        wd: cfg.weight_decay,
        nesterov: cfg.schedule == Schedule::Modern,
    }
    .build(&net.vs, cfg.lr)?;
    let smoothing = if cfg.schedule == Schedule::Modern {
        0.1
    } else {
        0.0
    };
    let steps = n.div_ceil(cfg.batch);
    let t0 = Instant::now();
    let mut last_metrics = Metrics::default();
    for epoch in start_epoch..=cfg.epochs {
        // Every epoch's randomness derives from (seed, epoch): resumable.
        tch::manual_seed((cfg.seed * 1000 + epoch as u64) as i64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed * 1000 + epoch as u64);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let rx = batches(source.clone(), order, cfg.batch, crop, rng.random());
        let pb = bar(
            steps as u64,
            "epoch {prefix} {bar:30} {pos}/{len} {msg} ETA {eta}",
        );
        pb.set_prefix(format!("{epoch}/{}", cfg.epochs));
        let te = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (step, (x, y)) in rx.into_iter().enumerate() {
            opt.set_lr(lr_at(cfg, epoch, step, steps));
            let x = x.to_device(cfg.device);
            let y = y.to_device(cfg.device);
            let logits = net.forward_t(&x, true);
            let loss = logits.cross_entropy_loss::<Tensor>(
                &y,
                None,
                tch::Reduction::Mean,
                -100,
                smoothing,
            );
            opt.backward_step(&loss);
            if cfg.clip {
                net.clip_filters(0.1);
            }
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                bail!("loss became {l} at epoch {epoch} step {step}: lower --lr");
            }
            loss_sum += l * y.size()[0] as f64;
            seen += y.size()[0] as usize;
            let ips = seen as f64 / te.elapsed().as_secs_f64();
            pb.set_message(format!(
                "loss {:.3} {:.0} img/s",
                loss_sum / seen as f64,
                ips
            ));
            pb.inc(1);
            if pb.is_hidden() && (step + 1) % (steps / 5).max(1) == 0 {
                eprintln!(
                    "epoch {epoch} step {}/{steps} loss {:.4} {:.0} img/s",
                    step + 1,
                    loss_sum / seen as f64,
                    ips
                );
            }
        }
        pb.finish_and_clear();
        let (top1, top5) = evaluate(&net, &val);
        let wall = wall_before + t0.elapsed().as_secs_f64();
        last_metrics = Metrics {
            train_loss: Some(loss_sum / seen.max(1) as f64),
            val_top1: if val.is_empty() { None } else { Some(top1) },
            val_top5: if val.is_empty() { None } else { Some(top5) },
            wall_seconds: Some(wall),
        };
        eprintln!(
            "epoch {epoch}: train loss {:.4}, val top-1 {:.3}, top-5 {:.3}, {:.0} s ({:.0} img/s)",
            last_metrics.train_loss.unwrap(),
            top1,
            top5,
            wall,
            seen as f64 / te.elapsed().as_secs_f64()
        );
        if cfg.snapshots.contains(&epoch) || epoch == cfg.epochs {
            let file = checkpoint::snapshot_file_name(epoch);
            checkpoint::save_weights(&net, &cfg.out.join(&file), cfg.half)?;
            model.manifest.snapshots.retain(|s| s.epoch != epoch);
            model.manifest.snapshots.push(Snapshot {
                epoch,
                file,
                metrics: last_metrics.clone(),
            });
            model.manifest.snapshots.sort_by_key(|s| s.epoch);
        }
        let mut prov = cfg.provenance.clone();
        if let Some(o) = prov.as_object_mut() {
            o.insert("wall_seconds".into(), wall.into());
            o.insert("epochs_done".into(), epoch.into());
            o.insert("schedule".into(), serde_json::to_value(cfg.schedule)?);
            o.insert("clip".into(), cfg.clip.into());
            o.insert("seed".into(), cfg.seed.into());
            o.insert("train_images".into(), n.into());
        }
        model.manifest.training = Some(prov);
        model.save_manifest()?;
        if epoch < cfg.epochs {
            checkpoint::save_weights(&net, &last_path, false)?;
            checkpoint::write_atomic(
                &state_path,
                serde_json::to_string(&TrainState {
                    epoch,
                    wall_seconds: wall,
                })?
                .as_bytes(),
            )?;
            if cfg.stop_after == Some(epoch) {
                eprintln!("stopping after epoch {epoch}; continue with --resume");
                return Ok(TrainReport {
                    final_epoch: epoch,
                    metrics: last_metrics,
                    skipped: skipped_train + val.skipped,
                });
            }
        }
    }
    let _ = std::fs::remove_file(&last_path);
    let _ = std::fs::remove_file(&state_path);
    Ok(TrainReport {
        final_epoch: cfg.epochs,
        metrics: last_metrics,
        skipped: skipped_train + val.skipped,
    })
}

pub struct EvalReport {
    pub top1: f64,
    pub top5: f64,
    pub n: usize,
    pub unknown: Vec<String>,
    pub skipped: usize,
}

/// Top-1/top-5 of a model snapshot over `dir` (or `dir/val`), matching class
/// folders to the model's classes by id.
pub fn eval(
    model: &ModelDir,
    epoch: Option<u32>,
    dir: &Path,
    device: Device,
) -> Result<EvalReport> {
    let net = model.load(epoch, device)?;
    let dir = if dir.join("val").is_dir() {
        dir.join("val")
    } else {
        dir.to_path_buf()
    };
    let (items, unknown) = data::labelled(&dir, &model.manifest.classes)?;
    if items.is_empty() {
        bail!(
            "{}: no images in folders matching the model's classes",
            dir.display()
        );
    }
    let size = model.manifest.input_size as u32;
    let pb = bar(
        items.len() as u64,
        "decoding {bar:40} {pos}/{len} ETA {eta}",
    );
    let d = data::decode_all(&items, size, size, &pb);
    pb.finish_and_clear();
    let (top1, top5) = evaluate_with(&net, &d, &model.manifest.mean, &model.manifest.std);
    Ok(EvalReport {
        top1,
        top5,
        n: d.len(),
        unknown,
        skipped: d.skipped,
    })
}

fn evaluate_with(net: &Net, d: &Decoded, mean: &[f64; 3], std: &[f64; 3]) -> (f64, f64) {
    if d.is_empty() {
        return (0.0, 0.0);
    }
    let side = d.side;
    let plane = 3 * side * side;
    let (mut h1, mut h5) = (0, 0);
    let idx: Vec<usize> = (0..d.len()).collect();
    for chunk in idx.chunks(100) {
        let mut buf = vec![0f32; chunk.len() * plane];
        for (j, &i) in chunk.iter().enumerate() {
            data::write_crop(
                d.image(i),
                side,
                0,
                0,
                side,
                false,
                mean,
                std,
                &mut buf[j * plane..(j + 1) * plane],
            );
        }
        let x = Tensor::from_slice(&buf)
            .view([chunk.len() as i64, 3, side as i64, side as i64])
            .to_device(net.device());
        let y = Tensor::from_slice(&chunk.iter().map(|&i| d.labels[i]).collect::<Vec<_>>())
            .to_device(net.device());
        let logits = tch::no_grad(|| net.forward_t(&x, false));
        let (a, b) = topk_hits(&logits, &y);
        h1 += a;
        h5 += b;
    }
    (h1 as f64 / d.len() as f64, h5 as f64 / d.len() as f64)
}
