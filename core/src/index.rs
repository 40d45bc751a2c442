//! Dataset index for the top-9 view (paper Fig. 2) and the training
//! timeline (Fig. 4): for every feature map of conv1–conv5, the 9 strongest
//! activations over a dataset, at most one per image (a map's activation in
//! an image is its maximum there; ties: first in row-major order).
//!
//! One JSON file per snapshot and dataset, beside the model:
//! `<model>/index/<dataset name>-<hash>/epoch-XXX.json`. Incremental: images
//! already indexed are not read again. Decoding runs on a thread pool ahead
//! of the forward passes.

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
}

/// `<model>/index/<dataset name>-<hash of its canonical path>`.
pub fn index_dir(model: &ModelDir, dataset: &Path) -> Result<PathBuf> {
    let canon = dataset
        .canonicalize()
        .with_context(|| format!("dataset folder {} not found", dataset.display()))?;
    let h = crate::store::hex(&Sha256::digest(canon.to_string_lossy().as_bytes()));
    let name: String = canon
        .file_name()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .unwrap_or_default();
    Ok(model.dir.join("index").join(format!("{name}-{}", &h[..12])))
}

pub fn index_path(model: &ModelDir, dataset: &Path, epoch: u32) -> Result<PathBuf> {
    Ok(index_dir(model, dataset)?.join(format!("epoch-{epoch:03}.json")))
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
    let path = index_path(model, dataset, epoch)?;
    let canon = dataset.canonicalize()?;
    let mut index = match load(&path) {
        Ok(i) if i.epoch == epoch && i.layers.len() == net.convs.len() => i,
        _ => SnapshotIndex {
            epoch,
            dataset: canon.to_string_lossy().into_owned(),
            images: BTreeSet::new(),
            skipped: BTreeSet::new(),
            layers: net
                .convs
                .iter()
                .map(|b| vec![vec![]; b.out_c as usize])
                .collect(),
        },
    };
    let all = data::list_images(&canon)?;
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
        return Ok((index, 0));
    }
    let pre = model.manifest.preprocess();
    // Decode ahead on the rayon pool; at most two batches wait.
    let (tx, rx) = mpsc::sync_channel::<Vec<(PathBuf, Option<Tensor>)>>(2);
    let todo2 = todo.clone();
    let producer = std::thread::spawn(move || {
        use rayon::prelude::*;
        for chunk in todo2.chunks(batch.max(1)) {
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
            let e = Entry {
                image: name.clone(),
                y: i[k] / w,
                x: i[k] % w,
                value: v[k] as f64,
            };
            // Stable: on equal values the entry already there stays first.
            let pos = entries
                .iter()
                .position(|o| o.value < e.value)
                .unwrap_or(entries.len());
            if pos < K {
                entries.insert(pos, e);
                entries.truncate(K);
            }
        }
    }
    Ok(())
}

/// The top-9 of one map, building the index if needed.
pub fn top9(index: &SnapshotIndex, layer: usize, map: i64) -> Result<&[Entry]> {
    let n = index.layers.len();
    if !(1..=n).contains(&layer) {
        bail!("layer {layer} is out of range: expected 1..={n}");
    }
    let maps = &index.layers[layer - 1];
    if map < 0 || map as usize >= maps.len() {
        bail!(
            "map {map} is out of range: layer {layer} has maps 0..{}",
            maps.len() as i64 - 1
        );
    }
    Ok(&maps[map as usize])
}

// ---- building in the background ----------------------------------------------

use crate::progress::{Jobs, Progress, State};

/// Builds dataset indexes in the background, one at a time, on a thread of
/// its own with its own copy of the network, so that the views can show
/// the progress while the engine keeps answering.
#[derive(Clone)]
pub struct Indexer {
    pub dataset: PathBuf,
    models: PathBuf,
    jobs: Jobs,
    tx: mpsc::Sender<(String, u32)>,
}

fn job_key(model: &str, epoch: u32) -> String {
    format!("index/{model}/{epoch}")
}

impl Indexer {
    pub fn spawn(models: PathBuf, dataset: PathBuf, device: tch::Device, jobs: Jobs) -> Indexer {
        let (tx, rx) = mpsc::channel::<(String, u32)>();
        let (j, m, d) = (jobs.clone(), models.clone(), dataset.clone());
        std::thread::Builder::new()
            .name("zfvis-index".into())
            .spawn(move || {
                for (model, epoch) in rx {
                    let key = job_key(&model, epoch);
                    j.set(&key, Progress::new(State::Running, 0, 0));
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let dir = crate::models::open_model(&m, &model)?;
                        let net = dir.load(Some(epoch), device)?;
                        build(&net, &dir, epoch, &d, 32, &|done, total| {
                            j.set(&key, Progress::new(State::Running, done, total));
                        })?;
                        anyhow::Ok(())
                    }));
                    j.set(
                        &key,
                        match r {
                            Ok(Ok(())) => {
                                let total = j.get(&key).map_or(0, |p| p.total);
                                Progress::new(State::Done, total, total)
                            }
                            Ok(Err(e)) => Progress::failed(format!("{e:#}")),
                            Err(_) => Progress::failed("indexing failed".into()),
                        },
                    );
                }
            })
            .expect("spawn indexer");
        Indexer {
            dataset,
            models,
            jobs,
            tx,
        }
    }

    /// The index status of a snapshot; queues a build on first use.
    pub fn ensure(&self, model: &str, epoch: u32) -> Progress {
        let (p, new) = self.jobs.get_or_insert(&job_key(model, epoch), || {
            let built = crate::models::open_model(&self.models, model)
                .ok()
                .and_then(|m| index_path(&m, &self.dataset, epoch).ok())
                .is_some_and(|p| p.exists());
            Progress::new(if built { State::Done } else { State::Queued }, 0, 0)
        });
        if new && p.state == State::Queued {
            let _ = self.tx.send((model.to_string(), epoch));
        }
        p
    }
}
