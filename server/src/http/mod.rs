//! The HTTP API and pages. The router below is the API's table of contents.

mod analysis;
mod compare;
mod dataset;
mod images;
mod pages;

use crate::worker::Worker;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use zfvis_core::engine;
use zfvis_core::store::ImageStore;

/// Largest accepted upload.
pub const MAX_UPLOAD: usize = 20 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub worker: Worker,
    pub store: ImageStore,
    /// Results by canonical request key; concurrent identical requests are
    /// computed once (moka's `try_get_with` coalesces them).
    pub cache: moka::future::Cache<String, Arc<Outputs>>,
    pub models: PathBuf,
    /// Present when the server was started with `--dataset`.
    pub indexer: Option<crate::indexer::Indexer>,
    /// Long comparisons run one at a time.
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// Progress (done, total) of running comparisons by request key.
    pub progress: Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>>,
}

/// The representations of one computed result.
pub struct Outputs {
    pub json: Arc<Cached>,
    /// A second representation (PNG, CSV) of the same result.
    pub alt: Option<Arc<Cached>>,
}

pub struct Cached {
    pub body: Bytes,
    pub content_type: &'static str,
    pub etag: String,
}

pub struct Config {
    pub models: PathBuf,
    pub data: PathBuf,
    pub static_dir: PathBuf,
    pub device: zfvis_core::tch::Device,
    pub queue: usize,
    pub dataset: Option<PathBuf>,
}

pub fn app(cfg: Config) -> anyhow::Result<Router> {
    let store = ImageStore::open(&cfg.data)?;
    let (models, store2, device) = (cfg.models.clone(), store.clone(), cfg.device);
    let worker = Worker::spawn(
        move || engine::Engine::new(models, store2, device, 32),
        cfg.queue,
    );
    let state = AppState {
        worker,
        store,
        cache: moka::future::Cache::builder().max_capacity(2_000).build(),
        models: cfg.models.clone(),
        indexer: cfg
            .dataset
            .clone()
            .map(|d| crate::indexer::Indexer::spawn(cfg.models.clone(), d, cfg.device)),
        heavy: Arc::new(tokio::sync::Semaphore::new(1)),
        progress: Arc::default(),
    };
    let m = "/api/models/{model}/snapshots/{epoch}/images/{image}";
    let api = Router::new()
        .route("/api/stats", get(analysis::stats))
        .route("/api/models", get(analysis::models))
        .route("/api/models/{model}", get(analysis::model))
        .route("/api/images", get(images::recent).post(images::upload))
        .route("/api/images/{image}", get(images::original))
        .route(
            "/api/models/{model}/images/{image}/crop.png",
            get(analysis::crop),
        )
        .route(&format!("{m}/predictions"), get(analysis::predictions))
        .route(
            &format!("{m}/layers/{{layer}}/maps"),
            get(analysis::maps_json),
        )
        .route(
            &format!("{m}/layers/{{layer}}/maps.png"),
            get(analysis::maps_png),
        )
        .route(
            &format!("{m}/layers/{{layer}}/maps/{{map}}/projection"),
            get(analysis::projection_json),
        )
        .route(
            &format!("{m}/layers/{{layer}}/maps/{{map}}/projection.png"),
            get(analysis::projection_png),
        )
        .route(
            &format!("{m}/layers/{{layer}}/top9"),
            get(analysis::top9_json),
        )
        .route(
            &format!("{m}/layers/{{layer}}/top9.png"),
            get(analysis::top9_png),
        )
        .route(&format!("{m}/occlusion"), get(analysis::occlusion_json))
        .route(&format!("{m}/occlusion.png"), get(analysis::occlusion_png))
        .route(
            &format!("{m}/occlusion/live"),
            get(analysis::occlusion_live),
        )
        .route(
            &format!("{m}/occlusion/projection"),
            get(analysis::occluded_projection_json),
        )
        .route(
            &format!("{m}/occlusion/projection.png"),
            get(analysis::occluded_projection_png),
        )
        .route(&format!("{m}/invariance"), get(analysis::invariance_json))
        .route(
            &format!("{m}/invariance.csv"),
            get(analysis::invariance_csv),
        )
        .route(
            "/api/models/{model}/snapshots/{epoch}/filters",
            get(compare::filters_json),
        )
        .route(
            "/api/models/{model}/snapshots/{epoch}/filters.png",
            get(compare::filters_png),
        )
        .route("/api/compare", get(compare::numbers))
        .route("/api/compare/progress", get(compare::progress))
        .route("/api/sets", axum::routing::post(images::put_set))
        .route("/api/sets/{set}", get(images::get_set))
        .route(
            "/api/models/{model}/snapshots/{epoch}/correspondence",
            get(analysis::correspondence),
        )
        .route(
            "/api/models/{model}/snapshots/{epoch}/dataset/index",
            get(dataset::status),
        )
        .route(
            "/api/models/{model}/snapshots/{epoch}/dataset/layers/{layer}/maps/{map}/top9",
            get(dataset::top9_json),
        )
        .route(
            "/api/models/{model}/snapshots/{epoch}/dataset/layers/{layer}/maps/{map}/top9.png",
            get(dataset::top9_png),
        )
        .route(
            "/api/models/{model}/dataset/timeline",
            get(dataset::timeline_json),
        )
        .route(
            "/api/models/{model}/dataset/timeline.png",
            get(dataset::timeline_png),
        )
        .route("/api/dataset/images", axum::routing::post(dataset::import))
        .route(
            "/api/models/{model}/images/{image}/layers/{layer}/maps/{map}/evolution.png",
            get(analysis::evolution_png),
        )
        .route("/api/{*rest}", get(not_found).post(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD + 64 * 1024));
    Ok(Router::new()
        .route("/", get(pages::index))
        .route("/compare", get(pages::compare))
        .merge(api)
        .nest_service("/static", ServeDir::new(&cfg.static_dir))
        .fallback(pages::not_found)
        // Outer guard: absurd bodies are refused before anyone reads them;
        // uploads between 20 and 64 MB get their 413 from the handler.
        .layer(RequestBodyLimitLayer::new(images::MAX_DRAIN))
        .layer(middleware::from_fn(json_errors))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(120),
        ))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint")
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
    if is_api && (st.is_client_error() || st.is_server_error()) && !is_json {
        let (parts, body) = res.into_parts();
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let msg = if text.trim().is_empty() {
            st.canonical_reason().unwrap_or("error").to_string()
        } else {
            text.trim().to_string()
        };
        let mut out = ApiError::new(st, msg).into_response();
        if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
            out.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        return out;
    }
    res
}

/// One error type for the whole API: a status and a JSON `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry in a second",
        )
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            engine::Error::BadInput(m) => Self::bad(m),
            engine::Error::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                Self::internal(format!("{e:#}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl Cached {
    pub fn new(body: Vec<u8>, content_type: &'static str) -> Arc<Cached> {
        let h = Sha256::digest(&body);
        let etag = format!("\"{}\"", zfvis_core::store::hex(&h[..16]));
        Arc::new(Cached {
            body: Bytes::from(body),
            content_type,
            etag,
        })
    }

    /// Deterministic per URL: strong ETag, long cache lifetime, 304 on match.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let hit = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == self.etag || t.trim() == "*")
            });
        let mut res = if hit {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(header::CONTENT_TYPE, self.content_type)],
                self.body.clone(),
            )
                .into_response()
        };
        let h = res.headers_mut();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&self.etag).expect("hex etag"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
        res
    }
}
