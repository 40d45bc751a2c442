//! The models folder: model folders by name, and what the pages list of them.

use crate::checkpoint::ModelDir;
use crate::error::{bad, Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// One unit (see [`crate::net::Unit`]): conv layers 1..N, then named units.
#[derive(Serialize, Clone)]
pub struct LayerInfo {
    /// 1..U, the number URLs and CLI flags use (1..N: the conv layers).
    pub layer: usize,
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub conv: Option<usize>,
    /// The checkpoint's name (`conv1`, `features.0`, `layer3.1`), or the
    /// graph's full output name.
    pub name: String,
    /// The name a user knows (see [`crate::net::Unit::short`]).
    pub short: String,
    /// The block it belongs to (the longest named unit its name starts with), or "".
    pub block: String,
    pub maps: i64,
    pub size: i64,
    /// Side of the receptive field of its central position, in input pixels.
    pub field: i64,
    /// Its place in the network (the node whose output it is): the pages
    /// list units by depth with it.
    pub depth: usize,
    /// It has spatial maps (a CAM method can take it).
    pub spatial: bool,
}

#[derive(Serialize, Clone)]
pub struct SnapshotInfo {
    pub epoch: u32,
    pub metrics: crate::checkpoint::Metrics,
}

#[derive(Serialize, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub width: f64,
    pub input_size: i64,
    pub classes: usize,
    /// Class names by index.
    pub class_names: Vec<String>,
    pub snapshots: Vec<SnapshotInfo>,
    /// Conv layers 1..N.
    pub layers: Vec<LayerInfo>,
    /// The unit standing for "the last conv layer" in the views (conv5 for
    /// ZFNet; a graph's last maps before its global pooling).
    pub last_unit: usize,
    /// Hidden fc layers' names (fc6, fc7 for ZFNet).
    pub hidden: Vec<String>,
    /// zfvis, torchvision, caffe or custom.
    pub preprocess: String,
    /// The pipeline in words ("squash to 224×224 (bicubic), RGB, mean 0 std 1").
    pub pipeline: String,
    /// How the preprocessing was chosen when the import guessed it from the
    /// file (a Caffe zoo input name), or null.
    pub preprocess_note: Option<String>,
    /// What a projection is on a network without a ReLU-family activation
    /// (a transformer), or null.
    pub projection_note: Option<String>,
    /// The network has self-attention (attention rollout applies).
    pub attention: bool,
}

/// Open the model folder `name` directly under `models_dir`.
pub fn open_model(models_dir: &Path, name: &str) -> Result<ModelDir> {
    if !crate::params::valid_model_name(name) {
        return Err(bad(format!("malformed model name {name:?}")));
    }
    let dir = models_dir.join(name);
    if !dir.join("manifest.json").is_file() {
        return Err(Error::NotFound(format!("unknown model {name:?}")));
    }
    loaded(&dir)
}

/// Model folders as last parsed, by folder, with their manifest's stamp.
type Loaded = HashMap<PathBuf, (crate::identity::Stamp, ModelDir)>;

/// The model folder `dir`, its manifest parsed and checked once per change
/// of the file (every request names its model; none re-reads it).
fn loaded(dir: &Path) -> Result<ModelDir> {
    static LOADED: OnceLock<Mutex<Loaded>> = OnceLock::new();
    let stamp = crate::identity::stamp(&dir.join("manifest.json")).map_err(Error::Internal)?;
    let table = LOADED.get_or_init(Default::default);
    let lock = || table.lock().unwrap_or_else(|x| x.into_inner());
    if let Some((s, m)) = lock().get(dir) {
        if *s == stamp {
            return Ok(m.clone());
        }
    }
    let m = ModelDir::open(dir)?;
    let mut t = lock();
    if t.len() >= 256 {
        t.clear();
    }
    t.insert(dir.to_path_buf(), (stamp, m.clone()));
    Ok(m)
}

/// A model folder that does not load, and why (one line, naming no path
/// above the folder).
#[derive(Serialize, Clone, Debug)]
pub struct Broken {
    pub name: String,
    pub error: String,
}

/// Every folder under the models folder: its model, or its error.
#[derive(Serialize, Clone, Default)]
pub struct Listing {
    pub models: Vec<ModelInfo>,
    pub broken: Vec<Broken>,
}

