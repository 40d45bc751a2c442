//! What a unit wants to see (the `Visualize` job: `zfvis visualize`,
//! /api/…/visualize): images optimised to excite a map, a neuron, a class
//! or a weighted sum of them, one map or a whole layer (several maps a
//! batch), N diverse images of one map. The science is one floor down, in
//! `crate::visualize`.

use crate::analysis::Job;
use crate::engine::{bad, bad_input, Context};
use crate::net::{check, Net, NetSpec, Unit};
use crate::params::ModelName;
use crate::visualize::{Input, Objective, Param, Recipe, Term, Transforms, Visualizer};
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// Maps of a whole layer optimised together (one batch).
pub const LAYER_BATCH: usize = 16;
/// A preview every this many steps.
pub const PREVIEW_EVERY: usize = 32;

fn default_steps() -> usize {
    512
}
fn default_lr() -> f64 {
    0.05
}
fn default_batch() -> usize {
    1
}
fn default_true() -> bool {
    true
}
fn default_param() -> Param {
    Param::Fourier
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisualizeRequest {
    pub model: ModelName,
    pub epoch: u32,
    /// The unit (1-based), for a map, a neuron or a whole layer.
    #[serde(default)]
    pub layer: Option<usize>,
    /// One map of the unit; none: every map (or those of `maps`).
    #[serde(default)]
    pub map: Option<i64>,
    /// The maps of a whole-layer view, "0-8" or "1,5,9" (default all).
    #[serde(default)]
    pub maps: Option<String>,
    /// A class logit instead of a unit (Simonyan et al.).
    #[serde(default)]
    pub class: Option<i64>,
    /// The map's centre position instead of its mean.
    #[serde(default)]
    pub neuron: bool,
    /// More weighted terms: "0.5*4:12 + class:3 + neuron:5:1" (unit:map).
    #[serde(default)]
    pub plus: Option<String>,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default)]
    pub seed: u64,
    /// Images of the one objective (with `diversity`, N different ones).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Weight of Lucid's diversity term (batch > 1).
    #[serde(default)]
    pub diversity: f64,
    #[serde(default = "default_param")]
    pub param: Param,
    /// Lucid's random transforms every step.
    #[serde(default = "default_true")]
    pub transforms: bool,
    #[serde(default = "default_true")]
    pub decorrelate: bool,
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// The image's side (default: the model's input size).
    #[serde(default)]
    pub size: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VisImage {
    /// The map it climbs (none for a class or a sum).
    pub map: Option<i64>,
    pub png: String,
    /// Its objective on the image itself (no transforms).
    pub objective: f64,
}

#[derive(Debug, Serialize)]
pub struct VisualizeResult {
    /// The unit's name (none for a class).
    pub layer: Option<String>,
    pub class: Option<i64>,
    pub class_name: Option<String>,
    /// What is climbed, for people: "conv3 map 5 (mean, before its ReLU)".
    pub objective: String,
    pub steps: usize,
    pub seed: u64,
    pub size: i64,
    pub images: Vec<VisImage>,
    /// The images themselves, in the order of `images`.
    #[serde(skip)]
    pub pictures: Vec<image::RgbImage>,
    /// The batch's loss every [`PREVIEW_EVERY`] steps (the first batch).
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// The node whose output a unit's objective reads: before the unit's
/// activation when it ends in one (Lucid's `pre_relu` objectives: a map that
/// is zero on noise still has a gradient), the unit itself otherwise.
pub fn pre_activation(spec: &NetSpec, units: &[Unit], unit: usize) -> usize {
    let node = units[unit - 1].node;
    match spec.sources(node).as_slice() {
        [Some(j)] if spec.op(node).is_map_activation() => *j,
        _ => node,
    }
}

/// "0-8", "1,5,9" -> maps, each in 0..c.
pub fn parse_maps(s: &str, c: i64) -> Result<Vec<i64>> {
    let mut out = vec![];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| anyhow!("maps: {t:?} is not a number"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b || a < 0 || b >= c {
            bail!("maps: {part} is not within 0..{c}");
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        bail!("maps: none given");
    }
    Ok(out)
}

/// "0.5*4:12 + class:3 + neuron:5:1" -> weighted terms.
pub fn parse_plus(spec: &NetSpec, units: &[Unit], s: &str) -> Result<Vec<(f64, Term)>> {
    s.split('+')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (w, what) = match t.split_once('*') {
                Some((w, what)) => {
                    let v: f64 = w
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("plus: {w:?} is not a weight"))?;
                    if !v.is_finite() {
                        bail!("plus: {w:?} is not a weight");
                    }
                    (v, what.trim())
                }
                // A term without a weight counts once.
                None => (1.0, t),
            };
            let parts: Vec<&str> = what.split(':').collect();
            let unit_map = |u: &str, m: &str| -> Result<(usize, i64)> {
                let l = spec.find_unit(u)?;
                let m = m
                    .parse::<i64>()
                    .map_err(|_| anyhow!("plus: {m:?} is not a map"))?;
                check::layer_map(units, l, m)?;
                Ok((pre_activation(spec, units, l), m))
            };
            let term = match parts.as_slice() {
                ["class", c] => Term::Class {
                    class: c
                        .parse()
                        .map_err(|_| anyhow!("plus: {c:?} is not a class"))?,
                },
                ["neuron", u, m] => {
                    let (node, map) = unit_map(u, m)?;
                    Term::Neuron { node, map }
                }
                [u, m] => {
                    let (node, map) = unit_map(u, m)?;
                    Term::Channel { node, map }
                }
                _ => bail!("plus: {what:?} is not UNIT:MAP, neuron:UNIT:MAP or class:C"),
            };
            Ok((w, term))
        })
        .collect()
}

