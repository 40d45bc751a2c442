//! The gradient (Simonyan et al. 2014): the signal where the activation's
//! input was > 0; LRN's true gradient.

use super::{walked, Attribution, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Gradient;
pub const GRADIENT: Method = Method(&Gradient);

impl Attribution for Gradient {
    fn name(&self) -> &'static str {
        "gradient"
    }
    fn label(&self) -> &'static str {
        "gradient"
    }
    fn caption(&self) -> &'static str {
        "gradient (Simonyan et al. 2014): the signal where the input was > 0"
    }
    fn colour(&self) -> &'static str {
        "#7f8c8d"
    }
    fn needs(&self) -> Needs {
        Needs {
            map: true,
            ..Needs::default()
        }
    }
    fn rule(&self) -> Option<Rule> {
        Some(Rule::GRADIENT)
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(walked(e, Rule::GRADIENT, target))
    }
}
