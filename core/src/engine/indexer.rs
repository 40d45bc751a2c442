//! The dataset index built in the background (top 9 over a dataset, the
//! timeline): one build at a time on a thread of its own; the index itself
//! (building, reading) is `crate::index`.

use crate::checkpoint::ModelDir;
use crate::data;
use crate::index::{build, index_path, load, SnapshotIndex};
use crate::progress::{Jobs, Progress, State};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Builds dataset indexes in the background, one at a time, on a thread of
/// its own with its own copy of the network, so that the views can show
/// the progress while the engine keeps answering.
#[derive(Clone)]
pub struct Indexer {
    pub dataset: PathBuf,
    models: PathBuf,
    jobs: Jobs,
    /// Builds to run: model, epoch and job key.
    tx: mpsc::Sender<(String, u32, String)>,
    /// Set when the dataset is the image store (no `--dataset`): its images
    /// change as they are uploaded, and each index is brought up to date.
    live: Option<Live>,
    /// Index files read so far, by path, with the modification time, length
    /// and inode they were read at.
    loaded: std::sync::Arc<std::sync::Mutex<Loaded>>,
    /// The given dataset's image files, listed on first use.
    files: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Vec<PathBuf>>>>,
}

/// Path -> ((modified, length, inode), parsed index).
type Loaded =
    std::collections::HashMap<PathBuf, (crate::identity::Stamp, std::sync::Arc<SnapshotIndex>)>;

/// Index files kept parsed in memory (a few snapshots of a few models).
const LOADED: usize = 64;

