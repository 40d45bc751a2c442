//! libtorch work runs on a dedicated thread that owns the [`Engine`], behind
//! a bounded queue: the async runtime never blocks on it, and a full queue is
//! answered at once with 503 + Retry-After.

use crate::error::ApiError;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use tokio::sync::oneshot;
use zfvis_core::engine::{self, Engine};

type Job = Box<dyn FnOnce(&mut Engine) + Send>;

#[derive(Clone)]
pub struct Worker {
    tx: mpsc::SyncSender<Job>,
}

impl Worker {
    /// Start the worker thread; `make` builds the engine on that thread.
    pub fn spawn(make: impl FnOnce() -> Engine + Send + 'static, queue: usize) -> Worker {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        std::thread::Builder::new()
            .name("zfvis-torch".into())
            .spawn(move || {
                let mut engine = make();
                for job in rx {
                    job(&mut engine);
                }
            })
            .expect("spawn worker thread");
        Worker { tx }
    }

    /// Run `f` on the worker; panics inside become 500s, the worker survives.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> engine::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |e: &mut Engine| {
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(e)));
            let r = match r {
                Ok(r) => r.map_err(ApiError::from),
                Err(_) => Err(ApiError::internal("the computation failed")),
            };
            let _ = tx.send(r);
        });
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => ApiError::busy(),
            mpsc::TrySendError::Disconnected(_) => ApiError::internal("compute worker stopped"),
        })?;
        rx.await
            .map_err(|_| ApiError::internal("compute worker stopped"))?
    }
}
