//! Feature visualisation by optimisation: the image a unit itself prefers
//! (Olah et al., "Feature Visualization", Distill 2017; Simonyan et al.
//! 2014 for classes). Start from noise and climb an objective with Adam,
//! through Lucid's recipe: a Fourier parameterisation with 1/f scaling,
//! decorrelated colour, a sigmoid to [0, 1], random transforms every step,
//! then the model's own normalisation. Every number is Lucent's
//! (torch-lucent 0.1.8, the PyTorch port of Lucid): its spectrum, its
//! colour matrix, its transforms (jitter by translation, scale by bilinear
//! resizing with `align_corners`, rotation by bilinear warping about the
//! centre), its diversity term. The candidates of the random scale and
//! angle are Lucid's (five scales, −5…5°); every draw comes from the seed.

use crate::net::{Layer, Net, Shape};
use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

/// One term of an image's objective.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// The mean of map `map` of node `node`'s output over its positions.
    Channel { node: usize, map: i64 },
    /// Map `map` of node `node`'s output at its centre (row H/2, column W/2).
    Neuron { node: usize, map: i64 },
    /// The logit of `class` (Simonyan et al.).
    Class { class: i64 },
}

/// What a batch of images climbs.
#[derive(Debug, Clone)]
pub struct Objective {
    /// `targets[b]`: the weighted terms image b climbs (their sum).
    pub targets: Vec<Vec<(f64, Term)>>,
    /// Lucid's diversity at a node, with its weight: the cosine similarity
    /// of the images' Gram matrices there, summed over pairs, over the batch
    /// size, is subtracted.
    pub diversity: Option<(usize, f64)>,
}

/// How the image is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Param {
    /// Lucid's: a spectrum scaled by 1/f, through an inverse real FFT.
    Fourier,
    /// The pixels themselves (the paper-era look).
    Pixel,
}

impl std::str::FromStr for Param {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Param> {
        match s {
            "fourier" => Ok(Param::Fourier),
            "pixel" => Ok(Param::Pixel),
            _ => bail!("the parameterisation is fourier or pixel, not {s:?}"),
        }
    }
}

/// The random transforms of every step, in Lucid's order: pad, jitter,
/// scale, rotate, jitter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transforms {
    /// Padding on each side, with 0.5 (grey).
    pub pad: i64,
    /// Shift by 0..jitter pixels right and down (zeros enter).
    pub jitter: i64,
    pub scales: Vec<f64>,
    /// Degrees, counter-clockwise.
    pub angles: Vec<f64>,
    pub jitter2: i64,
}

impl Transforms {
    /// Lucid's `standard_transforms`.
    pub fn lucid() -> Transforms {
        Transforms {
            pad: 12,
            jitter: 8,
            scales: vec![1.0, 0.975, 1.025, 0.95, 1.05],
            angles: (-5..=5).map(f64::from).collect(),
            jitter2: 4,
        }
    }
}

/// One step's draws of the transforms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Draws {
    /// (right, down) of the first jitter.
    pub jitter: [i64; 2],
    pub scale: f64,
    pub angle: f64,
    pub jitter2: [i64; 2],
}

/// The optimisation's settings.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The image's side (the model's input size by default).
    pub size: i64,
    pub param: Param,
    /// Lucid's colour decorrelation (3-channel images).
    pub decorrelate: bool,
    /// None: the image as it is, every step.
    pub transforms: Option<Transforms>,
    /// σ of the initial noise.
    pub sd: f64,
    /// The spectrum's 1/f^decay scaling.
    pub decay: f64,
    pub seed: u64,
}

