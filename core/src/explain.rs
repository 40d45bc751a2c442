//! The deconvnet beside its successors (paper.md §8): one family of
//! reversed networks that differ at the ReLU (deconvnet, gradient, guided
//! backprop), Grad-CAM and guided Grad-CAM, integrated gradients and
//! occlusion as a saliency map; and the deletion/insertion scores of a map
//! (Petsiuk et al., 2018).
//!
//! Every map is computed from one forward trace that saved each ReLU's
//! output and each LRN's input ([`Net::trace_saving`]); the walks back are
//! [`crate::deconv::walk`] under a [`Rule`]. Maps are in the network's
//! channel order (BGR for a Caffe import) until [`Explanation`] flips them.

use crate::deconv::{strongest, walk, Rule};
use crate::net::{Net, Shape, Trace};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The methods of the family, in the order the views show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Deconv,
    Guided,
    Gradient,
    Gradcam,
    GuidedGradcam,
    Ig,
    Occlusion,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Deconv,
        Method::Guided,
        Method::Gradient,
        Method::Gradcam,
        Method::GuidedGradcam,
        Method::Ig,
        Method::Occlusion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Deconv => "deconv",
            Method::Guided => "guided",
            Method::Gradient => "gradient",
            Method::Gradcam => "gradcam",
            Method::GuidedGradcam => "guided-gradcam",
            Method::Ig => "ig",
            Method::Occlusion => "occlusion",
        }
    }

    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown method {s:?}: expected one of {}",
                    Method::ALL.map(|m| m.name()).join(", ")
                )
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
                Method::ALL.map(|m| m.name()).join(", ")
            );
        }
        Ok(out)
    }

    /// What the map shows, for captions.
    pub fn caption(self) -> &'static str {
        match self {
            Method::Deconv => "deconvnet (Zeiler & Fergus 2014): ReLU of the signal",
            Method::Guided => "guided backprop (Springenberg et al. 2015): ReLU of the signal where the input was > 0",
            Method::Gradient => "gradient (Simonyan et al. 2014): the signal where the input was > 0",
            Method::Gradcam => "Grad-CAM (Selvaraju et al. 2017): maps weighted by their mean gradient, ReLU, upsampled",
            Method::GuidedGradcam => "guided Grad-CAM: guided backprop x Grad-CAM",
            Method::Ig => "integrated gradients (Sundararajan et al. 2017): 50 steps from the mean colour",
            Method::Occlusion => "occlusion (Zeiler & Fergus 2014): drop of the class probability under a grey square",
        }
    }

    /// Methods that explain a class only (not a unit's map).
    pub fn class_only(self) -> bool {
        !matches!(self, Method::Deconv | Method::Guided | Method::Gradient)
    }

    /// Maps with one value per pixel (H x W) rather than per input channel.
    pub fn per_pixel(self) -> bool {
        matches!(self, Method::Gradcam | Method::Occlusion)
    }
}

/// What a map explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A class's logit.
    Class(i64),
    /// The strongest activation of a unit's map (unit 1-based, map 0-based).
    Map { layer: usize, map: i64 },
}

/// The settings of the methods that have them.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Grad-CAM's unit (1-based; see [`crate::net::Unit`]).
    pub gradcam_layer: usize,
    /// Integrated gradients' steps (Captum's riemann_trapezoid).
    pub ig_steps: i64,
    /// Occluder side and stride, px at the input size.
    pub size: i64,
    pub stride: i64,
    /// Images per batched pass (integrated gradients, deletion/insertion).
    pub batch: i64,
}

impl Options {
    pub fn new(net: &Net) -> Options {
        Options {
            gradcam_layer: net.last_unit(),
            ig_steps: 50,
            size: 48,
            stride: 8,
            batch: 16,
        }
    }
}

/// One image, traced once for every method.
pub struct Explainer<'a> {
    pub net: &'a Net,
    /// The normalised input, [1, C, S, S].
    pub x: Tensor,
    pub trace: Trace,
}

