//! Content-addressed image store: `<data>/images/<sha256 hex>`, written
//! atomically, kept across restarts; the same bytes are stored once.

use crate::preprocess;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredImage {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// A valid image id: exactly 64 lowercase hex digits (so it can never name
/// anything outside the store).
pub fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ImageStore {
    pub fn open(data: &Path) -> Result<ImageStore> {
        let dir = data.join("images");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(ImageStore { dir })
    }

    /// Validate (header and full decode) and store; returns the id.
    pub fn put(&self, bytes: &[u8]) -> Result<StoredImage, preprocess::ImageError> {
        let img = preprocess::decode(bytes)?;
        let id = hex(&Sha256::digest(bytes));
        let path = self.dir.join(&id);
        if !path.exists() {
            let tmp = self.dir.join(format!(".{id}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| preprocess::ImageError::Decode(format!("cannot store image: {e}")))?;
        }
        Ok(StoredImage {
            id,
            width: img.width(),
            height: img.height(),
        })
    }

    pub fn path(&self, id: &str) -> Option<PathBuf> {
        if !valid_id(id) {
            return None;
        }
        let p = self.dir.join(id);
        p.is_file().then_some(p)
    }

    pub fn get(&self, id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(id)?).ok()
    }

    /// The most recently stored ids, newest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        let mut items: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let t = e.metadata().ok()?.modified().ok()?;
                        valid_id(&name).then_some((t, name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        items.sort_by(|a, b| b.cmp(a));
        items.into_iter().take(n).map(|(_, id)| id).collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A correspondence set: images with named points in original pixels.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CorrSet {
    pub images: Vec<CorrSetImage>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CorrSetImage {
    pub id: String,
    pub parts: std::collections::BTreeMap<String, [f64; 2]>,
}

fn valid_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ImageStore {
    fn sets_dir(&self) -> PathBuf {
        self.dir.with_file_name("sets")
    }

    /// Validate and store a set (content-addressed, canonical JSON); returns its id.
    pub fn put_set(&self, set: &CorrSet) -> Result<String, String> {
        if set.images.len() < 2 || set.images.len() > 10 {
            return Err(format!(
                "a set has 2 to 10 images, got {}",
                set.images.len()
            ));
        }
        for im in &set.images {
            if self.path(&im.id).is_none() {
                return Err(format!("unknown image {:?}", im.id));
            }
            if im.parts.is_empty() {
                return Err(format!(
                    "image {} has no named parts",
                    &im.id[..12.min(im.id.len())]
                ));
            }
            for (name, p) in &im.parts {
                if !valid_part(name) || name == "random" {
                    return Err(format!("part name {name:?} must be 1-32 letters, digits, _ or - (and not \"random\")"));
                }
                if !p.iter().all(|v| v.is_finite() && *v >= 0.0 && *v < 1e6) {
                    return Err(format!(
                        "part {name:?}: coordinates must be non-negative pixel positions"
                    ));
                }
            }
        }
        let text = serde_json::to_string(set).map_err(|e| e.to_string())?;
        let id = hex(&Sha256::digest(text.as_bytes()));
        let dir = self.sets_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot store the set: {e}"))?;
        let path = dir.join(format!("{id}.json"));
        if !path.exists() {
            let tmp = dir.join(format!(".{id}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &text)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("cannot store the set: {e}"))?;
        }
        Ok(id)
    }

    pub fn get_set(&self, id: &str) -> Option<CorrSet> {
        if !valid_id(id) {
            return None;
        }
        serde_json::from_str(
            &std::fs::read_to_string(self.sets_dir().join(format!("{id}.json"))).ok()?,
        )
        .ok()
    }
}
