//! Ablation-CAM (Desai & Ramaswamy 2020), as the grad-cam package's
//! `AblationCAM`: w_c = (y − y_c) / y, y the class logit and y_c the logit
//! with map c ablated (0 where the maps' minimum is 0, as after a ReLU;
//! else min − 1e7, the package's first ablation); then the package's
//! finish. The package runs the whole network per ablated map; here only
//! the nodes after the unit run (`Net::forward_after`), on batches of
//! ablated copies of the maps, everything before the unit computed once.

use super::{cam, Attribution, Info, Method};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Ablationcam;
pub const ABLATIONCAM: Method = Method(&Ablationcam);

static INFO: Info = cam::info(
    "ablationcam",
    "Ablation-CAM",
    "Ablation-CAM (Desai & Ramaswamy 2020): maps weighted by the drop of the class score when each is zeroed",
    "#f39c9c",
    false,
);

/// Values of ablated maps per pass (B·C·h·w at most): 16 Mi floats.
const VALUES_A_PASS: i64 = 1 << 24;

impl Attribution for Ablationcam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let a = cam::activations(e, o.cam_layer);
        let node = e.net.units[o.cam_layer - 1].node;
        let w = tch::no_grad(|| weights(e, a, node, target.class()))?;
        cam::finish(e, &cam::weighted(&w, a))
    }
}

/// (y − y_c) / y for every map c: [1, C].
fn weights(e: &Explainer, a: &Tensor, node: usize, class: i64) -> Result<Tensor> {
    let a = a.to_kind(Kind::Float);
    let (c, h, w) = (a.size()[1], a.size()[2], a.size()[3]);
    let y = e.trace.logits.double_value(&[0, class]);
    let min = a.min().double_value(&[]);
    let ablated = if min == 0.0 { 0.0 } else { min - 1e7 };
    let frontier = e.net.frontier(&e.x, node);
    let dev = e.net.device();
    let batch = (VALUES_A_PASS / (c * h * w).max(1)).clamp(1, c);
    let mut scores = Vec::with_capacity(c as usize);
    let mut k0 = 0;
    while k0 < c {
        e.report(k0 as usize, c as usize)?;
        let b = batch.min(c - k0);
        let which = Tensor::arange_start(k0, k0 + b, (Kind::Int64, dev));
        let hit = which
            .view([b, 1])
            .eq_tensor(&Tensor::arange(c, (Kind::Int64, dev)).view([1, c]))
            .view([b, c, 1, 1]);
        let value = a.expand([b, c, h, w], false).masked_fill(&hit, ablated);
        let logits = e.net.forward_after(&frontier, &value).select(1, class);
        scores.extend(crate::net::values::<f32>(
            &logits,
            "the ablated class scores",
        )?);
        k0 += b;
    }
    e.report(c as usize, c as usize)?;
    let s = Tensor::from_slice(&scores).to_device(dev);
    Ok(((-s + y) / y).to_kind(Kind::Float).view([1, c]))
}
