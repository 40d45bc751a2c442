//! The gradient (Simonyan et al. 2014): the signal where the activation's
//! input was > 0; LRN's true gradient.

use super::{Attribution, Info, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Gradient;
pub const GRADIENT: Method = Method(&Gradient);

static INFO: Info = Info {
    needs: Needs::MAP,
    rule: Some(Rule::GRADIENT),
    ..Info::new(
        "gradient",
        "gradient",
        "gradient (Simonyan et al. 2014): the signal where the input was > 0",
        "#7f8c8d",
    )
};

impl Attribution for Gradient {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(e.pixels(Rule::GRADIENT, target))
    }
}