/// The terms of one image given the map it climbs (none: a class or a sum).
type Terms = Box<dyn Fn(Option<i64>) -> Vec<(f64, Term)>>;

/// One batch's job: the images' objectives and what they are of.
struct Plan {
    batches: Vec<(Vec<Option<i64>>, Objective)>,
    layer: Option<String>,
    describe: String,
}

fn plan(spec: &NetSpec, units: &[Unit], r: &VisualizeRequest) -> Result<Plan> {
    let plus = match &r.plus {
        Some(s) => parse_plus(spec, units, s)?,
        None => vec![],
    };
    if !(1..=64).contains(&r.batch) {
        bail!("batch must be 1..=64, not {}", r.batch);
    }
    if !(r.diversity.is_finite() && r.diversity >= 0.0) {
        bail!("diversity must be a weight ≥ 0");
    }
    if r.diversity > 0.0 && r.batch < 2 {
        bail!("diversity needs a batch of at least 2 images");
    }
    let layer = r
        .layer
        .map(|l| check::layer(l, units.len()).map(|_| l))
        .transpose()?;
    let mut describe = vec![];
    let (maps, main): (Vec<Option<i64>>, Terms) = match (r.class, layer) {
        (Some(_), Some(_)) => bail!("give a class or a layer, not both"),
        (Some(c), None) => {
            describe.push(format!("class {c} (its logit)"));
            (
                vec![None],
                Box::new(move |_| vec![(1.0, Term::Class { class: c })]),
            )
        }
        (None, Some(l)) => {
            let c = units[l - 1].c;
            let maps = match (r.map, &r.maps) {
                (Some(m), _) => {
                    check::layer_map(units, l, m)?;
                    vec![m]
                }
                (None, Some(s)) => parse_maps(s, c)?,
                (None, None) => (0..c).collect(),
            };
            let node = pre_activation(spec, units, l);
            let name = &units[l - 1].short;
            let before = if node != units[l - 1].node {
                ", before its activation"
            } else {
                ""
            };
            let what = if r.neuron { "centre" } else { "mean" };
            describe.push(match r.map {
                Some(m) => format!("{name} map {m} ({what}{before})"),
                None => format!("{name}, {} maps ({what}{before})", maps.len()),
            });
            let neuron = r.neuron;
            (
                maps.into_iter().map(Some).collect(),
                Box::new(move |m: Option<i64>| {
                    let map = m.unwrap_or(0);
                    vec![(
                        1.0,
                        if neuron {
                            Term::Neuron { node, map }
                        } else {
                            Term::Channel { node, map }
                        },
                    )]
                }),
            )
        }
        (None, None) if !plus.is_empty() => (vec![None], Box::new(|_| vec![])),
        (None, None) => bail!("give a layer (and a map), a class or terms to add"),
    };
    if let Some(p) = &r.plus {
        describe.push(format!("plus {p}"));
    }
    let diversity = (r.diversity > 0.0).then(|| {
        let node = layer.map_or(spec.last_maps_node(), |l| units[l - 1].node);
        (node, r.diversity)
    });
    if r.diversity > 0.0 {
        describe.push(format!("{} images, diversity {}", r.batch, r.diversity));
    }
    let with_plus = |m: Option<i64>| {
        let mut t = main(m);
        t.extend(plus.iter().cloned());
        t
    };
    let batches = if maps.len() > 1 {
        if r.batch > 1 {
            bail!("a whole layer takes one image a map (no batch)");
        }
        maps.chunks(LAYER_BATCH)
            .map(|c| {
                let o = Objective {
                    targets: c.iter().map(|&m| with_plus(m)).collect(),
                    diversity: None,
                };
                (c.to_vec(), o)
            })
            .collect()
    } else {
        let m = maps[0];
        vec![(
            vec![m; r.batch],
            Objective {
                targets: (0..r.batch).map(|_| with_plus(m)).collect(),
                diversity,
            },
        )]
    };
    Ok(Plan {
        batches,
        layer: layer.map(|l| units[l - 1].short.clone()),
        describe: describe.join("; "),
    })
}

