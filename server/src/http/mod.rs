//! The HTTP API and pages. The router below is the API's table of contents:
//! one line per route, each analysis served by the generic handlers of
//! `serve` (`json::<A>` and `alt::<A>` for its JSON and its PNG/CSV).

mod images;
mod job_table;
mod jobs;
pub mod net;
mod pages;
mod serve;
mod state;

use crate::error::ApiError;
use crate::worker::Worker;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use job_table::JobTable;
use jobs::{cancel, job, progress};
use serve::{alt, json};
use state::{blocking, AppState, Req};
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use zfvis_core::analyses::compare::{Filters, Numbers};
use zfvis_core::analyses::correspondence::Correspondence;
use zfvis_core::analyses::explain::{Explain, Methods};
use zfvis_core::analyses::features::FeatureAnalysis;
use zfvis_core::analyses::figures::Figures;
use zfvis_core::analyses::invariance::Invariance;
use zfvis_core::analyses::maps::Maps;
use zfvis_core::analyses::occlusion::{Live, OccludedProjection, Occlusion};
use zfvis_core::analyses::predict::Crop;
use zfvis_core::analyses::predict::Predictions;
use zfvis_core::analyses::projection::{Project, Top9};
use zfvis_core::analyses::sanity::Sanity;
use zfvis_core::analyses::timeline::{DatasetTop9, Evolution, SnapshotRequest, Timeline};
use zfvis_core::analyses::visualize::Visualize;
use zfvis_core::engine::{self, Context, Engine};
use zfvis_core::params::ModelName;
use zfvis_core::progress::{Jobs, Progress};
use zfvis_core::store::ImageStore;

pub struct Config {
    pub models: PathBuf,
    pub data: PathBuf,
    pub static_dir: PathBuf,
    pub device: zfvis_core::tch::Device,
    pub queue: usize,
    pub dataset: Option<PathBuf>,
    /// Bound of the upload store in bytes (least recently used evicted first).
    pub max_store: Option<u64>,
    pub limits: net::Limits,
    /// Folder of example photos (`examples.json`).
    pub examples: PathBuf,
}

