//! §8: one attribution method (`Explain`: `zfvis explain`, /api/explain) and all of them with deletion/insertion (the `Methods` job).
//!
//! The science is one floor down, in `crate::explain`.

use crate::analysis::{Analysis, Job};
use crate::engine::{bad, bad_input, Context, Engine};
use crate::explain::{saliency, Curves, Explainer, Options, Target};
use crate::methods::{Fusion, Method, Smooth};
use crate::net::check;
use crate::net::Net;
use crate::params::{ContentId, ModelName};
use crate::picture::{data_url, heat_image, jet_image, overlay, signed_image};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What to explain and how, shared by one method and the methods view.
#[derive(Debug, Clone)]
pub struct Subject {
    pub class: Option<i64>,
    pub layer: Option<usize>,
    pub map: Option<i64>,
    pub size: i64,
    pub stride: i64,
    /// SmoothGrad over the methods that walk back.
    pub smooth: Option<Smooth>,
    /// Attention rollout's head fusion and discarded fraction.
    pub fusion: Fusion,
    pub discard: f64,
}

fn default_discard() -> f64 {
    0.9
}

fn default_noise() -> f64 {
    0.15
}

/// SmoothGrad's settings from a request's fields (SmoothGrad when `samples` is given).
fn smooth_of(samples: Option<i64>, noise: f64, seed: u64, squared: bool) -> Option<Smooth> {
    samples.map(|samples| Smooth {
        samples,
        noise,
        seed,
        squared,
    })
}

impl Subject {
    /// The target and options of `net` for this subject.
    fn resolve(&self, e: &Explainer) -> Result<(Target, Options)> {
        let mut o = Options::new(e.net);
        o.size = self.size;
        o.stride = self.stride;
        o.smooth = self.smooth;
        o.fusion = self.fusion;
        o.discard = self.discard;
        let target = match (self.map, self.layer) {
            (Some(map), Some(layer)) => Target::Map { layer, map },
            (Some(_), None) => bail!("a map needs its layer (--layer / layer=)"),
            (None, layer) => {
                if let Some(l) = layer {
                    o.cam_layer = l;
                }
                Target::Class(self.class.unwrap_or_else(|| e.top_class()))
            }
        };
        if self.map.is_some() && self.class.is_some() {
            bail!("give a class or a layer's map, not both");
        }
        Ok((target, o))
    }

    fn describe(&self, e: &Explainer, target: Target, o: &Options, method: Method) -> Described {
        let unit = |l: usize| {
            let u = &e.net.units[l - 1];
            (u.layer, Some(u.name.clone()))
        };
        let short = |unit: &Option<String>| {
            let u = unit.as_ref()?;
            e.net
                .units
                .iter()
                .find(|x| &x.name == u)
                .map(|x| x.short.clone())
        };
        match target {
            Target::Class(c) => {
                let (layer, unit) = if method.needs().layer {
                    unit(o.cam_layer)
                } else {
                    (None, None)
                };
                Described {
                    class: Some(c),
                    layer,
                    unit_short: short(&unit),
                    unit,
                    map: None,
                }
            }
            Target::Map { layer, map } => {
                let (layer, unit) = unit(layer);
                Described {
                    class: None,
                    layer,
                    unit_short: short(&unit),
                    unit,
                    map: Some(map),
                }
            }
        }
    }
}

/// What a map was computed for.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    pub class: Option<i64>,
    /// The conv number of the unit (Grad-CAM's or the map's), if a conv's.
    pub layer: Option<usize>,
    pub unit: Option<String>,
    /// The unit's short name (see [`crate::net::Unit::short`]).
    pub unit_short: Option<String>,
    pub map: Option<i64>,
}

