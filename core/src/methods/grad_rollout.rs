//! Gradient-weighted attention rollout: each block's attention weights A
//! weighted by the positive part of the class logit's gradient there,
//! averaged over the heads — Chefer et al. 2021's rule, mean_h (∇A ⊙ A)⁺
//! (A ≥ 0, so A ⊙ (∇A)⁺) — then rolled out as [`super::rollout`] does
//! (`vit-explain`'s `grad_rollout`).

use super::rollout::{attentions, rollout, upsampled};
use super::{Attribution, Info, Method, Needs};
use crate::explain::{Explainer, Options, Target};
use crate::net::heads_of;
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct GradRollout;
pub const GRAD_ROLLOUT: Method = Method(&GradRollout);

static INFO: Info = Info {
    needs: Needs::ATTENTION,
    per_pixel: true,
    ..Info::new(
        "grad-rollout",
        "gradient rollout",
        "gradient-weighted attention rollout (Chefer et al. 2021): attentions weighted by their positive gradient for the class, multiplied through the blocks",
        "#1abc9c",
    )
};

impl Attribution for GradRollout {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        let fused: Vec<Tensor> = weighted(e, target.class())
            .iter()
            .map(|w| w.get(0))
            .collect();
        Ok(upsampled(e, &rollout(e, &fused, o.discard)))
    }
}

/// mean_h A ⊙ (∇A)⁺ of every block for `class`, [1, N, N] each: the
/// gradient at each attention node's output from one pass of autograd,
/// taken to its weights through the values (∇A = ∇O Vᵀ per head).
pub fn weighted(e: &Explainer, class: i64) -> Vec<Tensor> {
    let atts = attentions(e);
    let last = e.net.spec.nodes.len() - 1;
    let mut at: Vec<usize> = atts.iter().map(|(i, _)| *i).collect();
    at.push(last);
    let grads = tch::with_grad(|| {
        let outs = e.net.differentiable_outputs_at(&e.x, &at);
        let logit = outs[outs.len() - 1].get(0).get(class);
        Tensor::run_backward(&[logit], &outs[..outs.len() - 1], false, false)
    });
    tch::no_grad(|| {
        atts.iter()
            .zip(&grads)
            .map(|((i, a), g)| {
                let heads = a.size()[1];
                let qkv = &e.trace.inputs[&e.net.sources(*i)[0]];
                let (_, _, v) = heads_of(qkv, heads);
                let s = g.size();
                let gh = g.view([s[0], s[1], heads, s[2] / heads]).transpose(1, 2);
                let da = gh.matmul(&v.transpose(-2, -1));
                (a * da.relu()).mean_dim([1i64].as_slice(), false, Kind::Float)
            })
            .collect()
    })
}
