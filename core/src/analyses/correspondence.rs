//! Table 1: the correspondence test on a stored set of images and points (`Correspondence`).
//!
//! The science is one floor down, in `crate::correspondence`.

use crate::analysis::Analysis;
use crate::correspondence::{
    correspondence, CorrImage, CorrespondenceRequest, CorrespondenceResult,
};
use crate::engine::{bad, bad_input, Engine, Error};
use crate::params::{ContentId, ModelName};
use crate::preprocess;
use serde::{Deserialize, Serialize};

fn default_size() -> i64 {
    24
}

/// The test over a stored set (`?set=ID&size=24&seed=0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub set: ContentId,
    #[serde(default = "default_size")]
    pub size: i64,
    #[serde(default)]
    pub seed: u64,
}

/// Table 1: how consistently occluding the same part changes the features.
pub struct Correspondence;

impl Analysis for Correspondence {
    type Request = SetRequest;
    type Result = CorrespondenceResult;

    fn run(e: &mut Engine, r: &SetRequest) -> crate::engine::Result<CorrespondenceResult> {
        let net = e.net(&r.model, r.epoch)?;
        let m = e.model(&r.model)?.manifest;
        let set = e
            .ctx
            .store
            .get_set(r.set.as_str())
            .ok_or_else(|| Error::NotFound(format!("unknown set {}", r.set)))?;
        let pre = m.preprocess();
        let mut images = vec![];
        for im in &set.images {
            let id = ContentId::try_from(im.id.clone()).map_err(|x| bad(x.to_string()))?;
            let bytes = e.ctx.image_bytes(&id)?;
            let img = preprocess::decode(&bytes).map_err(|x| bad(x.to_string()))?;
            let crop = pre.crop(&img);
            let parts = im
                .parts
                .iter()
                .map(|(k, p)| (k.clone(), pre.map_point(img.dimensions(), (p[0], p[1]))))
                .collect();
            images.push(CorrImage {
                label: im.id.clone(),
                input: pre.tensor(&crop),
                parts,
            });
        }
        let req = CorrespondenceRequest {
            size: r.size,
            seed: r.seed,
        };
        correspondence(&net, &images, &req).map_err(bad_input)
    }
}

crate::names_models! {
    SetRequest: model;
}
