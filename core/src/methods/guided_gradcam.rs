//! Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x Grad-CAM.

use super::gradcam::gradcam;
use super::{Attribution, Info, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct GuidedGradcam;
pub const GUIDED_GRADCAM: Method = Method(&GuidedGradcam);

static INFO: Info = Info {
    needs: Needs {
        layer: true,
        ..Needs::NONE
    },
    rule: Some(Rule::GUIDED),
    ..Info::new(
        "guided-gradcam",
        "guided Grad-CAM",
        "guided Grad-CAM: guided backprop x Grad-CAM",
        "#8e44ad",
    )
};

impl Attribution for GuidedGradcam {
    fn info(&self) -> &'static Info {
        &INFO
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        Ok(e.pixels(Rule::GUIDED, target) * gradcam(e, target.class(), o.cam_layer))
    }
}
