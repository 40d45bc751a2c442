//! `zfvis index` (the 9 strongest activations of every map over a dataset,
//! per snapshot; shards for many machines) and `zfvis top9` (one map's).
//! Paper Fig. 2 and Fig. 4.

use super::args::{DeviceArg, ModelArgs, Output};
use super::local::{advance, bar};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::index::{self, Shard};
use zfvis_core::tch::{Device, Kind, Tensor};

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Model folder (manifest.json + snapshots)
    #[arg(long)]
    model: PathBuf,
    /// An epoch, or "all" (default: the last)
    #[arg(long)]
    snapshot: Option<String>,
    /// Folder of images (searched recursively)
    #[arg(long)]
    dataset: PathBuf,
    /// Images per forward pass
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    device: DeviceArg,
    /// Index only the I-th of N slices of the dataset (e.g. 2/8), for N machines
    /// or a job array; combine the shards with --merge
    #[arg(long, conflicts_with = "merge")]
    shard: Option<Shard>,
    /// Combine the shard files (built with --shard, copied into the model's
    /// index folder) into the index one build would write
    #[arg(long)]
    merge: bool,
}

/// The epochs `--snapshot` names.
fn epochs(model: &ModelDir, snapshot: Option<&str>) -> Result<Vec<u32>> {
    Ok(match snapshot {
        Some("all") => model.manifest.snapshots.iter().map(|s| s.epoch).collect(),
        Some(e) => vec![e
            .parse()
            .map_err(|_| anyhow::anyhow!("--snapshot must be an epoch or \"all\", got {e:?}"))?],
        None => vec![model
            .manifest
            .last_epoch()
            .context("model has no snapshots")?],
    })
}

pub fn index(a: IndexArgs) -> Result<()> {
    let model = ModelDir::open(&a.model)?;
    let device = a.device.get()?;
    for epoch in epochs(&model, a.snapshot.as_deref())? {
        if a.merge {
            let idx = index::merge_shards(&model, &a.dataset, epoch)?;
            println!(
                "epoch {epoch}: merged shards: {} indexed, {} unreadable; {}",
                idx.images.len(),
                idx.skipped.len(),
                index::index_path(&model, &a.dataset, epoch)?.display()
            );
        } else {
            build(&a, &model, epoch, device)?;
        }
    }
    Ok(())
}

/// Build (or extend) one snapshot's index and report its speed beside raw
/// batched forward passes of the same network.
fn build(a: &IndexArgs, model: &ModelDir, epoch: u32, device: Device) -> Result<()> {
    let batch = a.batch.max(1);
    let net = model.load(Some(epoch), device)?;
    let pb = bar("epoch {prefix} {bar:40} {pos}/{len} {per_sec} ETA {eta}");
    pb.set_prefix(epoch.to_string());
    let t = std::time::Instant::now();
    let (idx, n) = index::build_shard(
        &net,
        model,
        epoch,
        &a.dataset,
        batch,
        a.shard,
        &|done, total| advance(&pb, done, total),
    )?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    // The peer: raw batched forward passes of the same network.
    let s = model.manifest.input_size;
    let x = Tensor::randn(
        [batch as i64, net.spec.in_channels, s, s],
        (Kind::Float, device),
    );
    let _ = net.trace(&x);
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        let _ = net.trace(&x);
    }
    let raw = 3.0 * batch as f64 / t0.elapsed().as_secs_f64();
    let ips = n as f64 / secs.max(1e-9);
    println!(
        "epoch {epoch}: {n} new images in {secs:.1} s ({ips:.1} images/s; raw forward {raw:.1} images/s, ratio {:.2}), {} indexed, {} unreadable; {}",
        if n > 0 { raw / ips } else { 0.0 },
        idx.images.len(),
        idx.skipped.len(),
        written(model, &a.dataset, epoch, a.shard)?.display()
    );
    Ok(())
}

fn written(model: &ModelDir, dataset: &Path, epoch: u32, shard: Option<Shard>) -> Result<PathBuf> {
    Ok(match shard {
        Some(s) => index::shard_path(model, dataset, epoch, s)?,
        None => index::index_path(model, dataset, epoch)?,
    })
}

#[derive(clap::Args)]
pub struct Top9Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of images (indexed first if it has no index for the snapshot)
    #[arg(long)]
    dataset: PathBuf,
    /// Layer: a conv number 1..N or a unit's name (layer3.1; u:NAME is always a name)
    #[arg(long)]
    layer: String,
    /// Feature map of the layer, 0-based
    #[arg(long)]
    map: i64,
    #[command(flatten)]
    output: Output,
}

pub fn top9(a: Top9Args) -> Result<()> {
    let model = ModelDir::open(&a.model.model)?;
    let epoch = model.manifest.snapshot(a.model.snapshot)?.epoch;
    let path = index::index_path(&model, &a.dataset, epoch)?;
    let idx = match index::load(&path) {
        Ok(i) => i,
        Err(_) => {
            let net = model.load(Some(epoch), a.model.device.get()?)?;
            eprintln!(
                "building the index of {} for epoch {epoch}",
                a.dataset.display()
            );
            index::build(&net, &model, epoch, &a.dataset, 32, &|_, _| {})?.0
        }
    };
    let layer = model.manifest.spec()?.find_unit(&a.layer)?;
    let top = index::top9(&idx, layer, a.map)?;
    a.output.print(&top, || {
        for e in top {
            println!("{:>10.4}  ({:>3}, {:>3})  {}", e.value, e.y, e.x, e.image);
        }
    })
}