impl Recipe {
    /// Lucid's recipe at `size`.
    pub fn lucid(size: i64, seed: u64) -> Recipe {
        Recipe {
            steps: 512,
            lr: 0.05,
            size,
            param: Param::Fourier,
            decorrelate: true,
            transforms: Some(Transforms::lucid()),
            sd: 0.01,
            decay: 1.0,
            seed,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.steps == 0 || self.steps > 100_000 {
            bail!("steps must be 1..=100000, not {}", self.steps);
        }
        if !(self.lr > 0.0 && self.lr <= 10.0) {
            bail!("the learning rate must be in (0, 10], not {}", self.lr);
        }
        if !(16..=1024).contains(&self.size) {
            bail!("the image size must be 16..=1024 px, not {}", self.size);
        }
        if let Some(t) = &self.transforms {
            if !(0..=self.size).contains(&t.pad)
                || !(1..=self.size / 2).contains(&t.jitter)
                || !(1..=self.size / 2).contains(&t.jitter2)
            {
                bail!("pad must be 0..=size and jitters 1..=size/2");
            }
            if t.scales.is_empty() || t.scales.iter().any(|s| !(0.5..=2.0).contains(s)) {
                bail!("scales must be in 0.5..=2");
            }
            if t.angles.is_empty() || t.angles.iter().any(|a| !(-180.0..=180.0).contains(a)) {
                bail!("angles must be in −180..=180 degrees");
            }
        }
        Ok(())
    }
}

/// How the network reads an image in [0, 1]: (p − mean) / std, channels
/// reversed for BGR networks, one channel for grey ones.
#[derive(Debug, Clone)]
pub struct Input {
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub bgr: bool,
    pub channels: i64,
}

impl Input {
    pub fn of(p: &crate::preprocess::Preprocess) -> Input {
        Input {
            mean: p.mean,
            std: p.std,
            bgr: p.bgr,
            channels: if p.grey { 1 } else { 3 },
        }
    }
}

/// Lucent's `color_correlation_svd_sqrt`, divided by its largest column norm.
fn colour_matrix() -> [[f64; 3]; 3] {
    let c = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
    let norm = (0..3)
        .map(|j| (0..3).map(|i| c[i][j] * c[i][j]).sum::<f64>().sqrt())
        .fold(0.0, f64::max);
    c.map(|r| r.map(|v| v / norm))
}

/// numpy's `fftfreq(n)[k]`.
fn fftfreq(n: i64, k: i64) -> f64 {
    let k = if k < (n + 1) / 2 { k } else { k - n };
    k as f64 / n as f64
}

/// Columns of the real spectrum of width `w` (Lucent keeps one more for odd `w`).
fn spectrum_width(w: i64) -> i64 {
    w / 2 + 1 + w % 2
}

/// 1 / max(f, 1/max(w, h))^decay for the real spectrum of an h × w image: [h, wf].
fn spectrum_scale(h: i64, w: i64, decay: f64) -> Tensor {
    let wf = spectrum_width(w);
    let floor = 1.0 / w.max(h) as f64;
    let v: Vec<f32> = (0..h)
        .flat_map(|y| {
            (0..wf).map(move |x| {
                let f = (fftfreq(h, y).powi(2) + fftfreq(w, x).powi(2)).sqrt();
                (1.0 / f.max(floor).powf(decay)) as f32
            })
        })
        .collect();
    Tensor::from_slice(&v).view([h, wf])
}

/// Shift right by `dx` and down by `dy` (zeros enter), keeping the size.
fn translate(x: &Tensor, dx: i64, dy: i64) -> Tensor {
    let s = x.size();
    x.constant_pad_nd([dx, 0, dy, 0])
        .narrow(2, 0, s[2])
        .narrow(3, 0, s[3])
}

/// Lucent's `random_scale` for one scale: bilinear (corners aligned) to
/// ⌈s·side⌉, padded with zeros back to the side when smaller.
fn rescale(x: &Tensor, s: f64) -> Tensor {
    let sz = x.size();
    let (h, w) = (sz[2], sz[3]);
    let (nh, nw) = ((s * h as f64).ceil() as i64, (s * w as f64).ceil() as i64);
    let pad_y = (((h - nh) as f64) / 2.0).ceil().max(0.0) as i64;
    let pad_x = (((w - nw) as f64) / 2.0).ceil().max(0.0) as i64;
    x.upsample_bilinear2d([nh, nw], true, None, None)
        .constant_pad_nd([pad_y, pad_x, pad_y, pad_x])
}

/// Rotation by `deg` degrees counter-clockwise about the centre, bilinear,
/// zeros outside (kornia's `warp_affine` of `get_rotation_matrix2d`).
fn rotate(x: &Tensor, deg: f64) -> Tensor {
    let sz = x.size();
    let (b, h, w) = (sz[0], sz[2], sz[3]);
    let opts = (Kind::Float, x.device());
    let (a, s) = (deg.to_radians().cos(), deg.to_radians().sin());
    let (cx, cy) = ((w - 1) as f64 / 2.0, (h - 1) as f64 / 2.0);
    let dx = Tensor::arange(w, opts).view([1, w]) - cx;
    let dy = Tensor::arange(h, opts).view([h, 1]) - cy;
    // The source of each output pixel: c + R⁻¹ (p − c).
    let sx = &dx * a - &dy * s + cx;
    let sy = &dx * s + &dy * a + cy;
    let gx = sx * (2.0 / (w - 1) as f64) - 1.0;
    let gy = sy * (2.0 / (h - 1) as f64) - 1.0;
    let grid = Tensor::stack(&[gx, gy], -1)
        .unsqueeze(0)
        .expand([b, h, w, 2], true);
    x.grid_sampler(&grid, 0, 0, true)
}

/// The transforms of `d` applied to `x` ([B, C, H, W] in [0, 1]).
pub fn transform(x: &Tensor, t: &Transforms, d: &Draws) -> Tensor {
    let p = t.pad;
    let x = x.pad([p, p, p, p], "constant", 0.5);
    let x = translate(&x, d.jitter[0], d.jitter[1]);
    // Scale 1 and angle 0 are the identity (corner-aligned sampling at the
    // pixels themselves): skipped.
    let x = if d.scale == 1.0 {
        x
    } else {
        rescale(&x, d.scale)
    };
    let x = if d.angle == 0.0 {
        x
    } else {
        rotate(&x, d.angle)
    };
    translate(&x, d.jitter2[0], d.jitter2[1])
}

/// The optimisation of a batch of images: its parameters, Adam, the draws.
pub struct Visualizer<'a> {
    net: &'a Net,
    input: Input,
    objective: Objective,
    recipe: Recipe,
    /// The nodes whose outputs the objective reads (ascending; the logits last).
    nodes: Vec<usize>,
    /// The network needs its own input size (a flatten of maps before the
    /// last node read): the transformed image is resized to it.
    fixed: Option<i64>,
    _vs: nn::VarStore,
    param: Tensor,
    scale: Option<Tensor>,
    colour: Tensor,
    opt: nn::Optimizer,
    rng: StdRng,
    pub step: usize,
}

