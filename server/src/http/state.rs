//! What every handler shares: the application state (the engine's worker,
//! the answer cache, the job table, the examples), the typed request
//! extractor [`Req`], the cached answer type and [`blocking`]. The generic
//! handlers (`serve.rs`) and the job handlers (`jobs.rs`) both read it;
//! neither reads the other.

use crate::error::ApiError;
use crate::worker::Worker;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use zfvis_core::engine::Context;

#[derive(Clone)]
pub struct AppState {
    /// The libtorch thread that owns the engine.
    pub worker: Worker,
    pub ctx: Context,
    /// Results by canonical request key; concurrent identical requests are
    /// computed once (moka's `try_get_with` coalesces them).
    pub cache: moka::future::Cache<String, Arc<Outputs>>,
    /// Background jobs (feature analysis, comparisons) run one at a time,
    /// in order of arrival.
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// Their progress and cancel flags; their results are kept on disk.
    pub jobs: super::job_table::JobTable,
    /// The bundled example photos, stored at start.
    pub examples: Arc<Vec<zfvis_core::examples::Example>>,
}

/// A typed request: the URL's named path segments and its query, as one
/// struct. A bad value is a 400 that names the parameter.
pub struct Req<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Req<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> =
            match RawPathParams::from_request_parts(parts, state).await {
                Ok(p) => p.iter().map(|(k, v)| (k.into(), v.into())).collect(),
                Err(RawPathParamsRejection::InvalidUtf8InPathParam(e)) => {
                    return Err(ApiError::bad(e.body_text()))
                }
                Err(_) => vec![],
            };
        // Empty query values mean "the default"; path segments win over the query.
        let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
        for (k, v) in query {
            if !v.is_empty() && !pairs.iter().any(|(p, _)| *p == k) {
                pairs.push((k.into_owned(), v.into_owned()));
            }
        }
        resolve_unit(state, &mut pairs).await?;
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Req)
            .map_err(|e| ApiError::bad(describe(&e, &pairs)))
    }
}

/// A `layer` given by name (`layer3.1`, `u:123`) becomes the unit's number
/// in the model's list (conv layers keep their numbers).
async fn resolve_unit(st: &AppState, pairs: &mut [(String, String)]) -> Result<(), ApiError> {
    let Some(i) = pairs
        .iter()
        .position(|(k, v)| k == "layer" && !v.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok(());
    };
    let Some(model) = pairs
        .iter()
        .find(|(k, _)| k == "model")
        .map(|p| p.1.clone())
    else {
        return Ok(());
    };
    let key = pairs[i].1.clone();
    let dir = st.ctx.models.clone();
    let n = blocking(move || {
        let m = zfvis_core::models::open_model(&dir, &model)?;
        let spec = m.manifest.spec().map_err(zfvis_core::error::Error::from)?;
        Ok(spec
            .find_unit(&key)
            .map_err(|e| zfvis_core::error::bad(e.to_string()))?)
    })
    .await?;
    pairs[i].1 = n.to_string();
    Ok(())
}

/// One sentence naming the parameter, what it must be and what it was.
fn describe(
    e: &serde_path_to_error::Error<serde_urlencoded::de::Error>,
    pairs: &[(String, String)],
) -> String {
    let inner = e.inner().to_string();
    if let Some(name) = inner
        .strip_prefix("missing field `")
        .and_then(|s| s.strip_suffix('`'))
    {
        return format!("missing query parameter {name}");
    }
    let field = e.path().to_string();
    let got = pairs
        .iter()
        .find(|(k, _)| *k == field)
        .map_or("", |(_, v)| v.as_str());
    if inner.starts_with("must ") {
        return format!("{field} {inner}");
    }
    if let Some((_, expected)) = inner.split_once(", expected ") {
        let expected = expected.replace("one of ", "one of: ").replace('`', "\"");
        return format!("{field} must be {expected}, got {got:?}");
    }
    if inner.contains("too large") || inner.contains("too small") {
        return format!("{field} {got} is out of range");
    }
    if got.starts_with('-') && got.parse::<i64>().is_ok() {
        return format!("{field} must be a non-negative integer, got {got:?}");
    }
    let what = if inner.contains("float") {
        "a number"
    } else {
        "an integer"
    };
    format!("{field} must be {what}, got {got:?}")
}

/// One representation of a computed result, ready to send.
pub struct Cached {
    pub body: Bytes,
    pub content_type: &'static str,
    pub etag: String,
    /// True for content-addressed bytes only (kept by browsers for good).
    pub immutable: bool,
}

/// The representations of one computed result.
pub struct Outputs {
    pub json: Cached,
    pub alt: Option<Cached>,
}

impl Cached {
    /// Content-addressed bytes (an uploaded image): the ETag is the body's
    /// digest and the answer never changes under its URL.
    pub fn new(body: Vec<u8>, content_type: &'static str) -> Cached {
        let h = Sha256::digest(&body);
        Cached {
            etag: format!("\"{}\"", zfvis_core::store::hex(&h[..16])),
            body: Bytes::from(body),
            content_type,
            immutable: true,
        }
    }

    /// A computed answer: its ETag is that of its key (the request and the
    /// content identity of the models it names, see [`etag_of`]); browsers
    /// revalidate, since the folder under a model's URL can change.
    pub fn keyed(body: Vec<u8>, content_type: &'static str, key: &str) -> Cached {
        Cached {
            etag: etag_of(key, content_type),
            body: Bytes::from(body),
            content_type,
            immutable: false,
        }
    }

    /// Strong ETag, 304 on match; kept for good only when content-addressed.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let hit = matches(headers, &self.etag);
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
            HeaderValue::from_static(if self.immutable {
                "public, max-age=31536000, immutable"
            } else {
                REVALIDATE
            }),
        );
        res
    }
}

/// Computed answers are stored by browsers but checked on every use.
const REVALIDATE: &str = "no-cache";

/// The ETag of the answer of `key` in `content_type`: answers are
/// deterministic per key, so a browser's copy is checked without computing.
pub fn etag_of(key: &str, content_type: &str) -> String {
    let h = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0])
        .chain_update(content_type.as_bytes())
        .finalize();
    format!("\"{}\"", zfvis_core::store::hex(&h[..16]))
}

/// Whether the request's `If-None-Match` names `etag`.
pub fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// A 304 for `etag` (the browser's copy of a computed answer is current).
pub fn not_modified(etag: &str) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    res
}

/// Run blocking work (disk, manifests) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("the request failed"))?
}
