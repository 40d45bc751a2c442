//! The sanity check of the methods' maps (the `Sanity` job: `zfvis sanity`, /api/sanity).
//!
//! The science is one floor down, in `crate::sanity`.

use crate::analysis::Job;
use crate::engine::{bad_input, Context};
use crate::methods::Method;
use crate::params::{ContentId, ModelName};
use crate::sanity::{cascade, parametrised, Scores};
use anyhow::Result;
use serde::Deserialize;
use serde::Serialize;
use std::collections::BTreeMap;
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SanityRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    /// Comma-separated (default: every method but occlusion).
    #[serde(default)]
    pub methods: Option<String>,
    #[serde(default)]
    pub seed: u64,
    /// Re-initialisations after the trained model (default: every
    /// parametrised layer).
    #[serde(default)]
    pub steps: Option<usize>,
}

impl SanityRequest {
    pub fn methods(&self) -> Result<Vec<Method>> {
        match &self.methods {
            None => Ok(Method::defaults()),
            Some(s) => Method::parse_list(s),
        }
    }
}

#[derive(Serialize)]
pub struct StepResult {
    pub step: usize,
    pub randomised: Vec<String>,
    pub scores: BTreeMap<&'static str, Scores>,
    /// Each method's saliency picture (the methods view's convention).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub png: BTreeMap<&'static str, String>,
    /// The maps (RGB order), for `--out-dir`.
    #[serde(skip)]
    pub maps: Vec<(Method, Tensor)>,
}

#[derive(Serialize)]
pub struct SanityResult {
    /// The trained model's top class, whose maps are compared.
    pub class: i64,
    pub methods: Vec<Method>,
    /// The parametrised layers from the output down.
    pub layers: Vec<String>,
    pub seed: u64,
    pub steps: Vec<StepResult>,
}

pub struct Sanity;

impl Job for Sanity {
    type Request = SanityRequest;
    type Result = SanityResult;

    fn check(ctx: &Context, r: &SanityRequest) -> crate::engine::Result<()> {
        ctx.snapshot(&r.model, Some(r.epoch))?;
        ctx.image_bytes(&r.image)?;
        r.methods().map_err(bad_input)?;
        Ok(())
    }

    fn run(
        ctx: &Context,
        r: &SanityRequest,
        progress: &mut crate::progress::Report<'_>,
    ) -> crate::engine::Result<SanityResult> {
        let (m, x) = crate::analyses::explain::input_of(ctx, &r.model, &r.image)?;
        let mut net = m.load(Some(r.epoch), ctx.device)?;
        let methods: Vec<Method> = r
            .methods()
            .map_err(bad_input)?
            .into_iter()
            .filter(|m| r.methods.is_some() || m.applies(&net))
            .collect();
        let layers = parametrised(&net);
        let steps = r.steps.unwrap_or(layers.len());
        let (class, out) =
            cascade(&mut net, &x, &methods, steps, r.seed, progress).map_err(bad_input)?;
        let steps = out
            .into_iter()
            .map(|s| {
                let maps: Vec<(Method, Tensor)> = methods
                    .iter()
                    .zip(s.maps)
                    .map(|(&m, t)| {
                        (
                            m,
                            crate::analyses::explain::rgb(&net, t.to_device(tch::Device::Cpu)),
                        )
                    })
                    .collect();
                Ok(StepResult {
                    step: s.step,
                    randomised: s.randomised,
                    scores: s.scores.into_iter().map(|(m, v)| (m.name(), v)).collect(),
                    png: maps
                        .iter()
                        .map(|(m, t)| {
                            Ok((
                                m.name(),
                                crate::picture::data_url(&crate::picture::heat_image(t)?),
                            ))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    maps,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SanityResult {
            class,
            methods,
            layers: layers.into_iter().map(|l| l.1).collect(),
            seed: r.seed,
            steps,
        })
    }
}

crate::names_models! {
    SanityRequest: model;
}
