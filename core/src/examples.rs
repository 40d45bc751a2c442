//! Example photos bundled with zfvis (`examples/examples.json`: file, name,
//! source, licence), stored in the image store at start so that their ids
//! work like upload ids; they are never evicted nor listed as uploads.

use crate::store::ImageStore;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    /// Content id in the store (set when stored).
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub source: String,
    pub licence: String,
    /// File name inside the examples folder.
    #[serde(skip_serializing)]
    pub file: String,
}

/// Read `dir/examples.json` and store every example (a missing folder is no
/// examples; an unreadable file is skipped with a warning).
pub fn load(dir: &Path, store: &ImageStore) -> Result<Vec<Example>> {
    let list = dir.join("examples.json");
    if !list.exists() {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(&list)
        .with_context(|| format!("cannot read {}", list.display()))?;
    let mut examples: Vec<Example> =
        serde_json::from_str(&text).with_context(|| format!("{}", list.display()))?;
    examples.retain_mut(|e| {
        let stored = crate::index::resolve(dir, &e.file)
            .and_then(|p| Ok(std::fs::read(p)?))
            .and_then(|b| Ok(store.put_pinned(&b)?));
        match stored {
            Ok(s) => {
                e.id = s.id;
                true
            }
            Err(err) => {
                eprintln!("warning: example {}: {err:#}", e.file);
                false
            }
        }
    });
    Ok(examples)
}
