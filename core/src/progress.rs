//! The one progress type of background work (dataset index builds,
//! comparisons) and the table of it that threads update and handlers read.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a background job stands: the one progress type of the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started (nothing asked for it yet).
    Idle,
    /// Waiting its turn.
    Queued,
    Running,
    Done,
    Failed,
    /// Stopped on request (DELETE on its progress URL, or the server stopping).
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub state: State,
    pub done: usize,
    pub total: usize,
    /// Jobs ahead of this one (0 once it runs); background jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Seconds left, estimated from the rate so far; background jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job's progress report, (done, total): answers `Err(Cancelled)` once the
/// job has been cancelled, which the job passes up with `?`.
pub type Report<'a> = dyn FnMut(usize, usize) -> anyhow::Result<()> + 'a;

/// What a job's progress callback answers when the job was cancelled: the
/// job returns it as its error at its next check (between batches).
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl Progress {
    pub fn new(state: State, done: usize, total: usize) -> Progress {
        Progress {
            state,
            done,
            total,
            position: None,
            eta_s: None,
            error: None,
        }
    }

    pub fn failed(error: String) -> Progress {
        Progress {
            error: Some(error),
            ..Progress::new(State::Failed, 0, 0)
        }
    }
}

/// The progress of background jobs by key, shared between the threads that
/// run them and the handlers that report them.
#[derive(Clone, Default)]
pub struct Jobs(Arc<Mutex<HashMap<String, Progress>>>);

impl Jobs {
    pub fn get(&self, key: &str) -> Option<Progress> {
        self.0.lock().ok()?.get(key).cloned()
    }

    pub fn set(&self, key: &str, p: Progress) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), p);
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }

    /// Insert `p` unless the key is known; answers the entry either way.
    pub fn get_or_insert(&self, key: &str, p: impl FnOnce() -> Progress) -> (Progress, bool) {
        let Ok(mut m) = self.0.lock() else {
            return (Progress::failed("job table poisoned".into()), false);
        };
        if let Some(v) = m.get(key) {
            return (v.clone(), false);
        }
        let v = p();
        m.insert(key.to_string(), v.clone());
        (v, true)
    }
}