fn recipe(spec: &NetSpec, r: &VisualizeRequest) -> Recipe {
    let mut rec = Recipe::lucid(r.size.unwrap_or(spec.input_size), r.seed);
    rec.steps = r.steps;
    rec.lr = r.lr;
    rec.param = r.param;
    rec.decorrelate = r.decorrelate;
    rec.transforms = r.transforms.then(Transforms::lucid);
    rec
}

/// Pictures side by side in rows of up to `cols`, 2 px apart on white.
pub fn grid(pics: &[image::RgbImage], cols: usize) -> Result<image::RgbImage> {
    let (w, h) = pics
        .first()
        .map(|p| p.dimensions())
        .ok_or_else(|| anyhow!("no image"))?;
    let cols = cols.clamp(1, pics.len().max(1));
    let rows = pics.len().div_ceil(cols);
    let gap = 2;
    let mut out = image::RgbImage::from_pixel(
        cols as u32 * (w + gap) - gap,
        rows as u32 * (h + gap) - gap,
        image::Rgb([255, 255, 255]),
    );
    for (i, p) in pics.iter().enumerate() {
        let (x, y) = ((i % cols) as u32 * (w + gap), (i / cols) as u32 * (h + gap));
        image::imageops::replace(&mut out, p, x as i64, y as i64);
    }
    Ok(out)
}

