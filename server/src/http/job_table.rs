//! The table of HTTP jobs: their order, state, counts, cancel flags and
//! errors in memory, their results on disk (`DATA/jobs/`). The handlers
//! that start, report and cancel jobs are `jobs.rs`'s.

use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zfvis_core::progress::{Progress, State as JobState};

/// How long the first GET waits for a job that ends at once (bad
/// parameters, a small dataset) before answering 202: at most this, and
/// well within the request timeout.
pub(super) const FIRST_WAIT: Duration = Duration::from_millis(1000);

pub(super) struct Entry {
    /// Order of arrival (the queue's order).
    pub(super) seq: u64,
    pub(super) state: JobState,
    pub(super) done: usize,
    pub(super) total: usize,
    pub(super) started: Option<Instant>,
    pub(super) cancel: Arc<AtomicBool>,
    /// Why it failed: the answer the next GET gives (then it may run again).
    pub(super) error: Option<ApiError>,
}

/// The jobs known since the server started, by request key.
#[derive(Clone)]
pub struct JobTable {
    entries: Arc<Mutex<(HashMap<String, Entry>, u64)>>,
    dir: PathBuf,
    pub(super) first_wait: Duration,
}

impl JobTable {
    /// Results kept under `data/jobs/`; requests bounded by `request_timeout`.
    pub fn new(data: &std::path::Path, request_timeout: Duration) -> JobTable {
        JobTable {
            entries: Arc::default(),
            dir: data.join("jobs"),
            first_wait: FIRST_WAIT.min(request_timeout / 4),
        }
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, &mut u64) -> T) -> T {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (m, seq) = &mut *g;
        f(m, seq)
    }

    /// The stored result's file.
    pub(super) fn file(&self, key: &str) -> PathBuf {
        let h = Sha256::digest(key.as_bytes());
        let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    pub(super) fn load(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.file(key)).ok()
    }

    /// Write the result whole or not at all (temporary file, then rename).
    pub(super) fn save(&self, key: &str, body: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.file(key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)
    }

    /// Join the queued or running job of `key`, or enqueue a new one (true).
    /// A failed job's error is answered once, then forgotten.
    pub(super) fn start_or_join(&self, key: &str) -> Result<bool, ApiError> {
        self.with(|m, seq| {
            if let Some(e) = m.get(key) {
                match e.state {
                    JobState::Queued | JobState::Running => return Ok(false),
                    JobState::Failed => {
                        let err = e.error.clone();
                        m.remove(key);
                        return Err(err.unwrap_or_else(|| ApiError::internal("the job failed")));
                    }
                    _ => {}
                }
            }
            *seq += 1;
            m.insert(
                key.to_string(),
                Entry {
                    seq: *seq,
                    state: JobState::Queued,
                    done: 0,
                    total: 0,
                    started: None,
                    cancel: Arc::default(),
                    error: None,
                },
            );
            Ok(true)
        })
    }

    pub(super) fn cancel_flag(&self, key: &str) -> Arc<AtomicBool> {
        self.with(|m, _| m.get(key).map(|e| e.cancel.clone()))
            .unwrap_or_default()
    }

    pub(super) fn update(&self, key: &str, f: impl FnOnce(&mut Entry)) {
        self.with(|m, _| m.get_mut(key).map(f));
    }

    /// Where `key` stands, or None when nothing is known of it.
    pub fn progress(&self, key: &str) -> Option<Progress> {
        self.with(|m, _| {
            let e = m.get(key)?;
            let mut p = Progress::new(e.state.clone(), e.done, e.total);
            p.error = e.error.as_ref().map(ApiError::public_message);
            match e.state {
                JobState::Queued => {
                    p.position = Some(
                        m.values()
                            .filter(|o| {
                                o.state == JobState::Running
                                    || (o.state == JobState::Queued && o.seq < e.seq)
                            })
                            .count(),
                    );
                }
                JobState::Running => {
                    p.position = Some(0);
                    if let Some(t) = e.started.filter(|_| e.done > 0 && e.total > e.done) {
                        let s = t.elapsed().as_secs_f64();
                        p.eta_s = Some((s * (e.total - e.done) as f64 / e.done as f64).round());
                    }
                }
                _ => {}
            }
            Some(p)
        })
    }

    /// Ask `key`'s job to stop; false when it is not queued or running.
    pub fn cancel(&self, key: &str) -> bool {
        self.with(|m, _| match m.get_mut(key) {
            Some(e) if matches!(e.state, JobState::Queued | JobState::Running) => {
                e.cancel.store(true, Ordering::SeqCst);
                if e.state == JobState::Queued {
                    e.state = JobState::Cancelled;
                }
                true
            }
            _ => false,
        })
    }

    /// Ask every job to stop (the server is stopping).
    pub fn cancel_all(&self) {
        self.with(|m, _| {
            for e in m.values() {
                e.cancel.store(true, Ordering::SeqCst);
            }
        })
    }
}
