//! Attention rollout (Abnar & Zuidema 2020), as the `vit-explain`
//! implementation computes it: each block's attention weights fused over
//! the heads (mean, max or min), the lowest `discard` fraction of the fused
//! matrix zeroed (never the class token's own entry), the identity added
//! and halved, the rows renormalised, the matrices multiplied from the
//! first block up; the map is the class token's row over the patch tokens,
//! divided by its maximum. A transformer's method: it reads the attention
//! weights the trace's inputs of every attention node give.

use super::{Attribution, Info, Method, Needs};
pub use crate::explain::Fusion;
use crate::explain::{Explainer, Options, Target};
use crate::net::{attention_weights, Layer, Shape};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Rollout;
pub const ROLLOUT: Method = Method(&Rollout);

static INFO: Info = Info {
    needs: Needs::ATTENTION,
    per_pixel: true,
    ..Info::new(
        "rollout",
        "attention rollout",
        "attention rollout (Abnar & Zuidema 2020): the class token's attention to the patches, multiplied through the blocks",
        "#2e86c1",
    )
};

impl Attribution for Rollout {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, _: Target, o: &Options) -> Result<Tensor> {
        let fused: Vec<Tensor> = attentions(e)
            .iter()
            .map(|(_, a)| o.fusion.fuse(a).get(0))
            .collect();
        Ok(upsampled(e, &rollout(e, &fused, o.discard)))
    }
}

/// The attention nodes of the network, in order, with their weights at the
/// explainer's image ([1, heads, N, N]).
pub fn attentions(e: &Explainer) -> Vec<(usize, Tensor)> {
    e.net
        .spec
        .ops()
        .enumerate()
        .filter_map(|(i, l)| match l {
            Layer::Attention { heads } => {
                let qkv = &e.trace.inputs[&e.net.sources(i)[0]];
                Some((i, tch::no_grad(|| attention_weights(qkv, *heads))))
            }
            _ => None,
        })
        .collect()
}

/// The rollout of fused attention matrices ([N, N] each, first block
/// first): the class token's row over the patches as a [side, side] grid,
/// divided by its maximum.
pub fn rollout(e: &Explainer, fused: &[Tensor], discard: f64) -> Tensor {
    let (prefix, side) = tokens(e);
    tch::no_grad(|| {
        let n = fused[0].size()[0];
        let opts = (Kind::Float, fused[0].device());
        let eye = Tensor::eye(n, opts);
        let mut result = eye.copy();
        for f in fused {
            let mut flat = f.to_kind(Kind::Float).reshape([-1]).copy();
            let k = ((n * n) as f64 * discard) as i64;
            if k > 0 {
                let (_, idx) = flat.topk(k, -1, false, true);
                // The class token's attention to itself stays.
                let idx = idx.masked_select(&idx.ne(0));
                let _ = flat.index_fill_(0, &idx, 0.0);
            }
            let a = (flat.view([n, n]) + &eye) / 2.0;
            let a = &a / a.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
            result = a.matmul(&result);
        }
        let mask = result.get(0).narrow(0, prefix, side * side);
        (&mask / mask.max()).view([side, side])
    })
}

/// The learned tokens before the patches and the patch grid's side, of the
/// tokens the first attention node reads.
fn tokens(e: &Explainer) -> (i64, i64) {
    let first = e
        .net
        .spec
        .ops()
        .position(|l| matches!(l, Layer::Attention { .. }));
    match first.map(|i| e.net.shapes[i]) {
        Some(Shape::Tokens { side, prefix, .. }) => (prefix, side),
        _ => (0, 0),
    }
}

/// A patch grid's map bilinearly upsampled to the input, [S, S].
pub fn upsampled(e: &Explainer, grid: &Tensor) -> Tensor {
    let s = e.net.spec.input_size;
    grid.unsqueeze(0)
        .unsqueeze(0)
        .upsample_bilinear2d([s, s], false, None, None)
        .get(0)
        .get(0)
}
