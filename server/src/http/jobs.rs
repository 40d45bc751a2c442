//! Long analyses ([`Job`]: the feature analysis, the compare numbers) run
//! detached from the request that starts them. The first GET of a job's URL
//! starts it (or joins the running job of the same parameters) and answers
//! 202 with its progress URL; the progress URL answers state, counts, queue
//! position and an estimate, and DELETE on it cancels. One job runs at a
//! time, the others wait in order. A finished result is kept in the result
//! cache and on disk (`DATA/jobs/`, beside the image store), so every later
//! GET, after a restart too, answers it with 200.

use super::state::{blocking, AppState, Cached, Outputs, Req};
use crate::error::ApiError;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zfvis_core::analysis::{self, Job};
use zfvis_core::progress::{Cancelled, Progress, State as JobState};

/// The stored result of `key`: the result cache, else the disk.
async fn stored(st: &AppState, key: &str) -> Result<Option<Arc<Outputs>>, ApiError> {
    if let Some(o) = st.cache.get(key).await {
        return Ok(Some(o));
    }
    let jobs = st.jobs.clone();
    let k = key.to_string();
    let loaded = blocking(move || {
        jobs.load(&k)
            .map_err(|e| ApiError::internal(format!("cannot read a stored result: {e}")))
    })
    .await?;
    let Some(body) = loaded else {
        return Ok(None);
    };
    let o = Arc::new(Outputs {
        json: Cached::keyed(body, "application/json", key),
        alt: None,
    });
    st.cache.insert(key.to_string(), o.clone()).await;
    Ok(Some(o))
}

/// The key of a job's result: its request and the content identity of the
/// models it names (a model folder replaced under the server is a new job;
/// the old network's stored results are never answered for it).
async fn job_key<J: Job>(st: &AppState, req: J::Request) -> Result<(String, J::Request), ApiError> {
    let ctx = st.ctx.clone();
    blocking(move || Ok((analysis::content_key::<J, _>(&ctx, &req)?, req))).await
}

/// Run `key`'s job when its turn comes; record how it ended.
async fn run<J: Job>(st: AppState, key: String, req: J::Request) {
    let permit = st.heavy.clone().acquire_owned().await;
    let cancel = st.jobs.cancel_flag(&key);
    if cancel.load(Ordering::SeqCst) {
        st.jobs.finish(&key, Err(None));
        return;
    }
    st.jobs.running(&key);
    let (ctx, jobs, k) = (st.ctx.clone(), st.jobs.clone(), key.clone());
    let flag = cancel.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let _permit = permit;
        let shown = jobs.clone();
        let r = J::run_previewing(
            &ctx,
            &req,
            &mut |done, total| {
                jobs.counts(&k, done, total);
                if flag.load(Ordering::SeqCst) {
                    return Err(Cancelled.into());
                }
                Ok(())
            },
            &mut |picture| shown.preview(&k, picture),
        )?;
        let body = serde_json::to_vec(&r).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Err(e) = jobs.save(&k, &body) {
            tracing::warn!("cannot keep the result of {k} on disk: {e}");
        }
        Ok(body)
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("the job stopped: {e}"))));
    match r {
        Ok(body) => {
            let o = Arc::new(Outputs {
                json: Cached::keyed(body, "application/json", &key),
                alt: None,
            });
            st.cache.insert(key.clone(), o).await;
            st.jobs.finish(&key, Ok(()));
        }
        Err(_) if cancel.load(Ordering::SeqCst) => st.jobs.finish(&key, Err(None)),
        Err(err) => st.jobs.finish(&key, Err(Some(err.logged()))),
    }
}

/// The progress URL of the job at `uri`: its path + `/progress`, same query.
fn progress_url(uri: &axum::http::Uri) -> String {
    match uri.query() {
        Some(q) => format!("{}/progress?{q}", uri.path()),
        None => format!("{}/progress", uri.path()),
    }
}

/// `GET …` a job's result: 200 with it once stored; otherwise the job is
/// started or joined and the answer is 202 with its progress URL.
pub async fn job<J: Job>(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Req(req): Req<J::Request>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let (key, req) = job_key::<J>(&st, req).await?;
    if let Some(o) = stored(&st, &key).await? {
        return Ok(o.json.respond(&h));
    }
    let ctx = st.ctx.clone();
    let req = blocking(move || J::check(&ctx, &req).map(|_| req).map_err(ApiError::from)).await?;
    if st.jobs.start_or_join(&key)? {
        tokio::spawn(run::<J>(st.clone(), key.clone(), req));
    }
    // A job that ends at once answers at once (its result, or its 4xx).
    let until = Instant::now() + st.jobs.first_wait;
    let mut p = st.jobs.progress(&key);
    while Instant::now() < until {
        match p.as_ref().map(|p| &p.state) {
            Some(JobState::Done) => break,
            Some(JobState::Failed) => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        p = st.jobs.progress(&key);
    }
    if let Some(o) = stored(&st, &key).await? {
        return Ok(o.json.respond(&h));
    }
    if matches!(p.as_ref().map(|p| &p.state), Some(JobState::Failed)) {
        st.jobs.start_or_join(&key)?;
    }
    let url = progress_url(&uri);
    let state = p.map_or(JobState::Queued, |p| p.state);
    let mut res = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "state": state, "progress": url })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET …/progress` (same query as the job): `{state, done, total,
/// position, eta_s, error}`; `idle` when nothing asked for it, `done` once
/// its result is stored.
pub async fn progress<J: Job>(
    State(st): State<AppState>,
    Req(req): Req<J::Request>,
) -> Result<Json<Progress>, ApiError> {
    let (key, _) = job_key::<J>(&st, req).await?;
    if let Some(p) = st.jobs.progress(&key).filter(|p| p.state != JobState::Done) {
        return Ok(Json(p));
    }
    Ok(Json(if stored(&st, &key).await?.is_some() {
        Progress::new(JobState::Done, 0, 0)
    } else {
        Progress::new(JobState::Idle, 0, 0)
    }))
}

/// `DELETE …/progress`: cancel the job (it stops at its next check, between
/// batches); 404 when it is not queued or running.
pub async fn cancel<J: Job>(
    State(st): State<AppState>,
    Req(req): Req<J::Request>,
) -> Result<Json<Progress>, ApiError> {
    let (key, _) = job_key::<J>(&st, req).await?;
    if !st.jobs.cancel(&key) {
        return Err(ApiError::not_found("no such job is queued or running"));
    }
    Ok(Json(st.jobs.progress(&key).unwrap_or(Progress::new(
        JobState::Cancelled,
        0,
        0,
    ))))
}
