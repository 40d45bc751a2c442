//! The attribution methods (paper.md §8): one file each, one line each in
//! [`ALL`]. The CLI's `--method` values and help, the API's method list
//! (`GET /api/methods/list`), the methods page, the sanity check and the
//! benchmarks all read [`ALL`]; adding a method is adding a file here and
//! its line below (as pytorch-grad-cam's variants and Captum's classes).
//!
//! A method computes its map from one [`Explainer`] (one image traced
//! once for every method); the reversed networks differ only in their
//! [`Rule`] at ReLU-family activations.

use crate::deconv::Rule;
use crate::explain::{Explainer, Options, Target};
use crate::net::{check, Shape};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

mod ablationcam;
mod cam;
mod deconv;
mod eigencam;
mod grad_rollout;
mod gradcam;
mod gradcam_pp;
mod gradient;
mod guided;
mod guided_gradcam;
mod hirescam;
mod ig;
mod layercam;
mod occlusion;
pub mod rollout;
pub mod scorecam;
pub mod smooth;
mod xgradcam;

pub use crate::explain::Smooth;
pub use ablationcam::ABLATIONCAM;
pub use deconv::DECONV;
pub use eigencam::EIGENCAM;
pub use grad_rollout::{weighted as grad_rollout_weights, GRAD_ROLLOUT};
pub use gradcam::GRADCAM;
pub use gradcam_pp::GRADCAM_PP;
pub use gradient::GRADIENT;
pub use guided::GUIDED;
pub use guided_gradcam::GUIDED_GRADCAM;
pub use hirescam::HIRESCAM;
pub use ig::IG;
pub use layercam::LAYERCAM;
pub use occlusion::OCCLUSION;
pub use rollout::{Fusion, ROLLOUT};
pub use scorecam::SCORECAM;
pub use xgradcam::XGRADCAM;

/// Every method, in the order the views show them.
pub const ALL: [Method; 16] = [
    DECONV,
    GUIDED,
    GRADIENT,
    GRADCAM,
    GUIDED_GRADCAM,
    IG,
    GRADCAM_PP,
    XGRADCAM,
    HIRESCAM,
    LAYERCAM,
    EIGENCAM,
    ABLATIONCAM,
    SCORECAM,
    OCCLUSION,
    ROLLOUT,
    GRAD_ROLLOUT,
];

/// What a method needs besides the image and its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Needs {
    /// It can explain a unit's map (its strongest activation), not only a class.
    pub map: bool,
    /// A unit with maps (the CAM family's; default the suggested unit,
    /// the last with maps before global pooling).
    pub layer: bool,
    /// The occluder's window (size and stride).
    pub window: bool,
    /// Integration steps.
    pub steps: bool,
    /// A transformer's attention weights (attention rollout).
    pub attention: bool,
}

/// What a method is called, shows and needs: one constant per method file
/// (as the API's method list serialises it).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Info {
    /// The name on the command line, in URLs and in JSON.
    pub name: &'static str,
    /// A short label for legends and messages.
    pub label: &'static str,
    /// What the map shows, for captions.
    pub caption: &'static str,
    /// The colour of its curves on the methods page.
    pub colour: &'static str,
    pub needs: Needs,
    /// Maps with one value per pixel (H x W) rather than per input channel.
    pub per_pixel: bool,
    /// The rule of its walk back at ReLU-family activations, if it walks
    /// back (serialised as what it does, in words).
    #[serde(serialize_with = "rule_name")]
    pub rule: Option<Rule>,
    /// Run by the sanity check and the benchmarks unless told otherwise
    /// (occlusion is not: a full forward per position).
    pub by_default: bool,
}

fn rule_name<S: serde::Serializer>(r: &Option<Rule>, s: S) -> std::result::Result<S::Ok, S::Error> {
    r.map(|r| r.name).serialize(s)
}

impl Info {
    /// A pixel method run by default, needing nothing but a class target.
    pub const fn new(
        name: &'static str,
        label: &'static str,
        caption: &'static str,
        colour: &'static str,
    ) -> Info {
        Info {
            name,
            label,
            caption,
            colour,
            needs: Needs::NONE,
            per_pixel: false,
            rule: None,
            by_default: true,
        }
    }
}

impl Needs {
    /// Nothing but the image and a class.
    pub const NONE: Needs = Needs {
        map: false,
        layer: false,
        window: false,
        steps: false,
        attention: false,
    };
    /// A class, or a unit's map.
    pub const MAP: Needs = Needs {
        map: true,
        ..Needs::NONE
    };
    /// A class of a network with self-attention.
    pub const ATTENTION: Needs = Needs {
        attention: true,
        ..Needs::NONE
    };
}

/// One attribution method: its [`Info`] and how it computes its map. The
/// shared work (the trace, the target, the walk back, checks, scores) is the
/// [`Explainer`]'s.
pub trait Attribution: Sync + 'static {
    fn info(&self) -> &'static Info;
    /// The map for `target`: [C, S, S] or, per pixel, [S, S]; in the
    /// network's channel order. Called after [`Method::check`].
    fn compute(&self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor>;
}