impl<'a> Explainer<'a> {
    pub fn new(net: &'a Net, x: &Tensor) -> Explainer<'a> {
        let s = net.spec.input_size;
        let x =
            x.to_device(net.device())
                .to_kind(Kind::Float)
                .view([1, net.spec.in_channels, s, s]);
        let trace = net.trace_saving(&x);
        Explainer { net, x, trace }
    }

    /// The argmax of the logits.
    pub fn top_class(&self) -> i64 {
        self.trace.logits.get(0).argmax(0, false).int64_value(&[])
    }

    pub fn num_classes(&self) -> i64 {
        self.trace.logits.size()[1]
    }

    /// A class or unit/map the network has, or the error naming the range.
    pub fn check(&self, method: Method, target: Target, o: &Options) -> Result<()> {
        match target {
            Target::Class(c) if c < 0 || c >= self.num_classes() => bail!(
                "class {c} is out of range: the model has classes 0..{}",
                self.num_classes() - 1
            ),
            Target::Map { .. } if method.class_only() => bail!(
                "{} explains a class; a map (--map, map=) applies to deconv, guided and gradient",
                method.name()
            ),
            Target::Map { layer, map } => {
                crate::deconv::check_layer_map(&self.net.spec, layer, map)?
            }
            Target::Class(_) => {}
        }
        if matches!(method, Method::Gradcam | Method::GuidedGradcam) {
            let n = self.net.units.len();
            if !(1..=n).contains(&o.gradcam_layer) {
                bail!(
                    "layer {} is out of range: expected 1..={n}",
                    o.gradcam_layer
                );
            }
            let u = &self.net.units[o.gradcam_layer - 1];
            if !matches!(self.net.shapes[u.node], Shape::Maps { .. }) {
                bail!("Grad-CAM needs a unit with maps; {} is flat", u.name);
            }
        }
        if method == Method::Ig && o.ig_steps < 2 {
            bail!(
                "integrated gradients need at least 2 steps, got {}",
                o.ig_steps
            );
        }
        if method == Method::Occlusion {
            crate::occlusion::positions(self.net.spec.input_size, o.size, o.stride)?;
        }
        Ok(())
    }

    /// The map of `method` for `target`: [C, S, S] for pixel methods, [S, S]
    /// for Grad-CAM and occlusion; in the network's channel order.
    pub fn map(&self, method: Method, target: Target, o: &Options) -> Result<Tensor> {
        self.check(method, target, o)?;
        let class = match target {
            Target::Class(c) => c,
            Target::Map { .. } => -1,
        };
        Ok(match method {
            Method::Deconv => self.pixels(Rule::Deconv, target),
            Method::Guided => self.pixels(Rule::Guided, target),
            Method::Gradient => self.pixels(Rule::Gradient, target),
            Method::Gradcam => self.gradcam(class, o.gradcam_layer),
            Method::GuidedGradcam => {
                self.pixels(Rule::Guided, target) * self.gradcam(class, o.gradcam_layer)
            }
            Method::Ig => self.integrated_gradients(class, o.ig_steps, o.batch),
            Method::Occlusion => self.occlusion(class, o)?,
        })
    }

    /// The node and the signal there that a target starts from: a one-hot
    /// of the class at the logits, or the strongest activation of a map.
    fn start(&self, target: Target, batch: i64) -> (usize, Tensor) {
        let dev = self.net.device();
        match target {
            Target::Class(c) => {
                let k = self.num_classes();
                let s = Tensor::zeros([batch, k], (Kind::Float, dev));
                let _ = s.narrow(1, c, 1).fill_(1.0);
                (self.net.spec.layers.len() - 1, s)
            }
            Target::Map { layer, map } => {
                let maps = &self.trace.maps[layer - 1];
                let (v, y, x) = strongest(&self.trace, layer, map);
                let s = Tensor::zeros(
                    [batch, maps.size()[1], maps.size()[2], maps.size()[3]],
                    (Kind::Float, dev),
                );
                let _ = s.narrow(1, map, 1).narrow(2, y, 1).narrow(3, x, 1).fill_(v);
                (self.net.units[layer - 1].node, s)
            }
        }
    }

    /// A reversed network's map, [C, S, S].
    pub fn pixels(&self, rule: Rule, target: Target) -> Tensor {
        let (node, s) = self.start(target, 1);
        walk(self.net, &self.trace, node, &s, rule, None).0.get(0)
    }

    /// Grad-CAM of `class` at unit `layer`, upsampled to [S, S]: Captum's
    /// `LayerGradCam(relu_attributions=True)` + bilinear interpolation.
    pub fn gradcam(&self, class: i64, layer: usize) -> Tensor {
        let node = self.net.units[layer - 1].node;
        let (from, s) = self.start(Target::Class(class), 1);
        let g = walk(
            self.net,
            &self.trace,
            from,
            &s,
            Rule::Gradient,
            Some((node, false)),
        )
        .1
        .unwrap_or_else(|| self.trace.maps[layer - 1].zeros_like());
        let a = &self.trace.maps[layer - 1];
        let w = g.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        let cam = (w * a)
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            .relu();
        let side = self.net.spec.input_size;
        cam.upsample_bilinear2d([side, side], false, None, None)
            .get(0)
            .get(0)
    }

    /// Integrated gradients of `class` from the zero baseline (the mean
    /// colour): Captum's riemann_trapezoid (alphas linspace(0, 1, n), steps
    /// 1/n halved at both ends), `batch` steps per pass.
    pub fn integrated_gradients(&self, class: i64, steps: i64, batch: i64) -> Tensor {
        let alphas = Tensor::linspace(0.0, 1.0, steps, (Kind::Float, tch::Device::Cpu));
        let alphas: Vec<f32> = Vec::try_from(&alphas).unwrap_or_default();
        let n = alphas.len();
        let mut total = self.x.zeros_like();
        for chunk in (0..n).collect::<Vec<_>>().chunks(batch.max(1) as usize) {
            let a: Vec<f32> = chunk.iter().map(|&i| alphas[i]).collect();
            let w: Vec<f32> = chunk
                .iter()
                .map(|&i| {
                    if i == 0 || i == n - 1 {
                        0.5 / n as f32
                    } else {
                        1.0 / n as f32
                    }
                })
                .collect();
            let b = a.len() as i64;
            let dev = self.net.device();
            let a = Tensor::from_slice(&a).to_device(dev).view([b, 1, 1, 1]);
            let w = Tensor::from_slice(&w).to_device(dev).view([b, 1, 1, 1]);
            let xs = &self.x * &a;
            let trace = self.net.trace_saving(&xs);
            let k = self.num_classes();
            let s = Tensor::zeros([b, k], (Kind::Float, dev));
            let _ = s.narrow(1, class, 1).fill_(1.0);
            let g = walk(
                self.net,
                &trace,
                self.net.spec.layers.len() - 1,
                &s,
                Rule::Gradient,
                None,
            )
            .0;
            total += (g * w).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        }
        (&self.x * total).get(0)
    }

    /// Occlusion as a saliency map: p0 - p of the class over the grid of
    /// square positions, upsampled bilinearly to [S, S].
    pub fn occlusion(&self, class: i64, o: &Options) -> Result<Tensor> {
        let req = crate::occlusion::OcclusionRequest {
            size: o.size,
            stride: o.stride,
            class: Some(class),
            ..Default::default()
        };
        let r = crate::occlusion::occlude(self.net, &self.x, &req)?;
        let rows = r.class_prob.len() as i64;
        let cols = r.class_prob.first().map_or(0, |r| r.len()) as i64;
        let drop: Vec<f32> = r
            .class_prob
            .iter()
            .flatten()
            .map(|p| (r.unoccluded.class_prob - p) as f32)
            .collect();
        let side = self.net.spec.input_size;
        Ok(Tensor::from_slice(&drop)
            .view([1, 1, rows, cols])
            .upsample_bilinear2d([side, side], false, None, None)
            .get(0)
            .get(0)
            .to_device(self.net.device()))
    }

    /// The class probability after each step of deleting (and of inserting)
    /// the pixels `saliency` ranks highest; see [`deletion_insertion`].
    pub fn scores(&self, class: i64, saliency: &Tensor, batch: i64) -> Curves {
        deletion_insertion(self.net, &self.x, class, saliency, batch)
    }
}

/// A map's saliency per pixel ([S, S]): the max over channels of |value|
/// for a [C, S, S] map, the value itself for an [S, S] map.
pub fn saliency(map: &Tensor) -> Tensor {
    if map.dim() == 3 {
        map.abs().amax([0i64].as_slice(), false)
    } else {
        map.shallow_clone()
    }
}

/// The deletion and insertion curves of one map (Petsiuk et al., 2018).
#[derive(Debug, Clone, Serialize)]
pub struct Curves {
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    /// p_0 .. p_n.
    pub deletion: Vec<f64>,
    pub insertion: Vec<f64>,
    /// Pixels changed per step (the input width).
    pub step: i64,
}

/// The area under p_0 .. p_n: (sum p_k - (p_0 + p_n) / 2) / n.
pub fn auc(p: &[f64]) -> f64 {
    let n = p.len().saturating_sub(1);
    if n == 0 {
        return p.first().copied().unwrap_or(0.0);
    }
    (p.iter().sum::<f64>() - (p[0] + p[n]) / 2.0) / n as f64
}

/// The 11 x 11 Gaussian (sigma 5, normalised to sum 1) that insertion
/// starts from, applied per channel with zero padding: [1, C, S, S].
pub fn blurred(x: &Tensor) -> Tensor {
    let c = x.size()[1];
    let g: Vec<f32> = (-5..=5)
        .map(|i: i32| (-(i * i) as f32 / 50.0).exp())
        .collect();
    let g = Tensor::from_slice(&g).to_device(x.device());
    let g = &g / g.sum(Kind::Float);
    let k = g.view([11, 1]).matmul(&g.view([1, 11]));
    let w = k
        .view([1, 1, 11, 11])
        .expand([c, 1, 11, 11], false)
        .contiguous();
    x.conv2d(&w, None::<Tensor>, [1, 1], [5, 5], [1, 1], c)
}

/// Deletion: the pixels ranked by `saliency` (descending, ties by index)
/// set to 0 (the mean colour), W per step; insertion: copied back onto the
/// blurred input. p_k = the class probability after k steps, k = 0..=H*W/W.
pub fn deletion_insertion(
    net: &Net,
    x: &Tensor,
    class: i64,
    saliency: &Tensor,
    batch: i64,
) -> Curves {
    tch::no_grad(|| {
        let (h, w) = (saliency.size()[0], saliency.size()[1]);
        let v: Vec<f32> =
            Vec::try_from(&saliency.to_kind(Kind::Float).reshape([-1])).unwrap_or_default();
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
        let mut rank = vec![0f32; v.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r as f32;
        }
        let dev = net.device();
        let rank = Tensor::from_slice(&rank).to_device(dev).view([1, 1, h, w]);
        let x = x.to_device(dev).view([1, -1, h, w]);
        let blur = blurred(&x);
        let step = w;
        let n = h * w / step;
        let curve = |insert: bool| -> Vec<f64> {
            let mut p = Vec::with_capacity(n as usize + 1);
            let mut k0 = 0;
            while k0 <= n {
                let b = batch.max(1).min(n + 1 - k0);
                let ks = Tensor::arange_start(k0, k0 + b, (Kind::Float, dev)) * step as f64;
                let changed = rank.lt_tensor(&ks.view([b, 1, 1, 1]));
                let imgs = if insert {
                    x.where_self(&changed, &blur)
                } else {
                    x.zeros_like().where_self(&changed, &x)
                };
                let probs = net.forward_t(&imgs, false).softmax(-1, Kind::Float);
                let col: Vec<f32> = Vec::try_from(&probs.select(1, class)).unwrap_or_default();
                p.extend(col.into_iter().map(f64::from));
                k0 += b;
            }
            p
        };
        let (deletion, insertion) = (curve(false), curve(true));
        Curves {
            deletion_auc: auc(&deletion),
            insertion_auc: auc(&insertion),
            deletion,
            insertion,
            step,
        }
    })
}

// ---- pictures ------------------------------------------------------------

/// The q-quantile of |values| (the contrast point of the pictures: a few
/// strongest pixels clip so that the rest shows).
pub fn quantile_abs(t: &Tensor, q: f64) -> f64 {
    let mut v: Vec<f32> = Vec::try_from(
        &t.abs()
            .reshape([-1])
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu),
    )
    .unwrap_or_default();
    v.sort_by(f32::total_cmp);
    let i = ((v.len().saturating_sub(1)) as f64 * q) as usize;
    v.get(i).copied().unwrap_or(0.0) as f64
}

