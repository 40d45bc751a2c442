//! The front door of every analysis: one request type in, one result type
//! out, used alike by the CLI (which builds the request from its flags) and
//! the HTTP API (which deserialises it from the URL's path and query).
//!
//! An analysis lives in the module of its science (`deconv::Projection`,
//! `occlusion::Occlusion`, …) and implements [`Analysis`]; the server wraps
//! every one in the same cached, ETag-ed JSON + PNG handler. Long analyses
//! that run beside the engine implement [`Job`] and report [`Progress`].

use crate::engine::{Context, Engine, Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One analysis: computed on the engine's thread from a typed request.
pub trait Analysis: 'static {
    /// Media type of the second representation ([`Analysis::alt`]).
    const ALT_TYPE: &'static str = "image/png";
    /// Deserialised from the URL's named path segments and query; serialised
    /// (defaults filled in) it is the result's cache key.
    type Request: DeserializeOwned + Serialize + Send + 'static;
    type Result: Serialize;

    fn run(e: &mut Engine, req: &Self::Request) -> Result<Self::Result>;

    /// The second representation of a result (a PNG, a CSV), if it has one.
    fn alt(_req: &Self::Request, _r: &mut Self::Result) -> Option<Vec<u8>> {
        None
    }

    /// Some(progress) while what the analysis reads is still being built
    /// (a dataset index); checked off the engine's thread before `run`.
    fn pending(_ctx: &Context, _req: &Self::Request) -> Result<Option<Progress>> {
        Ok(None)
    }
}

/// A computed result in its two representations.
pub struct Output {
    pub json: Vec<u8>,
    pub alt: Option<Vec<u8>>,
}

/// Run an analysis and render its representations.
pub fn output<A: Analysis>(e: &mut Engine, req: &A::Request) -> Result<Output> {
    let mut r = A::run(e, req)?;
    let alt = A::alt(req, &mut r);
    let json = serde_json::to_vec(&r).map_err(|x| Error::Internal(x.into()))?;
    Ok(Output { json, alt })
}

/// The canonical key of a request: its analysis `A` and every field, defaults included.
pub fn key<A: ?Sized, T: Serialize>(req: &T) -> String {
    let name = std::any::type_name::<A>();
    format!("{name}{}", serde_json::to_string(req).unwrap_or_default())
}

/// A long analysis that runs beside the engine (its own copies of the
/// networks), one at a time, reporting progress as (done, total).
pub trait Job: 'static {
    type Request: DeserializeOwned + Serialize + Send + 'static;
    type Result: Serialize;
    fn run(
        ctx: &Context,
        req: &Self::Request,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self::Result>;
}

/// Where a background job stands: the one progress type of the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started (nothing asked for it yet).
    Idle,
    /// Waiting its turn.
    Queued,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub state: State,
    pub done: usize,
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Progress {
    pub fn new(state: State, done: usize, total: usize) -> Progress {
        Progress {
            state,
            done,
            total,
            error: None,
        }
    }

    pub fn failed(error: String) -> Progress {
        Progress {
            error: Some(error),
            ..Progress::new(State::Failed, 0, 0)
        }
    }
}

/// The progress of background jobs by key, shared between the threads that
/// run them and the handlers that report them.
#[derive(Clone, Default)]
pub struct Jobs(Arc<Mutex<HashMap<String, Progress>>>);

impl Jobs {
    pub fn get(&self, key: &str) -> Option<Progress> {
        self.0.lock().ok()?.get(key).cloned()
    }

    pub fn set(&self, key: &str, p: Progress) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), p);
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }

    /// Insert `p` unless the key is known; answers the entry either way.
    pub fn get_or_insert(&self, key: &str, p: impl FnOnce() -> Progress) -> (Progress, bool) {
        let Ok(mut m) = self.0.lock() else {
            return (Progress::failed("job table poisoned".into()), false);
        };
        if let Some(v) = m.get(key) {
            return (v.clone(), false);
        }
        let v = p();
        m.insert(key.to_string(), v.clone());
        (v, true)
    }
}

// ---- typed parameters: a bad value is refused while deserialising ----------

fn parse_err(msg: String) -> serde::de::value::Error {
    serde::de::Error::custom(msg)
}

/// A model folder's name as it appears in URLs: a folder directly under the models dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl TryFrom<String> for ModelName {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        if valid_model_name(&s) {
            Ok(ModelName(s))
        } else {
            Err(parse_err(format!(
                "must name a model folder (letters, digits, - _ .), got {s:?}"
            )))
        }
    }
}

impl From<ModelName> for String {
    fn from(m: ModelName) -> String {
        m.0
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content id of the store (an image or a set): 64 lowercase hex digits,
/// so it can never name anything outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentId(String);

impl ContentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContentId {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        if crate::store::valid_id(&s) {
            Ok(ContentId(s))
        } else {
            Err(parse_err(format!(
                "must be a content id of 64 hex digits, got {s:?}"
            )))
        }
    }
}

impl From<ContentId> for String {
    fn from(m: ContentId) -> String {
        m.0
    }
}

impl std::fmt::Display for ContentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A comma-separated list of maps and ranges, e.g. `0-7,12` (at most 65 a range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MapList(Vec<i64>);

impl MapList {
    pub fn maps(&self) -> &[i64] {
        &self.0
    }
}

impl Default for MapList {
    fn default() -> Self {
        MapList((0..8).collect())
    }
}

impl TryFrom<String> for MapList {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        let bad = || parse_err(format!("must look like 0-7,12,20, got {s:?}"));
        let num = |v: &str| v.trim().parse::<i64>().map_err(|_| bad());
        let mut out = vec![];
        for part in s.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if b < a || b - a > 64 {
                        return Err(bad());
                    }
                    out.extend(a..=b);
                }
                None => out.push(num(part)?),
            }
        }
        Ok(MapList(out))
    }
}

impl From<MapList> for String {
    fn from(m: MapList) -> String {
        m.0.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