/// One method's map of one stored image (`/api/explain`, `zfvis explain`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    pub method: Method,
    /// The class (default: the top class) of the class methods.
    #[serde(default)]
    pub class: Option<i64>,
    /// The unit (1-based): Grad-CAM's (default the last conv layer), or the
    /// map's for deconv, guided and gradient.
    #[serde(default)]
    pub layer: Option<usize>,
    /// A map of `layer` (its strongest activation) instead of a class.
    #[serde(default)]
    pub map: Option<i64>,
    /// Occluder side and stride, px at the input size.
    #[serde(default = "crate::occlusion::default_size")]
    pub size: i64,
    #[serde(default = "crate::occlusion::default_stride")]
    pub stride: i64,
    /// Add the deletion and insertion curves (a class is needed).
    #[serde(default)]
    pub score: bool,
    /// SmoothGrad: the mean of the maps of this many noisy copies (the
    /// methods that walk back). These four fields are repeated in
    /// [`MethodsRequest`]: a query string cannot fill typed fields through
    /// `#[serde(flatten)]` (serde_urlencoded hands them over as strings).
    #[serde(default)]
    pub smooth: Option<i64>,
    /// SmoothGrad's σ as a fraction of the input's range.
    #[serde(default = "default_noise")]
    pub noise: f64,
    #[serde(default)]
    pub noise_seed: u64,
    /// SmoothGrad²: the mean of the squared maps.
    #[serde(default)]
    pub squared: bool,
    /// Attention rollout: how the heads are fused (mean, max, min).
    #[serde(default)]
    pub fusion: Fusion,
    /// Attention rollout: the fraction of each fused matrix zeroed, lowest first.
    #[serde(default = "default_discard")]
    pub discard: f64,
    /// The PNG: the map blended over the crop at this opacity (0..1), as
    /// the grad-cam package's `show_cam_on_image`.
    #[serde(default)]
    pub overlay: Option<f64>,
}

impl ExplainRequest {
    pub fn subject(&self) -> Subject {
        Subject {
            class: self.class,
            layer: self.layer,
            map: self.map,
            size: self.size,
            stride: self.stride,
            smooth: smooth_of(self.smooth, self.noise, self.noise_seed, self.squared),
            fusion: self.fusion,
            discard: self.discard,
        }
    }
}

#[derive(Serialize)]
pub struct ExplainResult {
    pub method: Method,
    pub caption: &'static str,
    /// Where the rules act and which ops pass their exact derivative.
    pub activations: crate::deconv::Activations,
    #[serde(flatten)]
    pub target: Described,
    /// Seconds the map took (the forward pass included).
    pub seconds: f64,
    /// The raw map's shape: [C, S, S] or [S, S].
    pub shape: Vec<i64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub curves: Option<Curves>,
    /// SmoothGrad's settings when the map is its mean.
    pub smooth: Option<Smooth>,
    /// The raw map (RGB order), for `--out-raw`.
    #[serde(skip)]
    pub raw: Tensor,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// The map in RGB order (a Caffe import's BGR flipped back).
pub(crate) fn rgb(net: &Net, map: Tensor) -> Tensor {
    if net.bgr && map.dim() == 3 && map.size()[0] == 3 {
        map.flip([0])
    } else {
        map
    }
}

/// One method on one image: the map, its picture, optionally its scores.
pub fn explain_one(
    net: &Net,
    x: &Tensor,
    s: &Subject,
    method: Method,
    score: bool,
) -> Result<ExplainResult> {
    let t0 = std::time::Instant::now();
    let e = Explainer::new(net, x);
    explain_with(&e, t0.elapsed().as_secs_f64(), s, method, score)
}

/// One method's map from an image already traced (`traced`: the seconds
/// the trace took, counted in the map's time: what it costs alone).
pub fn explain_with(
    e: &Explainer,
    traced: f64,
    s: &Subject,
    method: Method,
    score: bool,
) -> Result<ExplainResult> {
    let net = e.net;
    let t0 = std::time::Instant::now();
    let (target, o) = s.resolve(e)?;
    let map = method.map(e, target, &o)?;
    let seconds = traced + t0.elapsed().as_secs_f64();
    let curves = match (score, target) {
        (false, _) => None,
        (true, Target::Class(c)) => Some(e.scores(c, &saliency(&map), 32)?),
        (true, Target::Map { .. }) => {
            bail!("deletion and insertion scores need a class, not a map")
        }
    };
    let map = rgb(net, map.to_device(tch::Device::Cpu));
    Ok(ExplainResult {
        method,
        caption: method.caption(),
        activations: crate::deconv::activations(net),
        target: s.describe(e, target, &o, method),
        seconds,
        shape: map.size(),
        curves,
        smooth: o.smooth,
        png: crate::picture::png(&signed_image(&map)?),
        raw: map,
    })
}

/// The normalised input of a stored image as the model's pipeline makes it.
pub(crate) fn input_of(
    ctx: &Context,
    model: &ModelName,
    image: &ContentId,
) -> crate::engine::Result<(crate::checkpoint::ModelDir, Tensor)> {
    let m = ctx.model(model)?;
    let bytes = ctx.image_bytes(image)?;
    let img = crate::preprocess::decode(&bytes).map_err(|e| bad(e.to_string()))?;
    let pre = m.manifest.preprocess();
    let x = pre.tensor(&pre.crop(&img)).unsqueeze(0);
    Ok((m, x))
}

/// One method's map (`/api/explain?method=…`; PNG: the signed picture).
pub struct Explain;

impl Analysis for Explain {
    type Request = ExplainRequest;
    type Result = ExplainResult;