impl<'a> Visualizer<'a> {
    /// Fresh parameters drawn from the recipe's seed. The network's weights
    /// should be frozen (`net.vs.freeze()`): only the image is climbed.
    pub fn new(net: &'a Net, input: Input, objective: Objective, recipe: Recipe) -> Result<Self> {
        recipe.check()?;
        let b = objective.targets.len() as i64;
        if b == 0 || b > 256 {
            bail!("a batch of 1..=256 images, not {b}");
        }
        let n = net.spec.nodes.len();
        let logits = n - 1;
        let mut nodes: Vec<usize> = objective
            .targets
            .iter()
            .flatten()
            .map(|(_, t)| match t {
                Term::Channel { node, .. } | Term::Neuron { node, .. } => *node,
                Term::Class { .. } => logits,
            })
            .chain(objective.diversity.map(|d| d.0))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let last = *nodes.last().unwrap_or(&logits);
        if last >= n {
            bail!("node {last} is not in the network");
        }
        for (_, t) in objective.targets.iter().flatten() {
            check_term(net, t)?;
        }
        // A flatten of maps or a position embedding takes one size only.
        let fixed = (0..=last)
            .any(|i| {
                let flat = matches!(net.spec.op(i), Layer::Flatten)
                    && net.sources(i).iter().any(|s| {
                        let shape = s.map_or(Shape::Maps { c: 3, side: 2 }, |j| net.shapes[j]);
                        matches!(shape, Shape::Maps { side, .. } if side > 1)
                    });
                flat || matches!(net.spec.op(i), Layer::Embed { .. })
            })
            .then_some(net.spec.input_size);
        let c = input.channels;
        let (h, w) = (recipe.size, recipe.size);
        let shape: Vec<i64> = match recipe.param {
            Param::Fourier => vec![b, c, h, spectrum_width(w), 2],
            Param::Pixel => vec![b, c, h, w],
        };
        let dev = net.device();
        let init = crate::methods::smooth::noise(&shape, 1, recipe.seed).view(shape.as_slice())
            * recipe.sd;
        let vs = nn::VarStore::new(dev);
        let param = vs.root().var_copy("param", &init.to_device(dev));
        let opt = nn::Adam::default().build(&vs, recipe.lr)?;
        let scale = (recipe.param == Param::Fourier).then(|| {
            spectrum_scale(h, w, recipe.decay)
                .view([1, 1, h, -1, 1])
                .to_device(dev)
        });
        let m = colour_matrix();
        // Rows of Cᵀ: x · Cᵀ on the channel axis.
        let ct: Vec<f32> = (0..3)
            .flat_map(|i| (0..3).map(move |j| m[j][i] as f32))
            .collect();
        let colour = Tensor::from_slice(&ct).view([3, 3]).to_device(dev);
        Ok(Visualizer {
            net,
            input,
            objective,
            rng: StdRng::seed_from_u64(recipe.seed ^ 0x005e_ed0f_d4a5),
            recipe,
            nodes,
            fixed,
            _vs: vs,
            param,
            scale,
            colour,
            opt,
            step: 0,
        })
    }

