//! Subcommands. Each one parses arguments, calls one analysis of zfvis-core
//! and prints its result type (text for people, `--json` for programs).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use zfvis_core::analysis::Analysis;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::correspondence::{self, Correspondence, SetRequest};
use zfvis_core::deconv::{MapRequest, Mode, Project};
use zfvis_core::engine::{self, Engine};
use zfvis_core::invariance::{CurvesRequest, Invariance};
use zfvis_core::net::Arch;
use zfvis_core::occlusion::{self, GridRequest, Occlusion};
use zfvis_core::params::{ContentId, ModelName};
use zfvis_core::predict::{ImageRequest, Predictions};
use zfvis_core::store::ImageStore;
use zfvis_core::tch::{self, Kind, Tensor};
use zfvis_core::train::{self, Schedule, TrainConfig};
use zfvis_core::{index, parse_device};

#[derive(Parser)]
#[command(
    name = "zfvis",
    version,
    about = "See what a ZFNet sees (Zeiler & Fergus 2013)"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model folder (manifest.json + snapshots)
    #[arg(long)]
    model: PathBuf,
    /// Snapshot epoch (default: the last)
    #[arg(long)]
    snapshot: Option<u32>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

/// The model a loopback server (bench, fuzz, soak) is started with.
#[derive(clap::Args, Clone)]
pub struct ServedModel {
    /// Folder of model folders
    #[arg(long, default_value = "models")]
    models: PathBuf,
    #[arg(long, default_value = "zfnet-woofnette")]
    model: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// The paper's figures for a model as PNG/SVG/JSON files and report.html
    Figures(crate::figures::FiguresArgs),
    /// Top-5 classes of an image
    Predict {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Deconvnet projection of a feature map to pixels (paper Fig. 1)
    Project {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        /// Conv layer 1..5
        #[arg(long)]
        layer: usize,
        /// Feature map, 0-based
        #[arg(long)]
        map: i64,
        /// Keep every activation of the map, not only the strongest
        #[arg(long)]
        all: bool,
        /// PNG for people (contrast-stretched symmetric around grey)
        #[arg(long)]
        out: PathBuf,
        /// Raw float32 3xHxW projection as .npy
        #[arg(long)]
        out_raw: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Occlusion sensitivity maps (paper Fig. 7)
    Occlude {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        /// Side of the grey square, px at the input size
        #[arg(long, default_value_t = 48)]
        size: i64,
        #[arg(long, default_value_t = 8)]
        stride: i64,
        /// Class whose probability is mapped (default: the top class)
        #[arg(long)]
        class: Option<i64>,
        #[arg(long)]
        json: bool,
        /// Write map_activation.png, class_prob.png, top_label.png here
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// incremental | batched | naive
        #[arg(long, default_value = "incremental")]
        method: String,
        /// Positions per batch
        #[arg(long, default_value_t = 64)]
        batch: i64,
        /// Run N times and print the median compute time to stderr
        #[arg(long, default_value_t = 0)]
        repeat: usize,
    },
    /// Invariance curves: translation, scale, rotation (paper Fig. 5)
    Invariance {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        /// Points per transform (the identity is always one of them)
        #[arg(long, default_value_t = 13)]
        steps: usize,
        /// Class whose probability is plotted (default: the top class)
        #[arg(long)]
        class: Option<i64>,
        #[arg(long)]
        json: bool,
        /// Write CSV instead of the table
        #[arg(long)]
        csv: bool,
    },
    /// The correspondence test over landmarked images (paper Table 1)
    Correspondence {
        #[command(flatten)]
        m: ModelArgs,
        /// {"image file": {"part": [x, y]}}, files relative to it, points in original pixels
        #[arg(long)]
        landmarks: PathBuf,
        /// Side of the square, px at the input size
        #[arg(long, default_value_t = 24)]
        size: i64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Index a dataset: the 9 strongest activations of every map (Fig. 2, Fig. 4)
    Index {
        #[arg(long)]
        model: PathBuf,
        /// An epoch, or "all" (default: the last)
        #[arg(long)]
        snapshot: Option<String>,
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value = "auto")]
        device: String,
        /// Index only the I-th of N slices of the dataset (e.g. 2/8), for N machines
        /// or a job array; combine the shards with --merge
        #[arg(long, conflicts_with = "merge")]
        shard: Option<index::Shard>,
        /// Combine the shard files (built with --shard, copied into the model's
        /// index folder) into the index one build would write
        #[arg(long)]
        merge: bool,
    },
    /// The 9 strongest activations of one map over a dataset (builds the index if missing)
    Top9 {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long)]
        layer: usize,
        #[arg(long)]
        map: i64,
        #[arg(long)]
        json: bool,
    },
    /// Compare two models or snapshots: dead layer-1 filters, their spectral
    /// bands, layer-2 aliasing (paper Fig. 6)
    Compare {
        /// First model folder
        #[arg(long)]
        a: PathBuf,
        /// Second model folder
        #[arg(long)]
        b: PathBuf,
        /// Epoch of the first (default: its last)
        #[arg(long)]
        snapshot_a: Option<u32>,
        /// Epoch of the second (default: its last)
        #[arg(long)]
        snapshot_b: Option<u32>,
        /// Images to measure on (default: 1/f noise images)
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// How many images (evenly spaced over the dataset's sorted files)
        #[arg(long, default_value_t = zfvis_core::compare::DEFAULT_IMAGES)]
        images: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Train a ZFNet or AlexNet with snapshots (paper §2)
    Train(TrainArgs),
    /// Linear probes per layer: softmax and SVM on each layer's features (paper §5, Table 7)
    Probe {
        #[arg(long)]
        model: PathBuf,
        /// Epoch of the snapshot (default: the last)
        #[arg(long)]
        snapshot: Option<u32>,
        /// Dataset: train/<class>/*, val/<class>/* (val = the test images)
        #[arg(long)]
        data: PathBuf,
        /// Only these classes: WordNet ids or names, comma-separated, or a file
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// Train on the first N images of each class (sorted by file name)
        #[arg(long)]
        train_per_class: Option<usize>,
        /// softmax, svm or both
        #[arg(long, default_value = "both")]
        classifier: String,
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Few-shot transfer: softmax on frozen fc features vs training from scratch (paper §5, Fig. 9)
    Transfer {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        snapshot: Option<u32>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// Training images a class, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "1,5,10,20,50")]
        per_class: Vec<usize>,
        /// Draws of training images (mean and std over them)
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        /// Epochs of the from-scratch arm (0: skip it)
        #[arg(long, default_value_t = 30)]
        scratch_epochs: u32,
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark forward and projection (full-width ZFNet) against PyTorch
    Bench {
        /// Python with torch, for the PyTorch peer (skipped if missing)
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        #[arg(long, default_value = "auto")]
        device: String,
        /// Instead: a torchvision network (vgg16, alexnet, vgg11…) imported from
        /// the PyTorch peer's file, against PyTorch and Captum on it (CPU)
        #[arg(long)]
        arch: Option<String>,
        /// With --arch: skip the full occlusion map (Captum takes minutes)
        #[arg(long)]
        no_occlusion: bool,
        /// Instead: JPEG decoding and preprocessing images/s against the
        /// image crate's decoder and PIL + torchvision, on these folders
        #[arg(long, num_args = 1.., value_name = "DIR")]
        decode: Option<Vec<PathBuf>>,
        /// Instead: `zfvis probe`'s feature extraction against raw forward
        /// passes, on the images of this folder (at most 320)
        #[arg(long, value_name = "DIR")]
        features: Option<PathBuf>,
        /// The model of --features
        #[arg(long, default_value = "models/zfnet-woofnette")]
        model: PathBuf,
    },
    /// Benchmark the server over HTTP on loopback (click a map, new image)
    BenchHttp {
        #[command(flatten)]
        s: ServedModel,
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value_t = 200)]
        n: usize,
    },
    /// Fuzz the HTTP API: mutated uploads of every format, each accepted one
    /// followed by predictions, a projection and the live occluder
    Fuzz {
        #[command(flatten)]
        s: ServedModel,
        #[arg(long, default_value_t = 10_000)]
        cases: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load and soak: many concurrent clients on loopback for a while
    Soak {
        #[command(flatten)]
        s: ServedModel,
        /// A photo the distinct uploads are cut from
        #[arg(long)]
        image: PathBuf,
        /// A dataset for the top-9 requests
        #[arg(long)]
        dataset: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Measured seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seconds of the same load before (caches fill; not counted)
        #[arg(long, default_value_t = 60)]
        warmup: u64,
        /// Distinct images to upload
        #[arg(long, default_value_t = 200)]
        images: usize,
    },
    /// Serve the web app and JSON API
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Folder of model folders
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Where uploads are stored
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Static files (JS, CSS)
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../static"))]
        static_dir: PathBuf,
        #[arg(long, default_value = "auto")]
        device: String,
        /// A dataset folder for the top-9 and timeline views (indexed in the background)
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Jobs waiting for the compute worker before answering 503
        #[arg(long, default_value_t = 64)]
        queue: usize,
        /// Bound the upload store to N MB: least recently used uploads are
        /// evicted first (never images of a stored set); default: no bound
        #[arg(long)]
        max_store_mb: Option<u64>,
        /// Concurrent API requests per client address (429 beyond; 0: no cap)
        #[arg(long, default_value_t = 8)]
        per_client: usize,
        /// Seconds a connection may take to send a request's headers
        #[arg(long, default_value_t = 10)]
        header_timeout: u64,
        /// Example photos offered on the empty page (examples.json + files)
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
        examples: PathBuf,
    },
    /// Import a network you have (PyTorch state dict, safetensors or ONNX) as a model folder
    Import {
        /// The file: .pth/.pt (torch.save, zip format), .safetensors, or .onnx
        #[arg(long)]
        from: PathBuf,
        /// The model folder to write (under the server's --models to serve it)
        #[arg(long)]
        out: PathBuf,
        /// A state dict's layout: torchvision:alexnet, torchvision:vgg11|13|16|19[_bn],
        /// pytorchcv:zfnet|zfnetb|alexnet, zfnet, alexnet (ONNX files need none)
        #[arg(long)]
        arch: Option<String>,
        /// zfvis | torchvision | caffe (default: what the layout was trained with;
        /// caffe for ONNX graphs whose input is Caffe's data_0)
        #[arg(long)]
        preprocess: Option<String>,
        /// Channel mean, RGB, 0..1 pixels: r,g,b
        #[arg(long, value_parser = parse_rgb)]
        mean: Option<[f64; 3]>,
        /// Channel std, RGB, 0..1 pixels: r,g,b
        #[arg(long, value_parser = parse_rgb)]
        std: Option<[f64; 3]>,
        /// Input side in pixels (default: the graph's, else 224)
        #[arg(long)]
        input_size: Option<i64>,
        /// Shorter side before the centre crop (default: 256/224 of the input for torchvision and caffe)
        #[arg(long)]
        resize: Option<i64>,
        /// Class names: one a line, or JSON (default for 1000 outputs: ImageNet-1k's)
        #[arg(long)]
        classes: Option<PathBuf>,
    },
    /// Top-1/top-5 over a folder of class folders
    Eval {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
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
    #[arg(long, default_value_t = 70)]
    epochs: u32,
    /// Epochs at which snapshots are written (the last epoch always is)
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,30,40,64")]
    snapshots: Vec<u32>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
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
    #[arg(long, default_value = "auto")]
    device: String,
    /// Continue from the last completed epoch in --out
    #[arg(long)]
    resume: bool,
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

fn print_compare(r: &zfvis_core::compare::CompareResult) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    let list = |v: &[i64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    println!("measured on {}", r.method.image_source);
    for (k, s) in [("a", &r.a), ("b", &r.b)] {
        println!(
            "{k}: {} epoch {} ({}, conv1 {} filters {}x{} stride {})",
            s.model,
            s.epoch,
            s.architecture,
            s.conv1.filters,
            s.conv1.kernel,
            s.conv1.kernel,
            s.conv1.stride
        );
        println!(
            "   dead filters {}/{}: {} (rms < {:.4}: {}; never active: {})",
            s.dead_count,
            s.conv1.filters,
            list(&s.dead_filters),
            s.dead_rms_threshold,
            list(&s.low_rms),
            s.never_active
                .as_deref()
                .map(list)
                .unwrap_or_else(|| "-".into())
        );
        println!(
            "   band energy  low {:.3}  mid {:.3}  high {:.3}  (edges 1/8, 1/4 cycle/px)",
            s.band_energy.low, s.band_energy.mid, s.band_energy.high
        );
        println!(
            "   aliasing {} (layer-2 projection energy above {:.4} cycle/px); above 1/8: {}",
            opt(s.aliasing),
            s.nyquist,
            opt(s.aliasing_common)
        );
    }
}

/// A scratch folder (`models/` inside it) for a command's engine: model
/// links and a temporary image store; removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Result<Scratch> {
        let tmp = std::env::temp_dir().join(format!(
            "zfvis-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(tmp.join("models"))
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Scratch(tmp))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The engine over one model folder, with the images named on the command
/// line in a temporary store: the CLI runs the same analyses, with the same
/// request types, as the server.
struct Local {
    engine: Engine,
    model: ModelName,
    epoch: u32,
    dir: ModelDir,
    _tmp: Scratch,
    /// Stored id -> the file name it came from.
    labels: std::collections::HashMap<String, String>,
}

impl Local {
    fn open(m: &ModelArgs) -> Result<Local> {
        let dir = ModelDir::open(&m.model)?;
        let epoch = dir.manifest.snapshot(m.snapshot)?.epoch;
        let scratch = Scratch::new("cli")?;
        let tmp = scratch.0.clone();
        // The folder, whatever its name, is the model "model" of the engine.
        let target = std::fs::canonicalize(&m.model)?;
        std::os::unix::fs::symlink(&target, tmp.join("models/model"))?;
        let ctx = engine::Context {
            models: tmp.join("models"),
            store: ImageStore::open(&tmp)?,
            device: parse_device(&m.device)?,
            indexer: None,
            jobs: Default::default(),
        };
        Ok(Local {
            engine: Engine::new(ctx, 4),
            model: ModelName::try_from("model".to_string())?,
            epoch,
            dir,
            _tmp: scratch,
            labels: Default::default(),
        })
    }

    /// The analysis's request for one image file: `fields` plus this
    /// model, snapshot and the stored image, through the request's own serde.
    fn request<T: serde::de::DeserializeOwned>(
        &mut self,
        image: &Path,
        mut fields: serde_json::Value,
    ) -> Result<T> {
        fields["model"] = json!(self.model);
        fields["epoch"] = json!(self.epoch);
        fields["image"] = json!(self.image(image)?);
        Ok(serde_json::from_value(fields)?)
    }

    /// Store an image file (validated as an upload would be).
    fn image(&mut self, path: &Path) -> Result<ContentId> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let s = self
            .engine
            .ctx
            .store
            .put(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(ContentId::try_from(s.id)?)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Predict { m, image, json } => {
            let mut l = Local::open(&m)?;
            let req: ImageRequest = l.request(&image, json!({}))?;
            let r = Predictions::run(&mut l.engine, &req)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for p in r.top {
                    println!(
                        "{:6.2}%  {:>3}  {}  {}",
                        p.prob * 100.0,
                        p.index,
                        p.id,
                        p.name
                    );
                }
            }
        }
        Cmd::Project {
            m,
            image,
            layer,
            map,
            all,
            out,
            out_raw,
            json,
        } => {
            let mut l = Local::open(&m)?;
            let mode = if all { Mode::All } else { Mode::Strongest };
            let req: MapRequest =
                l.request(&image, json!({"layer": layer, "map": map, "mode": mode}))?;
            let r = Project::run(&mut l.engine, &req)?;
            std::fs::write(&out, &r.png)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if let (Some(raw), Some(px)) = (&out_raw, &r.pixels) {
                px.to_kind(Kind::Float)
                    .to_device(tch::Device::Cpu)
                    .write_npy(raw)
                    .with_context(|| format!("cannot write {}", raw.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "layer {layer} map {map}: activation {:.4} at (y {}, x {}); wrote {}",
                    r.value,
                    r.y,
                    r.x,
                    out.display()
                );
            }
        }
        Cmd::Occlude {
            m,
            image,
            size,
            stride,
            class,
            json,
            out_dir,
            method,
            batch,
            repeat,
        } => {
            let mut l = Local::open(&m)?;
            let method = match method.as_str() {
                "incremental" => occlusion::Method::Incremental,
                "batched" => occlusion::Method::Batched,
                "naive" => occlusion::Method::Naive,
                s => bail!("unknown --method {s:?}: expected incremental, batched or naive"),
            };
            let req: GridRequest = l.request(
                &image,
                json!({"size": size, "stride": stride, "class": class, "method": method, "batch": batch}),
            )?;
            let r = Occlusion::run(&mut l.engine, &req)?.grid;
            let (net, t) = l.engine.traced(&req.model, req.epoch, &req.image)?;
            if repeat > 0 {
                let science = occlusion::OcclusionRequest {
                    size,
                    stride,
                    class,
                    batch,
                    method,
                };
                let mut times: Vec<f64> = (0..repeat)
                    .map(|_| {
                        let t0 = std::time::Instant::now();
                        let _ = occlusion::occlude(&net, &t.input, &science);
                        t0.elapsed().as_secs_f64()
                    })
                    .collect();
                times.sort_by(|a, b| a.total_cmp(b));
                eprintln!("occlusion_seconds {:.4}", times[times.len() / 2]);
            }
            if let Some(dir) = &out_dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for (name, img) in occlusion::heatmaps(&t.crop, &r) {
                    let p = dir.join(format!("{name}.png"));
                    img.save(&p)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
            }
            if json {
                let mut v = serde_json::to_value(&r)?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("unoccluded");
                }
                println!("{v}");
            } else {
                let c = &l.dir.manifest.classes[r.class as usize];
                let flat: Vec<f64> = r.class_prob.iter().flatten().copied().collect();
                let lo = flat.iter().cloned().fold(f64::INFINITY, f64::min);
                println!(
                    "class {} ({}): p = {:.3} unoccluded, lowest {:.3} over {}x{} positions; strongest map {} of conv{} (the last conv layer)",
                    r.class, c.name, r.unoccluded.class_prob, lo, r.positions.y.len(), r.positions.x.len(), r.strongest_map,
                    l.dir.manifest.spec()?.convs().len()
                );
            }
        }
        Cmd::Invariance {
            m,
            image,
            steps,
            class,
            json,
            csv,
        } => {
            let mut l = Local::open(&m)?;
            let req: CurvesRequest = l.request(&image, json!({"steps": steps, "class": class}))?;
            let r = Invariance::run(&mut l.engine, &req)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else if csv {
                print!("{}", r.to_csv());
            } else {
                println!(
                    "class {} ({})",
                    r.class, l.dir.manifest.classes[r.class as usize].name
                );
                for (name, c) in [
                    ("translate", &r.translate),
                    ("scale", &r.scale),
                    ("rotate", &r.rotate),
                ] {
                    println!(
                        "{name:>9} {:>9} {:>11} {:>11} {:>7}",
                        "value", "dist L1", "dist L7", "p"
                    );
                    for i in 0..c.values.len() {
                        println!(
                            "{:>9} {:>9.2} {:>11.3} {:>11.3} {:>7.3}",
                            "", c.values[i], c.dist_layer1[i], c.dist_layer7[i], c.prob[i]
                        );
                    }
                }
            }
        }
        Cmd::Correspondence {
            m,
            landmarks,
            size,
            seed,
            json,
        } => {
            let mut l = Local::open(&m)?;
            let (set, files) = correspondence::store_landmarks(&l.engine.ctx.store, &landmarks)?;
            for (id, path) in &files {
                l.labels.insert(id.clone(), file_name(path));
            }
            let req = SetRequest {
                model: l.model.clone(),
                epoch: l.epoch,
                set: ContentId::try_from(set)?,
                size,
                seed,
            };
            let mut r = Correspondence::run(&mut l.engine, &req)?;
            for im in &mut r.images {
                im.label = l.labels.get(&im.label).cloned().unwrap_or_default();
            }
            if json {
                println!(
                    "{}",
                    json!({"parts": r.parts, "size": r.size, "seed": r.seed, "pairs": r.pairs, "images": r.images})
                );
            } else {
                println!(
                    "{} images, {} pairs, {size} px squares, seed {seed}",
                    r.images.len(),
                    r.pairs
                );
                println!(
                    "{:<12} {:>16} {:>16} {:>8} {:>8}",
                    "part", "layer 5", "layer 7", "paper 5", "paper 7"
                );
                for (p, v) in &r.parts {
                    let paper = correspondence::PAPER.iter().find(|q| q.0 == p);
                    let f =
                        |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                    println!(
                        "{p:<12} {:>7.3} ± {:<6.3} {:>7.3} ± {:<6.3} {:>8} {:>8}",
                        v.layer5.mean,
                        v.layer5.std,
                        v.layer7.mean,
                        v.layer7.std,
                        f(paper.map(|q| q.1)),
                        f(paper.map(|q| q.2))
                    );
                }
            }
        }
        Cmd::Probe {
            model,
            snapshot,
            data,
            classes,
            train_per_class,
            classifier,
            device,
            json,
        } => {
            use zfvis_core::classify::Loss;
            let classifiers = match classifier.as_str() {
                "softmax" => vec![Loss::Softmax],
                "svm" => vec![Loss::Svm],
                "both" => vec![Loss::Softmax, Loss::Svm],
                c => bail!("unknown --classifier {c:?}: expected softmax, svm or both"),
            };
            let req = zfvis_core::probe::ProbeRequest {
                model,
                snapshot,
                data,
                classes,
                train_per_class,
                classifiers,
            };
            let pb = stage_bar();
            let r = zfvis_core::probe::probe(&req, parse_device(&device)?, &|stage, d, t| {
                pb.set_message(stage.to_string());
                pb.set_length(t as u64);
                pb.set_position(d as u64);
            })?;
            pb.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} epoch {}: {} training images ({} a class), {} test images, {} classes",
                    r.model,
                    r.snapshot,
                    r.train_images,
                    r.train_per_class.map_or("all".into(), |n| n.to_string()),
                    r.test_images,
                    r.classes.len()
                );
                println!(
                    "{:<24} {:>6} {:>8} {:>8}",
                    "layer", "dims", "softmax", "svm"
                );
                let pct = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.1}%", a * 100.0));
                for l in &r.layers {
                    println!(
                        "{:<24} {:>6} {:>8} {:>8}",
                        l.layer,
                        l.dims,
                        pct(l.softmax),
                        pct(l.svm)
                    );
                }
            }
        }
        Cmd::Transfer {
            model,
            snapshot,
            data,
            classes,
            per_class,
            seeds,
            scratch_epochs,
            device,
            json,
        } => {
            let req = zfvis_core::transfer::TransferRequest {
                model,
                snapshot,
                data,
                classes,
                per_class,
                seeds,
                scratch_epochs,
            };
            let pb = stage_bar();
            let r =
                zfvis_core::transfer::transfer(&req, parse_device(&device)?, &|stage, d, t| {
                    pb.set_message(stage.to_string());
                    pb.set_length(t as u64);
                    pb.set_position(d as u64);
                })?;
            pb.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} epoch {}, softmax on {} vs from scratch ({} epochs), {} draws, {} test images",
                    r.model, r.snapshot, r.layer, r.scratch_epochs, r.seeds, r.test_images
                );
                println!("{:>10} {:>16} {:>16}", "per class", "pretrained", "scratch");
                let ms = |m: &zfvis_core::transfer::MeanStd| {
                    format!("{:.1} ± {:.1}%", m.mean * 100.0, m.std * 100.0)
                };
                for (i, n) in r.per_class.iter().enumerate() {
                    let s = r.scratch.as_ref().map_or("-".into(), |s| ms(&s[i]));
                    println!("{n:>10} {:>16} {s:>16}", ms(&r.pretrained[i]));
                }
            }
        }
        Cmd::Index {
            model,
            snapshot,
            dataset,
            batch,
            device,
            shard,
            merge,
        } => {
            let model = ModelDir::open(&model)?;
            let device = parse_device(&device)?;
            let epochs: Vec<u32> = match snapshot.as_deref() {
                Some("all") => model.manifest.snapshots.iter().map(|s| s.epoch).collect(),
                Some(e) => vec![e.parse().map_err(|_| {
                    anyhow::anyhow!("--snapshot must be an epoch or \"all\", got {e:?}")
                })?],
                None => vec![model
                    .manifest
                    .last_epoch()
                    .context("model has no snapshots")?],
            };
            for epoch in epochs {
                if merge {
                    let idx = index::merge_shards(&model, &dataset, epoch)?;
                    println!(
                        "epoch {epoch}: merged shards: {} indexed, {} unreadable; {}",
                        idx.images.len(),
                        idx.skipped.len(),
                        index::index_path(&model, &dataset, epoch)?.display()
                    );
                    continue;
                }
                let net = model.load(Some(epoch), device)?;
                let pb = indicatif::ProgressBar::new(0);
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "epoch {prefix} {bar:40} {pos}/{len} {per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                pb.set_prefix(epoch.to_string());
                let t = std::time::Instant::now();
                let (idx, n) = index::build_shard(
                    &net,
                    &model,
                    epoch,
                    &dataset,
                    batch.max(1),
                    shard,
                    &|done, total| {
                        pb.set_length(total as u64);
                        pb.set_position(done as u64);
                    },
                )?;
                pb.finish_and_clear();
                let secs = t.elapsed().as_secs_f64();
                // The peer: raw batched forward passes of the same network.
                let s = model.manifest.input_size;
                let x = Tensor::randn([batch.max(1) as i64, 3, s, s], (Kind::Float, device));
                let _ = net.trace(&x);
                let t0 = std::time::Instant::now();
                for _ in 0..3 {
                    let _ = net.trace(&x);
                }
                let raw = 3.0 * batch.max(1) as f64 / t0.elapsed().as_secs_f64();
                let ips = n as f64 / secs.max(1e-9);
                println!(
                    "epoch {epoch}: {n} new images in {secs:.1} s ({ips:.1} images/s; raw forward {raw:.1} images/s, ratio {:.2}), {} indexed, {} unreadable; {}",
                    if n > 0 { raw / ips } else { 0.0 },
                    idx.images.len(),
                    idx.skipped.len(),
                    match shard {
                        Some(s) => index::shard_path(&model, &dataset, epoch, s)?,
                        None => index::index_path(&model, &dataset, epoch)?,
                    }
                    .display()
                );
            }
        }
        Cmd::Compare {
            a,
            b,
            snapshot_a,
            snapshot_b,
            dataset,
            images,
            json,
            device,
        } => {
            let device = parse_device(&device)?;
            let (ma, mb) = (ModelDir::open(&a)?, ModelDir::open(&b)?);
            let pb = indicatif::ProgressBar::new(0);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let r = zfvis_core::compare::compare_dirs(
                (&ma, snapshot_a),
                (&mb, snapshot_b),
                dataset.as_deref(),
                images,
                device,
                &mut |done, total| {
                    pb.set_length(total as u64);
                    pb.set_position(done as u64);
                },
            )?;
            pb.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_compare(&r);
            }
        }
        Cmd::Top9 {
            m,
            dataset,
            layer,
            map,
            json,
        } => {
            let model = ModelDir::open(&m.model)?;
            let epoch = model.manifest.snapshot(m.snapshot)?.epoch;
            let path = index::index_path(&model, &dataset, epoch)?;
            let idx = match index::load(&path) {
                Ok(i) => i,
                Err(_) => {
                    let net = model.load(Some(epoch), parse_device(&m.device)?)?;
                    eprintln!(
                        "building the index of {} for epoch {epoch}",
                        dataset.display()
                    );
                    index::build(&net, &model, epoch, &dataset, 32, &|_, _| {})?.0
                }
            };
            let top = index::top9(&idx, layer, map)?;
            if json {
                println!("{}", serde_json::to_string(top)?);
            } else {
                for e in top {
                    println!("{:>10.4}  ({:>3}, {:>3})  {}", e.value, e.y, e.x, e.image);
                }
            }
        }
        Cmd::Train(a) => {
            if let Some(t) = a.threads {
                if t < 1 {
                    bail!("--threads must be at least 1");
                }
                tch::set_num_threads(t);
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t as usize)
                    .build_global()
                    .ok();
            }
            let schedule = match a.schedule.as_str() {
                "paper" => Schedule::Paper,
                "modern" => Schedule::Modern,
                s => bail!("unknown --schedule {s:?}: expected paper or modern"),
            };
            let arch: Arch = a.arch.parse()?;
            let provenance = json!({
                "command": std::env::args().collect::<Vec<_>>().join(" "),
                "git_revision": git_rev(),
                "started": format!("{:?}", std::time::SystemTime::now()),
            });
            let cfg = TrainConfig {
                arch,
                width: a.width,
                fc_width: a.fc_width,
                data: a.data,
                out: a.out,
                epochs: a.epochs,
                snapshots: a.snapshots,
                batch: a.batch,
                lr: a.lr,
                momentum: a.momentum,
                weight_decay: a.weight_decay,
                clip: !a.no_clip,
                schedule,
                device: parse_device(&a.device)?,
                resume: a.resume,
                seed: a.seed,
                half: a.half,
                cache_bytes: (a.cache_gb * 1e9) as usize,
                provenance,
                limit: a.limit,
                stop_after: a.stop_after,
                classes: a.classes,
            };
            let r = train::train(&cfg)?;
            eprintln!(
                "done: epoch {}, val top-1 {:?}, top-5 {:?}, {} images skipped",
                r.final_epoch, r.metrics.val_top1, r.metrics.val_top5, r.skipped
            );
        }
        Cmd::Bench {
            iters,
            features: Some(images),
            model,
            ..
        } => crate::bench::bench_features(&model, &images, iters.max(3))?,
        Cmd::Bench {
            python,
            iters,
            decode: Some(sets),
            ..
        } => {
            tch::set_num_threads(1);
            crate::bench::bench_decode(Some(&python), &sets, iters.max(3))?
        }
        Cmd::Bench {
            python,
            iters,
            device: _,
            arch: Some(arch),
            no_occlusion,
            ..
        } => crate::bench::bench_arch(&python, &arch, iters.max(3), !no_occlusion)?,
        Cmd::Bench {
            python,
            iters,
            device,
            ..
        } => crate::bench::bench(Some(&python), iters.max(3), parse_device(&device)?)?,
        Cmd::BenchHttp { s, image, n } => {
            crate::bench::bench_http(&s.models, &s.model, &image, n.max(1))?
        }
        Cmd::Fuzz { s, cases, seed } => crate::reliability::fuzz(&s.models, &s.model, cases, seed)?,
        Cmd::Soak {
            s,
            image,
            dataset,
            clients,
            seconds,
            warmup,
            images,
        } => crate::reliability::soak(&crate::reliability::SoakArgs {
            models: &s.models,
            model: &s.model,
            photo: &image,
            dataset: dataset.as_deref(),
            clients: clients.max(1),
            seconds: seconds.clamp(1, 3600),
            warmup: warmup.min(3600),
            images: images.max(1),
        })?,
        Cmd::Figures(a) => crate::figures::run(&a)?,
        Cmd::Serve {
            addr,
            models,
            data,
            static_dir,
            device,
            queue,
            dataset,
            max_store_mb,
            per_client,
            header_timeout,
            examples,
        } => {
            if let Some(d) = &dataset {
                if !d.is_dir() {
                    bail!("--dataset {}: not a folder", d.display());
                }
            }
            let cfg = crate::http::Config {
                models,
                data,
                static_dir,
                device: parse_device(&device)?,
                queue: queue.max(1),
                dataset,
                max_store: max_store_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
                examples,
                limits: crate::http::net::Limits {
                    header_timeout: std::time::Duration::from_secs(header_timeout.max(1)),
                    per_client,
                    ..Default::default()
                },
            };
            serve(&addr, cfg)?;
        }
        Cmd::Import {
            from,
            out,
            arch,
            preprocess,
            mean,
            std,
            input_size,
            resize,
            classes,
        } => {
            let opts = zfvis_core::import::ImportOptions {
                from,
                out,
                arch,
                preprocess: preprocess.map(|p| p.parse()).transpose()?,
                mean,
                std,
                input_size,
                resize,
                classes,
            };
            let m = zfvis_core::import::import(&opts)?;
            let spec = m.manifest.spec()?;
            let convs = spec.convs();
            println!(
                "{}: {} ({} conv layers: {}; {} classes; preprocessing {})",
                m.dir.display(),
                m.manifest.architecture,
                convs.len(),
                convs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                m.manifest.classes.len(),
                m.manifest.preprocess_name(),
            );
        }
        Cmd::Eval { m, data, json } => {
            let model = ModelDir::open(&m.model)?;
            let r = train::eval(&model, m.snapshot, &data, parse_device(&m.device)?)?;
            for u in &r.unknown {
                eprintln!("warning: skipping folder {u}: not a class of this model");
            }
            if json {
                println!("{}", json!({"top1": r.top1, "top5": r.top5, "n": r.n}));
            } else {
                println!(
                    "top-1 {:.4}  top-5 {:.4}  over {} images ({} unreadable)",
                    r.top1, r.top5, r.n, r.skipped
                );
            }
        }
    }
    Ok(())
}

fn serve(addr: &str, cfg: crate::http::Config) -> Result<()> {
    // glibc's malloc, tuned for a long-running server (measured by `zfvis
    // soak`): two arenas instead of 8 per core, and tensors of 1 MB and more
    // mapped and unmapped whole instead of fragmenting the heaps.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let n = zfvis_core::engine::list_models(&cfg.models).len();
        let limits = cfg.limits;
        let app = crate::http::app(cfg)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!(
            "zfvis: {n} model(s); serving on http://{}",
            listener.local_addr()?
        );
        crate::http::net::serve(listener, app, limits, crate::http::net::shutdown_signal()).await?;
        eprintln!("zfvis: stopped");
        Ok(())
    })
}

/// "r,g,b" -> three numbers.
fn parse_rgb(s: &str) -> std::result::Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("expected r,g,b numbers: {e}"))?;
    v.try_into()
        .map_err(|v: Vec<f64>| format!("expected three numbers r,g,b, got {}", v.len()))
}

/// A progress bar on stderr whose message names the current stage.
pub(crate) fn stage_bar() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:>22} {bar:40} {pos}/{len} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}
