//! Guided backprop (Springenberg et al. 2015): the ReLU of the signal where
//! the activation's input was > 0; LRN's true gradient.

use super::{Attribution, Info, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Guided;
pub const GUIDED: Method = Method(&Guided);

static INFO: Info = Info {
    needs: Needs::MAP,
    rule: Some(Rule::GUIDED),
    ..Info::new(
        "guided",
        "guided backprop",
        "guided backprop (Springenberg et al. 2015): ReLU of the signal where the input was > 0",
        "#2e6bd6",
    )
};

impl Attribution for Guided {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(e.pixels(Rule::GUIDED, target))
    }
}
