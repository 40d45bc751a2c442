//! Content-addressed image store: `<data>/images/<sha256 hex>`, written
//! atomically (temporary file, then rename), kept across restarts; the same
//! bytes are stored once.
//!
//! With a bound (`with_limit`, `zfvis serve --max-store-mb`), the least
//! recently used uploads are evicted once the store outgrows it, never an
//! image a stored set refers to; evicted ids are remembered in
//! `<data>/evicted.txt` so that their URLs can say they expired.

use crate::preprocess;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    max_bytes: Option<u64>,
    usage: Arc<Mutex<Usage>>,
    /// Images never evicted nor listed as recent uploads (the examples).
    pinned: Arc<Mutex<HashSet<String>>>,
    /// Counts the changes of the stored files (new images, evictions): the
    /// version of the store as a dataset.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// Ids of the images stored sets refer to (never evicted); read from
    /// the sets folder once at open, kept up to date by `put_set`.
    set_refs: Arc<Mutex<HashSet<String>>>,
}

/// Sizes and last use of the stored images, and the evicted ids.
#[derive(Debug, Default)]
struct Usage {
    clock: u64,
    items: HashMap<String, (u64, u64)>,
    total: u64,
    evicted: HashSet<String>,
}

impl Usage {
    fn touch(&mut self, id: &str) {
        self.clock += 1;
        if let Some(e) = self.items.get_mut(id) {
            e.1 = self.clock;
        }
    }
    fn add(&mut self, id: &str, size: u64) {
        self.clock += 1;
        if self
            .items
            .insert(id.to_string(), (size, self.clock))
            .is_none()
        {
            self.total += size;
        }
    }
}

/// Why storing failed: the disk is full (HTTP 507) or another I/O error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the server's storage is full; try again later")]
    Full,
    #[error("cannot store: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            StoreError::Full
        } else {
            StoreError::Io(e)
        }
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder: a
/// reader (or a crash) sees the whole file or none; on failure (a full
/// disk) the temporary file is removed.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = crate::files::name_of(path);
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let r = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_data()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
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

/// Where an image is: stored, evicted earlier, or never seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Stored(PathBuf),
    Expired,
    Unknown,
}

