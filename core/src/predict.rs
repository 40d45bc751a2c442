//! Top-k predictions of one image (the model crop).

use crate::checkpoint::Manifest;
use crate::net::Trace;
use serde::Serialize;
use tch::Kind;

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub index: usize,
    pub id: String,
    pub name: String,
    pub prob: f64,
}

/// The `k` most probable classes of image `i` of the trace, most probable first.
pub fn top_k(manifest: &Manifest, trace: &Trace, i: i64, k: usize) -> Vec<Prediction> {
    top_k_of(manifest, &trace.logits.get(i).softmax(-1, Kind::Float), k)
}

/// The `k` most probable classes of a probability vector [C].
pub fn top_k_of(manifest: &Manifest, probs: &tch::Tensor, k: usize) -> Vec<Prediction> {
    let k = (k as i64).min(probs.size()[0]);
    let (v, idx) = probs.topk(k, 0, true, true);
    let v: Vec<f32> = Vec::try_from(&v).unwrap_or_default();
    let idx: Vec<i64> = Vec::try_from(&idx).unwrap_or_default();
    idx.into_iter()
        .zip(v)
        .map(|(c, p)| {
            let c = c as usize;
            let info = &manifest.classes[c];
            Prediction {
                index: c,
                id: info.id.clone(),
                name: info.name.clone(),
                prob: p as f64,
            }
        })
        .collect()
}

// ---- the analysis --------------------------------------------------------------

use crate::analysis::Analysis;
use crate::engine::{Engine, Result};
use crate::params::{ContentId, ModelName};
use serde::Deserialize;

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
            top: top_k(&m.manifest, &t.trace, 0, 5),
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
        Ok(crate::engine::Picture(crate::engine::png(
            &e.crop(&r.model, &r.image)?,
        )))
    }

    fn alt(_: &CropRequest, r: &mut Self::Result) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.0))
    }
}
