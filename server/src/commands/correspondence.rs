//! `zfvis correspondence`: the correspondence test over landmarked images
//! (paper Table 1).

use super::args::{ModelArgs, Output};
use super::local::Local;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use zfvis_core::analyses::correspondence::{Correspondence, SetRequest};
use zfvis_core::analysis::Analysis;
use zfvis_core::correspondence::{self, CorrespondenceResult};
use zfvis_core::params::ContentId;

#[derive(clap::Args)]
pub struct CorrespondenceArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// {"image file": {"part": [x, y]}}, files relative to it, points in original pixels
    #[arg(long)]
    landmarks: PathBuf,
    /// Side of the square, px at the input size
    #[arg(long, default_value_t = 24)]
    size: i64,
    /// Seed of the random squares
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    output: Output,
}

pub fn run(a: CorrespondenceArgs) -> Result<()> {
    let mut l = Local::open(&a.model)?;
    let (set, files) = correspondence::store_landmarks(&l.engine.ctx.store, &a.landmarks)?;
    for (id, path) in &files {
        let name = zfvis_core::files::name_of(path);
        l.labels.insert(id.clone(), name);
    }
    let req = SetRequest {
        model: l.model.clone(),
        epoch: l.epoch,
        set: ContentId::try_from(set)?,
        size: a.size,
        seed: a.seed,
    };
    let mut r = Correspondence::run(&mut l.engine, &req)?;
    for im in &mut r.images {
        if let Some(name) = l.labels.get(&im.label) {
            im.label = name.clone();
        }
    }
    let v = json!({"parts": r.parts, "size": r.size, "seed": r.seed, "pairs": r.pairs, "images": r.images});
    a.output.print(&v, || print_table(&r))
}

fn print_table(r: &CorrespondenceResult) {
    println!(
        "{} images, {} pairs, {} px squares, seed {}",
        r.images.len(),
        r.pairs,
        r.size,
        r.seed
    );
    println!(
        "{:<12} {:>16} {:>16} {:>8} {:>8}",
        "part", "layer 5", "layer 7", "paper 5", "paper 7"
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
    for (p, v) in &r.parts {
        let paper = correspondence::PAPER.iter().find(|q| q.0 == p);
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
