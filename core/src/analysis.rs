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
use crate::params::ModelName;
use crate::progress::Progress;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One analysis: computed on the engine's thread from a typed request.
pub trait Analysis: 'static {
    /// Media type of the second representation ([`Analysis::alt`]).
    const ALT_TYPE: &'static str = "image/png";
    /// Deserialised from the URL's named path segments and query; serialised
    /// (defaults filled in) it is the result's cache key.
    type Request: DeserializeOwned + Serialize + Models + Send + 'static;
    type Result: Serialize;

    fn run(e: &mut Engine, req: &Self::Request) -> Result<Self::Result>;

    /// The second representation of a result (a PNG, a CSV), if it has one.
    fn alt(_req: &Self::Request, _r: &mut Self::Result) -> Option<Vec<u8>> {
        None
    }

    /// Some(v) when the result depends on a dataset that changes while the
    /// server runs (the image store): `v` names its state, and answers are
    /// kept per state and revalidated by browsers instead of kept for good.
    fn version(_ctx: &Context, _req: &Self::Request) -> Result<Option<u64>> {
        Ok(None)
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

/// The model folders a request names: their content identities (see
/// [`crate::identity`]) join its key, so that an answer is never given for
/// another network than the one in the folder now.
pub trait Models {
    fn models(&self) -> Vec<&ModelName>;
}

/// `Models` for request types by the fields that name model folders
/// (`ModelName` or `Option<ModelName>`).
#[macro_export]
macro_rules! names_models {
    ($($t:ty: $($f:ident)+;)*) => {$(
        impl $crate::analysis::Models for $t {
            fn models(&self) -> Vec<&$crate::params::ModelName> {
                let mut v = vec![];
                $($crate::analysis::OneOrNone::push_to(&self.$f, &mut v);)+
                v
            }
        }
    )*};
}

/// A field naming a model folder, or maybe one.
pub trait OneOrNone {
    fn push_to<'a>(&'a self, v: &mut Vec<&'a ModelName>);
}

impl OneOrNone for ModelName {
    fn push_to<'a>(&'a self, v: &mut Vec<&'a ModelName>) {
        v.push(self)
    }
}

impl OneOrNone for Option<ModelName> {
    fn push_to<'a>(&'a self, v: &mut Vec<&'a ModelName>) {
        v.extend(self.as_ref())
    }
}

/// The canonical key of a request: its analysis `A` and every field,
/// defaults included (for what stays within one computation).
pub fn key<A: ?Sized, T: Serialize>(req: &T) -> Result<String> {
    let name = std::any::type_name::<A>();
    let json = serde_json::to_string(req).map_err(|x| Error::Internal(x.into()))?;
    Ok(format!("{name}{json}"))
}

/// The key of a request's answer: [`key`] and the content identity of
/// every model folder it names (an unknown model is its 404).
pub fn content_key<A: ?Sized, T: Serialize + Models>(ctx: &Context, req: &T) -> Result<String> {
    let mut k = key::<A, T>(req)?;
    for m in req.models() {
        k.push('#');
        k.push_str(&ctx.model_id(m)?);
    }
    Ok(k)
}

/// A long analysis that runs beside the engine (its own copies of the
/// networks), one at a time, reporting progress as (done, total) and
/// stopping with the report's error once cancelled.
pub trait Job: 'static {
    type Request: DeserializeOwned + Serialize + Models + Send + 'static;
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

    /// [`Job::run`] that also shows what it has so far: `preview` takes a
    /// picture (a data URL) that the job's progress reports until the next.
    fn run_previewing(
        ctx: &Context,
        req: &Self::Request,
        progress: &mut crate::progress::Report<'_>,
        _preview: &mut dyn FnMut(String),
    ) -> Result<Self::Result> {
        Self::run(ctx, req, progress)
    }
}
