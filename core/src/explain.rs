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
use crate::net::{Net, Trace};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a map explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A class's logit.
    Class(i64),
    /// The strongest activation of a unit's map (unit 1-based, map 0-based).
    Map { layer: usize, map: i64 },
}

impl Target {
    /// The class of a class target (-1 for a map: the class methods
    /// refuse map targets in [`Explainer::check`]).
    pub fn class(self) -> i64 {
        match self {
            Target::Class(c) => c,
            Target::Map { .. } => -1,
        }
    }
}

/// The settings of the methods that have them.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The CAM family's unit (1-based; see [`crate::net::Unit`]); default
    /// the suggested one, [`Net::last_unit`]: the last with maps before the
    /// global pooling.
    pub cam_layer: usize,
    /// Integrated gradients' steps (Captum's riemann_trapezoid).
    pub ig_steps: i64,
    /// Occluder side and stride, px at the input size.
    pub size: i64,
    pub stride: i64,
    /// Images per batched pass (integrated gradients, deletion/insertion).
    pub batch: i64,
    /// SmoothGrad over the gradient methods' maps (none: the map alone).
    pub smooth: Option<Smooth>,
    /// Attention rollout's fusion of the heads.
    pub fusion: Fusion,
    /// Attention rollout's fraction of each fused matrix zeroed (the lowest).
    pub discard: f64,
}

impl Options {
    pub fn new(net: &Net) -> Options {
        Options {
            cam_layer: net.last_unit(),
            ig_steps: 50,
            size: crate::occlusion::DEFAULT_SIZE,
            stride: crate::occlusion::DEFAULT_STRIDE,
            batch: 16,
            smooth: None,
            fusion: Fusion::Mean,
            discard: 0.9,
        }
    }
}

/// How the heads of one block's attention are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    #[default]
    Mean,
    Max,
    Min,
}

impl std::str::FromStr for Fusion {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Fusion> {
        Ok(match s {
            "mean" => Fusion::Mean,
            "max" => Fusion::Max,
            "min" => Fusion::Min,
            o => bail!("unknown head fusion {o:?}: expected mean, max or min"),
        })
    }
}

impl std::fmt::Display for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fusion::Mean => "mean",
            Fusion::Max => "max",
            Fusion::Min => "min",
        })
    }
}

impl Fusion {
    /// [B, heads, N, N] -> [B, N, N].
    pub fn fuse(self, a: &Tensor) -> Tensor {
        match self {
            Fusion::Mean => a.mean_dim([1i64].as_slice(), false, Kind::Float),
            Fusion::Max => a.amax([1i64].as_slice(), false),
            Fusion::Min => a.amin([1i64].as_slice(), false),
        }
    }
}

/// SmoothGrad's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Smooth {
    /// Noisy copies averaged.
    pub samples: i64,
    /// σ as a fraction of the input's range (Smilkov et al.: 0.1–0.2).
    pub noise: f64,
    pub seed: u64,
    /// Average the squared maps (SmoothGrad²).
    pub squared: bool,
}

/// The most noisy copies a map averages (SmoothGrad).
pub const MAX_SAMPLES: i64 = 1000;

impl Smooth {
    pub fn check(&self) -> Result<()> {
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            bail!(
                "SmoothGrad needs 1 to {MAX_SAMPLES} samples, got {}",
                self.samples
            );
        }
        if !(self.noise.is_finite() && (0.0..=10.0).contains(&self.noise)) {
            bail!(
                "SmoothGrad's noise is a fraction of the input range, 0 to 10, got {}",
                self.noise
            );
        }
        Ok(())
    }

    /// For captions: "SmoothGrad², 50 samples, σ 15% of the range, seed 0".
    pub fn describe(&self) -> String {
        format!(
            "SmoothGrad{}, {} samples, σ {}% of the input range, seed {}",
            if self.squared { "²" } else { "" },
            self.samples,
            self.noise * 100.0,
            self.seed
        )
    }
}

/// One image, traced once for every method.
pub struct Explainer<'a> {
    pub net: &'a Net,
    /// The normalised input, [1, C, S, S].
    pub x: Tensor,
    pub trace: Trace,
    /// Told (done, total) by the methods that take many passes (Score-CAM,
    /// Ablation-CAM, SmoothGrad); its error (a cancelled job) stops them.
    pub progress: Option<&'a dyn Fn(usize, usize) -> Result<()>>,
}

impl<'a> Explainer<'a> {
    pub fn new(net: &'a Net, x: &Tensor) -> Explainer<'a> {
        let s = net.spec.input_size;
        let x =
            x.to_device(net.device())
                .to_kind(Kind::Float)
                .view([1, net.spec.in_channels, s, s]);
        let trace = net.trace_saving(&x);
        Explainer {
            net,
            x,
            trace,
            progress: None,
        }
    }

    /// Tell the progress hook, if any, that `done` of `total` passes are done.
    pub fn report(&self, done: usize, total: usize) -> Result<()> {
        self.progress.map_or(Ok(()), |f| f(done, total))
    }

    /// The argmax of the logits.
    pub fn top_class(&self) -> i64 {
        self.trace.logits.get(0).argmax(0, false).int64_value(&[])
    }

    pub fn num_classes(&self) -> i64 {
        self.trace.logits.size()[1]
    }

    /// The node and the signal there that a target starts from: a one-hot
    /// of the class at the logits, or the strongest activation of a map.
    pub fn start(&self, target: Target, batch: i64) -> (usize, Tensor) {
        let dev = self.net.device();
        match target {
            Target::Class(c) => {
                let k = self.num_classes();
                let s = Tensor::zeros([batch, k], (Kind::Float, dev));
                let _ = s.narrow(1, c, 1).fill_(1.0);
                (self.net.spec.nodes.len() - 1, s)
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

    /// The class probability after each step of deleting (and of inserting)
    /// the pixels `saliency` ranks highest; see [`deletion_insertion`].
    pub fn scores(&self, class: i64, saliency: &Tensor, batch: i64) -> Result<Curves> {
        deletion_insertion(self.net, &self.x, class, saliency, batch)
    }
}

pub use crate::picture::saliency;

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
) -> Result<Curves> {
    tch::no_grad(|| {
        let (h, w) = (saliency.size()[0], saliency.size()[1]);
        let v: Vec<f32> = crate::net::values(saliency, "the saliency map")?;
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
        let curve = |insert: bool| -> Result<Vec<f64>> {
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
                let col: Vec<f32> =
                    crate::net::values(&probs.select(1, class), "the class probabilities")?;
                p.extend(col.into_iter().map(f64::from));
                k0 += b;
            }
            Ok(p)
        };
        let (deletion, insertion) = (curve(false)?, curve(true)?);
        Ok(Curves {
            deletion_auc: auc(&deletion),
            insertion_auc: auc(&insertion),
            deletion,
            insertion,
            step,
        })
    })
}
