//! The top 5 classes of one image (`Predictions`) and the model's crop (`Crop`).
//!
//! The science is one floor down, in `crate::predict`.

use crate::analysis::Analysis;
use crate::engine::{Engine, Result};
use crate::params::{ContentId, ModelName};
use crate::predict::{top_k, Prediction};
use serde::Deserialize;
use serde::Serialize;

/// One stored image seen by one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
}

#[derive(Serialize)]
pub struct Top5 {
    pub top: Vec<Prediction>,
}

/// The top-5 classes of an image.
pub struct Predictions;

impl Analysis for Predictions {
    type Request = ImageRequest;
    type Result = Top5;

    fn run(e: &mut Engine, r: &ImageRequest) -> Result<Top5> {
        let m = e.model(&r.model)?;
        let (_, t) = e.traced(&r.model, r.epoch, &r.image)?;
        Ok(Top5 {
            top: top_k(&m.manifest, &t.trace, 0, 5)?,
        })
    }
}

/// The crop of a stored image as the model sees it.

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CropRequest {
    pub model: ModelName,
    pub image: ContentId,
}

/// The model crop of a stored image, as PNG (it has no JSON).
pub struct Crop;

impl Analysis for Crop {
    type Request = CropRequest;
    type Result = crate::engine::Picture;

    fn run(e: &mut Engine, r: &CropRequest) -> crate::engine::Result<Self::Result> {
        Ok(crate::engine::Picture(crate::picture::png(
            &e.crop(&r.model, &r.image)?,
        )))
    }

    fn alt(_: &CropRequest, r: &mut Self::Result) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.0))
    }
}

crate::names_models! {
    CropRequest: model;
    ImageRequest: model;
}
