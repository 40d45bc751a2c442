//! Uploads: content-addressed by SHA-256, validated before they are stored.

use super::state::{blocking, AppState, Cached, Req};
use crate::error::ApiError;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zfvis_core::params::ContentId;

/// Largest accepted upload.
pub const MAX_UPLOAD: usize = 20 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than {} MB",
            MAX_UPLOAD / (1024 * 1024)
        ),
    )
}

/// Bodies above this are cut off without reading them to the end.
pub const MAX_DRAIN: usize = 64 * 1024 * 1024;

/// Read the whole body. Over the limit, keep reading (up to MAX_DRAIN) and
/// discarding, so the client gets to read the 413 instead of a broken pipe.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("cannot read the upload: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > MAX_DRAIN {
                break;
            }
        }
    }
    if total > limit {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// `POST /api/images`: multipart field `image`, or the raw bytes as the body.
pub async fn upload(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAIN as u64) {
        return Err(too_large());
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (parts, body) = req.into_parts();
    let slack = if is_multipart { 64 * 1024 } else { 0 };
    let body = read_body(body, MAX_UPLOAD + slack).await?;
    let bytes = if is_multipart {
        let req = Request::from_parts(parts, axum::body::Body::from(body));
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad(e.body_text()))?;
        let mut found = None;
        loop {
            match mp.next_field().await {
                Ok(Some(f)) if f.name() == Some("image") => {
                    found = Some(f.bytes().await.map_err(|e| ApiError::bad(e.body_text()))?);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return Err(ApiError::bad(e.body_text())),
            }
        }
        found.ok_or_else(|| ApiError::bad("multipart upload has no field named \"image\""))?
    } else {
        body
    };
    if bytes.len() > MAX_UPLOAD {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(ApiError::bad("empty upload: send an image"));
    }
    let store = st.ctx.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.put(&bytes))
        .await
        .map_err(|_| ApiError::internal("storing the image failed"))??;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

#[derive(serde::Deserialize)]
pub struct ImageRef {
    image: ContentId,
}

/// `GET /api/images/{image}`: the stored bytes.
pub async fn original(
    State(st): State<AppState>,
    Req(r): Req<ImageRef>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let ctx = st.ctx.clone();
    let bytes = blocking(move || Ok(ctx.image_bytes(&r.image)?)).await?;
    let ct = image::guess_format(&bytes)
        .map(|f| f.to_mime_type())
        .unwrap_or("application/octet-stream");
    Ok(Cached::new(bytes, ct).respond(&h))
}

/// `GET /api/images`: recently uploaded images, newest first.
pub async fn recent(State(st): State<AppState>) -> Result<Response, ApiError> {
    let store = st.ctx.store.clone();
    let ids = blocking(move || {
        store
            .recent(12)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(Json(serde_json::json!({ "images": ids })).into_response())
}

/// `POST /api/sets`: store a correspondence set `{"images": [{"id", "parts": {"name": [x, y]}}]}`
/// (points in original image pixels); answers `{"id": …}`.
pub async fn put_set(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let set: zfvis_core::store::CorrSet = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "a set is {{\"images\": [{{\"id\", \"parts\": {{name: [x, y]}}}}]}}: {e}"
        ))
    })?;
    let store = st.ctx.store.clone();
    let id = tokio::task::spawn_blocking(move || store.put_set(&set))
        .await
        .map_err(|_| ApiError::internal("storing the set failed"))??;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

#[derive(serde::Deserialize)]
pub struct SetRef {
    set: ContentId,
}

/// `GET /api/sets/{set}`.
pub async fn get_set(
    State(st): State<AppState>,
    Req(r): Req<SetRef>,
) -> Result<Response, ApiError> {
    let store = st.ctx.store.clone();
    let set = blocking(move || Ok(store.get_set(r.set.as_str()))).await?;
    set.map(|s| Json(s).into_response())
        .ok_or_else(|| ApiError::not_found("unknown set"))
}

/// `POST /api/dataset/images` `{"image": "relative/path.jpg"}`: store a dataset
/// image as an upload, to open it in the image view.
pub async fn import(
    State(st): State<AppState>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let dataset = st.ctx.indexer()?.dataset.clone();
    let rel = body["image"]
        .as_str()
        .ok_or_else(|| {
            ApiError::bad("the body must name an image: {\"image\": \"relative/path\"}")
        })?
        .to_string();
    let path =
        zfvis_core::index::resolve(&dataset, &rel).map_err(|e| ApiError::bad(e.to_string()))?;
    let store = st.ctx.store.clone();
    let r = blocking(move || {
        let bytes = std::fs::read(&path)
            .map_err(|_| ApiError::not_found(format!("no image {rel:?} in the dataset")))?;
        Ok(store.put(&bytes)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// `GET /api/dataset`: what the dataset views (top 9, timeline) run over:
/// the folder given with `--dataset`, or the image store (the examples and
/// every upload so far).
pub async fn dataset(State(st): State<AppState>) -> Result<Response, ApiError> {
    let ix = st.ctx.indexer()?;
    Ok(Json(match ix.given() {
        Some(d) => serde_json::json!({
            "kind": "folder",
            "name": zfvis_core::files::name_of(d),
        }),
        None => serde_json::json!({
            "kind": "store",
            "examples": st.examples.len(),
            "uploads": st.ctx.store.uploads(),
        }),
    })
    .into_response())
}

/// `POST /api/dataset/random`: store a random image of the `--dataset`
/// folder as an upload, to open it in the image view.
pub async fn random(State(st): State<AppState>) -> Result<Response, ApiError> {
    let ix = st.ctx.indexer()?.clone();
    let dir = ix
        .given()
        .ok_or_else(|| ApiError::not_found("no dataset: start the server with --dataset DIR"))?
        .to_path_buf();
    let store = st.ctx.store.clone();
    let r = blocking(move || {
        use rand::seq::IndexedRandom;
        let files = ix.files().map_err(|e| ApiError::internal(e.to_string()))?;
        // A few tries: a dataset may hold files that do not decode.
        for _ in 0..5 {
            let Some(p) = files.choose(&mut rand::rng()) else { break };
            if let Ok(s) = std::fs::read(p).map_err(|_| ()).and_then(|b| store.put(&b).map_err(|_| ())) {
                let rel = p.strip_prefix(&dir).unwrap_or(p).to_string_lossy().into_owned();
                return Ok(serde_json::json!({ "id": s.id, "width": s.width, "height": s.height, "path": rel }));
            }
        }
        Err(ApiError::not_found("the dataset has no readable images"))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}
