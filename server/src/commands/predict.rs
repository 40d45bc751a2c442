//! `zfvis predict` (top-5 classes) and `zfvis project` (a feature map's
//! deconvnet projection to pixels, paper Fig. 1).

use super::args::{ImageArgs, Output};
use super::local::Local;
use anyhow::{Context, Result};
use std::path::PathBuf;
use zfvis_core::analyses::predict::{ImageRequest, Predictions};
use zfvis_core::analyses::projection::{MapRequest, Mode, Project};
use zfvis_core::analysis::Analysis;
use zfvis_core::tch::{self, Kind};

#[derive(clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    input: ImageArgs,
    #[command(flatten)]
    output: Output,
}

pub fn predict(a: PredictArgs) -> Result<()> {
    let mut l = Local::open(&a.input.model)?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = ImageRequest {
        model,
        epoch,
        image,
    };
    let r = Predictions::run(&mut l.engine, &req)?;
    a.output.print(&r, || {
        for p in &r.top {
            println!(
                "{:6.2}%  {:>3}  {}  {}",
                p.prob * 100.0,
                p.index,
                p.id,
                p.name
            );
        }
    })
}

#[derive(clap::Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    input: ImageArgs,
    /// Layer: a conv number 1..N (conv1-conv5 for ZFNet) or a unit's name (layer3.1; u:NAME is always a name)
    #[arg(long)]
    layer: String,
    /// Feature map of the layer, 0-based
    #[arg(long)]
    map: i64,
    /// Keep every activation of the map, not only the strongest
    #[arg(long)]
    all: bool,
    /// PNG for people (contrast-stretched symmetric around grey)
    #[arg(long)]
    out: PathBuf,
    /// Raw float32 CxHxW projection as .npy (RGB order; 1xHxW for a grey network)
    #[arg(long)]
    out_raw: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

pub fn project(a: ProjectArgs) -> Result<()> {
    let mut l = Local::open(&a.input.model)?;
    let mode = if a.all { Mode::All } else { Mode::Strongest };
    let layer = l.dir.manifest.spec()?.find_unit(&a.layer)?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = MapRequest {
        model,
        epoch,
        image,
        layer,
        map: a.map,
        mode,
    };
    let r = Project::run(&mut l.engine, &req)?;
    std::fs::write(&a.out, &r.png).with_context(|| format!("cannot write {}", a.out.display()))?;
    if let (Some(raw), Some(px)) = (&a.out_raw, &r.pixels) {
        px.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .write_npy(raw)
            .with_context(|| format!("cannot write {}", raw.display()))?;
    }
    let unit = match a.layer.parse::<usize>() {
        Ok(n) => format!("layer {n}"),
        Err(_) => r.unit.clone(),
    };
    a.output.print(&r, || {
        println!(
            "{unit} map {}: activation {:.4} at (y {}, x {}); wrote {}",
            a.map,
            r.value,
            r.y,
            r.x,
            a.out.display()
        );
    })
}
