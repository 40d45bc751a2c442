//! `zfvis visualize`: what a unit wants to see, an image optimised to
//! excite one of its maps (or a class, or a weighted sum), with Lucid's
//! recipe; the same `Visualize` job as /api/…/visualize.

use super::args::{ModelArgs, Output};
use super::local::{advance, bar, Local};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use zfvis_core::analyses::visualize::{grid, Visualize, VisualizeRequest};
use zfvis_core::analysis::Job;
use zfvis_core::visualize::Param;

#[derive(clap::Args)]
pub struct VisualizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The unit: a conv number or a unit's name (`zfvis models --units MODEL`)
    #[arg(long)]
    layer: Option<String>,
    /// One map of the unit (default: every map, the whole layer as a grid)
    #[arg(long)]
    map: Option<i64>,
    /// The maps of a whole layer: "0-8" or "1,5,9"
    #[arg(long, conflicts_with = "map")]
    maps: Option<String>,
    /// A class's logit instead of a unit (Simonyan et al. 2014)
    #[arg(long, conflicts_with = "layer")]
    class: Option<i64>,
    /// The map's centre position instead of its mean over positions
    #[arg(long)]
    neuron: bool,
    /// More weighted terms, added: "0.5*conv4:12 + class:3 + neuron:conv5:1"
    #[arg(long)]
    plus: Option<String>,
    /// Adam steps
    #[arg(long, default_value_t = 512)]
    steps: usize,
    /// Seed of the initial noise and of every random transform
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images of the one objective (with --diversity: N different ways it fires)
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Weight of Lucid's diversity term (cosine similarity of Gram matrices)
    #[arg(long, default_value_t = 0.0)]
    diversity: f64,
    /// fourier (Lucid's 1/f spectrum) or pixel
    #[arg(long, default_value = "fourier")]
    param: Param,
    /// No random transforms (with --param pixel: the paper-era look)
    #[arg(long)]
    no_transforms: bool,
    /// No colour decorrelation
    #[arg(long)]
    no_decorrelate: bool,
    /// Adam's learning rate
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// The image's side (default: the model's input size)
    #[arg(long)]
    size: Option<i64>,
    /// Write the image here (PNG; several: a grid, 8 a row)
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

pub fn run(a: VisualizeArgs) -> Result<()> {
    if a.out.is_none() && !a.output.json {
        bail!("say where the image goes (--out FILE.png) or ask for --json");
    }
    let l = Local::open(&a.model)?;
    let spec = l.dir.manifest.spec()?;
    let layer = a.layer.as_deref().map(|s| spec.find_unit(s)).transpose()?;
    let req = VisualizeRequest {
        model: l.model.clone(),
        epoch: l.epoch,
        layer,
        map: a.map,
        maps: a.maps.clone(),
        class: a.class,
        neuron: a.neuron,
        plus: a.plus.clone(),
        steps: a.steps,
        seed: a.seed,
        batch: a.batch,
        diversity: a.diversity,
        param: a.param,
        transforms: !a.no_transforms,
        decorrelate: !a.no_decorrelate,
        lr: a.lr,
        size: a.size,
    };
    Visualize::check(&l.engine.ctx, &req)?;
    let pb = bar("visualize {bar:40} {pos}/{len} steps ETA {eta}");
    let mut report = |done: usize, total: usize| {
        advance(&pb, done, total);
        Ok(())
    };
    let r = Visualize::run(&l.engine.ctx, &req, &mut report)?;
    pb.finish_and_clear();
    if let Some(out) = &a.out {
        let pic = grid(&r.pictures, 8)?;
        pic.save(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let mut v = serde_json::to_value(&r)?;
    for i in v["images"].as_array_mut().into_iter().flatten() {
        if let Some(o) = i.as_object_mut() {
            o.remove("png");
        }
    }
    a.output.print(&v, || {
        let what = match &r.class_name {
            Some(n) => format!("{} ({n})", r.objective),
            None => r.objective.clone(),
        };
        println!(
            "{what}: {} steps, seed {}, {} px, {:.1} s",
            r.steps, r.seed, r.size, r.seconds
        );
        for i in &r.images {
            match i.map {
                Some(m) => println!("  map {m}: objective {:.4}", i.objective),
                None => println!("  objective {:.4}", i.objective),
            }
        }
        if let Some(out) = &a.out {
            println!("wrote {}", out.display());
        }
    })
}