/// One convention for every method: the saliency per pixel ([`saliency`],
/// negatives as 0), its 99.5th percentile at the top of the viridis scale.
pub fn heat_image(map: &Tensor) -> image::RgbImage {
    let s = saliency(map)
        .relu()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float);
    let m = quantile_abs(&s, 0.995).max(1e-12);
    let (h, w) = (s.size()[0] as u32, s.size()[1] as u32);
    let v: Vec<f32> = Vec::try_from(&s.reshape([-1])).unwrap_or_default();
    let mut img = image::RgbImage::new(w, h);
    for (p, x) in img.pixels_mut().zip(v) {
        *p = image::Rgb(crate::occlusion::viridis(x as f64 / m));
    }
    img
}

/// As the paper draws a projection: signed, mid grey at 0, the 99.5th
/// percentile of |value| at black or white, in colour; per-pixel maps as
/// [`heat_image`].
pub fn signed_image(map: &Tensor) -> image::RgbImage {
    if map.dim() != 3 {
        return heat_image(map);
    }
    let q = quantile_abs(map, 0.995);
    let (w, h, rgb) = crate::deconv::to_rgb8_scaled(map, q);
    image::RgbImage::from_raw(w, h, rgb).expect("buffer matches its size")
}

/// A PNG as a data URL (for results that carry several pictures).
pub fn data_url(img: &image::RgbImage) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(crate::engine::png(img))
    )
}

