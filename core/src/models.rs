//! The models folder: model folders by name, and what the pages list of them.

use crate::checkpoint::ModelDir;
use crate::error::{bad, Error, Result};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize, Clone)]
pub struct LayerInfo {
    pub layer: usize,
    pub maps: i64,
    pub size: i64,
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
    pub layers: Vec<LayerInfo>,
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
    Ok(ModelDir::open(&dir)?)
}

/// Every loadable model under `models_dir`, by name.
pub fn list_models(models_dir: &Path) -> Vec<ModelInfo> {
    let mut names: Vec<String> = std::fs::read_dir(models_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|n| open_model(models_dir, n).ok())
        .filter_map(|m| info(&m).ok())
        .collect()
}

pub fn model_info(models_dir: &Path, name: &str) -> Result<ModelInfo> {
    info(&open_model(models_dir, name)?)
}

fn info(m: &ModelDir) -> Result<ModelInfo> {
    let spec = m.manifest.spec()?;
    let sizes = spec.sizes();
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
        layers: spec
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| LayerInfo {
                layer: i + 1,
                maps: b.out_c,
                size: sizes[i].1,
            })
            .collect(),
    })
}
