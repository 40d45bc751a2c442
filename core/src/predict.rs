//! Top-k predictions of one image (the model crop).

use crate::checkpoint::Manifest;
use crate::net::Trace;
use anyhow::Result;
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
pub fn top_k(manifest: &Manifest, trace: &Trace, i: i64, k: usize) -> Result<Vec<Prediction>> {
    top_k_of(manifest, &trace.logits.get(i).softmax(-1, Kind::Float), k)
}

/// The `k` most probable classes of a probability vector [C].
pub fn top_k_of(manifest: &Manifest, probs: &tch::Tensor, k: usize) -> Result<Vec<Prediction>> {
    let k = (k as i64).min(probs.size()[0]);
    let (v, idx) = probs.topk(k, 0, true, true);
    let v: Vec<f32> = crate::net::values(&v, "the top probabilities")?;
    let idx: Vec<i64> = crate::net::values(&idx, "the top classes")?;
    idx.into_iter()
        .zip(v)
        .map(|(c, p)| {
            let c = c as usize;
            let info = manifest.classes.get(c).ok_or_else(|| {
                anyhow::anyhow!("class {c} of {} classes", manifest.classes.len())
            })?;
            Ok(Prediction {
                index: c,
                id: info.id.clone(),
                name: info.name.clone(),
                prob: p as f64,
            })
        })
        .collect()
}