// ---- the analyses: one method (`zfvis explain`, /api/explain), all of them (the methods view) ----

use crate::analysis::{Analysis, Job};
use crate::engine::{bad, bad_input, Context, Engine};
use crate::params::{ContentId, ModelName};

fn default_size() -> i64 {
    48
}
fn default_stride() -> i64 {
    8
}

/// What to explain and how, shared by one method and the methods view.
#[derive(Debug, Clone)]
pub struct Subject {
    pub class: Option<i64>,
    pub layer: Option<usize>,
    pub map: Option<i64>,
    pub size: i64,
    pub stride: i64,
}

impl Subject {
    /// The target and options of `net` for this subject.
    fn resolve(&self, e: &Explainer) -> Result<(Target, Options)> {
        let mut o = Options::new(e.net);
        o.size = self.size;
        o.stride = self.stride;
        let target = match (self.map, self.layer) {
            (Some(map), Some(layer)) => Target::Map { layer, map },
            (Some(_), None) => bail!("a map needs its layer (--layer / layer=)"),
            (None, layer) => {
                if let Some(l) = layer {
                    o.gradcam_layer = l;
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
        match target {
            Target::Class(c) => {
                let (layer, unit) = if matches!(method, Method::Gradcam | Method::GuidedGradcam) {
                    unit(o.gradcam_layer)
                } else {
                    (None, None)
                };
                Described {
                    class: Some(c),
                    layer,
                    unit,
                    map: None,
                }
            }
            Target::Map { layer, map } => {
                let (layer, unit) = unit(layer);
                Described {
                    class: None,
                    layer,
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
    #[serde(default = "default_size")]
    pub size: i64,
    #[serde(default = "default_stride")]
    pub stride: i64,
    /// Add the deletion and insertion curves (a class is needed).
    #[serde(default)]
    pub score: bool,
}

impl ExplainRequest {
    pub fn subject(&self) -> Subject {
        Subject {
            class: self.class,
            layer: self.layer,
            map: self.map,
            size: self.size,
            stride: self.stride,
        }
    }
}

#[derive(Serialize)]
pub struct ExplainResult {
    pub method: Method,
    pub caption: &'static str,
    #[serde(flatten)]
    pub target: Described,
    /// Seconds the map took (the forward pass included).
    pub seconds: f64,
    /// The raw map's shape: [C, S, S] or [S, S].
    pub shape: Vec<i64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub curves: Option<Curves>,
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
    let map = e.map(method, target, &o)?;
    let seconds = traced + t0.elapsed().as_secs_f64();
    let curves = match (score, target) {
        (false, _) => None,
        (true, Target::Class(c)) => Some(e.scores(c, &saliency(&map), 32)),
        (true, Target::Map { .. }) => {
            bail!("deletion and insertion scores need a class, not a map")
        }
    };
    let map = rgb(net, map.to_device(tch::Device::Cpu));
    Ok(ExplainResult {
        method,
        caption: method.caption(),
        target: s.describe(e, target, &o, method),
        seconds,
        shape: map.size(),
        curves,
        png: crate::engine::png(&signed_image(&map)),
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
        explain_one(&net, &x, &r.subject(), r.method, r.score).map_err(bad_input)
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
    #[serde(default = "default_size")]
    pub size: i64,
    #[serde(default = "default_stride")]
    pub stride: i64,
    /// Comma-separated (default: all seven).
    #[serde(default)]
    pub methods: Option<String>,
}

#[derive(Serialize)]
pub struct MethodMap {
    #[serde(flatten)]
    pub result: ExplainResult,
    /// The saliency per pixel in one convention for every method.
    pub saliency_png: String,
    /// The signed map as the paper draws a projection (pixel methods).
    pub signed_png: String,
}

#[derive(Serialize)]
pub struct MethodsResult {
    #[serde(flatten)]
    pub target: Described,
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
        }
    }

    fn methods(&self) -> Result<Vec<Method>> {
        match &self.methods {
            None => Ok(Method::ALL.to_vec()),
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
            return Err(bad(
                "a map is explained by deconv, guided or gradient; these methods explain a class",
            ));
        }
        let spec = ctx.model(&r.model)?.manifest.spec().map_err(bad_input)?;
        if let Some(l) = r.layer {
            let n = spec.unit_list().len();
            if !(1..=n).contains(&l) {
                return Err(bad(format!("layer {l} is out of range: expected 1..={n}")));
            }
            if let Some(m) = r.map {
                crate::deconv::check_layer_map(&spec, l, m).map_err(bad_input)?;
            }
        }
        if let Some(c) = r.class {
            let n = spec.num_classes();
            if c < 0 || c >= n {
                return Err(bad(format!(
                    "class {c} is out of range: the model has classes 0..{}",
                    n - 1
                )));
            }
        }
        crate::occlusion::positions(spec.input_size, r.size, r.stride).map_err(bad_input)?;
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
            .collect();
        let subject = r.subject();
        // One trace for every method (each map's time counts it once).
        let t0 = std::time::Instant::now();
        let e = Explainer::new(&net, &x);
        let traced = t0.elapsed().as_secs_f64();
        let (t, o) = subject.resolve(&e).map_err(bad_input)?;
        let target = subject.describe(&e, t, &o, Method::Deconv);
        // Two steps a method: its map, then (for a class) its scores.
        let total = 2 * methods.len();
        progress(0, total)?;
        let mut items = Vec::with_capacity(methods.len());
        for (i, &method) in methods.iter().enumerate() {
            let mut res = explain_with(&e, traced, &subject, method, false).map_err(bad_input)?;
            progress(2 * i + 1, total)?;
            if let Some(c) = res.target.class {
                res.curves = Some(e.scores(c, &saliency(&res.raw), 32));
            }
            progress(2 * i + 2, total)?;
            items.push(MethodMap {
                saliency_png: data_url(&heat_image(&res.raw)),
                signed_png: data_url(&signed_image(&res.raw)),
                result: res,
            });
        }
        let class_name = target
            .class
            .and_then(|c| m.manifest.classes.get(c as usize).map(|c| c.name.clone()));
        Ok(MethodsResult {
            target,
            class_name,
            items,
        })
    }
}
