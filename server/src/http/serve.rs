//! Every analysis is served by the same few generic handlers: the typed
//! request from the URL ([`Req`]), one cache entry per request (identical
//! concurrent requests are computed once), strong ETags and 304s, JSON and
//! the second representation (PNG, CSV) from one computation, 202 with the
//! progress while what it reads is being built.

use super::state::{blocking, etag_of, matches, not_modified, AppState, Cached, Outputs, Req};
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use zfvis_core::analysis::{self, Analysis};

/// Compute once per key; errors are not cached.
async fn cached(
    st: &AppState,
    key: String,
    f: impl std::future::Future<Output = Result<Outputs, ApiError>> + Send + 'static,
) -> Result<Arc<Outputs>, ApiError> {
    st.cache
        .try_get_with(key, async move { f.await.map(Arc::new) })
        .await
        .map_err(|e: Arc<ApiError>| (*e).clone())
}

/// What a request is answered with: its result, or a response at once
/// (the progress of what it waits for, a 304 for the browser's copy).
type Answer = Result<Arc<Outputs>, Response>;

/// The result of an analysis, or the progress of what it waits for; a 304
/// when the browser's copy of the representation `ct` is current.
async fn outputs<A: Analysis>(
    st: &AppState,
    req: A::Request,
    h: &HeaderMap,
    ct: &'static str,
) -> Result<Answer, ApiError> {
    let ctx = st.ctx.clone();
    let (wait, version, key, req) = blocking(move || {
        let key = analysis::content_key::<A, _>(&ctx, &req)?;
        let wait = A::pending(&ctx, &req)?;
        Ok((wait, A::version(&ctx, &req)?, key, req))
    })
    .await?;
    if let Some(p) = wait {
        return Ok(Err((StatusCode::ACCEPTED, Json(p)).into_response()));
    }
    let key = key + &version.map_or(String::new(), |v| format!("@{v}"));
    let etag = etag_of(&key, ct);
    if matches(h, &etag) {
        return Ok(Err(not_modified(&etag)));
    }
    let worker = st.worker.clone();
    let k = key.clone();
    let o = cached(st, key, async move {
        let out = worker.run(move |e| analysis::output::<A>(e, &req)).await?;
        Ok(Outputs {
            json: Cached::keyed(out.json, "application/json", &k),
            alt: out.alt.map(|b| Cached::keyed(b, A::ALT_TYPE, &k)),
        })
    })
    .await?;
    Ok(Ok(o))
}

/// `GET …` an analysis's JSON.
pub async fn json<A: Analysis>(
    State(st): State<AppState>,
    Req(req): Req<A::Request>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(
        match outputs::<A>(&st, req, &h, "application/json").await? {
            Ok(o) => o.json.respond(&h),
            Err(at_once) => at_once,
        },
    )
}

/// `GET ….png` (or `.csv`): the same result's second representation.
pub async fn alt<A: Analysis>(
    State(st): State<AppState>,
    Req(req): Req<A::Request>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match outputs::<A>(&st, req, &h, A::ALT_TYPE).await? {
        Ok(o) => o
            .alt
            .as_ref()
            .ok_or_else(|| ApiError::internal("this result has no picture"))?
            .respond(&h),
        Err(at_once) => at_once,
    })
}
