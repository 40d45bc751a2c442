//! The compare view's data (paper Fig. 6): layer-1 filters of one snapshot,
//! and the numbers of two snapshots side by side (`zfvis_core::compare`).
//!
//! The numbers take tens of seconds; they run off the compute worker (on
//! their own copies of the two nets), one comparison at a time, and report
//! their progress at `/api/compare/progress` with the same query.

use super::analysis::{cached, number, param, png_of};
use super::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::sync::Arc;
use zfvis_core::compare;
use zfvis_core::engine;

/// A comparison over the web measures at most this many images (each takes
/// about a second of CPU over both models; the CLI allows more).
const MAX_WEB_IMAGES: usize = 512;

type Params = Path<HashMap<String, String>>;
type Q = Query<HashMap<String, String>>;

async fn filters(
    st: &AppState,
    p: &HashMap<String, String>,
    q: &HashMap<String, String>,
) -> Result<Arc<super::Outputs>, ApiError> {
    let model = param(p, "model").to_string();
    if !engine::valid_model_name(&model) {
        return Err(ApiError::bad(format!("malformed model name {model:?}")));
    }
    let epoch: u32 = number(p, "epoch")?;
    let per_filter = match q.get("norm").map(|s| s.as_str()) {
        None | Some("layer") => false,
        Some("filter") => true,
        Some(n) => {
            return Err(ApiError::bad(format!(
                "norm must be \"layer\" or \"filter\", got {n:?}"
            )))
        }
    };
    let key = format!("filters/{model}/{epoch}/{per_filter}");
    cached(st, key, move |e| {
        let mut r = e.filters(&model, epoch, per_filter)?;
        let png = std::mem::take(&mut r.sprite_png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await
}

/// `GET …/filters?norm=layer|filter`: layer-1 filters, highest RMS first.
pub async fn filters_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(filters(&st, &p, &q).await?.json.respond(&h))
}

/// `GET …/filters.png?norm=layer|filter`: the tiles, 8 per row.
pub async fn filters_png(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    png_of(&*filters(&st, &p, &q).await?, &h)
}

/// The parsed query: (model a, epoch a, model b, epoch b, images).
type Pair = (String, Option<u32>, String, Option<u32>, usize);

fn pair(q: &HashMap<String, String>) -> Result<Pair, ApiError> {
    let name = |k: &str| -> Result<String, ApiError> {
        let v = param(q, k).to_string();
        if !engine::valid_model_name(&v) {
            return Err(ApiError::bad(format!(
                "{k} must name a model folder, got {v:?}"
            )));
        }
        Ok(v)
    };
    let epoch = |k: &str| -> Result<Option<u32>, ApiError> {
        match q.get(k).map(|s| s.as_str()) {
            None | Some("") => Ok(None),
            Some(_) => Ok(Some(number(q, k)?)),
        }
    };
    let images = match q.get("images").map(|s| s.as_str()) {
        None | Some("") => compare::DEFAULT_IMAGES,
        Some(_) => number(q, "images")?,
    };
    if images == 0 || images > MAX_WEB_IMAGES {
        return Err(ApiError::bad(format!(
            "images must be 1..={MAX_WEB_IMAGES}, got {images} (the command line takes more)"
        )));
    }
    Ok((name("a")?, epoch("ea")?, name("b")?, epoch("eb")?, images))
}

fn key(p: &Pair) -> String {
    format!("compare/{}/{:?}/{}/{:?}/{}", p.0, p.1, p.2, p.3, p.4)
}

/// `GET /api/compare?a=MODEL&ea=EPOCH&b=MODEL&eb=EPOCH&images=N`: the two
/// sides' numbers, measured on N images of the server's dataset (or 1/f
/// noise without `--dataset`). Epochs default to each model's last.
pub async fn numbers(
    State(st): State<AppState>,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let p = pair(&q)?;
    let k = key(&p);
    let (st2, k2) = (st.clone(), k.clone());
    let o = st
        .cache
        .try_get_with(k.clone(), async move {
            let _permit = st2
                .heavy
                .acquire()
                .await
                .map_err(|_| ApiError::internal("shutting down"))?;
            let (progress, k3) = (st2.progress.clone(), k2.clone());
            let (models, dataset) = (
                st2.models.clone(),
                st2.indexer.as_ref().map(|i| i.dataset.clone()),
            );
            let r = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
                let ma = engine::open_model(&models, &p.0)?;
                let mb = engine::open_model(&models, &p.2)?;
                for (m, e) in [(&ma, p.1), (&mb, p.3)] {
                    m.manifest
                        .snapshot(e)
                        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
                }
                let r = compare::compare_dirs(
                    (&ma, p.1),
                    (&mb, p.3),
                    dataset.as_deref(),
                    p.4,
                    zfvis_core::tch::Device::Cpu,
                    &mut |done, total| {
                        if let Ok(mut m) = progress.lock() {
                            m.insert(k3.clone(), (done, total));
                        }
                    },
                )
                .map_err(|e| ApiError::bad(format!("{e:#}")))?;
                serde_json::to_vec(&r).map_err(|e| ApiError::internal(e.to_string()))
            })
            .await
            .map_err(|_| ApiError::internal("the comparison failed"))?;
            if let Ok(mut m) = st2.progress.lock() {
                m.remove(&k2);
            }
            Ok::<_, ApiError>(Arc::new(super::Outputs {
                json: super::Cached::new(r?, "application/json"),
                alt: None,
            }))
        })
        .await
        .map_err(|e: Arc<ApiError>| ApiError::new(e.status, e.message.clone()))?;
    Ok(o.json.respond(&h))
}

/// `GET /api/compare/progress?…` (same query): `{state, done, total}`, state
/// `running`, `done` (cached) or `idle` (not started or waiting its turn).
pub async fn progress(State(st): State<AppState>, Query(q): Q) -> Result<Response, ApiError> {
    let k = key(&pair(&q)?);
    if st.cache.contains_key(&k) {
        return Ok(Json(serde_json::json!({"state": "done"})).into_response());
    }
    let now = st.progress.lock().ok().and_then(|m| m.get(&k).copied());
    Ok(Json(match now {
        Some((done, total)) => {
            serde_json::json!({"state": "running", "done": done, "total": total})
        }
        None => serde_json::json!({"state": "idle"}),
    })
    .into_response())
}
