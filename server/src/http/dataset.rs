//! The dataset views: index status (built in the background), Fig. 2 top-9
//! patches, the Fig. 4 timeline, and importing a dataset image as an upload.

use super::analysis::{cached, need, number, param, png_of};
use super::{ApiError, AppState};
use crate::indexer::{Indexer, State as IxState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use zfvis_core::engine;

type Params = Path<HashMap<String, String>>;
type Q = Query<HashMap<String, String>>;

fn indexer(st: &AppState) -> Result<&Indexer, ApiError> {
    st.indexer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no dataset: start the server with --dataset DIR",
        )
    })
}

fn model_epoch(st: &AppState, p: &HashMap<String, String>) -> Result<(String, u32), ApiError> {
    let model = param(p, "model").to_string();
    let m = engine::open_model(&st.models, &model)?;
    let epoch: u32 = number(p, "epoch")?;
    m.manifest
        .snapshot(Some(epoch))
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok((model, epoch))
}

/// `GET …/dataset/index`: `{state, done, total, error?}`; starts the build on first use.
pub async fn status(State(st): State<AppState>, Path(p): Params) -> Result<Response, ApiError> {
    let ix = indexer(&st)?.clone();
    let status = blocking(move || {
        let (model, epoch) = model_epoch(&st, &p)?;
        Ok(ix.ensure(&model, epoch))
    })
    .await?;
    Ok(Json(status).into_response())
}

/// Manifest reads and index status checks touch the disk: off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("checking the dataset index failed"))?
}

/// Answer 202 with the progress while the index is not ready.
fn ready(ix: &Indexer, model: &str, epoch: u32) -> Result<(), Response> {
    let s = ix.ensure(model, epoch);
    match s.state {
        IxState::Ready => Ok(()),
        IxState::Failed => Err(ApiError::internal(s.error.unwrap_or_default()).into_response()),
        _ => Err((StatusCode::ACCEPTED, Json(s)).into_response()),
    }
}

async fn top9(
    st: &AppState,
    p: &HashMap<String, String>,
) -> Result<Result<std::sync::Arc<super::Outputs>, Response>, ApiError> {
    let ix = indexer(st)?.clone();
    let layer: usize = number(p, "layer")?;
    let map: i64 = number(p, "map")?;
    let (st2, p2, ix2) = (st.clone(), p.clone(), ix.clone());
    let (model, epoch, ready) = blocking(move || {
        let (model, epoch) = model_epoch(&st2, &p2)?;
        let r = ready(&ix2, &model, epoch);
        Ok((model, epoch, r))
    })
    .await?;
    if let Err(r) = ready {
        return Ok(Err(r));
    }
    let dataset = ix.dataset.clone();
    let key = format!("dtop9/{model}/{epoch}/{layer}/{map}");
    let o = cached(st, key, move |e| {
        let mut r = e.dataset_top9(&model, epoch, &dataset, layer, map)?;
        let png = std::mem::take(&mut r.sprite_png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await?;
    Ok(Ok(o))
}

/// Fig. 2 for one map: `{layer, map, epoch, tile, items: [{image, y, x, value, field}]}`.
pub async fn top9_json(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match top9(&st, &p).await? {
        Ok(o) => o.json.respond(&h),
        Err(r) => r,
    })
}

/// 9 projections (top row) beside their image patches (bottom row).
pub async fn top9_png(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match top9(&st, &p).await? {
        Ok(o) => png_of(&o, &h)?,
        Err(r) => r,
    })
}

fn parse_maps(q: &HashMap<String, String>) -> Result<Vec<i64>, ApiError> {
    let s = q.get("maps").map(|s| s.as_str()).unwrap_or("0-7");
    let mut out = vec![];
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || ApiError::bad(format!("maps must look like 0-7,12,20 (got {s:?})"));
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (i64, i64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if b < a || b - a > 64 {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.trim().parse().map_err(|_| bad())?);
        }
    }
    Ok(out)
}

async fn timeline(
    st: &AppState,
    p: &HashMap<String, String>,
    q: &HashMap<String, String>,
) -> Result<Result<std::sync::Arc<super::Outputs>, Response>, ApiError> {
    let ix = indexer(st)?.clone();
    let model = param(p, "model").to_string();
    let layer = need(q, "layer", Some(1))? as usize;
    let maps = parse_maps(q)?;
    let kind = q
        .get("kind")
        .cloned()
        .unwrap_or_else(|| "projections".into());
    if kind != "projections" && kind != "patches" {
        return Err(ApiError::bad(format!(
            "kind must be projections or patches, got {kind:?}"
        )));
    }
    // Every column's index must be built (or have failed: its column shows the error).
    let (models, ix2, model2) = (st.models.clone(), ix.clone(), model.clone());
    let (done, total, waiting) = blocking(move || {
        let m = engine::open_model(&models, &model2)?;
        let (mut done, mut total, mut waiting) = (0, 0, false);
        for s in &m.manifest.snapshots {
            let status = ix2.ensure(&model2, s.epoch);
            done += status.done;
            total += status.total;
            waiting |= matches!(status.state, IxState::Queued | IxState::Building);
        }
        Ok((done, total, waiting))
    })
    .await?;
    if waiting {
        let body = serde_json::json!({"state": "building", "done": done, "total": total});
        return Ok(Err((StatusCode::ACCEPTED, Json(body)).into_response()));
    }
    let dataset = ix.dataset.clone();
    let key = format!("timeline/{model}/{layer}/{maps:?}/{kind}");
    let o = cached(st, key, move |e| {
        let mut r = e.timeline(&model, &dataset, layer, &maps)?;
        let png = if kind == "patches" {
            std::mem::take(&mut r.patches_png)
        } else {
            std::mem::take(&mut r.projections_png)
        };
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await?;
    Ok(Ok(o))
}

/// Fig. 4: `?layer=L&maps=0-7` -> `{layer, maps, epochs, tile, errors, cells}`.
pub async fn timeline_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match timeline(&st, &p, &q).await? {
        Ok(o) => o.json.respond(&h),
        Err(r) => r,
    })
}

/// `?…&kind=projections|patches`: the grid as one image, `tile` px cells.
pub async fn timeline_png(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match timeline(&st, &p, &q).await? {
        Ok(o) => png_of(&o, &h)?,
        Err(r) => r,
    })
}

/// `POST /api/dataset/images` `{"image": "relative/path.jpg"}`: store a dataset
/// image as an upload, to open it in the image view.
pub async fn import(
    State(st): State<AppState>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let ix = indexer(&st)?;
    let rel = body["image"].as_str().unwrap_or_default().to_string();
    let path =
        zfvis_core::index::resolve(&ix.dataset, &rel).map_err(|e| ApiError::bad(e.to_string()))?;
    let store = st.store.clone();
    let r = tokio::task::spawn_blocking(
        move || -> Result<zfvis_core::store::StoredImage, ApiError> {
            let bytes = std::fs::read(&path).map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no image {rel:?} in the dataset"),
                )
            })?;
            store.put(&bytes).map_err(|e| ApiError::bad(e.to_string()))
        },
    )
    .await
    .map_err(|_| ApiError::internal("import failed"))??;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}
