//! The deconvnet (Zeiler & Fergus 2014): the ReLU of the signal at every
//! ReLU-family activation, LRN skipped.

use super::{Attribution, Info, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct Deconv;
pub const DECONV: Method = Method(&Deconv);

static INFO: Info = Info {
    needs: Needs::MAP,
    rule: Some(Rule::DECONV),
    ..Info::new(
        "deconv",
        "deconvnet",
        "deconvnet (Zeiler & Fergus 2014): ReLU of the signal",
        "#c0392b",
    )
};

impl Attribution for Deconv {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, _: &Options) -> Result<Tensor> {
        Ok(e.pixels(Rule::DECONV, target))
    }
}