    /// The images in [0, 1], [B, C, H, W], differentiable in the parameters.
    fn pixels(&self) -> Tensor {
        let (h, w) = (self.recipe.size, self.recipe.size);
        let raw = match &self.scale {
            Some(s) => {
                let spec = (s * &self.param).view_as_complex();
                spec.fft_irfft2(Some([h, w].as_slice()), [-2, -1], "ortho") / 4.0
            }
            None => self.param.shallow_clone(),
        };
        let raw = if self.recipe.decorrelate && self.input.channels == 3 {
            raw.permute([0, 2, 3, 1])
                .matmul(&self.colour)
                .permute([0, 3, 1, 2])
        } else {
            raw
        };
        raw.sigmoid()
    }

    /// The images now, [B, C, H, W] in [0, 1] (no graph).
    pub fn images(&self) -> Tensor {
        tch::no_grad(|| self.pixels())
    }

    /// The parameters (the spectrum or the pixels).
    pub fn param(&self) -> &Tensor {
        &self.param
    }

    /// The next step's draws (None without transforms).
    pub fn draw(&mut self) -> Option<Draws> {
        let t = self.recipe.transforms.as_ref()?;
        let r = &mut self.rng;
        let jitter = [r.random_range(0..t.jitter), r.random_range(0..t.jitter)];
        let scale = t.scales[r.random_range(0..t.scales.len())];
        let angle = t.angles[r.random_range(0..t.angles.len())];
        let jitter2 = [r.random_range(0..t.jitter2), r.random_range(0..t.jitter2)];
        Some(Draws {
            jitter,
            scale,
            angle,
            jitter2,
        })
    }

    /// The network's outputs at the objective's nodes for images `x` in [0, 1].
    fn outputs(&self, x: &Tensor) -> BTreeMap<usize, Tensor> {
        let x = match self.fixed {
            Some(s) if x.size()[2] != s || x.size()[3] != s => {
                x.upsample_bilinear2d([s, s], true, None, None)
            }
            _ => x.shallow_clone(),
        };
        let dev = x.device();
        let c = self.input.channels;
        let take = |v: &[f64; 3]| {
            let v: Vec<f32> = v.iter().take(c as usize).map(|&a| a as f32).collect();
            Tensor::from_slice(&v).view([1, c, 1, 1]).to_device(dev)
        };
        let x = (x - take(&self.input.mean)) / take(&self.input.std);
        let x = if self.input.bgr { x.flip([1]) } else { x };
        let outs = self.net.differentiable_outputs_at(&x, &self.nodes);
        self.nodes.iter().copied().zip(outs).collect()
    }

    /// Each image's objective (the weighted sum of its terms), [B].
    fn values(&self, outs: &BTreeMap<usize, Tensor>) -> Tensor {
        // Every node a term reads is in `nodes` (see `new`).
        let at = |node: usize| &outs[&node];
        let logits = self.net.spec.nodes.len() - 1;
        let per: Vec<Tensor> = self
            .objective
            .targets
            .iter()
            .enumerate()
            .map(|(b, terms)| {
                let b = b as i64;
                let zero = Tensor::zeros([], (Kind::Float, self.net.device()));
                terms.iter().fold(zero, |sum, (wt, t)| {
                    let v = match t {
                        Term::Channel { node, map } => at(*node).get(b).get(*map).mean(Kind::Float),
                        Term::Neuron { node, map } => {
                            let m = at(*node).get(b).get(*map);
                            let s = m.size();
                            m.get(s[0] / 2).get(s[1] / 2)
                        }
                        Term::Class { class } => at(logits).get(b).get(*class),
                    };
                    sum + v * *wt
                })
            })
            .collect();
        Tensor::stack(&per, 0)
    }

    /// The loss of one step (to minimise): minus the batch's mean objective,
    /// plus the diversity term.
    pub fn loss(&self, d: Option<&Draws>) -> Tensor {
        let img = self.pixels();
        let x = match (d, &self.recipe.transforms) {
            (Some(d), Some(t)) => transform(&img, t, d),
            _ => img,
        };
        let outs = self.outputs(&x);
        let loss = -self.values(&outs).mean(Kind::Float);
        match self.objective.diversity {
            Some((node, w)) => loss + diversity(&outs[&node]) * w,
            None => loss,
        }
    }

