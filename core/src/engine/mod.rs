//! What every analysis shares: the loaded snapshots, a bounded cache of
//! forward traces (clicking maps on one image never reruns the forward
//! pass), the image store and the dataset. It lives on one worker thread
//! (tensors are not Sync); the analyses themselves live beside their
//! science (`deconv`, `occlusion`, `invariance`, …) and implement
//! [`crate::analysis::Analysis`].

use crate::checkpoint::ModelDir;
pub use crate::error::{bad, bad_input, Error, Result};
pub use crate::models::{list_models, model_info, open_model, ModelInfo};
use crate::net::{Net, Trace};
use crate::params::{ContentId, ModelName};
use crate::preprocess;
use crate::progress::Jobs;
use crate::store::ImageStore;
use image::RgbImage;
use lru::LruCache;
use serde::Serialize;
use std::any::Any;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::rc::Rc;
use tch::Device;

/// What analyses need besides tensors; cheap to clone, shared across threads.
#[derive(Clone)]
pub struct Context {
    pub models: PathBuf,
    pub store: ImageStore,
    pub device: Device,
    /// The dataset of the top-9 and timeline views and its index builder.
    pub indexer: Option<crate::engine::indexer::Indexer>,
    /// Progress of background jobs (index builds, comparisons).
    pub jobs: Jobs,
}

impl Context {
    pub fn model(&self, name: &ModelName) -> Result<ModelDir> {
        open_model(&self.models, name.as_str())
    }

    /// The model folder, checked to have a snapshot at `epoch`.
    pub fn snapshot(&self, name: &ModelName, epoch: Option<u32>) -> Result<ModelDir> {
        let m = self.model(name)?;
        m.manifest
            .snapshot(epoch)
            .map_err(|e| Error::NotFound(e.to_string()))?;
        Ok(m)
    }

    /// The identity of the model folder's content now (see [`crate::identity`]).
    pub fn model_id(&self, name: &ModelName) -> Result<String> {
        Ok(crate::identity::model(&self.model(name)?)?)
    }

    pub fn indexer(&self) -> Result<&crate::engine::indexer::Indexer> {
        self.indexer.as_ref().ok_or_else(|| {
            Error::NotFound("no dataset: start the server with --dataset DIR".into())
        })
    }

    /// The dataset given with `--dataset` (not the image store the views
    /// fall back to): features and comparisons need real, labelled data.
    pub fn given_dataset(&self) -> Result<&std::path::Path> {
        self.indexer
            .as_ref()
            .and_then(|i| i.given())
            .ok_or_else(|| {
                Error::NotFound("no dataset: start the server with --dataset DIR".into())
            })
    }

    pub fn image_bytes(&self, image: &ContentId) -> Result<Vec<u8>> {
        use crate::store::Lookup;
        let missing = || Error::NotFound(format!("unknown image {image}"));
        match self.store.lookup(image.as_str()) {
            Lookup::Stored(p) => std::fs::read(p).map_err(|_| missing()),
            Lookup::Expired => Err(Error::NotFound(format!(
                "image {image} expired: it was removed from the server's store to make room \
                 (least recently used first); upload it again"
            ))),
            Lookup::Unknown => Err(missing()),
        }
    }
}

pub struct Traced {
    pub crop: RgbImage,
    /// The normalised crop, [1, 3, S, S].
    pub input: tch::Tensor,
    pub trace: Trace,
}

/// Traces by (snapshot identity, image).
type TraceCache = LruCache<(String, String), Rc<Traced>>;

/// Weights of the loaded snapshots kept in memory.
const NET_BYTES: u64 = 1 << 30;

/// Traces of dataset files kept (a top-9 row's images).
const FILE_TRACES: usize = 16;

pub struct Engine {
    pub ctx: Context,
    /// Loaded snapshots by identity, with their weights' size in bytes.
    nets: LruCache<String, (Rc<Net>, u64)>,
    /// Traces of stored images (uploads, examples) ...
    traces: TraceCache,
    /// ... and of dataset files, apart: browsing the dataset views does not
    /// push the image being looked at out of the cache.
    file_traces: TraceCache,
    /// Results that several requests share (an occlusion grid behind its
    /// three heatmaps), by the key their analysis gives them.
    memo: LruCache<String, Rc<dyn Any>>,
    /// How many forward passes ran (for tests and stats).
    pub forwards: u64,
}

impl Engine {
    pub fn new(ctx: Context, traces: usize) -> Engine {
        Engine {
            ctx,
            nets: LruCache::unbounded(),
            traces: LruCache::new(NonZeroUsize::new(traces.max(1)).unwrap()),
            file_traces: LruCache::new(NonZeroUsize::new(FILE_TRACES).unwrap()),
            memo: LruCache::new(NonZeroUsize::new(16).unwrap()),
            forwards: 0,
        }
    }

    pub fn model(&self, name: &ModelName) -> Result<ModelDir> {
        self.ctx.model(name)
    }

    /// The identity of a snapshot's content now (see [`crate::identity`]).
    pub fn snapshot_id(&self, model: &ModelName, epoch: u32) -> Result<String> {
        Ok(crate::identity::snapshot(
            &self.ctx.snapshot(model, Some(epoch))?,
            epoch,
        )?)
    }

