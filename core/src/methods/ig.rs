//! Integrated gradients (Sundararajan et al. 2017) of the class from the
//! zero baseline (the mean colour): Captum's riemann_trapezoid (alphas
//! linspace(0, 1, n), steps 1/n halved at both ends), `batch` steps a pass.

use super::{Attribution, Info, Method, Needs};
use crate::deconv::{walk, Rule};
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Ig;
pub const IG: Method = Method(&Ig);

static INFO: Info = Info {
    needs: Needs {
        steps: true,
        ..Needs::NONE
    },
    rule: Some(Rule::GRADIENT),
    ..Info::new(
        "ig",
        "integrated gradients",
        "integrated gradients (Sundararajan et al. 2017): 50 steps from the mean colour",
        "#27ae60",
    )
};

impl Attribution for Ig {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        integrated_gradients(e, target.class(), o.ig_steps, o.batch)
    }
}

fn integrated_gradients(e: &Explainer, class: i64, steps: i64, batch: i64) -> Result<Tensor> {
    let alphas = Tensor::linspace(0.0, 1.0, steps, (Kind::Float, tch::Device::Cpu));
    let alphas: Vec<f32> = Vec::try_from(&alphas)?;
    let n = alphas.len();
    let mut total = e.x.zeros_like();
    let dev = e.net.device();
    for chunk in (0..n).collect::<Vec<_>>().chunks(batch.max(1) as usize) {
        let a: Vec<f32> = chunk.iter().map(|&i| alphas[i]).collect();
        let w: Vec<f32> = chunk
            .iter()
            .map(|&i| {
                if i == 0 || i == n - 1 {
                    0.5 / n as f32
                } else {
                    1.0 / n as f32
                }
            })
            .collect();
        let b = a.len() as i64;
        let a = Tensor::from_slice(&a).to_device(dev).view([b, 1, 1, 1]);
        let w = Tensor::from_slice(&w).to_device(dev).view([b, 1, 1, 1]);
        let xs = &e.x * &a;
        let trace = e.net.trace_saving(&xs);
        let s = Tensor::zeros([b, e.num_classes()], (Kind::Float, dev));
        let _ = s.narrow(1, class, 1).fill_(1.0);
        let last = e.net.spec.nodes.len() - 1;
        let g = walk(e.net, &trace, last, &s, Rule::GRADIENT, None).0;
        total += (g * w).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
    }
    Ok((&e.x * total).get(0))
}