impl ImageStore {
    /// Open (or create) the store; removes temporary files a crash left.
    pub fn open(data: &Path) -> Result<ImageStore> {
        let dir = data.join("images");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files: Vec<(std::time::SystemTime, String, u64)> = vec![];
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            } else if valid_id(&name) {
                let t = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                files.push((t, name, meta.len()));
            }
        }
        files.sort();
        let mut usage = Usage::default();
        for (_, id, size) in files {
            usage.add(&id, size);
        }
        if let Ok(text) = std::fs::read_to_string(data.join("evicted.txt")) {
            usage.evicted = text
                .lines()
                .filter(|l| valid_id(l) && !usage.items.contains_key(*l))
                .map(String::from)
                .collect();
        }
        let sets = dir.with_file_name("sets");
        let mut set_refs = HashSet::new();
        if let Ok(rd) = std::fs::read_dir(&sets) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                } else if let Some(set) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| serde_json::from_str::<CorrSet>(&t).ok())
                {
                    set_refs.extend(set.images.into_iter().map(|i| i.id));
                }
            }
        }
        Ok(ImageStore {
            dir,
            max_bytes: None,
            usage: Arc::new(Mutex::new(usage)),
            pinned: Arc::default(),
            generation: Arc::default(),
            set_refs: Arc::new(Mutex::new(set_refs)),
        })
    }

    /// The folder of the stored images (`<data>/images`), a dataset folder too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bound the store to `max_bytes` (least recently used uploads go first).
    pub fn with_limit(mut self, max_bytes: Option<u64>) -> ImageStore {
        self.max_bytes = max_bytes;
        self.evict(None);
        self
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `bytes` and keep them: never evicted, not a recent upload.
    pub fn put_pinned(&self, bytes: &[u8]) -> Result<StoredImage, preprocess::ImageError> {
        let id = hex(&Sha256::digest(bytes));
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        self.put(bytes)
    }

    fn is_pinned(&self, id: &str) -> bool {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// How many times the stored files have changed since the store was opened.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes stored now.
    pub fn total_bytes(&self) -> u64 {
        self.usage().total
    }

    /// Validate (header and full decode) and store; returns the id.
    pub fn put(&self, bytes: &[u8]) -> Result<StoredImage, preprocess::ImageError> {
        let img = preprocess::decode(bytes)?;
        let id = hex(&Sha256::digest(bytes));
        let path = self.dir.join(&id);
        if !path.exists() {
            write_whole(&path, bytes).map_err(|e| match e {
                StoreError::Full => preprocess::ImageError::StoreFull,
                StoreError::Io(e) => preprocess::ImageError::Store(e.to_string()),
            })?;
            self.changed();
        }
        {
            let mut u = self.usage();
            u.add(&id, bytes.len() as u64);
            u.evicted.remove(&id);
        }
        self.evict(Some(&id));
        Ok(StoredImage {
            id,
            width: img.width(),
            height: img.height(),
        })
    }

    /// Evict least recently used images until the store fits its bound,
    /// sparing `keep` and every image a stored set refers to.
    fn evict(&self, keep: Option<&str>) {
        let Some(max) = self.max_bytes else { return };
        if self.usage().total <= max {
            return;
        }
        let protected = self.set_images();
        let mut u = self.usage();
        let mut order: Vec<(u64, String)> = u
            .items
            .iter()
            .filter(|(id, _)| {
                Some(id.as_str()) != keep && !protected.contains(*id) && !self.is_pinned(id)
            })
            .map(|(id, &(_, last))| (last, id.clone()))
            .collect();
        order.sort();
        let mut gone = vec![];
        for (_, id) in order {
            if u.total <= max {
                break;
            }
            if std::fs::remove_file(self.dir.join(&id)).is_ok() {
                if let Some((size, _)) = u.items.remove(&id) {
                    u.total -= size;
                }
                u.evicted.insert(id.clone());
                gone.push(id);
            }
        }
        drop(u);
        if !gone.is_empty() {
            self.changed();
            let log = self.dir.with_file_name("evicted.txt");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let _ = f.write_all(
                    gone.iter()
                        .map(|id| format!("{id}\n"))
                        .collect::<String>()
                        .as_bytes(),
                );
            }
        }
    }

    /// Ids of the images that stored sets refer to.
    fn set_images(&self) -> HashSet<String> {
        self.set_refs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where an image is (and a use of it, for the eviction order).
    pub fn lookup(&self, id: &str) -> Lookup {
        if !valid_id(id) {
            return Lookup::Unknown;
        }
        let p = self.dir.join(id);
        let mut u = self.usage();
        if p.is_file() {
            u.touch(id);
            Lookup::Stored(p)
        } else if u.evicted.contains(id) {
            Lookup::Expired
        } else {
            Lookup::Unknown
        }
    }

    pub fn path(&self, id: &str) -> Option<PathBuf> {
        match self.lookup(id) {
            Lookup::Stored(p) => Some(p),
            _ => None,
        }
    }

    pub fn get(&self, id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(id)?).ok()
    }

    /// How many uploads are stored (the examples not counted); from memory.
    pub fn uploads(&self) -> usize {
        // The usage lock is taken before the pinned one everywhere (evict).
        let u = self.usage();
        let pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        u.items.keys().filter(|id| !pinned.contains(*id)).count()
    }

    /// The most recently stored ids, newest first (an image removed while
    /// the folder is listed is left out).
    pub fn recent(&self, n: usize) -> Result<Vec<String>> {
        let mut items: Vec<(std::time::SystemTime, String)> = vec![];
        let rd = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_id(&name) || self.is_pinned(&name) {
                continue;
            }
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                items.push((t, name));
            }
        }
        items.sort_by(|a, b| b.cmp(a));
        Ok(items.into_iter().take(n).map(|(_, id)| id).collect())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a set was not stored: its content (400) or the storage (507/500).
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    pub fn put_set(&self, set: &CorrSet) -> Result<String, SetError> {
        let bad = |m: String| Err(SetError::Invalid(m));
        if set.images.len() < 2 || set.images.len() > 10 {
            return bad(format!(
                "a set has 2 to 10 images, got {}",
                set.images.len()
            ));
        }
        for im in &set.images {
            match self.lookup(&im.id) {
                Lookup::Stored(_) => {}
                Lookup::Expired => {
                    return bad(format!("image {:?} expired: upload it again", im.id))
                }
                Lookup::Unknown => return bad(format!("unknown image {:?}", im.id)),
            }
            if im.parts.is_empty() {
                return bad(format!(
                    "image {} has no named parts",
                    &im.id[..12.min(im.id.len())]
                ));
            }
            for (name, p) in &im.parts {
                if !valid_part(name) || name == "random" {
                    return bad(format!(
                        "part name {name:?} must be 1-32 letters, digits, _ or - (and not \"random\")"
                    ));
                }
                if !p.iter().all(|v| v.is_finite() && *v >= 0.0 && *v < 1e6) {
                    return bad(format!(
                        "part {name:?}: coordinates must be non-negative pixel positions"
                    ));
                }
            }
        }
        // Protect the (stored) images from eviction, then check that none
        // went in between.
        self.set_refs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(set.images.iter().map(|i| i.id.clone()));
        if let Some(im) = set
            .images
            .iter()
            .find(|im| !matches!(self.lookup(&im.id), Lookup::Stored(_)))
        {
            return bad(format!("image {:?} expired: upload it again", im.id));
        }
        let text = serde_json::to_string(set).map_err(|e| SetError::Invalid(e.to_string()))?;
        let id = hex(&Sha256::digest(text.as_bytes()));
        let dir = self.sets_dir();
        std::fs::create_dir_all(&dir).map_err(StoreError::from)?;
        let path = dir.join(format!("{id}.json"));
        if !path.exists() {
            write_whole(&path, text.as_bytes())?;
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