    fn run(e: &mut Engine, r: &ExplainRequest) -> crate::engine::Result<ExplainResult> {
        // The input only: the methods trace it themselves, keeping what
        // their rules need (the engine's cached trace does not).
        let net = e.net(&r.model, r.epoch)?;
        let crop = e.crop(&r.model, &r.image)?;
        let x = e
            .model(&r.model)?
            .manifest
            .preprocess()
            .tensor(&crop)
            .unsqueeze(0);
        let mut res = explain_one(&net, &x, &r.subject(), r.method, r.score).map_err(bad_input)?;
        if let Some(a) = r.overlay {
            res.png = crate::picture::png(&overlay(&crop, &res.raw, a).map_err(bad_input)?);
        }
        Ok(res)
    }

    fn alt(_: &ExplainRequest, r: &mut ExplainResult) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.png))
    }
}

/// Every method side by side (the methods view; a background job).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodsRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    #[serde(default)]
    pub class: Option<i64>,
    #[serde(default)]
    pub layer: Option<usize>,
    #[serde(default)]
    pub map: Option<i64>,
    #[serde(default = "crate::occlusion::default_size")]
    pub size: i64,
    #[serde(default = "crate::occlusion::default_stride")]
    pub stride: i64,
    /// Comma-separated (default: all of them).
    #[serde(default)]
    pub methods: Option<String>,
    /// SmoothGrad: the mean of the maps of this many noisy copies (the
    /// methods that walk back).
    #[serde(default)]
    pub smooth: Option<i64>,
    /// SmoothGrad's σ as a fraction of the input's range.
    #[serde(default = "default_noise")]
    pub noise: f64,
    #[serde(default)]
    pub noise_seed: u64,
    /// SmoothGrad²: the mean of the squared maps.
    #[serde(default)]
    pub squared: bool,
    /// Attention rollout: how the heads are fused (mean, max, min).
    #[serde(default)]
    pub fusion: Fusion,
    /// Attention rollout: the fraction of each fused matrix zeroed, lowest first.
    #[serde(default = "default_discard")]
    pub discard: f64,
}

#[derive(Serialize)]
pub struct MethodMap {
    #[serde(flatten)]
    pub result: ExplainResult,
    /// The saliency per pixel in one convention for every method.
    pub saliency_png: String,
    /// The signed map as the paper draws a projection (pixel methods).
    pub signed_png: String,
    /// The saliency in the jet colours of the grad-cam package's
    /// `show_cam_on_image`, for the overlay on the crop.
    pub jet_png: String,
}

#[derive(Serialize)]
pub struct MethodsResult {
    #[serde(flatten)]
    pub target: Described,
    /// Where the rules act and which ops pass their exact derivative.
    pub activations: crate::deconv::Activations,
    pub class_name: Option<String>,
    pub items: Vec<MethodMap>,
}

pub struct Methods;

impl MethodsRequest {
    pub fn subject(&self) -> Subject {
        Subject {
            class: self.class,
            layer: self.layer,
            map: self.map,
            size: self.size,
            stride: self.stride,
            smooth: smooth_of(self.smooth, self.noise, self.noise_seed, self.squared),
            fusion: self.fusion,
            discard: self.discard,
        }
    }

    fn methods(&self) -> Result<Vec<Method>> {
        match &self.methods {
            None => Ok(crate::methods::ALL.to_vec()),
            Some(s) => Method::parse_list(s),
        }
    }
}

impl Job for Methods {
    type Request = MethodsRequest;
    type Result = MethodsResult;

