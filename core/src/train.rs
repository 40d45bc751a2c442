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

use crate::preprocess::{Preprocess, MEAN, STD};

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
                        .map(
                            |&i| match data::decode_one(&items[i].0, &data::square(RESIZE)) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    eprintln!("warning: skipping {}: {e}", items[i].0.display());
                                    None
                                }
                            },
                        )
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
    evaluate_with(net, d, &Preprocess::imagenet(d.side as u32))
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

/// The training and validation images of the chosen classes.
struct Images {
    classes: Vec<ClassInfo>,
    train_dir: PathBuf,
    items: Vec<(PathBuf, i64)>,
    val_items: Vec<(PathBuf, i64)>,
}

fn images(cfg: &TrainConfig) -> Result<Images> {
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
    Ok(Images {
        classes,
        train_dir,
        items,
        val_items,
    })
}

/// Where a run starts: the model folder (new, or the one resumed), the
/// first epoch to train and the wall time already spent.
struct Start {
    model: ModelDir,
    epoch: u32,
    wall_before: f64,
}

/// Open `--out`: a new model folder, or (with `--resume`) the one there,
/// with the weights of its last completed epoch loaded into `net`.
fn start(cfg: &TrainConfig, spec: &NetSpec, classes: &[ClassInfo], net: &mut Net) -> Result<Start> {
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    if !cfg.out.join("manifest.json").exists() {
        let mut manifest = Manifest::for_spec(spec, classes.to_vec());
        manifest.fc_width = cfg.fc_width;
        let model = ModelDir {
            dir: cfg.out.clone(),
            manifest,
        };
        return Ok(Start {
            model,
            epoch: 1,
            wall_before: 0.0,
        });
    }
    if !cfg.resume {
        bail!(
            "{} already holds a model: pass --resume to continue it, or choose another --out",
            cfg.out.display()
        );
    }
    let m = ModelDir::open(&cfg.out)?;
    if &m.manifest.spec()? != spec {
        bail!(
            "{}: the existing model's architecture/width/classes differ from this command's",
            cfg.out.display()
        );
    }
    let (mut epoch, mut wall_before) = (1, 0.0);
    if let Ok(text) = std::fs::read_to_string(cfg.out.join(STATE_FILE)) {
        let st: TrainState = serde_json::from_str(&text).context("train-state.json")?;
        checkpoint::load_weights(net, &cfg.out.join(LAST_FILE))?;
        epoch = st.epoch + 1;
        wall_before = st.wall_seconds;
    } else if let Some(e) = m.manifest.last_epoch() {
        checkpoint::load_weights(net, &m.snapshot_path(Some(e))?)?;
        epoch = e + 1;
        wall_before = m
            .manifest
            .snapshot(Some(e))?
            .metrics
            .wall_seconds
            .unwrap_or(0.0);
    }
    eprintln!("resuming {} at epoch {epoch}", cfg.out.display());
    Ok(Start {
        model: m,
        epoch,
        wall_before,
    })
}

/// The training images decoded once (cached when they fit the budget),
/// else streamed from disk every epoch.
fn source(cfg: &TrainConfig, items: &[(PathBuf, i64)]) -> Source {
    let per_image = (RESIZE as usize).pow(2) * 3;
    if items.len() * per_image > cfg.cache_bytes {
        return Source::Stream(items.to_vec());
    }
    let pb = bar(
        items.len() as u64,
        "decoding {bar:40} {pos}/{len} {per_sec} ETA {eta}",
    );
    if pb.is_hidden() {
        eprintln!("decoding {} training images", items.len());
    }
    let d = data::decode_all(items, &data::square(RESIZE), RESIZE, &pb);
    pb.finish_and_clear();
    Source::Cached(d)
}

