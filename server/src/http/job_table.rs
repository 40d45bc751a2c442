//! The table of HTTP jobs: the one job table of background work
//! ([`zfvis_core::progress::Jobs`]: order, state, counts, cancel flags,
//! errors) keeping each failure's answer, and the results on disk
//! (`DATA/jobs/`). The handlers that start, report and cancel jobs are
//! `jobs.rs`'s.

use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use zfvis_core::progress::{JobError, Jobs};

/// How long the first GET waits for a job that ends at once (bad
/// parameters, a small dataset) before answering 202: at most this, and
/// well within the request timeout.
pub(super) const FIRST_WAIT: Duration = Duration::from_millis(1000);

/// The jobs known since the server started, by request key.
#[derive(Clone)]
pub struct JobTable {
    jobs: Jobs<ApiError>,
    dir: PathBuf,
    pub(super) first_wait: Duration,
}

impl JobTable {
    /// Results kept under `data/jobs/`; requests bounded by `request_timeout`.
    pub fn new(data: &std::path::Path, request_timeout: Duration) -> JobTable {
        JobTable {
            jobs: Jobs::default(),
            dir: data.join("jobs"),
            first_wait: FIRST_WAIT.min(request_timeout / 4),
        }
    }

    /// The stored result's file.
    pub(super) fn file(&self, key: &str) -> PathBuf {
        let h = Sha256::digest(key.as_bytes());
        let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// The stored result of `key`; None when none is stored, an error when
    /// it cannot be read (never taken for "not computed yet").
    pub(super) fn load(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.file(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write the result whole or not at all (temporary file, then rename).
    pub(super) fn save(&self, key: &str, body: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.file(key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)
    }
}

impl std::ops::Deref for JobTable {
    type Target = Jobs<ApiError>;
    fn deref(&self) -> &Jobs<ApiError> {
        &self.jobs
    }
}

impl JobError for ApiError {
    fn report(&self) -> String {
        self.public_message()
    }
    fn unknown() -> ApiError {
        ApiError::internal("the job failed")
    }
}
