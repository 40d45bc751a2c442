//! Builds dataset indexes in the background (one at a time, on a thread of
//! its own with its own copy of the network), so the page can show progress
//! while the compute worker keeps answering.

use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use zfvis_core::engine;
use zfvis_core::index;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Building,
    Ready,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    pub done: usize,
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Indexer {
    pub dataset: PathBuf,
    models: PathBuf,
    status: Arc<Mutex<HashMap<(String, u32), Status>>>,
    tx: mpsc::Sender<(String, u32)>,
}

impl Indexer {
    pub fn spawn(models: PathBuf, dataset: PathBuf, device: zfvis_core::tch::Device) -> Indexer {
        let (tx, rx) = mpsc::channel::<(String, u32)>();
        let status: Arc<Mutex<HashMap<(String, u32), Status>>> = Arc::default();
        let (st, m, d) = (status.clone(), models.clone(), dataset.clone());
        std::thread::Builder::new()
            .name("zfvis-index".into())
            .spawn(move || {
                for key in rx {
                    let set = |s: Status| {
                        st.lock().unwrap().insert(key.clone(), s);
                    };
                    set(Status {
                        state: State::Building,
                        done: 0,
                        total: 0,
                        error: None,
                    });
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                        || -> anyhow::Result<()> {
                            let model = engine::open_model(&m, &key.0)
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            let net = model.load(Some(key.1), device)?;
                            index::build(&net, &model, key.1, &d, 32, &|done, total| {
                                set(Status {
                                    state: State::Building,
                                    done,
                                    total,
                                    error: None,
                                });
                            })?;
                            Ok(())
                        },
                    ));
                    match r {
                        Ok(Ok(())) => {
                            let mut g = st.lock().unwrap();
                            let s = g.get(&key).cloned();
                            let total = s.map(|s| s.total).unwrap_or(0);
                            g.insert(
                                key.clone(),
                                Status {
                                    state: State::Ready,
                                    done: total,
                                    total,
                                    error: None,
                                },
                            );
                        }
                        Ok(Err(e)) => set(Status {
                            state: State::Failed,
                            done: 0,
                            total: 0,
                            error: Some(format!("{e:#}")),
                        }),
                        Err(_) => set(Status {
                            state: State::Failed,
                            done: 0,
                            total: 0,
                            error: Some("indexing failed".into()),
                        }),
                    }
                }
            })
            .expect("spawn indexer");
        Indexer {
            dataset,
            models,
            status,
            tx,
        }
    }

    /// The index status of a snapshot; queues a build on first use.
    pub fn ensure(&self, model: &str, epoch: u32) -> Status {
        let key = (model.to_string(), epoch);
        let mut g = self.status.lock().unwrap();
        if let Some(s) = g.get(&key) {
            return s.clone();
        }
        let built = engine::open_model(&self.models, model)
            .ok()
            .and_then(|m| index::index_path(&m, &self.dataset, epoch).ok())
            .is_some_and(|p| p.exists());
        let s = if built {
            Status {
                state: State::Ready,
                done: 0,
                total: 0,
                error: None,
            }
        } else {
            let _ = self.tx.send(key.clone());
            Status {
                state: State::Queued,
                done: 0,
                total: 0,
                error: None,
            }
        };
        g.insert(key, s.clone());
        s
    }
}