/// The folders directly under `models_dir` (hidden ones, such as a copy
/// being written, left out), by name.
fn folders(models_dir: &Path) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(models_dir).map_err(|e| {
        Error::NotFound(format!(
            "cannot read the models folder {}: {e}",
            models_dir.display()
        ))
    })?;
    let mut names = vec![];
    for e in rd {
        let e = e.map_err(|e| Error::Internal(e.into()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Every model folder under `models_dir`, by name: its model, or its error.
pub fn list_models(models_dir: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    for name in folders(models_dir)? {
        if !models_dir.join(&name).join("manifest.json").is_file() {
            out.broken.push(Broken {
                error: "no manifest.json in it".into(),
                name,
            });
            continue;
        }
        match open_model(models_dir, &name).and_then(|m| info(&m)) {
            Ok(m) => out.models.push(m),
            Err(e) => out.broken.push(Broken {
                error: one_line(&e.to_string(), models_dir),
                name,
            }),
        }
    }
    Ok(out)
}

/// An error as one line, paths shown from the model folder down.
fn one_line(msg: &str, models_dir: &Path) -> String {
    let mut s = msg.replace('\n', "; ");
    for base in [
        Some(models_dir.to_path_buf()),
        models_dir.canonicalize().ok(),
    ]
    .into_iter()
    .flatten()
    {
        s = s.replace(&format!("{}/", base.display()), "");
    }
    s
}

/// What `zfvis serve` checks at start: the models folder exists and holds
/// at least one model folder (a folder with a `manifest.json`).
pub fn check_models_dir(models_dir: &Path) -> Result<()> {
    if !models_dir.is_dir() {
        return Err(Error::NotFound(format!(
            "--models {}: no such folder",
            models_dir.display()
        )));
    }
    let any = folders(models_dir)?
        .iter()
        .any(|n| models_dir.join(n).join("manifest.json").is_file());
    if !any {
        return Err(bad(format!(
            "--models {}: no model folder in it (a folder with a manifest.json); \
             import or train one (README, \"Your own model\")",
            models_dir.display()
        )));
    }
    Ok(())
}

pub fn model_info(models_dir: &Path, name: &str) -> Result<ModelInfo> {
    info(&open_model(models_dir, name)?)
}

fn info(m: &ModelDir) -> Result<ModelInfo> {
    let spec = m.manifest.spec()?;
    let relu = spec.ops().any(|l| l.is_relu());
    let attention = spec
        .ops()
        .any(|l| matches!(l, crate::net::Layer::Attention { .. }));
    for s in &m.manifest.snapshots {
        if !m.dir.join(&s.file).is_file() {
            return Err(Error::NotFound(format!(
                "{}: the weights of epoch {} ({}) are missing",
                m.name(),
                s.epoch,
                s.file
            )));
        }
    }
    Ok(ModelInfo {
        name: m.name(),
        architecture: m.manifest.architecture.clone(),
        width: m.manifest.width,
        input_size: m.manifest.input_size,
        classes: m.manifest.classes.len(),
        class_names: m.manifest.classes.iter().map(|c| c.name.clone()).collect(),
        snapshots: m
            .manifest
            .snapshots
            .iter()
            .map(|s| SnapshotInfo {
                epoch: s.epoch,
                metrics: s.metrics.clone(),
            })
            .collect(),
        layers: layer_infos(&spec),
        last_unit: spec.suggested_unit(&spec.unit_list()),
        hidden: spec.hidden_fcs().into_iter().map(|h| h.1).collect(),
        preprocess: m.manifest.preprocess_name().to_string(),
        pipeline: m.manifest.preprocess().describe(),
        preprocess_note: m
            .manifest
            .training
            .as_ref()
            .and_then(|t| t["preprocess_note"].as_str())
            .map(String::from),
        attention,
        projection_note: (!relu).then(|| {
            "No ReLU in this network: the projection is the gradient of the map's strongest \
             position (the deconvnet and guided backprop have no ReLU to apply their rule at). \
             The methods view has the gradient family, Grad-CAM and, for transformers, \
             attention rollout"
                .to_string()
        }),
    })
}

/// The units of `spec` as the pages list them.
pub fn layer_infos(spec: &crate::net::NetSpec) -> Vec<LayerInfo> {
    let units = spec.unit_list();
    let shapes = spec.valid_shapes();
    let blocks: Vec<&str> = spec.named().map(|(_, s)| s).collect();
    units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let block = blocks
                .iter()
                .filter(|b| u.name == **b || u.name.starts_with(&format!("{b}.")))
                .max_by_key(|b| b.len())
                .map_or(String::new(), |b| b.to_string());
            let (y0, _, y1, _) = spec.field_of_node(u.node, u.side / 2, u.side / 2);
            LayerInfo {
                layer: i + 1,
                conv: u.layer,
                name: u.name.clone(),
                short: u.short.clone(),
                block,
                maps: u.c,
                size: u.side,
                field: y1 - y0 + 1,
                depth: u.node,
                spatial: matches!(shapes.get(u.node), Some(crate::net::Shape::Maps { .. })),
            }
        })
        .collect()
}
