//! The front door of every analysis: one request type in, one result type
//! out, used alike by the CLI (which builds the request from its flags) and
//! the HTTP API (which deserialises it from the URL's path and query).
//!
//! An analysis lives in the module of its science (`deconv::Projection`,
//! `crate::analyses::occlusion::Occlusion`, …) and implements [`Analysis`]; the server wraps
//! every one in the same cached, ETag-ed JSON + PNG handler. Long analyses
//! that run beside the engine implement [`Job`] and report [`Progress`].

use crate::engine::{Context, Engine};
use crate::error::{Error, Result};
use crate::progress::Progress;
use serde::de::DeserializeOwned;
use serde::Serialize;

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

    /// Some(v) when the result depends on a dataset that changes while the
    /// server runs (the image store): `v` names its state, and answers are
    /// kept per state and revalidated by browsers instead of kept for good.
    fn version(_ctx: &Context, _req: &Self::Request) -> Option<u64> {
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
/// networks), one at a time, reporting progress as (done, total) and
/// stopping with the report's error once cancelled.
pub trait Job: 'static {
    type Request: DeserializeOwned + Serialize + Send + 'static;
    type Result: Serialize;

    /// Cheap checks of the request (models, snapshots, ranges), before the
    /// job is queued: bad input is answered at once, not after a wait.
    fn check(_ctx: &Context, _req: &Self::Request) -> Result<()> {
        Ok(())
    }

    fn run(
        ctx: &Context,
        req: &Self::Request,
        progress: &mut crate::progress::Report<'_>,
    ) -> Result<Self::Result>;
}