    /// One step with `d`'s transforms: the loss, then Adam. The gradient of
    /// the loss stays in [`Visualizer::param`]'s `grad()` until the next step.
    pub fn step_with(&mut self, d: Option<&Draws>) -> Result<f64> {
        self.opt.zero_grad();
        let loss = self.loss(d);
        loss.backward();
        self.opt.step();
        self.step += 1;
        Ok(loss.double_value(&[]))
    }

    /// One step with the next draws.
    pub fn step(&mut self) -> Result<f64> {
        let d = self.draw();
        self.step_with(d.as_ref())
    }

    /// Each image's objective on the image itself (no transforms).
    pub fn objective_values(&self) -> Result<Vec<f64>> {
        tch::no_grad(|| {
            let outs = self.outputs(&self.pixels());
            crate::net::values::<f64>(&self.values(&outs), "the objective")
        })
    }
}

/// The diversity term (Lucid's `diversity`, negated: to minimise): the
/// cosine similarity of the Gram matrices of every ordered pair of images
/// at `l` ([B, C, H, W]), summed, over B.
pub fn diversity(l: &Tensor) -> Tensor {
    let s = l.size();
    let b = s[0];
    let flat = l.reshape([b, s[1], -1]);
    let grams = flat.matmul(&flat.transpose(1, 2)).reshape([b, -1]);
    let norm = grams
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    let g = grams / norm;
    let sims = g.matmul(&g.transpose(0, 1));
    (sims.sum(Kind::Float) - sims.diagonal(0, 0, 1).sum(Kind::Float)) / b as f64
}

/// A term's map or class must exist.
fn check_term(net: &Net, t: &Term) -> Result<()> {
    match t {
        Term::Channel { node, map } | Term::Neuron { node, map } => {
            let c = match net.shapes.get(*node) {
                Some(s) => s.channels(),
                None => bail!("node {node} is not in the network"),
            };
            if !(0..c).contains(map) {
                bail!("map {map} is out of range (0..{c})");
            }
            if matches!(t, Term::Neuron { .. }) && !matches!(net.shapes[*node], Shape::Maps { .. })
            {
                bail!("a neuron objective needs a unit with maps");
            }
        }
        Term::Class { class } => {
            let n = net.spec.num_classes();
            if !(0..n).contains(class) {
                bail!("class {class} is out of range (0..{n})");
            }
        }
    }
    Ok(())
}

/// An image in [0, 1] ([C, H, W], 1 or 3 channels) as 8-bit RGB, each
/// value × 255 truncated (Lucent's `export`).
pub fn to_rgb(x: &Tensor) -> Result<image::RgbImage> {
    let s = x.size();
    let x = if s[0] == 1 {
        x.expand([3, -1, -1], false)
    } else {
        x.shallow_clone()
    };
    let v = crate::net::values::<u8>(
        &(x.clamp(0.0, 1.0) * 255.0)
            .to_kind(Kind::Uint8)
            .permute([1, 2, 0]),
        "the image",
    )?;
    image::RgbImage::from_raw(s[2] as u32, s[1] as u32, v)
        .ok_or_else(|| anyhow::anyhow!("the image has the wrong size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fftfreq_is_numpys() {
        let v: Vec<f64> = (0..5).map(|k| fftfreq(5, k)).collect();
        assert_eq!(v, vec![0.0, 0.2, 0.4, -0.4, -0.2]);
        let v: Vec<f64> = (0..4).map(|k| fftfreq(4, k)).collect();
        assert_eq!(v, vec![0.0, 0.25, -0.5, -0.25]);
    }

    #[test]
    fn translate_and_rotate_by_hand() {
        let x = Tensor::arange(9, (Kind::Float, tch::Device::Cpu)).view([1, 1, 3, 3]);
        let t = translate(&x, 1, 0);
        let v: Vec<f32> = crate::net::values(&t, "t").unwrap();
        assert_eq!(v, vec![0.0, 0.0, 1.0, 0.0, 3.0, 4.0, 0.0, 6.0, 7.0]);
        // 90° counter-clockwise: the top row becomes the left column.
        let r = rotate(&x, 90.0);
        let v: Vec<f32> = crate::net::values(&r, "r").unwrap();
        let want = [2.0, 5.0, 8.0, 1.0, 4.0, 7.0, 0.0, 3.0, 6.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{v:?}");
        }
    }

    #[test]
    fn diversity_of_equal_images_is_the_pair_count() {
        let l = Tensor::randn([1, 4, 3, 3], (Kind::Float, tch::Device::Cpu)).repeat([3, 1, 1, 1]);
        // Three equal images: 6 ordered pairs of similarity 1, over 3.
        let d = diversity(&l).double_value(&[]);
        assert!((d - 2.0).abs() < 1e-5, "{d}");
    }
}
