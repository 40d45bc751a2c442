//! Dataset index for the top-9 view (paper Fig. 2) and the training
//! timeline (Fig. 4): for every feature map of conv1–conv5, the 9 strongest
//! activations over a dataset, at most one per image (a map's activation in
//! an image is its maximum there; ties: first in row-major order).
//!
//! One JSON file per snapshot and dataset, beside the model:
//! `<model>/index/<dataset name>-<hash>/epoch-XXX-<snapshot id>.json`. Incremental: images
//! already indexed are not read again. Decoding runs on a thread pool ahead
//! of the forward passes.
//!
//! Sharded builds (`Shard`, `zfvis index --shard I/N`) index the I-th of N
//! contiguous slices of the sorted file list, cut at batch boundaries so each
//! shard runs exactly the batches one build would; `merge_shards` combines
//! the N files into the index one build writes, byte for byte.

use crate::checkpoint::{write_atomic, ModelDir};
use crate::data;
use crate::net::Net;
use crate::preprocess;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tch::{Kind, Tensor};

pub const K: usize = 9;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Path relative to the dataset folder.
    pub image: String,
    pub y: i64,
    pub x: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotIndex {
    pub epoch: u32,
    pub dataset: String,
    /// Relative paths already indexed (sorted).
    pub images: BTreeSet<String>,
    pub skipped: BTreeSet<String>,
    /// [layer 0..5][map] -> up to 9 entries, strongest first.
    pub layers: Vec<Vec<Vec<Entry>>>,
    /// "I/N" for one shard's part; absent in a whole index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// The I-th (1-based) of N slices of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Shard> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if (1..=count).contains(&index) => Ok(Shard { index, count }),
            _ => bail!("--shard must be I/N with 1 <= I <= N, got {s:?}"),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The range of `n` sorted files this shard indexes: the batches of
    /// `batch` files are split into `count` contiguous runs.
    pub fn range(&self, n: usize, batch: usize) -> std::ops::Range<usize> {
        let batches = n.div_ceil(batch.max(1));
        let at = |k: usize| (k * batches / self.count * batch.max(1)).min(n);
        at(self.index - 1)..at(self.index)
    }

    fn file_name(&self, stem: &str) -> String {
        format!("{stem}.shard-{}-of-{}.json", self.index, self.count)
    }
}

/// `<model>/index/<dataset name>-<hash of its canonical path>`.
pub fn index_dir(model: &ModelDir, dataset: &Path) -> Result<PathBuf> {
    let canon = dataset
        .canonicalize()
        .with_context(|| format!("dataset folder {} not found", dataset.display()))?;
    let h = crate::store::hex(&Sha256::digest(canon.to_string_lossy().as_bytes()));
    let name: String = crate::files::name_of(&canon)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Ok(model.dir.join("index").join(format!("{name}-{}", &h[..12])))
}

/// A snapshot's index files are named by its epoch and its content
/// identity (`epoch-XXX-<id>`): weights or a manifest replaced in the folder
/// are indexed anew, never answered from the old network's index.
fn stem(model: &ModelDir, epoch: u32) -> Result<String> {
    let id = crate::identity::snapshot(model, epoch)?;
    Ok(format!("epoch-{epoch:03}-{}", &id[..12]))
}

pub fn index_path(model: &ModelDir, dataset: &Path, epoch: u32) -> Result<PathBuf> {
    Ok(index_dir(model, dataset)?.join(format!("{}.json", stem(model, epoch)?)))
}

/// Where shard `shard` of a snapshot's index is written.
pub fn shard_path(model: &ModelDir, dataset: &Path, epoch: u32, shard: Shard) -> Result<PathBuf> {
    Ok(index_dir(model, dataset)?.join(shard.file_name(&stem(model, epoch)?)))
}

pub fn load(path: &Path) -> Result<SnapshotIndex> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not an index file", path.display()))
}

/// Relative path of `p` under `root`, with forward slashes.
fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Resolve an index entry's image inside the dataset, refusing anything
/// that would leave it.
pub fn resolve(dataset: &Path, image: &str) -> Result<PathBuf> {
    if image.is_empty()
        || image.starts_with('/')
        || image.split('/').any(|c| c == ".." || c.is_empty())
    {
        bail!("image path {image:?} is not inside the dataset");
    }
    Ok(dataset.join(image))
}

