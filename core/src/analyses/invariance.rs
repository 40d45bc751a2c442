//! Fig. 5: invariance curves of one image (`Invariance`).
//!
//! The science is one floor down, in `crate::invariance`.

use crate::analysis::Analysis;
use crate::engine::{bad_input, Engine};
use crate::invariance::{invariance, InvarianceRequest, InvarianceResult};
use crate::params::{ContentId, ModelName};
use serde::Serialize;

fn default_steps() -> usize {
    13
}

/// Curves of one stored image (`?steps=13&class=K`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CurvesRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    #[serde(default = "default_steps")]
    pub steps: usize,
    pub class: Option<i64>,
}

/// Fig. 5: translation, scale and rotation curves; as CSV too.
pub struct Invariance;

impl Analysis for Invariance {
    const ALT_TYPE: &'static str = "text/csv";
    type Request = CurvesRequest;
    type Result = InvarianceResult;

    fn run(e: &mut Engine, r: &CurvesRequest) -> crate::engine::Result<InvarianceResult> {
        e.check_class(&r.model, r.class)?;
        let req = InvarianceRequest {
            steps: r.steps,
            class: r.class,
        };
        if !(2..=361).contains(&req.steps) {
            return Err(crate::engine::bad(format!(
                "steps must be 2..=361, got {}",
                req.steps
            )));
        }
        let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
        invariance(&net, &t.input, &req).map_err(bad_input)
    }

    fn alt(_: &CurvesRequest, r: &mut InvarianceResult) -> Option<Vec<u8>> {
        Some(r.to_csv().into_bytes())
    }
}

crate::names_models! {
    CurvesRequest: model;
}