/// The optimisation of a request on `net` (weights frozen), reporting
/// (done, total) steps and a preview picture every [`PREVIEW_EVERY`] steps.
pub fn render(
    net: &Net,
    input: Input,
    class_names: &[String],
    r: &VisualizeRequest,
    progress: &mut crate::progress::Report<'_>,
    preview: &mut dyn FnMut(String),
) -> Result<VisualizeResult> {
    let t0 = std::time::Instant::now();
    let plan = plan(&net.spec, &net.units, r)?;
    let rec = recipe(&net.spec, r);
    rec.check()?;
    let total = plan.batches.len() * rec.steps;
    progress(0, total)?;
    let mut pictures: Vec<image::RgbImage> = vec![];
    let mut images = vec![];
    let mut losses = vec![];
    for (k, (maps, objective)) in plan.batches.into_iter().enumerate() {
        let mut v = Visualizer::new(net, input.clone(), objective, rec.clone())?;
        for s in 1..=rec.steps {
            let loss = v.step()?;
            if s % PREVIEW_EVERY == 0 || s == rec.steps {
                if k == 0 {
                    losses.push(loss);
                }
                let mut now = pictures.clone();
                for t in v.images().unbind(0) {
                    now.push(crate::visualize::to_rgb(&t)?);
                }
                preview(crate::picture::data_url(&grid(&now, 8)?));
            }
            progress(k * rec.steps + s, total)?;
        }
        let values = v.objective_values()?;
        for ((m, img), value) in maps.iter().zip(v.images().unbind(0)).zip(values) {
            let pic = crate::visualize::to_rgb(&img)?;
            images.push(VisImage {
                map: *m,
                png: crate::picture::data_url(&pic),
                objective: value,
            });
            pictures.push(pic);
        }
    }
    Ok(VisualizeResult {
        layer: plan.layer,
        class: r.class,
        class_name: r.class.and_then(|c| class_names.get(c as usize).cloned()),
        objective: plan.describe,
        steps: rec.steps,
        seed: r.seed,
        size: rec.size,
        images,
        pictures,
        losses,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// [`render`] without progress or previews (the figure, the benchmark).
pub fn render_quietly(net: &Net, input: Input, r: &VisualizeRequest) -> Result<VisualizeResult> {
    render(net, input, &[], r, &mut |_, _| Ok(()), &mut |_| {})
}

/// The figure (`zfvis figures`, `vis`): what 9 maps of each shown conv
/// layer want to see, one row a layer, each from its own batch of 9.
/// `steps` and `seed` of every image; `shown` picks the conv layers.
pub fn figure(
    e: &mut crate::engine::Engine,
    (model, epoch): (&ModelName, u32),
    (steps, seed): (usize, u64),
    shown: &dyn Fn(usize) -> Vec<usize>,
    title: &str,
) -> crate::engine::Result<(String, serde_json::Value, crate::draw::Drawing)> {
    use crate::draw::{Anchor, Drawing, Size};
    const T: u32 = 96;
    const MAPS: i64 = 9;
    let m = e.model(model)?;
    let mut net = m.load(Some(epoch), e.ctx.device)?;
    net.vs.freeze();
    let input = Input::of(&m.manifest.preprocess());
    let layers = shown(net.convs.len());
    let row_h = (T + 24) as i32;
    let mut d = Drawing::new(
        90 + MAPS as u32 * (T + 6),
        36 + row_h as u32 * layers.len() as u32,
    );
    d.text(10, 8, title, Size::Title, Anchor::Start);
    let mut data = vec![];
    for (li, &layer) in layers.iter().enumerate() {
        let c = net.units[layer - 1].c.min(MAPS);
        let req: VisualizeRequest = serde_json::from_value(serde_json::json!({
            "model": model, "epoch": epoch, "layer": layer,
            "maps": format!("0-{}", c - 1), "steps": steps, "seed": seed,
        }))?;
        let res = render_quietly(&net, input.clone(), &req)?;
        let y = 36 + li as i32 * row_h;
        let name = &net.units[layer - 1].short;
        d.text(
            10,
            y + T as i32 / 2,
            name.clone(),
            Size::Title,
            Anchor::Start,
        );
        for (k, (pic, im)) in res.pictures.iter().zip(&res.images).enumerate() {
            let x = 90 + k as i32 * (T + 6) as i32;
            if let Some(map) = im.map {
                d.text(x, y, format!("map {map}"), Size::Small, Anchor::Start);
            }
            let small = image::imageops::resize(pic, T, T, image::imageops::FilterType::Triangle);
            d.image(x, y + 16, small);
        }
        let values: Vec<f64> = res.images.iter().map(|i| i.objective).collect();
        data.push(serde_json::json!({ "layer": name, "maps": c, "objective": values }));
    }
    let caption = format!(
        "For each shown conv layer, maps 0 to 8: an image optimised from noise to raise the map's \
         mean activation before its ReLU, {steps} Adam steps (lr 0.05), Lucid's recipe (Fourier \
         parameterisation with 1/f scaling, decorrelated colour, random pad, jitter, scale and \
         rotation each step), seed {seed}."
    );
    Ok((
        caption,
        serde_json::json!({ "steps": steps, "layers": data }),
        d,
    ))
}

pub struct Visualize;

impl Job for Visualize {
    type Request = VisualizeRequest;
    type Result = VisualizeResult;

    fn check(ctx: &Context, r: &VisualizeRequest) -> crate::engine::Result<()> {
        ctx.snapshot(&r.model, Some(r.epoch))?;
        let m = ctx.model(&r.model)?;
        let spec = m.manifest.spec().map_err(bad_input)?;
        if let Some(c) = r.class {
            check::class(c, spec.num_classes()).map_err(bad_input)?;
        }
        plan(&spec, &spec.unit_list(), r).map_err(bad_input)?;
        recipe(&spec, r).check().map_err(bad_input)?;
        if r.steps > 4096 {
            return Err(bad("steps must be at most 4096 here"));
        }
        Ok(())
    }

    fn run(
        ctx: &Context,
        r: &VisualizeRequest,
        progress: &mut crate::progress::Report<'_>,
    ) -> crate::engine::Result<VisualizeResult> {
        Self::run_previewing(ctx, r, progress, &mut |_| {})
    }

    fn run_previewing(
        ctx: &Context,
        r: &VisualizeRequest,
        progress: &mut crate::progress::Report<'_>,
        preview: &mut dyn FnMut(String),
    ) -> crate::engine::Result<VisualizeResult> {
        let m = ctx.model(&r.model)?;
        let mut net = m.load(Some(r.epoch), ctx.device)?;
        net.vs.freeze();
        let names: Vec<String> = m.manifest.classes.iter().map(|c| c.name.clone()).collect();
        let input = Input::of(&m.manifest.preprocess());
        Ok(render(&net, input, &names, r, progress, preview)?)
    }
}

crate::names_models! {
    VisualizeRequest: model;
}
