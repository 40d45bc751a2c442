//! `zfvis compare`: two models or snapshots side by side: dead layer-1
//! filters, their spectral bands, layer-2 aliasing (paper Fig. 6).

use super::args::{DeviceArg, Output};
use super::local::{advance, bar};
use anyhow::Result;
use std::path::PathBuf;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::compare::{self, CompareResult};

#[derive(clap::Args)]
pub struct CompareArgs {
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
    #[arg(long, default_value_t = compare::DEFAULT_IMAGES)]
    images: usize,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let device = a.device.get()?;
    let (ma, mb) = (ModelDir::open(&a.a)?, ModelDir::open(&a.b)?);
    let pb = bar("{bar:40} {pos}/{len} images ETA {eta}");
    let r = compare::compare_dirs(
        (&ma, a.snapshot_a),
        (&mb, a.snapshot_b),
        a.dataset.as_deref(),
        a.images,
        device,
        &mut |done, total| {
            advance(&pb, done, total);
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    a.output.print(&r, || print_compare(&r))
}

fn print_compare(r: &CompareResult) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
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
            s.never_active.as_deref().map_or_else(|| "-".into(), list)
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
