//! The deconvnet (Zeiler & Fergus 2014): the ReLU of the signal at every
//! ReLU-family activation, LRN skipped.

use super::{walked, Attribution, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Deconv;
pub const DECONV: Method = Method(&Deconv);

impl Attribution for Deconv {
    fn name(&self) -> &'static str {
        "deconv"
    }
    fn label(&self) -> &'static str {
        "deconvnet"
    }
    fn caption(&self) -> &'static str {
        "deconvnet (Zeiler & Fergus 2014): ReLU of the signal"
    }
    fn colour(&self) -> &'static str {
        "#c0392b"
    }
    fn needs(&self) -> Needs {
        Needs {
            map: true,
            ..Needs::default()
        }
    }
    fn rule(&self) -> Option<Rule> {
        Some(Rule::DECONV)
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(walked(e, Rule::DECONV, target))
    }
}