/// A method of the registry: a handle, compared and serialised by name.
#[derive(Clone, Copy)]
pub struct Method(&'static dyn Attribution);

impl std::ops::Deref for Method {
    type Target = dyn Attribution;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        self.info().name
    }
    pub fn label(self) -> &'static str {
        self.info().label
    }
    pub fn caption(self) -> &'static str {
        self.info().caption
    }
    pub fn needs(self) -> Needs {
        self.info().needs
    }
    pub fn per_pixel(self) -> bool {
        self.info().per_pixel
    }
    pub fn rule(self) -> Option<Rule> {
        self.info().rule
    }
    pub fn by_default(self) -> bool {
        self.info().by_default
    }
    /// It walks back (a gradient or a rule of its family): SmoothGrad applies.
    pub fn smoothable(self) -> bool {
        self.rule().is_some()
    }

    /// The methods SmoothGrad applies to, for messages.
    pub fn smoothable_names() -> String {
        let names: Vec<&str> = ALL
            .iter()
            .filter(|m| m.smoothable())
            .map(|m| m.name())
            .collect();
        names.join(", ")
    }

    /// Every method's name, comma-separated (for help and errors).
    pub fn names() -> String {
        ALL.map(|m| m.name()).join(", ")
    }

    pub fn parse(s: &str) -> Result<Method> {
        ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            anyhow::anyhow!("unknown method {s:?}: expected one of {}", Method::names())
        })
    }

    /// A comma-separated list of methods.
    pub fn parse_list(s: &str) -> Result<Vec<Method>> {
        let mut out = vec![];
        for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let m = Method::parse(m)?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            bail!(
                "no method given: expected one or more of {}",
                Method::names()
            );
        }
        Ok(out)
    }

    /// The methods run unless told otherwise (sanity check, benchmarks).
    pub fn defaults() -> Vec<Method> {
        ALL.into_iter().filter(|m| m.by_default()).collect()
    }

    /// The map of this method for `target` on `e`'s image: [C, S, S] for
    /// pixel methods, [S, S] for per-pixel ones; in the network's channel
    /// order. Checked first ([`Method::check`]).
    pub fn map(self, e: &Explainer, target: Target, o: &Options) -> Result<Tensor> {
        self.check(e, target, o)?;
        match &o.smooth {
            Some(s) => smooth::map(self, e, target, o, s),
            None => self.compute(e, target, o),
        }
    }

    /// A class or unit/map the network has, or the error naming the range.
    pub fn check(self, e: &Explainer, target: Target, o: &Options) -> Result<()> {
        match target {
            Target::Class(c) => check::class(c, e.num_classes())?,
            Target::Map { .. } if self.class_only() => bail!(
                "{} explains a class; a map (--map, map=) applies to {}",
                self.name(),
                Method::for_maps("and")
            ),
            Target::Map { layer, map } => check::layer_map(&e.net.units, layer, map)?,
        }
        if self.needs().attention && !self.applies(e.net) {
            bail!(
                "{} reads the global self-attention of a ViT (its class token's rows); this network has no global self-attention",
                self.name()
            );
        }
        if self.needs().attention && !(0.0..1.0).contains(&o.discard) {
            bail!("discard is a fraction in [0, 1), got {}", o.discard);
        }
        if self.needs().layer {
            check::layer(o.cam_layer, e.net.units.len())?;
            let u = &e.net.units[o.cam_layer - 1];
            if !matches!(e.net.shapes[u.node], Shape::Maps { .. }) {
                bail!(
                    "{} needs a unit with maps; {} is flat",
                    self.label(),
                    u.name
                );
            }
        }
        if let Some(s) = &o.smooth {
            if !self.smoothable() {
                bail!(
                    "{} does not walk back: SmoothGrad applies to {}",
                    self.name(),
                    Method::smoothable_names()
                );
            }
            s.check()?;
        }
        if self.needs().steps && o.ig_steps < 2 {
            bail!(
                "integrated gradients need at least 2 steps, got {}",
                o.ig_steps
            );
        }
        if self.needs().window {
            crate::occlusion::positions(e.net.spec.input_size, o.size, o.stride)?;
        }
        Ok(())
    }

    /// Whether the method applies to `net` (attention rollout to
    /// networks with self-attention, every other method to every network).
    pub fn applies(self, net: &crate::net::Net) -> bool {
        !self.needs().attention
            || net
                .spec
                .ops()
                .any(|l| matches!(l, crate::net::Layer::Attention { .. }))
    }

    /// The methods that explain a map, for messages: "a, b or c".
    pub fn for_maps(or: &str) -> String {
        let names: Vec<&str> = ALL
            .iter()
            .filter(|m| m.needs().map)
            .map(|m| m.name())
            .collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} {or} {last}", rest.join(", ")),
            Some((last, _)) => last.to_string(),
            None => String::new(),
        }
    }

    /// Methods that explain a class only (not a unit's map).
    pub fn class_only(self) -> bool {
        !self.needs().map
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        self.name() == other.name()
    }
}
impl Eq for Method {}
impl std::hash::Hash for Method {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name().hash(h)
    }
}
impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Method> {
        Method::parse(s)
    }
}
impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Method, D::Error> {
        static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        let s = String::deserialize(d)?;
        Method::parse(&s).map_err(|_| {
            let names = NAMES.get_or_init(|| ALL.iter().map(|m| m.name()).collect());
            serde::de::Error::unknown_variant(&s, names.as_slice())
        })
    }
}

/// The registry as the API and the page read it.
pub fn list() -> Vec<&'static Info> {
    ALL.iter().map(|m| m.info()).collect()
}
