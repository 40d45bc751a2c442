//! `zfvis probe` (linear probes per layer, paper §5 Table 7) and
//! `zfvis transfer` (few-shot transfer against training from scratch, paper
//! §5 Fig. 9): how general each layer's features are.

use super::args::{LabelledData, ModelArgs, Output};
use super::local::{stage_bar, staged};
use anyhow::{bail, Result};
use zfvis_core::classify::Loss;
use zfvis_core::probe::{self, ProbeRequest, ProbeResult};
use zfvis_core::transfer::{self, MeanStd, TransferRequest, TransferResult};

#[derive(clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: LabelledData,
    /// Train on the first N images of each class (sorted by file name)
    #[arg(long)]
    train_per_class: Option<usize>,
    /// softmax, svm or both
    #[arg(long, default_value = "both")]
    classifier: String,
    #[command(flatten)]
    output: Output,
}

fn classifiers(name: &str) -> Result<Vec<Loss>> {
    Ok(match name {
        "softmax" => vec![Loss::Softmax],
        "svm" => vec![Loss::Svm],
        "both" => vec![Loss::Softmax, Loss::Svm],
        c => bail!("unknown --classifier {c:?}: expected softmax, svm or both"),
    })
}

pub fn probe(a: ProbeArgs) -> Result<()> {
    let req = ProbeRequest {
        model: a.model.model,
        snapshot: a.model.snapshot,
        data: a.data.data,
        classes: a.data.classes,
        train_per_class: a.train_per_class,
        classifiers: classifiers(&a.classifier)?,
    };
    let pb = stage_bar();
    let r = probe::probe(&req, a.model.device.get()?, &staged(&pb))?;
    pb.finish_and_clear();
    a.output.print_pretty(&r, || print_probe(&r))
}

fn print_probe(r: &ProbeResult) {
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
    // What would make a row less than it looks: said under the table.
    for l in r.layers.iter().filter(|l| !l.not_converged.is_empty()) {
        println!(
            "note: {}: the {} fit stopped at its iteration cap before it converged",
            l.layer,
            l.not_converged.join(" and ")
        );
    }
    if !r.cross_validated {
        println!(
            "note: penalties not cross-validated (fewer than 3 training images of some class): 1e-2 for every fit"
        );
    }
}

#[derive(clap::Args)]
pub struct TransferArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: LabelledData,
    /// Training images a class, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20,50")]
    per_class: Vec<usize>,
    /// Draws of training images (mean and std over them)
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Epochs of the from-scratch arm (0: skip it)
    #[arg(long, default_value_t = 30)]
    scratch_epochs: u32,
    #[command(flatten)]
    output: Output,
}

pub fn transfer(a: TransferArgs) -> Result<()> {
    let req = TransferRequest {
        model: a.model.model,
        snapshot: a.model.snapshot,
        data: a.data.data,
        classes: a.data.classes,
        per_class: a.per_class,
        seeds: a.seeds,
        scratch_epochs: a.scratch_epochs,
    };
    let pb = stage_bar();
    let r = transfer::transfer(&req, a.model.device.get()?, &staged(&pb))?;
    pb.finish_and_clear();
    a.output.print_pretty(&r, || print_transfer(&r))
}

fn print_transfer(r: &TransferResult) {
    println!(
        "{} epoch {}, softmax on {} vs from scratch ({} epochs), {} draws, {} test images",
        r.model, r.snapshot, r.layer, r.scratch_epochs, r.seeds, r.test_images
    );
    println!("{:>10} {:>16} {:>16}", "per class", "pretrained", "scratch");
    let ms = |m: &MeanStd| format!("{:.1} ± {:.1}%", m.mean * 100.0, m.std * 100.0);
    for (i, n) in r.per_class.iter().enumerate() {
        let s = r.scratch.as_ref().map_or("-".into(), |s| ms(&s[i]));
        println!("{n:>10} {:>16} {s:>16}", ms(&r.pretrained[i]));
    }
}