/// Bytes of computed answers kept for repeat requests.
const RESULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The router, and the job table to cancel when the server stops.
pub fn app(cfg: Config) -> anyhow::Result<(Router, JobTable)> {
    let jobs = Jobs::default();
    let store = ImageStore::open(&cfg.data)?.with_limit(cfg.max_store);
    // Without --dataset the dataset views run over the image store: the
    // examples and every upload, indexed as they arrive.
    let indexer = Some(match cfg.dataset.clone() {
        Some(d) => zfvis_core::engine::indexer::Indexer::spawn(
            cfg.models.clone(),
            d,
            cfg.device,
            jobs.clone(),
        ),
        None => zfvis_core::engine::indexer::Indexer::spawn_store(
            cfg.models.clone(),
            store.clone(),
            cfg.device,
            jobs.clone(),
        ),
    });
    let ctx = Context {
        models: cfg.models.clone(),
        store,
        device: cfg.device,
        indexer,
        jobs,
    };
    let examples = Arc::new(zfvis_core::examples::load(&cfg.examples, &ctx.store)?);
    let c = ctx.clone();
    let state = AppState {
        worker: Worker::spawn(move || Engine::new(c, 32), cfg.queue),
        ctx,
        // Computed answers, bounded by their size (JSON and PNG bodies).
        cache: moka::future::Cache::builder()
            .weigher(|k: &String, v: &Arc<state::Outputs>| {
                let n = k.len() + v.json.body.len() + v.alt.as_ref().map_or(0, |a| a.body.len());
                (n + 256).min(u32::MAX as usize) as u32
            })
            .max_capacity(RESULT_CACHE_BYTES)
            .build(),
        heavy: Arc::new(tokio::sync::Semaphore::new(1)),
        jobs: JobTable::new(&cfg.data, cfg.limits.request_timeout),
        examples,
    };
    let table = state.jobs.clone();
    let router = Router::new()
        .route("/", get(pages::index))
        .route("/compare", get(pages::compare))
        .route("/features", get(pages::features))
        .route("/methods", get(pages::methods))
        .merge(api())
        .nest_service("/static", ServeDir::new(&cfg.static_dir))
        .fallback(pages::not_found)
        // Outer guard: absurd bodies are refused before anyone reads them;
        // uploads between 20 and 64 MB get their 413 from the handler.
        .layer(RequestBodyLimitLayer::new(images::MAX_DRAIN))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.limits.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        // Outside the timeout and the panic guard (their answers are JSON
        // too), inside compression (it reads bodies as they were written).
        .layer(middleware::from_fn(json_errors))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(
            net::ClientCap::new(cfg.limits.per_client),
            net::per_client,
        ))
        .layer(middleware::from_fn(net::security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    Ok((router, table))
}

/// The API's table of contents: one line per route. Analyses are served by
/// the generic handlers (`json::<A>` its JSON, `alt::<A>` its PNG or CSV).
#[rustfmt::skip]
fn api() -> Router<AppState> {
    let m = "/api/models/{model}/snapshots/{epoch}/images/{image}";
    let snap = "/api/models/{model}/snapshots/{epoch}";
    let img = "/api/models/{model}/images/{image}";
    let at = |s: &str, rest: &str| format!("{s}{rest}");
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/models", get(models))
        .route("/api/models/{model}", get(model))
        .route("/api/images", get(images::recent).post(images::upload))
        .route("/api/examples", get(examples))
        .route("/api/images/{image}", get(images::original))
        .route("/api/sets", post(images::put_set))
        .route("/api/sets/{set}", get(images::get_set))
        .route(&at(img, "/crop.png"), get(alt::<Crop>))
        .route(&at(m, "/predictions"), get(json::<Predictions>))
        .route(&at(m, "/layers/{layer}/maps"), get(json::<Maps>))
        .route(&at(m, "/layers/{layer}/maps.png"), get(alt::<Maps>))
        .route(&at(m, "/layers/{layer}/maps/{map}/projection"), get(json::<Project>))
        .route(&at(m, "/layers/{layer}/maps/{map}/projection.png"), get(alt::<Project>))
        .route(&at(m, "/layers/{layer}/top9"), get(json::<Top9>))
        .route(&at(m, "/layers/{layer}/top9.png"), get(alt::<Top9>))
        .route(&at(m, "/occlusion"), get(json::<Occlusion>))
        .route(&at(m, "/occlusion.png"), get(alt::<Occlusion>))
        .route(&at(m, "/occlusion/live"), get(json::<Live>))
        .route(&at(m, "/occlusion/projection"), get(json::<OccludedProjection>))
        .route(&at(m, "/occlusion/projection.png"), get(alt::<OccludedProjection>))
        .route(&at(m, "/explain"), get(json::<Explain>))
        .route(&at(m, "/explain.png"), get(alt::<Explain>))
        .route(&at(m, "/invariance"), get(json::<Invariance>))
        .route(&at(m, "/invariance.csv"), get(alt::<Invariance>))
        .route(&at(snap, "/correspondence"), get(json::<Correspondence>))
        .route(&at(snap, "/filters"), get(json::<Filters>))
        .route(&at(snap, "/filters.png"), get(alt::<Filters>))
        .route("/api/compare", get(job::<Numbers>))
        .route("/api/compare/progress", get(progress::<Numbers>).delete(cancel::<Numbers>))
        .route("/api/features", get(job::<FeatureAnalysis>))
        .route("/api/features/progress", get(progress::<FeatureAnalysis>).delete(cancel::<FeatureAnalysis>))
        .route("/api/methods/list", get(method_list))
        .route("/api/methods", get(job::<Methods>))
        .route("/api/methods/progress", get(progress::<Methods>).delete(cancel::<Methods>))
        .route("/api/sanity", get(job::<Sanity>))
        .route("/api/sanity/progress", get(progress::<Sanity>).delete(cancel::<Sanity>))
        .route("/api/visualize", get(job::<Visualize>))
        .route("/api/visualize/progress", get(progress::<Visualize>).delete(cancel::<Visualize>))
        .route(&at(snap, "/dataset/index"), get(index_status))
        .route(&at(snap, "/dataset/layers/{layer}/maps/{map}/top9"), get(json::<DatasetTop9>))
        .route(&at(snap, "/dataset/layers/{layer}/maps/{map}/top9.png"), get(alt::<DatasetTop9>))
        .route("/api/models/{model}/dataset/timeline", get(json::<Timeline>))
        .route("/api/models/{model}/dataset/timeline.png", get(alt::<Timeline>))
        .route("/api/dataset", get(images::dataset))
        .route("/api/dataset/images", post(images::import))
        .route("/api/dataset/random", post(images::random))
        .route(&at(snap, "/figure"), get(json::<Figures>))
        .route(&at(snap, "/figure.png"), get(alt::<Figures>))
        .route(&at(img, "/layers/{layer}/maps/{map}/evolution.png"), get(alt::<Evolution>))
        .route("/api/{*rest}", get(not_found).post(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(images::MAX_UPLOAD + 64 * 1024))
}

/// `GET /api/methods/list`: the attribution methods' registry.
async fn method_list() -> Response {
    Json(serde_json::json!({ "methods": zfvis_core::methods::list() })).into_response()
}

/// `GET /api/models`: every model folder: `models` those that load,
/// `broken` the others with their error.
async fn models(State(st): State<AppState>) -> Result<Response, ApiError> {
    let dir = st.ctx.models.clone();
    let list = blocking(move || Ok(engine::list_models(&dir)?)).await?;
    Ok(Json(list).into_response())
}

#[derive(serde::Deserialize)]
struct ModelRequest {
    model: ModelName,
}

/// `GET /api/models/{model}`.
async fn model(
    State(st): State<AppState>,
    Req(r): Req<ModelRequest>,
) -> Result<Response, ApiError> {
    let dir = st.ctx.models.clone();
    let info = blocking(move || Ok(engine::model_info(&dir, r.model.as_str())?)).await?;
    Ok(Json(info).into_response())
}

/// `GET …/dataset/index`: where the snapshot's index build stands; starts it.
async fn index_status(
    State(st): State<AppState>,
    Req(r): Req<SnapshotRequest>,
) -> Result<Json<Progress>, ApiError> {
    let ctx = st.ctx.clone();
    Ok(Json(
        blocking(move || Ok(zfvis_core::analyses::timeline::index_status(&ctx, &r)?)).await?,
    ))
}

/// Counters for tests and operators: forward passes run so far.
async fn stats(State(st): State<AppState>) -> Result<Response, ApiError> {
    let forwards = st.worker.run(|e| Ok(e.forwards)).await?;
    let cached = st.cache.entry_count();
    Ok(Json(serde_json::json!({ "forwards": forwards, "cached_results": cached })).into_response())
}

/// `GET /api/examples`: the bundled example photos (their ids open like uploads).
async fn examples(State(st): State<AppState>) -> Response {
    Json(serde_json::json!({ "examples": *st.examples })).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint")
}

/// Every error answer under /api is JSON, whoever produced it (extractor
/// rejections, method-not-allowed, timeouts, panics).
async fn json_errors(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    let st = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_api || !(st.is_client_error() || st.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let msg = match text.trim() {
        "" => st.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let mut out = ApiError::new(st, msg).into_response();
    if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, v.clone());
    }
    out
}
