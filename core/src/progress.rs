//! The one progress type of background work and the one job table (dataset
//! index builds, the HTTP jobs) that threads update and handlers read.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// What a running job has so far (a picture's data URL), if it shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
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
            preview: None,
        }
    }
}

/// What a job's failure says in its progress report.
pub trait JobError: Clone + Send + 'static {
    fn report(&self) -> String;
    /// The error of a job that failed without saying why.
    fn unknown() -> Self;
}

impl JobError for String {
    fn report(&self) -> String {
        self.clone()
    }
    fn unknown() -> String {
        "the job failed".into()
    }
}

/// One job of a [`Jobs`] table.
pub struct Entry<E> {
    /// Order of arrival (the queue's order).
    pub seq: u64,
    pub state: State,
    pub done: usize,
    pub total: usize,
    pub started: Option<Instant>,
    pub cancel: Arc<AtomicBool>,
    /// Why it failed.
    pub error: Option<E>,
    /// The picture it has so far ([`Progress::preview`]).
    pub preview: Option<String>,
}

impl<E> Entry<E> {
    fn new(seq: u64, state: State) -> Entry<E> {
        Entry {
            seq,
            state,
            done: 0,
            total: 0,
            started: None,
            cancel: Arc::default(),
            error: None,
            preview: None,
        }
    }
}

/// The one job table of background work (dataset index builds, the HTTP
/// jobs: comparisons, feature analyses, methods, sanity checks): jobs by
/// key in order of arrival, their state and counts, queue positions and
/// estimates, cancel flags and errors; shared between the threads that run
/// them and the handlers that report them. `E` is what a failure keeps
/// (a message; the HTTP jobs keep their answer).
pub struct Jobs<E = String>(Arc<Mutex<Table<E>>>);

/// The entries by key, and the last sequence number given out.
type Table<E> = (HashMap<String, Entry<E>>, u64);

impl<E> Clone for Jobs<E> {
    fn clone(&self) -> Self {
        Jobs(self.0.clone())
    }
}

impl<E> Default for Jobs<E> {
    fn default() -> Self {
        Jobs(Arc::default())
    }
}

impl<E: JobError> Jobs<E> {
    /// `f` on the table and the last sequence number given out.
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry<E>>, &mut u64) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (m, seq) = &mut *g;
        f(m, seq)
    }

    /// Enter `key` in `state` (queued, or done when its result is already
    /// there) unless it is known; true when it was entered.
    pub fn insert_new(&self, key: &str, state: impl FnOnce() -> State) -> bool {
        self.with(|m, seq| {
            if m.contains_key(key) {
                return false;
            }
            *seq += 1;
            m.insert(key.to_string(), Entry::new(*seq, state()));
            true
        })
    }

    /// Queue `key` again (a fresh entry at the end of the queue).
    pub fn requeue(&self, key: &str) {
        self.with(|m, seq| {
            *seq += 1;
            m.insert(key.to_string(), Entry::new(*seq, State::Queued));
        })
    }

    /// Join the queued or running job of `key`, or enqueue a new one (true).
    /// A failed job's error is answered once, then forgotten.
    pub fn start_or_join(&self, key: &str) -> Result<bool, E> {
        self.with(|m, seq| {
            if let Some(e) = m.get(key) {
                match e.state {
                    State::Queued | State::Running => return Ok(false),
                    State::Failed => {
                        let error = m.remove(key).and_then(|e| e.error);
                        return Err(error.unwrap_or_else(E::unknown));
                    }
                    _ => {}
                }
            }
            *seq += 1;
            m.insert(key.to_string(), Entry::new(*seq, State::Queued));
            Ok(true)
        })
    }

    pub fn cancel_flag(&self, key: &str) -> Arc<AtomicBool> {
        self.with(|m, _| m.get(key).map(|e| e.cancel.clone()))
            .unwrap_or_default()
    }

    pub fn update(&self, key: &str, f: impl FnOnce(&mut Entry<E>)) {
        self.with(|m, _| m.get_mut(key).map(f));
    }

    /// `key` runs from now on.
    pub fn running(&self, key: &str) {
        self.update(key, |e| {
            e.state = State::Running;
            e.started = Some(Instant::now());
        });
    }

    /// (done, total) of a running job.
    pub fn counts(&self, key: &str, done: usize, total: usize) {
        self.update(key, |e| (e.done, e.total) = (done, total));
    }

    /// `key`'s picture so far (reported while it runs).
    pub fn preview(&self, key: &str, picture: String) {
        self.update(key, |e| e.preview = Some(picture));
    }

    /// `key` ended: done (all counted), cancelled or failed with `error`.
    pub fn finish(&self, key: &str, end: Result<(), Option<E>>) {
        self.update(key, |e| match end {
            Ok(()) => {
                e.state = State::Done;
                e.done = e.total;
            }
            Err(None) => e.state = State::Cancelled,
            Err(Some(err)) => {
                e.state = State::Failed;
                e.error = Some(err);
            }
        });
    }

    /// Where `key` stands, or None when nothing is known of it.
    pub fn progress(&self, key: &str) -> Option<Progress> {
        self.with(|m, _| {
            let e = m.get(key)?;
            let mut p = Progress::new(e.state.clone(), e.done, e.total);
            p.error = e.error.as_ref().map(JobError::report);
            match e.state {
                State::Queued => {
                    p.position = Some(
                        m.values()
                            .filter(|o| {
                                o.state == State::Running
                                    || (o.state == State::Queued && o.seq < e.seq)
                            })
                            .count(),
                    );
                }
                State::Running => {
                    p.position = Some(0);
                    p.preview = e.preview.clone();
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
            Some(e) if matches!(e.state, State::Queued | State::Running) => {
                e.cancel.store(true, Ordering::SeqCst);
                if e.state == State::Queued {
                    e.state = State::Cancelled;
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
