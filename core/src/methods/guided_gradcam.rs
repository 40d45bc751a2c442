//! Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x Grad-CAM.

use super::gradcam::gradcam;
use super::{walked, Attribution, Method, Needs};
use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use tch::Tensor;

pub struct GuidedGradcam;
pub const GUIDED_GRADCAM: Method = Method(&GuidedGradcam);

impl Attribution for GuidedGradcam {
    fn name(&self) -> &'static str {
        "guided-gradcam"
    }
    fn label(&self) -> &'static str {
        "guided Grad-CAM"
    }
    fn caption(&self) -> &'static str {
        "guided Grad-CAM: guided backprop x Grad-CAM"
    }
    fn colour(&self) -> &'static str {
        "#8e44ad"
    }
    fn needs(&self) -> Needs {
        Needs {
            layer: true,
            ..Needs::default()
        }
    }
    fn rule(&self) -> Option<Rule> {
        Some(Rule::GUIDED)
    }
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        Ok(walked(e, Rule::GUIDED, target) * gradcam(e, target.class(), o.gradcam_layer))
    }
}