    fn check(ctx: &Context, r: &MethodsRequest) -> crate::engine::Result<()> {
        ctx.snapshot(&r.model, Some(r.epoch))?;
        ctx.image_bytes(&r.image)?;
        let ms = r.methods().map_err(bad_input)?;
        if r.map.is_some() && ms.iter().all(|m| m.class_only()) {
            return Err(bad(format!(
                "a map is explained by {}; these methods explain a class",
                Method::for_maps("or")
            )));
        }
        let spec = ctx.model(&r.model)?.manifest.spec().map_err(bad_input)?;
        if let Some(l) = r.layer {
            let units = spec.unit_list();
            check::layer(l, units.len()).map_err(bad_input)?;
            if let Some(m) = r.map {
                check::layer_map(&units, l, m).map_err(bad_input)?;
            }
        }
        if let Some(c) = r.class {
            check::class(c, spec.num_classes()).map_err(bad_input)?;
        }
        crate::occlusion::positions(spec.input_size, r.size, r.stride).map_err(bad_input)?;
        if let Some(s) = smooth_of(r.smooth, r.noise, r.noise_seed, r.squared) {
            s.check().map_err(bad_input)?;
            if !ms.iter().any(|m| m.smoothable()) {
                return Err(bad(format!(
                    "SmoothGrad applies to {}; none of these walks back",
                    Method::smoothable_names()
                )));
            }
        }
        Ok(())
    }

    fn run(
        ctx: &Context,
        r: &MethodsRequest,
        progress: &mut crate::progress::Report<'_>,
    ) -> crate::engine::Result<MethodsResult> {
        let (m, x) = input_of(ctx, &r.model, &r.image)?;
        let net = m.load(Some(r.epoch), ctx.device)?;
        let methods: Vec<Method> = r
            .methods()
            .map_err(bad_input)?
            .into_iter()
            .filter(|m| r.map.is_none() || !m.class_only())
            // Unasked, only the methods that apply (rollout: transformers).
            .filter(|m| r.methods.is_some() || m.applies(&net))
            .collect();
        let subject = r.subject();
        // One trace for every method (each map's time counts it once).
        let t0 = std::time::Instant::now();
        let mut e = Explainer::new(&net, &x);
        let traced = t0.elapsed().as_secs_f64();
        let (t, o) = subject.resolve(&e).map_err(bad_input)?;
        let target = subject.describe(&e, t, &o, crate::methods::DECONV);
        // Each method: STEPS for its map (the methods of many passes say
        // how far they are), STEPS for its scores.
        const STEPS: usize = 100;
        let total = 2 * STEPS * methods.len();
        progress(0, total)?;
        let progress = std::cell::RefCell::new(progress);
        let at = std::cell::Cell::new(0);
        let within = |done: usize, of: usize| -> Result<()> {
            let step = (done * STEPS).checked_div(of).unwrap_or(0).min(STEPS - 1);
            (progress.borrow_mut())(at.get() + step, total)
        };
        e.progress = Some(&within);
        let mut items = Vec::with_capacity(methods.len());
        for (i, &method) in methods.iter().enumerate() {
            at.set(2 * STEPS * i);
            // SmoothGrad for the methods that walk back; the others as they are.
            let mut sub = subject.clone();
            sub.smooth = subject.smooth.filter(|_| method.smoothable());
            let res = explain_with(&e, traced, &sub, method, false);
            // A cancelled job is cancelled, not a bad request.
            (progress.borrow_mut())(2 * STEPS * i + STEPS, total)?;
            let mut res = res.map_err(bad_input)?;
            if let Some(c) = res.target.class {
                res.curves = Some(e.scores(c, &saliency(&res.raw), 32)?);
            }
            (progress.borrow_mut())(2 * STEPS * (i + 1), total)?;
            items.push(MethodMap {
                saliency_png: data_url(&heat_image(&res.raw)?),
                signed_png: data_url(&signed_image(&res.raw)?),
                jet_png: data_url(&jet_image(&res.raw)?),
                result: res,
            });
        }
        let class_name = target
            .class
            .and_then(|c| m.manifest.classes.get(c as usize).map(|c| c.name.clone()));
        Ok(MethodsResult {
            target,
            activations: crate::deconv::activations(&net),
            class_name,
            items,
        })
    }
}

crate::names_models! {
    ExplainRequest: model;
    MethodsRequest: model;
}