/// The recipe a run follows, in one line, said before it starts.
fn recipe(cfg: &TrainConfig) -> String {
    format!(
        "recipe: {} width {} (fc {}), {} epochs, batch {}, lr {}, {}{}, momentum {}, weight decay {}, feature-scale clipping {}, snapshots at epochs {:?}",
        cfg.arch,
        cfg.width,
        cfg.fc_width.unwrap_or(cfg.width),
        cfg.epochs,
        cfg.batch,
        cfg.lr,
        match cfg.schedule {
            Schedule::Paper => "paper schedule (lr / 10 at 50% and 75% of the epochs)",
            Schedule::Modern => "modern schedule (1 epoch warm-up, then cosine)",
        },
        if cfg.schedule == Schedule::Modern {
            ", Nesterov, label smoothing 0.1"
        } else {
            ""
        },
        cfg.momentum,
        cfg.weight_decay,
        if cfg.clip { "on" } else { "off" },
        cfg.snapshots
            .iter()
            .copied()
            .filter(|&e| e <= cfg.epochs)
            .chain([cfg.epochs])
            .collect::<std::collections::BTreeSet<_>>()
    )
}

/// What one training step needs besides the batch.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    net: &'a mut Net,
    opt: nn::Optimizer,
    smoothing: f64,
    steps: usize,
    /// Images a run trains on in all (for the duration estimate).
    images_left: usize,
    /// The estimate has been said.
    estimated: bool,
}

impl Trainer<'_> {
    /// One epoch over `source` in the order (seed, epoch) gives:
    /// (summed loss, images seen).
    fn epoch(&mut self, source: &Arc<Source>, epoch: u32, crop: usize) -> Result<(f64, usize)> {
        let cfg = self.cfg;
        let n = source.len();
        // Every epoch's randomness derives from (seed, epoch): resumable.
        tch::manual_seed((cfg.seed * 1000 + epoch as u64) as i64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed * 1000 + epoch as u64);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let rx = batches(source.clone(), order, cfg.batch, crop, rng.random());
        let pb = bar(
            self.steps as u64,
            "epoch {prefix} {bar:30} {pos}/{len} {msg} ETA {eta}",
        );
        pb.set_prefix(format!("{epoch}/{}", cfg.epochs));
        let te = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (step, (x, y)) in rx.into_iter().enumerate() {
            let l = self.step(epoch, step, &x, &y)?;
            loss_sum += l * y.size()[0] as f64;
            seen += y.size()[0] as usize;
            let ips = seen as f64 / te.elapsed().as_secs_f64();
            self.estimate(step, te.elapsed().as_secs_f64(), seen);
            pb.set_message(format!(
                "loss {:.3} {:.0} img/s",
                loss_sum / seen as f64,
                ips
            ));
            pb.inc(1);
            if pb.is_hidden() && (step + 1) % (self.steps / 5).max(1) == 0 {
                eprintln!(
                    "epoch {epoch} step {}/{} loss {:.4} {:.0} img/s",
                    step + 1,
                    self.steps,
                    loss_sum / seen as f64,
                    ips
                );
            }
        }
        pb.finish_and_clear();
        if !self.estimated {
            // A short epoch: the estimate from all of it.
            self.say_estimate(te.elapsed().as_secs_f64(), seen);
        }
        self.images_left = self.images_left.saturating_sub(seen);
        Ok((loss_sum, seen))
    }

    /// One SGD step (and the paper's filter clipping); the batch's loss.
    fn step(&mut self, epoch: u32, step: usize, x: &Tensor, y: &Tensor) -> Result<f64> {
        let cfg = self.cfg;
        self.opt.set_lr(lr_at(cfg, epoch, step, self.steps));
        let x = x.to_device(cfg.device);
        let y = y.to_device(cfg.device);
        let logits = self.net.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y,
            None,
            tch::Reduction::Mean,
            -100,
            self.smoothing,
        );
        self.opt.backward_step(&loss);
        if cfg.clip {
            self.net.clip_filters(0.1);
        }
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            bail!("loss became {l} at epoch {epoch} step {step}: lower --lr");
        }
        Ok(l)
    }

    /// Once the first steps have been timed (10 steps or 20 s, past the
    /// first), say how long the whole run will take at that speed.
    fn estimate(&mut self, step: usize, secs: f64, seen: usize) {
        if self.estimated || step == 0 || (step < 10 && secs < 20.0) {
            return;
        }
        self.say_estimate(secs, seen);
    }

    fn say_estimate(&mut self, secs: f64, seen: usize) {
        self.estimated = true;
        let ips = seen as f64 / secs.max(1e-9);
        let rest = self.images_left.saturating_sub(seen);
        eprintln!(
            "estimate: {ips:.0} images/s, about {} for the {rest} images still to train on (validation not counted)",
            human(rest as f64 / ips.max(1e-9)),
        );
    }
}