#[derive(Clone)]
struct Live {
    store: crate::store::ImageStore,
    /// Per job key: the store generation its latest build started from.
    built: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

/// A build's job key: the snapshot and its content identity (a folder
/// replaced under the server is a new build).
fn job_key(models: &Path, model: &str, epoch: u32) -> Result<String> {
    let m = crate::models::open_model(models, model)?;
    let id = crate::identity::snapshot(&m, epoch)?;
    Ok(format!("index/{model}/{epoch}/{id}"))
}

impl Indexer {
    pub fn spawn(models: PathBuf, dataset: PathBuf, device: tch::Device, jobs: Jobs) -> Indexer {
        let (tx, rx) = mpsc::channel::<(String, u32, String)>();
        let (j, m, d) = (jobs.clone(), models.clone(), dataset.clone());
        std::thread::Builder::new()
            .name("zfvis-index".into())
            .spawn(move || {
                for (model, epoch, key) in rx {
                    j.running(&key);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let dir = crate::models::open_model(&m, &model)?;
                        let net = dir.load(Some(epoch), device)?;
                        build(&net, &dir, epoch, &d, 32, &|done, total| {
                            j.counts(&key, done, total);
                        })?;
                        anyhow::Ok(())
                    }));
                    let failed = |error: String| {
                        j.update(&key, |e| {
                            (e.state, e.done, e.total) = (State::Failed, 0, 0);
                            e.error = Some(error);
                        })
                    };
                    match r {
                        Ok(Ok(())) => j.finish(&key, Ok(())),
                        Ok(Err(e)) => failed(format!("{e:#}")),
                        Err(_) => failed("indexing failed".into()),
                    }
                }
            })
            .expect("spawn indexer");
        Indexer {
            dataset,
            models,
            jobs,
            tx,
            live: None,
            loaded: Default::default(),
            files: Default::default(),
        }
    }

    /// The image files of the dataset, listed once (a given dataset does
    /// not change while the server runs; the image store's do).
    pub fn files(&self) -> Result<std::sync::Arc<Vec<PathBuf>>> {
        if self.live.is_some() {
            return Ok(std::sync::Arc::new(data::list_images(&self.dataset)?));
        }
        if let Some(f) = self.files.get() {
            return Ok(f.clone());
        }
        let listed = std::sync::Arc::new(data::list_images(&self.dataset)?);
        Ok(self.files.get_or_init(|| listed).clone())
    }

    /// The built index of one snapshot, parsed once and kept while its file
    /// is unchanged; None when it is not built yet.
    pub fn load(
        &self,
        model: &ModelDir,
        epoch: u32,
    ) -> Result<Option<std::sync::Arc<SnapshotIndex>>> {
        let path = index_path(model, &self.dataset, epoch)?;
        if !path.is_file() {
            return Ok(None);
        }
        // A build writes a new file and renames it over the old one.
        let stamp = crate::identity::stamp(&path)?;
        let lock = || self.loaded.lock().unwrap_or_else(|x| x.into_inner());
        if let Some((s, idx)) = lock().get(&path) {
            if *s == stamp {
                return Ok(Some(idx.clone()));
            }
        }
        let idx = std::sync::Arc::new(load(&path)?);
        let mut memo = lock();
        if memo.len() >= LOADED {
            memo.clear();
        }
        memo.insert(path, (stamp, idx.clone()));
        Ok(Some(idx))
    }

    /// Index the image store itself (the examples and every upload), each
    /// snapshot's index extended with the images stored since its last build.
    pub fn spawn_store(
        models: PathBuf,
        store: crate::store::ImageStore,
        device: tch::Device,
        jobs: Jobs,
    ) -> Indexer {
        let mut ix = Indexer::spawn(models, store.dir().to_path_buf(), device, jobs);
        ix.live = Some(Live {
            store,
            built: Default::default(),
        });
        ix
    }

    /// The dataset given by the user (`--dataset`), not the image store.
    pub fn given(&self) -> Option<&Path> {
        self.live.is_none().then_some(self.dataset.as_path())
    }

    /// The index status of a snapshot; queues a build on first use, and
    /// for the image store whenever images were stored since its last build.
    pub fn ensure(&self, model: &str, epoch: u32) -> Result<Progress> {
        let key = job_key(&self.models, model, epoch)?;
        let path = index_path(
            &crate::models::open_model(&self.models, model)?,
            &self.dataset,
            epoch,
        )?;
        let new = self.jobs.insert_new(&key, || {
            if path.exists() {
                State::Done
            } else {
                State::Queued
            }
        });
        let p = self
            .jobs
            .progress(&key)
            .unwrap_or_else(|| Progress::new(State::Queued, 0, 0));
        let stale = self.live.as_ref().is_some_and(|l| {
            let g = l.store.generation();
            let mut built = l.built.lock().unwrap_or_else(|x| x.into_inner());
            match built.get(&key) {
                Some(&b) if b >= g => false,
                // Built (here or by an earlier run) before the latest images:
                // extend it; a queued or running build is waited for first.
                _ if new || p.state == State::Done => {
                    built.insert(key.clone(), g);
                    p.state == State::Done
                }
                _ => false,
            }
        });
        if (new && p.state == State::Queued) || stale {
            self.jobs.requeue(&key);
            self.tx
                .send((model.to_string(), epoch, key.clone()))
                .map_err(|_| anyhow::anyhow!("the index builder has stopped"))?;
            return Ok(self
                .jobs
                .progress(&key)
                .unwrap_or_else(|| Progress::new(State::Queued, 0, 0)));
        }
        Ok(p)
    }

    /// For the image store: the state of the dataset the snapshots' indexes
    /// were built from (answers computed from them are kept under it); None
    /// for a given dataset, which does not change while the server runs.
    pub fn version(&self, model: &str, epochs: &[u32]) -> Result<Option<u64>> {
        let Some(l) = self.live.as_ref() else {
            return Ok(None);
        };
        let mut v = 0;
        for &e in epochs {
            let key = job_key(&self.models, model, e)?;
            let built = l.built.lock().unwrap_or_else(|x| x.into_inner());
            // Never built from the store yet: generation 0.
            v += built.get(&key).copied().unwrap_or(0);
        }
        Ok(Some(v))
    }
}
