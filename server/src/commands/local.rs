//! What the commands share beyond arguments: the engine over one model
//! folder (the server's analyses, with the same request types), scratch
//! folders, progress bars.

use super::args::ModelArgs;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::engine::{self, Engine};
use zfvis_core::params::{ContentId, ModelName};
use zfvis_core::store::ImageStore;

/// A scratch folder (`models/` inside it) for a command's engine: model
/// links and a temporary image store; removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Result<Scratch> {
        let tmp = std::env::temp_dir().join(format!(
            "zfvis-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(tmp.join("models"))
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Scratch(tmp))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The engine over one model folder, with the images named on the command
/// line in a temporary store: the CLI runs the same analyses, with the same
/// request types, as the server.
pub struct Local {
    pub engine: Engine,
    pub model: ModelName,
    pub epoch: u32,
    pub dir: ModelDir,
    _tmp: Scratch,
    /// Stored id -> the file name it came from.
    pub labels: std::collections::HashMap<String, String>,
}

impl Local {
    pub fn open(m: &ModelArgs) -> Result<Local> {
        let dir = ModelDir::open(&m.model)?;
        let epoch = dir.manifest.snapshot(m.snapshot)?.epoch;
        let scratch = Scratch::new("cli")?;
        let tmp = scratch.0.clone();
        // The folder, whatever its name, is the model "model" of the engine.
        let target = std::fs::canonicalize(&m.model)?;
        std::os::unix::fs::symlink(&target, tmp.join("models/model"))?;
        let ctx = engine::Context {
            models: tmp.join("models"),
            store: ImageStore::open(&tmp)?,
            device: m.device.get()?,
            indexer: None,
            jobs: Default::default(),
        };
        Ok(Local {
            engine: Engine::new(ctx, 4),
            model: ModelName::try_from("model".to_string())?,
            epoch,
            dir,
            _tmp: scratch,
            labels: Default::default(),
        })
    }

    /// What every request about one image file names: this model, its
    /// snapshot and the stored image. Commands build their analysis's
    /// request struct from it and their flags.
    pub fn subject(&mut self, image: &Path) -> Result<(ModelName, u32, ContentId)> {
        Ok((self.model.clone(), self.epoch, self.image(image)?))
    }

    /// Store an image file (validated as an upload would be).
    pub fn image(&mut self, path: &Path) -> Result<ContentId> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let s = self
            .engine
            .ctx
            .store
            .put(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(ContentId::try_from(s.id)?)
    }

    /// The name of class `k` of this model.
    pub fn class_name(&self, k: i64) -> &str {
        self.dir
            .manifest
            .classes
            .get(k as usize)
            .map_or("?", |c| c.name.as_str())
    }
}

/// A progress bar on stderr drawn with `template` (indicatif's syntax).
pub fn bar(template: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// A progress bar on stderr whose message names the current stage.
pub fn stage_bar() -> indicatif::ProgressBar {
    bar("{msg:>22} {bar:40} {pos}/{len} ETA {eta}")
}

/// A stage bar's progress callback: (stage, done, total).
pub fn staged(pb: &indicatif::ProgressBar) -> impl Fn(&str, usize, usize) -> Result<()> + '_ {
    move |stage, done, total| {
        pb.set_message(stage.to_string());
        advance(pb, done, total);
        Ok(())
    }
}

/// Report `done` of `total` on a bar.
pub fn advance(pb: &indicatif::ProgressBar, done: usize, total: usize) {
    pb.set_length(total as u64);
    pb.set_position(done as u64);
}

/// A file that ships with zfvis (`examples/examples.json`, `static/app.js`,
/// `tests/bench_torch.py`), found at run time: in the working directory,
/// beside the binary, in the checkout the binary was built in
/// (`target/release/../..`) or in `../share/zfvis`; the working directory's
/// path when none has it (the error then names it).
pub fn resource(rel: &str) -> PathBuf {
    let mut places = vec![PathBuf::new()];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        places.push(dir.clone());
        places.push(dir.join("../.."));
        places.push(dir.join("../share/zfvis"));
    }
    places
        .iter()
        .map(|p| p.join(rel))
        .find(|p| p.exists())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .unwrap_or_else(|| PathBuf::from(rel))
}

/// The folder of a file that ships with zfvis (see `resource`).
pub fn resource_dir(rel: &str) -> PathBuf {
    let file = resource(rel);
    file.parent().map(Path::to_path_buf).unwrap_or(file)
}
