//! Every analysis is served by the same few generic handlers: the typed
//! request from the URL ([`Req`]), one cache entry per request (identical
//! concurrent requests are computed once), strong ETags and 304s, JSON and
//! the second representation (PNG, CSV) from one computation, 202 with the
//! progress while what it reads is being built.

use super::state::{blocking, AppState, Cached, Outputs, Req};
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

/// The result of an analysis, or the progress of what it waits for.
async fn outputs<A: Analysis>(
    st: &AppState,
    req: A::Request,
) -> Result<Result<Arc<Outputs>, Response>, ApiError> {
    let ctx = st.ctx.clone();
    let (wait, version, req) = blocking(move || {
        let wait = A::pending(&ctx, &req)?;
        Ok((wait, A::version(&ctx, &req), req))
    })
    .await?;
    if let Some(p) = wait {
        return Ok(Err((StatusCode::ACCEPTED, Json(p)).into_response()));
    }
    let worker = st.worker.clone();
    let key = analysis::key::<A, _>(&req) + &version.map_or(String::new(), |v| format!("@{v}"));
    let changing = version.is_some();
    let o = cached(st, key, async move {
        let out = worker.run(move |e| analysis::output::<A>(e, &req)).await?;
        Ok(Outputs {
            json: Cached::new(out.json, "application/json").changing(changing),
            alt: out
                .alt
                .map(|b| Cached::new(b, A::ALT_TYPE).changing(changing)),
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
    Ok(match outputs::<A>(&st, req).await? {
        Ok(o) => o.json.respond(&h),
        Err(wait) => wait,
    })
}

/// `GET ….png` (or `.csv`): the same result's second representation.
pub async fn alt<A: Analysis>(
    State(st): State<AppState>,
    Req(req): Req<A::Request>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match outputs::<A>(&st, req).await? {
        Ok(o) => o
            .alt
            .as_ref()
            .ok_or_else(|| ApiError::internal("this result has no picture"))?
            .respond(&h),
        Err(wait) => wait,
    })
}
