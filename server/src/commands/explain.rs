//! `zfvis explain`: one method of the deconvnet's family for a class or a
//! map (paper.md §8); `zfvis sanity`: the cascading randomisation check.

use super::args::{ImageArgs, Output};
use super::local::{advance, bar, Local};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use zfvis_core::analyses::explain::{Explain, ExplainRequest};
use zfvis_core::analyses::sanity::{Sanity, SanityRequest};
use zfvis_core::analysis::{Analysis, Job};
use zfvis_core::methods::{Fusion, Method};
use zfvis_core::tch::{self, Kind, Tensor};

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    input: ImageArgs,
    #[arg(long, help = method_help())]
    method: String,
    /// Class of the class methods (default: the top class)
    #[arg(long)]
    class: Option<i64>,
    /// The unit: the CAM methods' (default: the suggested one, the last
    /// unit with maps before global pooling: conv5 for ZFNet, VGG's last
    /// conv, ResNet's layer4, DenseNet's last block; `zfvis models --units MODEL` lists them
    /// by depth), or the map's for the methods that take a map. A conv
    /// number or a unit's name
    #[arg(long)]
    layer: Option<String>,
    /// Explain this map's strongest activation instead of a class (the
    /// methods that take a map; needs --layer)
    #[arg(long)]
    map: Option<i64>,
    /// Occluder side, px at the input size (occlusion)
    #[arg(long, default_value_t = zfvis_core::occlusion::DEFAULT_SIZE)]
    size: i64,
    /// Step between occluder positions, px (occlusion)
    #[arg(long, default_value_t = zfvis_core::occlusion::DEFAULT_STRIDE)]
    stride: i64,
    /// PNG for people (pixel methods signed around grey, per-pixel maps in viridis)
    #[arg(long)]
    out: Option<PathBuf>,
    /// The raw map as float32 .npy: CxHxW in RGB order (1xHxW for a grey
    /// network), HxW for the per-pixel methods
    #[arg(long)]
    out_raw: Option<PathBuf>,
    /// Add the deletion and insertion AUCs (Petsiuk et al. 2018)
    #[arg(long)]
    score: bool,
    /// SmoothGrad: the mean of the maps of N noisy copies of the image (the
    /// methods that walk back)
    #[arg(long, value_name = "N")]
    smooth: Option<i64>,
    /// SmoothGrad's noise σ, a fraction of the input's range
    #[arg(long, default_value_t = 0.15)]
    noise: f64,
    /// Seed of SmoothGrad's noise
    #[arg(long, default_value_t = 0)]
    noise_seed: u64,
    /// SmoothGrad²: the mean of the squared maps
    #[arg(long)]
    squared: bool,
    /// --out is the map blended over the crop at this opacity (0..1; 0.5 if
    /// no value), as the grad-cam package's show_cam_on_image
    #[arg(long, value_name = "OPACITY", num_args = 0..=1, default_missing_value = "0.5")]
    overlay: Option<f64>,
    /// Attention rollout: how each block's heads are fused (mean, max, min)
    #[arg(long, default_value = "mean")]
    fusion: Fusion,
    /// Attention rollout: the fraction of each fused attention matrix
    /// zeroed, lowest first (the class token's own entry kept)
    #[arg(long, default_value_t = 0.9)]
    discard: f64,
    #[command(flatten)]
    output: Output,
}

/// `--method`'s help: the method registry's names.
fn method_help() -> String {
    format!("The attribution method: {}", Method::names())
}

fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    t.to_kind(Kind::Float)
        .to_device(tch::Device::Cpu)
        .contiguous()
        .write_npy(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn explain(a: ExplainArgs) -> Result<()> {
    let method = Method::parse(&a.method)?;
    let mut l = Local::open(&a.input.model)?;
    let spec = l.dir.manifest.spec()?;
    let layer = a.layer.as_deref().map(|s| spec.find_unit(s)).transpose()?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = ExplainRequest {
        model,
        epoch,
        image,
        method,
        class: a.class,
        layer,
        map: a.map,
        size: a.size,
        stride: a.stride,
        score: a.score,
        smooth: a.smooth,
        noise: a.noise,
        noise_seed: a.noise_seed,
        squared: a.squared,
        overlay: a.overlay,
        fusion: a.fusion,
        discard: a.discard,
    };
    if a.overlay.is_some() && a.out.is_none() {
        anyhow::bail!("--overlay draws into --out: give --out FILE.png");
    }
    // Integrated gradients, occlusion, Score-CAM and SmoothGrad take many
    // passes: a spinner meanwhile.
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(format!("{} …", method.name()));
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    let r = Explain::run(&mut l.engine, &req);
    pb.finish_and_clear();
    let r = r?;
    if let Some(out) = &a.out {
        std::fs::write(out, &r.png).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if let Some(p) = &a.out_raw {
        write_npy(&r.raw, p)?;
    }
    a.output.print(&r, || {
        let what = match (r.target.class, &r.target.unit, r.target.map) {
            (Some(c), _, _) => format!("class {c} ({})", l.class_name(c)),
            (None, Some(u), Some(m)) => format!("{u} map {m}"),
            _ => "?".into(),
        };
        let at = match (&r.target.unit_short, r.target.class, method.needs().layer) {
            (Some(u), Some(_), true) => format!(" at {u}"),
            _ => String::new(),
        };
        let smooth = r
            .smooth
            .map_or(String::new(), |s| format!(" ({})", s.describe()));
        println!(
            "{} of {what}{at}{smooth} in {:.3} s",
            method.name(),
            r.seconds
        );
        if let Some(c) = &r.curves {
            println!(
                "deletion AUC {:.4} (lower is better), insertion AUC {:.4} (higher is better)",
                c.deletion_auc, c.insertion_auc
            );
        }
        if let Some(out) = &a.out {
            println!("wrote {}", out.display());
        }
    })
}

#[derive(clap::Args)]
pub struct SanityArgs {
    #[command(flatten)]
    input: ImageArgs,
    /// Comma-separated methods (default: those the registry runs by default)
    #[arg(long)]
    methods: Option<String>,
    /// Seed of the re-initialisations
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Layers re-initialised, from the output down (default: all the
    /// parametrised layers)
    #[arg(long)]
    steps: Option<usize>,
    /// Write <step>-<method>.npy here (the maps in --out-raw's layout)
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

pub fn sanity(a: SanityArgs) -> Result<()> {
    if let Some(m) = &a.methods {
        Method::parse_list(m)?;
    }
    let mut l = Local::open(&a.input.model)?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = SanityRequest {
        model,
        epoch,
        image,
        methods: a.methods.clone(),
        seed: a.seed,
        steps: a.steps,
    };
    let pb = bar("sanity check {bar:40} {pos}/{len} steps ETA {eta}");
    let mut report = |done: usize, total: usize| {
        advance(&pb, done, total);
        Ok(())
    };
    let r = Sanity::run(&l.engine.ctx, &req, &mut report)?;
    pb.finish_and_clear();
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for s in &r.steps {
            for (m, t) in &s.maps {
                write_npy(t, &dir.join(format!("{}-{}.npy", s.step, m.name())))?;
            }
        }
    }
    let mut v = serde_json::to_value(&r)?;
    for s in v["steps"].as_array_mut().into_iter().flatten() {
        if let Some(o) = s.as_object_mut() {
            o.remove("png");
        }
    }
    a.output.print(&v, || {
        println!(
            "class {} ({}); Spearman rank correlation of |map| with the trained model's, per step:",
            r.class,
            l.class_name(r.class)
        );
        let names: Vec<&str> = r.methods.iter().map(|m| m.name()).collect();
        println!(
            "{:>4} {:<12} {}",
            "step",
            "randomised",
            names.iter().map(|n| format!("{n:>15}")).collect::<String>()
        );
        for s in &r.steps {
            let cells: String = names
                .iter()
                .map(|n| match s.scores.get(n).and_then(|x| x.spearman_abs) {
                    Some(v) => format!("{v:>15.3}"),
                    None => format!("{:>15}", "-"),
                })
                .collect();
            println!(
                "{:>4} {:<12} {cells}",
                s.step,
                s.randomised.last().map_or("-", |x| x.as_str())
            );
        }
        if let Some(dir) = &a.out_dir {
            println!("wrote the maps to {}", dir.display());
        }
    })
}