    /// A snapshot's network (cached by its identity: a folder replaced
    /// under the server is loaded anew on the next request).
    pub fn net(&mut self, model: &ModelName, epoch: u32) -> Result<Rc<Net>> {
        Ok(self.net_id(model, epoch)?.0)
    }

    /// The network and the identity of the content it was loaded from.
    fn net_id(&mut self, model: &ModelName, epoch: u32) -> Result<(Rc<Net>, String)> {
        // A file replaced while it loads is loaded again (its identity changed).
        for _ in 0..3 {
            let id = self.snapshot_id(model, epoch)?;
            if let Some((n, _)) = self.nets.get(&id) {
                return Ok((n.clone(), id));
            }
            let m = self.ctx.snapshot(model, Some(epoch))?;
            let net = Rc::new(m.load(Some(epoch), self.ctx.device)?);
            if self.snapshot_id(model, epoch)? != id {
                continue;
            }
            let bytes = net
                .named_tensors()
                .iter()
                .map(|(_, t)| t.numel() as u64 * 4)
                .sum();
            self.nets.put(id.clone(), (net.clone(), bytes));
            // Keep loaded snapshots up to NET_BYTES of weights (at least one):
            // a small model's whole timeline stays loaded, a VGG's a few snapshots.
            while self.nets.len() > 1 && self.nets.iter().map(|(_, n)| n.1).sum::<u64>() > NET_BYTES
            {
                self.nets.pop_lru();
            }
            return Ok((net, id));
        }
        Err(Error::Internal(anyhow::anyhow!(
            "model {model} epoch {epoch} kept changing while it was loaded; try again"
        )))
    }

    /// The forward trace of a stored image (cached).
    pub fn traced(
        &mut self,
        model: &ModelName,
        epoch: u32,
        image: &ContentId,
    ) -> Result<(Rc<Net>, Rc<Traced>)> {
        self.traced_by(model, epoch, image.to_string(), false, |e| {
            e.crop(model, image)
        })
    }

    /// The forward trace of an image file of the dataset (cached by its
    /// path: dataset files do not change under the index); `name` for errors.
    pub fn traced_file(
        &mut self,
        model: &ModelName,
        epoch: u32,
        path: &std::path::Path,
        name: &str,
    ) -> Result<(Rc<Net>, Rc<Traced>)> {
        let key = path.display().to_string();
        self.traced_by(model, epoch, key, true, |e| {
            let bytes = std::fs::read(path).map_err(|x| Error::NotFound(format!("{name}: {x}")))?;
            let img = preprocess::decode(&bytes).map_err(|x| bad(format!("{name}: {x}")))?;
            Ok(e.model(model)?.manifest.preprocess().crop(&img))
        })
    }

    fn traced_by(
        &mut self,
        model: &ModelName,
        epoch: u32,
        image: String,
        file: bool,
        crop: impl FnOnce(&Engine) -> Result<RgbImage>,
    ) -> Result<(Rc<Net>, Rc<Traced>)> {
        let (net, id) = self.net_id(model, epoch)?;
        let key = (id, image);
        fn cache(e: &mut Engine, file: bool) -> &mut TraceCache {
            if file {
                &mut e.file_traces
            } else {
                &mut e.traces
            }
        }
        if let Some(t) = cache(self, file).get(&key) {
            return Ok((net, t.clone()));
        }
        let pre = self.model(model)?.manifest.preprocess();
        let crop = crop(self)?;
        let x = pre.tensor(&crop).unsqueeze(0);
        let trace = net.trace(&x);
        self.forwards += 1;
        let t = Rc::new(Traced {
            crop,
            input: x,
            trace,
        });
        cache(self, file).put(key, t.clone());
        Ok((net, t))
    }

    /// The crop the model sees.
    pub fn crop(&self, model: &ModelName, image: &ContentId) -> Result<RgbImage> {
        let m = self.model(model)?;
        let bytes = self.ctx.image_bytes(image)?;
        let img = preprocess::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        Ok(m.manifest.preprocess().crop(&img))
    }

    /// Compute once per key and keep the last few (results several requests share).
    pub fn memo<T: 'static>(
        &mut self,
        key: String,
        f: impl FnOnce(&mut Engine) -> Result<T>,
    ) -> Result<Rc<T>> {
        if let Some(v) = self.memo.get(&key).cloned() {
            if let Ok(v) = v.downcast::<T>() {
                return Ok(v);
            }
        }
        let v = Rc::new(f(self)?);
        self.memo.put(key, v.clone());
        Ok(v)
    }

    /// A class index the model has, or the error naming the range.
    pub fn check_class(&self, model: &ModelName, class: Option<i64>) -> Result<()> {
        let n = self.model(model)?.manifest.classes.len() as i64;
        match class {
            Some(c) => crate::net::check::class(c, n).map_err(bad_input),
            None => Ok(()),
        }
    }
}

/// A result that is only a picture (PNG bytes); its JSON is `null`.
pub struct Picture(pub Vec<u8>);

impl Serialize for Picture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}
pub mod indexer;