/// Progress callback: (images done, images to do).
pub type Report<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Build or extend the index of one snapshot. Returns it and the number of
/// newly indexed images.
pub fn build(
    net: &Net,
    model: &ModelDir,
    epoch: u32,
    dataset: &Path,
    batch: usize,
    progress: Report,
) -> Result<(SnapshotIndex, usize)> {
    build_shard(net, model, epoch, dataset, batch, None, progress)
}

/// `build`, of one shard's slice of the dataset when `shard` is given (its
/// own file, see `shard_path`).
pub fn build_shard(
    net: &Net,
    model: &ModelDir,
    epoch: u32,
    dataset: &Path,
    batch: usize,
    shard: Option<Shard>,
    progress: Report,
) -> Result<(SnapshotIndex, usize)> {
    let batch = batch.max(1);
    let path = match shard {
        Some(s) => shard_path(model, dataset, epoch, s)?,
        None => index_path(model, dataset, epoch)?,
    };
    let canon = dataset.canonicalize()?;
    let mut index = match load(&path) {
        Ok(i) if i.epoch == epoch && i.layers.len() == net.units.len() => i,
        _ => SnapshotIndex {
            epoch,
            dataset: canon.to_string_lossy().into_owned(),
            images: BTreeSet::new(),
            skipped: BTreeSet::new(),
            layers: net
                .units
                .iter()
                .map(|u| vec![vec![]; u.c as usize])
                .collect(),
            shard: shard.map(|s| s.to_string()),
        },
    };
    let mut all = data::list_images(&canon)?;
    if let Some(s) = shard {
        let r = s.range(all.len(), batch);
        all = all[r].to_vec();
    }
    let todo: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            let r = rel(&canon, p);
            !index.images.contains(&r) && !index.skipped.contains(&r)
        })
        .collect();
    let total = todo.len();
    progress(0, total);
    if total == 0 {
        if !path.exists() {
            // An empty shard (or dataset) still leaves its file.
            std::fs::create_dir_all(path.parent().unwrap())?;
            write_atomic(&path, serde_json::to_string(&index)?.as_bytes())?;
        }
        return Ok((index, 0));
    }
    let pre = model.manifest.preprocess();
    // Decode ahead on the rayon pool; at most two batches wait.
    let (tx, rx) = mpsc::sync_channel::<Vec<(PathBuf, Option<Tensor>)>>(2);
    let todo2 = todo.clone();
    let producer = std::thread::spawn(move || {
        use rayon::prelude::*;
        for chunk in todo2.chunks(batch) {
            let items: Vec<(PathBuf, Option<Tensor>)> = chunk
                .par_iter()
                .map(|p| {
                    let t = std::fs::read(p)
                        .ok()
                        .and_then(|b| preprocess::decode(&b).ok())
                        .map(|img| pre.tensor(&pre.crop(&img)));
                    (p.clone(), t)
                })
                .collect();
            if tx.send(items).is_err() {
                return;
            }
        }
    });
    let mut done = 0;
    for items in rx {
        let mut names = vec![];
        let mut xs = vec![];
        for (p, t) in items {
            let r = rel(&canon, &p);
            match t {
                Some(t) => {
                    names.push(r);
                    xs.push(t);
                }
                None => {
                    index.skipped.insert(r);
                }
            }
        }
        done += names.len();
        if !xs.is_empty() {
            let trace = net.trace(&Tensor::stack(&xs, 0));
            for (l, maps) in trace.maps.iter().enumerate() {
                merge(&mut index.layers[l], maps, &names)?;
            }
            index.images.extend(names);
        }
        progress(done + index.skipped.len().min(total), total);
    }
    let _ = producer.join();
    std::fs::create_dir_all(path.parent().unwrap())?;
    write_atomic(&path, serde_json::to_string(&index)?.as_bytes())?;
    Ok((index, total))
}

