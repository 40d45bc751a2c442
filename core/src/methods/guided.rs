//! Guided backprop (Springenberg et al. 2015): the ReLU of the signal where
//! the activation's input was > 0; LRN's true gradient.

use super::{walked, Attribution, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Guided;
pub const GUIDED: Method = Method(&Guided);

impl Attribution for Guided {
    fn name(&self) -> &'static str {
        "guided"
    }
    fn label(&self) -> &'static str {
        "guided backprop"
    }
    fn caption(&self) -> &'static str {
        "guided backprop (Springenberg et al. 2015): ReLU of the signal where the input was > 0"
    }
    fn colour(&self) -> &'static str {
        "#2e6bd6"
    }
    fn needs(&self) -> Needs {
        Needs {
            map: true,
            ..Needs::default()
        }
    }
    fn rule(&self) -> Option<Rule> {
        Some(Rule::GUIDED)
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(walked(e, Rule::GUIDED, target))
    }
}
