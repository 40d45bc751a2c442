//! A model's content identity. URLs name a model folder and an epoch; what
//! answers them is the folder's content now. A snapshot is known by the
//! digest of its manifest (less the snapshot list and the training notes)
//! and its weights file; a model by the digest of its whole manifest and
//! every snapshot's weights. Every cache key, ETag, stored job result,
//! loaded network and dataset index uses these digests, so a folder
//! replaced under a running server answers with its new network at once.
//!
//! A weights file is hashed once per change: its digest is kept by path
//! with the file's modification time, length and inode (a save writes a new
//! file and renames it over the old one).

use crate::checkpoint::ModelDir;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// A file's identity on disk: modified time, length, inode.
pub type Stamp = (std::time::SystemTime, u64, u64);

pub fn stamp(path: &Path) -> Result<Stamp> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((
        meta.modified()
            .with_context(|| format!("{}: no modification time", path.display()))?,
        meta.len(),
        std::os::unix::fs::MetadataExt::ino(&meta),
    ))
}

/// Digests of files kept (weights files of the models served).
const FILES: usize = 1024;

/// The SHA-256 of a file's bytes (hex), computed once per change of the file.
pub fn file_digest(path: &Path) -> Result<String> {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, (Stamp, String)>>> = OnceLock::new();
    let table = KNOWN.get_or_init(Default::default);
    let lock = || table.lock().unwrap_or_else(|x| x.into_inner());
    let before = stamp(path)?;
    if let Some((s, d)) = lock().get(path) {
        if *s == before {
            return Ok(d.clone());
        }
    }
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let d = crate::store::hex(&h.finalize());
    // A file replaced while it was read is hashed again by the next call.
    if stamp(path)? == before {
        let mut t = lock();
        if t.len() >= FILES {
            t.clear();
        }
        t.insert(path.to_path_buf(), (before, d.clone()));
    }
    Ok(d)
}

/// The first 16 bytes of the SHA-256 of `parts`, each length-prefixed (hex).
fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    crate::store::hex(&h.finalize()[..16])
}

/// What of the manifest makes one snapshot's answers: everything but the
/// snapshot list and the training notes (new snapshots or metrics do not
/// change what an existing one computes).
fn network_part(m: &ModelDir) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(&m.manifest)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("snapshots");
        o.remove("training");
    }
    Ok(serde_json::to_vec(&v)?)
}

/// The identity of snapshot `epoch` of the model folder `m` (32 hex digits).
pub fn snapshot(m: &ModelDir, epoch: u32) -> Result<String> {
    let weights = file_digest(&m.snapshot_path(Some(epoch))?)?;
    Ok(digest(&[&network_part(m)?, weights.as_bytes()]))
}

/// The identity of the whole model folder `m`: its manifest as parsed and
/// every snapshot's weights (32 hex digits).
pub fn model(m: &ModelDir) -> Result<String> {
    let manifest = serde_json::to_vec(&m.manifest)?;
    let mut parts = vec![manifest];
    for s in &m.manifest.snapshots {
        parts.push(file_digest(&m.dir.join(&s.file))?.into_bytes());
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    Ok(digest(&refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_gets_a_new_digest_and_an_unchanged_one_keeps_it() {
        let dir = std::env::temp_dir().join(format!("zfvis-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("w.bin");
        std::fs::write(&p, b"abc").unwrap();
        let a = file_digest(&p).unwrap();
        // Independent: sha256("abc").
        assert_eq!(
            a,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(file_digest(&p).unwrap(), a);
        let tmp = dir.join("w.tmp");
        std::fs::write(&tmp, b"abd").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_ne!(file_digest(&p).unwrap(), a);
        assert!(file_digest(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"ab", b"c"]).len(), 32);
    }
}