/// Seconds as "45 s", "12 min", "3.4 h" or "2.1 days".
fn human(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

/// After an epoch: its snapshot (when one is due), the manifest with the
/// run's provenance, and the state `--resume` continues from.
fn record(
    cfg: &TrainConfig,
    model: &mut ModelDir,
    net: &Net,
    epoch: u32,
    metrics: &Metrics,
    train_images: usize,
) -> Result<()> {
    if cfg.snapshots.contains(&epoch) || epoch == cfg.epochs {
        let file = checkpoint::snapshot_file_name(epoch);
        checkpoint::save_weights(net, &cfg.out.join(&file), cfg.half)?;
        model.manifest.snapshots.retain(|s| s.epoch != epoch);
        model.manifest.snapshots.push(Snapshot {
            epoch,
            file,
            metrics: metrics.clone(),
        });
        model.manifest.snapshots.sort_by_key(|s| s.epoch);
    }
    let wall = metrics.wall_seconds.unwrap_or(0.0);
    let mut prov = cfg.provenance.clone();
    if let Some(o) = prov.as_object_mut() {
        o.insert("wall_seconds".into(), wall.into());
        o.insert("epochs_done".into(), epoch.into());
        o.insert("schedule".into(), serde_json::to_value(cfg.schedule)?);
        o.insert("clip".into(), cfg.clip.into());
        o.insert("seed".into(), cfg.seed.into());
        o.insert("train_images".into(), train_images.into());
    }
    model.manifest.training = Some(prov);
    model.save_manifest()?;
    if epoch < cfg.epochs {
        checkpoint::save_weights(net, &cfg.out.join(LAST_FILE), false)?;
        checkpoint::write_atomic(
            &cfg.out.join(STATE_FILE),
            serde_json::to_string(&TrainState {
                epoch,
                wall_seconds: wall,
            })?
            .as_bytes(),
        )?;
    }
    Ok(())
}

/// The resume state beside the snapshots while a run is unfinished.
const STATE_FILE: &str = "train-state.json";
const LAST_FILE: &str = "last.safetensors";

pub fn train(cfg: &TrainConfig) -> Result<TrainReport> {
    if cfg.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if cfg.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let im = images(cfg)?;
    let spec = NetSpec::preset(
        cfg.arch,
        cfg.width,
        cfg.fc_width.unwrap_or(cfg.width),
        im.classes.len() as i64,
    );
    spec.validate()?;
    let init = match cfg.schedule {
        Schedule::Paper => Init::Paper,
        Schedule::Modern => Init::Kaiming,
    };
    tch::manual_seed(cfg.seed as i64);
    let mut net = Net::new(spec.clone(), cfg.device)?;
    net.init(init);
    let Start {
        mut model,
        epoch: start_epoch,
        wall_before,
    } = start(cfg, &spec, &im.classes, &mut net)?;
    let crop = spec.input_size as usize;
    let source = source(cfg, &im.items);
    let skipped_train = match &source {
        Source::Cached(d) => d.skipped,
        _ => 0,
    };
    let val = data::decode_all(
        &im.val_items,
        &data::square(crop as u32),
        crop as u32,
        &ProgressBar::hidden(),
    );
    let skipped = skipped_train + val.skipped;
    let source = Arc::new(source);
    let n = source.len();
    if n == 0 {
        bail!("{}: no readable training images", im.train_dir.display());
    }
    eprintln!(
        "training {} width {} on {} images ({} classes), {} val images, {} skipped",
        cfg.arch,
        cfg.width,
        n,
        im.classes.len(),
        val.len(),
        skipped
    );
    eprintln!("{}", recipe(cfg));
    let opt = nn::Sgd {
        momentum: cfg.momentum,
        dampening: 0.0,
        wd: cfg.weight_decay,
        nesterov: cfg.schedule == Schedule::Modern,
    }
    .build(&net.vs, cfg.lr)?;
    let epochs_left = (cfg.epochs + 1).saturating_sub(start_epoch) as usize;
    let mut trainer = Trainer {
        cfg,
        net: &mut net,
        opt,
        smoothing: if cfg.schedule == Schedule::Modern {
            0.1
        } else {
            0.0
        },
        steps: n.div_ceil(cfg.batch),
        images_left: n * epochs_left,
        estimated: false,
    };
    let t0 = Instant::now();
    let mut last_metrics = Metrics::default();
    for epoch in start_epoch..=cfg.epochs {
        let te = Instant::now();
        let (loss_sum, seen) = trainer.epoch(&source, epoch, crop)?;
        let (top1, top5) = evaluate(trainer.net, &val);
        let wall = wall_before + t0.elapsed().as_secs_f64();
        last_metrics = Metrics {
            train_loss: Some(loss_sum / seen.max(1) as f64),
            val_top1: if val.is_empty() { None } else { Some(top1) },
            val_top5: if val.is_empty() { None } else { Some(top5) },
            wall_seconds: Some(wall),
        };
        eprintln!(
            "epoch {epoch}: train loss {:.4}, val top-1 {:.3}, top-5 {:.3}, {:.0} s ({:.0} img/s)",
            loss_sum / seen.max(1) as f64,
            top1,
            top5,
            wall,
            seen as f64 / te.elapsed().as_secs_f64()
        );
        record(cfg, &mut model, trainer.net, epoch, &last_metrics, n)?;
        if epoch < cfg.epochs && cfg.stop_after == Some(epoch) {
            eprintln!("stopping after epoch {epoch}; continue with --resume");
            return Ok(TrainReport {
                final_epoch: epoch,
                metrics: last_metrics,
                skipped,
            });
        }
    }
    let _ = std::fs::remove_file(cfg.out.join(LAST_FILE));
    let _ = std::fs::remove_file(cfg.out.join(STATE_FILE));
    Ok(TrainReport {
        final_epoch: cfg.epochs,
        metrics: last_metrics,
        skipped,
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
    let pre = model.manifest.preprocess();
    let d = data::decode_all(&items, &|img| pre.crop(img), size, &pb);
    pb.finish_and_clear();
    let (top1, top5) = evaluate_with(&net, &d, &pre);
    Ok(EvalReport {
        top1,
        top5,
        n: d.len(),
        unknown,
        skipped: d.skipped,
    })
}

/// Top-1 and top-5 of `net` on decoded crops normalised as `pre` says
/// (channels reversed for BGR networks, one channel for grey ones).
fn evaluate_with(net: &Net, d: &Decoded, pre: &Preprocess) -> (f64, f64) {
    let (mean, std) = (&pre.mean, &pre.std);
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
        let mut x =
            Tensor::from_slice(&buf).view([chunk.len() as i64, 3, side as i64, side as i64]);
        if pre.grey {
            x = x.narrow(1, 0, 1);
        } else if pre.bgr {
            x = x.flip([1]);
        }
        let x = x.to_device(net.device());
        let y = Tensor::from_slice(&chunk.iter().map(|&i| d.labels[i]).collect::<Vec<_>>())
            .to_device(net.device());
        let logits = tch::no_grad(|| net.forward_t(&x, false));
        let (a, b) = topk_hits(&logits, &y);
        h1 += a;
        h5 += b;
    }
    (h1 as f64 / d.len() as f64, h5 as f64 / d.len() as f64)
}