/// Combine the N shard files of a snapshot's index (N read from their names)
/// into the whole index, written where `build` writes it. A missing shard,
/// shards of different N, or shards that do not cover the dataset are errors.
pub fn merge_shards(model: &ModelDir, dataset: &Path, epoch: u32) -> Result<SnapshotIndex> {
    let dir = index_dir(model, dataset)?;
    let stem = stem(model, epoch)?;
    let prefix = format!("{stem}.shard-");
    let mut counts = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix) {
                if let Some(n) = rest
                    .strip_suffix(".json")
                    .and_then(|r| r.split_once("-of-"))
                    .and_then(|(_, n)| n.parse::<usize>().ok())
                {
                    counts.insert(n);
                }
            }
        }
    }
    let count = match counts.len() {
        0 => bail!(
            "no shards of epoch {epoch} in {}: build them with --shard I/N",
            dir.display()
        ),
        1 => *counts.first().unwrap(),
        _ => bail!(
            "{}: shards of epoch {epoch} were cut {} ways ({:?}); remove the stale ones",
            dir.display(),
            counts.len(),
            counts
        ),
    };
    let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
    let missing: Vec<String> = shards
        .iter()
        .map(|s| dir.join(s.file_name(&stem)))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!("missing shard file(s): {}", missing.join(", "));
    }
    let mut whole: Option<SnapshotIndex> = None;
    let mut parts = 0;
    for s in &shards {
        let p = dir.join(s.file_name(&stem));
        let part = load(&p)?;
        parts += part.images.len() + part.skipped.len();
        if part.epoch != epoch || part.shard.as_deref() != Some(s.to_string().as_str()) {
            bail!("{}: not shard {s} of epoch {epoch}", p.display());
        }
        whole = Some(match whole {
            None => part,
            Some(mut w) => {
                if w.layers.len() != part.layers.len()
                    || w.layers
                        .iter()
                        .zip(&part.layers)
                        .any(|(a, b)| a.len() != b.len())
                {
                    bail!("{}: its layers differ from shard 1's", p.display());
                }
                // Shard s holds files after shard s-1's: on equal values the
                // earlier file stays first, as in one build.
                for (wl, pl) in w.layers.iter_mut().zip(part.layers) {
                    for (top, more) in wl.iter_mut().zip(pl) {
                        for e in more {
                            insert(top, e);
                        }
                    }
                }
                w.images.extend(part.images);
                w.skipped.extend(part.skipped);
                w
            }
        });
    }
    let mut whole = whole.expect("at least one shard");
    whole.shard = None;
    whole.dataset = dataset.canonicalize()?.to_string_lossy().into_owned();
    let n = data::list_images(dataset)?.len();
    let covered = whole.images.len() + whole.skipped.len();
    if parts != covered {
        bail!("the shards overlap ({parts} files indexed, {covered} distinct): build every shard with the same --batch");
    }
    if covered != n {
        bail!(
            "the shards cover {covered} images but {} holds {n}: rebuild them on the same files",
            dataset.display()
        );
    }
    write_atomic(
        &index_path(model, dataset, epoch)?,
        serde_json::to_string(&whole)?.as_bytes(),
    )?;
    Ok(whole)
}

/// Insert `e` into a top-9 list, after entries of equal value.
fn insert(entries: &mut Vec<Entry>, e: Entry) {
    let pos = entries
        .iter()
        .position(|o| o.value < e.value)
        .unwrap_or(entries.len());
    if pos < K {
        entries.insert(pos, e);
        entries.truncate(K);
    }
}

/// Merge one batch's per-image maxima ([B, C, H, W] maps) into the top-9s.
fn merge(top: &mut [Vec<Entry>], maps: &Tensor, names: &[String]) -> Result<()> {
    let (b, c, _, w) = maps.size4()?;
    let (v, i) = maps
        .reshape([b, c, -1])
        .to_device(tch::Device::Cpu)
        .max_dim(2, false);
    let v: Vec<f32> = Vec::try_from(&v.to_kind(Kind::Float).reshape([-1]))?;
    let i: Vec<i64> = Vec::try_from(&i.reshape([-1]))?;
    for (m, entries) in top.iter_mut().enumerate().take(c as usize) {
        for (n, name) in names.iter().enumerate().take(b as usize) {
            let k = n * c as usize + m;
            // Stable: on equal values the entry already there stays first.
            insert(
                entries,
                Entry {
                    image: name.clone(),
                    y: i[k] / w,
                    x: i[k] % w,
                    value: v[k] as f64,
                },
            );
        }
    }
    Ok(())
}

/// The entries of a top 9 where the map responds at all (value > 0): a map
/// silent on an image has nothing to project there (small datasets, such as
/// the image store, have such entries).
pub fn responding(entries: &[Entry]) -> &[Entry] {
    let n = entries.iter().take_while(|e| e.value > 0.0).count();
    &entries[..n]
}

/// The top 9 of one map in an index (strongest first).
pub fn top9(index: &SnapshotIndex, layer: usize, map: i64) -> Result<&[Entry]> {
    crate::net::check::layer(layer, index.layers.len())?;
    let maps = &index.layers[layer - 1];
    crate::net::check::maps(layer, map, maps.len() as i64)?;
    Ok(&maps[map as usize])
}
