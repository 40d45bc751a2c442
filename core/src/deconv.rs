//! The deconvnet (paper.md §3, Fig. 1): from a conv layer's feature maps back
//! to pixels through unpool (switches, summed where they coincide) -> ReLU ->
//! transposed conv with the forward filters. LRN is skipped on the way down.

use crate::net::{Layer, Net, Shape, Trace};
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Unpool: the exact adjoint of max-pooling. `indices` are flat H*W indices
/// into the pre-pool map (as returned by `max_pool2d_with_indices`); values
/// whose switches coincide are summed.
pub fn unpool(x: &Tensor, indices: &Tensor, out_hw: (i64, i64)) -> Tensor {
    let (n, c) = (x.size()[0], x.size()[1]);
    let idx = indices
        .expand([n, c, indices.size()[2], indices.size()[3]], false)
        .reshape([n, c, -1]);
    Tensor::zeros([n, c, out_hw.0 * out_hw.1], (x.kind(), x.device()))
        .scatter_add(2, &idx, &x.reshape([n, c, -1]))
        .view([n, c, out_hw.0, out_hw.1])
}

/// Transposed conv of layer index `i` (a conv) back to input side `target`.
pub fn deconv_step(net: &Net, i: usize, x: &Tensor, target: i64) -> Tensor {
    let l = &net.spec.nodes[i].op;
    let (groups, dilation) = match l {
        Layer::Conv {
            groups, dilation, ..
        } => (*groups, *dilation),
        _ => unreachable!("deconv_step on a conv layer"),
    };
    let [wh, ww] = l.windows();
    let n = x.size()[2];
    // The rows/columns the forward conv left out at the end come back as
    // output padding.
    let extra = |w: crate::net::Window| {
        let op = target - ((n - 1) * w.stride - 2 * w.pad + w.k);
        debug_assert!(op >= 0 && op < w.stride.max(dilation));
        op
    };
    // Channels-last, as the forward pass runs (oneDNN's depthwise and
    // strided transposed convs are many times faster so laid out).
    crate::net::channels_last(x).conv_transpose2d(
        net.inference_weight(i),
        None::<Tensor>,
        [wh.stride, ww.stride],
        [wh.pad, ww.pad],
        [extra(wh), extra(ww)],
        groups,
        [dilation, dilation],
    )
}

/// The exact derivative of smooth node `i` ([`Layer::is_smooth`]) at the
/// inputs the trace kept, applied to the signal `s` at its output: one
/// signal per input (summed to the input's shape where it was broadcast).
/// Element-wise ops use PyTorch's own backward kernels (or their closed
/// forms); layer norm runs libtorch's autograd over its forward, with the
/// inputs first broadcast to the signal's batch so that each signal gets
/// its own image's derivative.
fn smooth_back(net: &Net, trace: &Trace, i: usize, s: &Tensor) -> Vec<Tensor> {
    let xs: Vec<&Tensor> = net
        .sources(i)
        .iter()
        .map(|src| {
            trace
                .inputs
                .get(src)
                .unwrap_or_else(|| panic!("node {i}: the trace keeps what smooth ops read"))
        })
        .collect();
    // One image's input for a batch of signals: the element-wise backward
    // kernels do not broadcast (oneDNN's GELU on tokens refuses), so the
    // input is repeated to the signal's batch.
    let batched;
    let unary = matches!(
        net.spec.op(i),
        Layer::Sigmoid
            | Layer::Silu
            | Layer::HardSigmoid { .. }
            | Layer::HardSwish
            | Layer::Gelu { .. }
    );
    let x = if unary && xs[0].size() != s.size() {
        batched = xs[0].expand(s.size(), false).contiguous();
        &batched
    } else {
        xs[0]
    };
    match net.spec.op(i) {
        // tch: the receiver is the forward input, the argument the signal
        // (sigmoid's: the signal, then the forward output).
        Layer::Sigmoid => vec![Tensor::sigmoid_backward(s, &x.sigmoid())],
        Layer::Silu => vec![x.silu_backward(s)],
        Layer::HardSwish => vec![x.hardswish_backward(s)],
        Layer::Gelu { tanh } => vec![x.gelu_backward(s, if *tanh { "tanh" } else { "none" })],
        Layer::HardSigmoid { alpha, beta } => {
            let z = x * *alpha + *beta;
            let inside = z.gt(0.0).logical_and(&z.lt(1.0)).to_kind(s.kind());
            vec![s * inside * *alpha]
        }
        Layer::Mul => vec![s * xs[1], s * xs[0]],
        Layer::Div => vec![s / xs[1], -(s * xs[0]) / xs[1].square()],
        _ => autograd_back(net, i, &xs, s),
    }
}

/// [`smooth_back`] by libtorch's autograd over node `i`'s forward.
fn autograd_back(net: &Net, i: usize, xs: &[&Tensor], s: &Tensor) -> Vec<Tensor> {
    let b = s.size()[0];
    let leaves: Vec<Tensor> = xs
        .iter()
        .map(|x| {
            let mut size = x.size();
            size[0] = b;
            x.expand(size.as_slice(), false)
                .contiguous()
                .detach()
                .set_requires_grad(true)
        })
        .collect();
    tch::with_grad(|| {
        let y = net.apply_node(i, &leaves);
        let dot = (y * s).sum(Kind::Float);
        Tensor::run_backward(&[dot], &leaves, false, false)
    })
}

/// A signal `s` summed down to the shape of an input of an element-wise op
/// that was broadcast per channel ([B, C, 1, 1]).
fn unbroadcast(s: &Tensor, input: Shape) -> Tensor {
    match input {
        Shape::Maps { side: 1, .. } if s.dim() == 4 && s.size()[2] > 1 => {
            s.sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float)
        }
        _ => s.shallow_clone(),
    }
}

/// How a reversed network passes a signal back through a ReLU-family
/// activation (Mahendran & Vedaldi, ECCV 2016; paper.md §8), and whether it
/// takes LRN's gradient: a value, so that a method names its rule and the
/// walk back reads it without knowing the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// What it does at a ReLU-family activation, in words.
    pub name: &'static str,
    /// Pass only the positive part of the signal (deconvnet, guided).
    pub rectify: bool,
    /// Pass it only where the activation let its input through (gradient, guided).
    pub mask: bool,
    /// LRN's true gradient (otherwise LRN is skipped, as the deconvnet does).
    pub lrn_gradient: bool,
}

impl Rule {
    /// The deconvnet: `relu(signal)`; LRN skipped.
    pub const DECONV: Rule = Rule {
        name: "ReLU of the signal; LRN skipped",
        rectify: true,
        mask: false,
        lrn_gradient: false,
    };
    /// The gradient: `signal · [x > 0]`; LRN's true gradient.
    pub const GRADIENT: Rule = Rule {
        name: "the signal where the input was > 0",
        rectify: false,
        mask: true,
        lrn_gradient: true,
    };
    /// Guided backprop: `relu(signal) · [x > 0]`; LRN's true gradient.
    pub const GUIDED: Rule = Rule {
        name: "ReLU of the signal where the input was > 0",
        rectify: true,
        mask: true,
        lrn_gradient: true,
    };

    /// The signal `s` past a ReLU-family node `layer` whose forward output
    /// was `out` (read only when the rule masks).
    fn at_relu(self, layer: &Layer, out: impl FnOnce() -> Tensor, s: &Tensor) -> Tensor {
        let s = if self.rectify {
            s.relu()
        } else {
            s.shallow_clone()
        };
        if self.mask {
            through(layer, &out(), &s)
        } else {
            s
        }
    }
}

/// Which activations of a network the rules act at, and which ops pass
/// their exact derivative whatever the rule (Captum's convention).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Activations {
    /// ReLU-family nodes, by kind: ("ReLU", 7).
    pub rule: Vec<(String, usize)>,
    /// Smooth ops (SiLU, GELU, hard-swish, gates, layer norm), by kind.
    pub exact: Vec<(String, usize)>,
    /// The two in a sentence, for the methods page.
    pub note: String,
}

fn kind(l: &Layer) -> &'static str {
    match l {
        Layer::Relu => "ReLU",
        Layer::Clip { .. } => "ReLU6 (clip)",
        Layer::Sigmoid => "sigmoid",
        Layer::Silu => "SiLU",
        Layer::HardSigmoid { .. } => "hard-sigmoid",
        Layer::HardSwish => "hard-swish",
        Layer::Gelu { .. } => "GELU",
        Layer::Mul => "product (gate)",
        Layer::Div => "quotient",
        Layer::ChannelNorm { .. } => "layer norm",
        Layer::Attention { .. } => "self-attention",
        Layer::WindowAttention { .. } => "window attention",
        Layer::PatchMerge => "patch merging",
        other => other.op(),
    }
}

/// What the walk back does at the activations of `net`.
pub fn activations(net: &Net) -> Activations {
    let count = |pick: fn(&Layer) -> bool| {
        let mut v: Vec<(String, usize)> = vec![];
        for l in net.spec.ops().filter(|l| pick(l)) {
            match v.iter_mut().find(|(k, _)| k == kind(l)) {
                Some((_, n)) => *n += 1,
                None => v.push((kind(l).to_string(), 1)),
            }
        }
        v
    };
    let (rule, exact) = (count(Layer::is_relu), count(Layer::is_smooth));
    let list = |v: &[(String, usize)]| {
        v.iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let note = match (rule.is_empty(), exact.is_empty()) {
        (_, true) => format!("The rules act at every activation: {}.", list(&rule)),
        (true, false) => format!(
            "No ReLU-family activation: the deconvnet and guided backprop here are the gradient, with the exact derivatives of {}.",
            list(&exact)
        ),
        (false, false) => format!(
            "The rules act at {}; {} pass their exact derivative (Captum's convention).",
            list(&rule),
            list(&exact)
        ),
    };
    Activations { rule, exact, note }
}

/// `s` where a ReLU-family node let its input through (`out`: its forward
/// output), 0 elsewhere: PyTorch's own backward kernels.
fn through(layer: &Layer, out: &Tensor, s: &Tensor) -> Tensor {
    // tch: the receiver is the forward tensor, the argument the gradient.
    match layer {
        Layer::Clip { max } => out.hardtanh_backward(s, 0.0, *max),
        _ => out.threshold_backward(s, 0.0),
    }
}

/// The step back through node `i` for a signal `s` at its output, to its
/// input of shape `input` (one input; see [`walk`]), under `rule`.
fn step_back(net: &Net, trace: &Trace, i: usize, s: &Tensor, input: Shape, rule: Rule) -> Tensor {
    let b = s.size()[0];
    let full = input.size(b);
    let side = match input {
        Shape::Maps { side, .. } => side,
        _ => 1,
    };
    match &net.spec.nodes[i].op {
        l @ (Layer::Relu | Layer::Clip { .. }) => {
            rule.at_relu(l, || saved(trace, i).shallow_clone(), s)
        }
        Layer::Lrn {
            size,
            alpha,
            beta,
            k,
        } if rule.lrn_gradient => lrn_backward(saved(trace, i), s, *size, *alpha, *beta, *k),
        Layer::Conv { .. } => deconv_step(net, i, s, side),
        Layer::MaxPool {
            k,
            stride,
            pad,
            ceil_mode,
        } => match &trace.switches[i] {
            // Max-pool's own backward (sums coinciding switches, as unpool).
            Some(idx) => {
                let idx = if idx.size()[0] == b {
                    idx.shallow_clone()
                } else {
                    idx.expand(s.size().as_slice(), false).contiguous()
                };
                // Shaped as the pool's input, laid out as the signal (NHWC
                // when the forward pass ran channels-last): the output follows.
                let like = empty_like_layout(&full, s);
                like.max_pool2d_with_indices_backward(
                    s,
                    [*k, *k],
                    [*stride, *stride],
                    [*pad, *pad],
                    [1, 1],
                    *ceil_mode,
                    &idx,
                )
            }
            None => unreachable!("the trace keeps every max-pool's switches"),
        },
        Layer::AvgPool {
            k,
            stride,
            pad,
            ceil_mode,
            count_include_pad,
        } => {
            // tch: the receiver is the pool's input, the argument the gradient.
            let like = Tensor::zeros(full.as_slice(), (s.kind(), s.device()));
            like.avg_pool2d_backward(
                s,
                [*k, *k],
                [*stride, *stride],
                [*pad, *pad],
                *ceil_mode,
                *count_include_pad,
                None::<i64>,
            )
        }
        Layer::AdaptiveAvgPool { .. } => {
            // tch: the receiver is the pool's input, the argument the gradient.
            let like = Tensor::zeros(full.as_slice(), (s.kind(), s.device()));
            like.internal_adaptive_avg_pool2d_backward(s)
        }
        Layer::Flatten => s.reshape(full.as_slice()),
        Layer::Linear { .. } => s.matmul(&net.params(i).weight),
        Layer::Affine { .. } => {
            let view: &[i64] = if full.len() == 4 {
                &[1, -1, 1, 1]
            } else {
                &[1, -1]
            };
            s * net.params(i).weight.view(view)
        }
        // The adjoint of padding with zeros: the inner window.
        Layer::Pad { pads } => s.narrow(2, pads[0], side).narrow(3, pads[1], side),
        // The inverse permutation: a shuffle in C/g groups.
        Layer::ChannelShuffle { groups } => crate::net::shuffle(s, full[1] / groups),
        // The channels taken, in place among zeros.
        Layer::Channels { start, len } => {
            let z = Tensor::zeros(full.as_slice(), (s.kind(), s.device()));
            z.narrow(1, *start, *len).copy_(s);
            z
        }
        // The patch tokens back to maps (the learned tokens and the
        // position embedding do not depend on the input).
        Layer::Embed { prefix, .. } => {
            let n = s.size()[1];
            s.narrow(1, *prefix, n - prefix)
                .transpose(1, 2)
                .reshape(full.as_slice())
        }
        // The maps back to patch tokens, zeros at the learned tokens.
        Layer::Grid { prefix } => s
            .flatten(2, -1)
            .transpose(1, 2)
            .constant_pad_nd([0, 0, *prefix, 0]),
        Layer::Token { index } => {
            let z = Tensor::zeros(full.as_slice(), (s.kind(), s.device()));
            z.select(1, *index).copy_(s);
            z
        }
        Layer::Lrn { .. } | Layer::Dropout { .. } | Layer::Add | Layer::Concat => s.shallow_clone(),
        l @ (Layer::Sub
        | Layer::Mul
        | Layer::Div
        | Layer::Sigmoid
        | Layer::Silu
        | Layer::HardSigmoid { .. }
        | Layer::HardSwish
        | Layer::Gelu { .. }
        | Layer::ChannelNorm { .. }
        | Layer::Attention { .. }
        | Layer::WindowAttention { .. }
        | Layer::PatchMerge
        | Layer::Crop { .. }) => unreachable!("{} is walked back in walk", l.op()),
    }
}

/// An uninitialised tensor of shape `full` ([B, C, H, W]) laid out as `like`
/// (channels-last or not).
fn empty_like_layout(full: &[i64], like: &Tensor) -> Tensor {
    let opts = (like.kind(), like.device());
    let st = like.stride();
    if full.len() == 4 && st.len() == 4 && st[1] == 1 && like.size()[1] > 1 {
        Tensor::empty([full[0], full[2], full[3], full[1]], opts).permute([0, 3, 1, 2])
    } else {
        Tensor::empty(full, opts)
    }
}

/// The true gradient of [`crate::net::lrn_with`] at input `x` for the
/// signal `g` at its output, in closed form: with d = k + α/n Σ_window x²,
/// y = x d^-β and dx = g d^-β - (2αβ/n) x Σ_{j: x in window(j)} g_j y_j / d_j.
pub fn lrn_backward(x: &Tensor, g: &Tensor, size: i64, alpha: f64, beta: f64, k: f64) -> Tensor {
    // The channel window mean over [c - before, c + after] (zeros outside),
    // by differences of a cumulative sum along the channels.
    let c = x.size()[1];
    let window = |t: &Tensor, before: i64, after: i64| {
        let p = t
            .constant_pad_nd([0, 0, 0, 0, before + 1, after])
            .cumsum(1, Kind::Float);
        (p.narrow(1, size, c) - p.narrow(1, 0, c)) / size as f64
    };
    let d = window(&x.square(), size / 2, (size - 1) / 2) * alpha + k;
    let dinv = d.pow_tensor_scalar(-beta);
    let gy = g * x * &dinv / &d;
    // The adjoint window: output channels j whose window holds channel c.
    let back = window(&gy, (size - 1) / 2, size / 2);
    g * dinv - x * back * (2.0 * alpha * beta)
}

/// What the trace saved of node `i`'s forward pass for the gradient rules.
fn saved(trace: &Trace, i: usize) -> &Tensor {
    match trace.saved.get(i) {
        Some(Some(t)) => t,
        _ => panic!("node {i}: the gradient rules need a trace from Net::trace_saving"),
    }
}

/// Project a signal living in node `node`'s output ([B, C, H, W]) down to
/// pixels ([B, C_in, S, S]) with the deconvnet; see [`walk`].
pub fn project_from(net: &Net, trace: &Trace, node: usize, signal: &Tensor) -> Tensor {
    walk(net, trace, node, signal, Rule::DECONV, None).0
}

/// Walk a signal living in node `node`'s output ([B, C, H, W] or [B, F])
/// back to pixels ([B, C_in, S, S]) under `rule`, in reverse node order:
/// ReLU-family -> ReLU of the signal, conv -> transposed conv, max-pool ->
/// unpool through the switches, average pools, flatten, linear and affine
/// nodes -> their adjoints, add -> the signal to every input, concat -> split
/// by channel; LRN (for the deconvnet) and dropout skipped. The trace is of
/// one image (its switches and masks are shared across the batch) or of as
/// many images as the signal has. With `capture`, also returns the signal
/// that reached that node's output (the gradient there under
/// [`Rule::GRADIENT`]); `pixels: false` stops the walk there.
pub fn walk(
    net: &Net,
    trace: &Trace,
    node: usize,
    signal: &Tensor,
    rule: Rule,
    capture: Option<(usize, bool)>,
) -> (Tensor, Option<Tensor>) {
    // A grid node (a transformer block's tokens as maps) reads its block
    // and nothing reads it: its signal is its block's, as a grid.
    let grid = capture.and_then(|(c, _)| match (net.spec.op(c), net.sources(c)) {
        (l @ Layer::Grid { .. }, [Some(j)]) if c != node => Some((*j, l.clone())),
        _ => None,
    });
    let capture = match &grid {
        Some((j, _)) => capture.map(|(_, pixels)| (*j, pixels)),
        None => capture,
    };
    tch::no_grad(|| {
        let mut captured = None;
        let mut sig: Vec<Option<Tensor>> = (0..=node).map(|_| None).collect();
        sig[node] = Some(signal.to_device(net.device()));
        let mut image: Option<Tensor> = None;
        let mut add = |to: Option<usize>, t: Tensor, sig: &mut Vec<Option<Tensor>>| {
            let slot = match to {
                Some(j) => &mut sig[j],
                None => &mut image,
            };
            *slot = Some(match slot.take() {
                Some(a) => a + t,
                None => t,
            });
        };
        for i in (0..=node).rev() {
            let Some(s) = sig[i].take() else {
                continue;
            };
            if let Some((c, pixels)) = capture {
                if c == i {
                    captured = Some(match &grid {
                        Some((_, l)) => l.forward(&[s.shallow_clone()], None, None, false, None),
                        None => s.shallow_clone(),
                    });
                    if !pixels {
                        return (signal.zeros_like(), captured);
                    }
                }
            }
            let srcs = net.sources(i).to_vec();
            let shape = |src: Option<usize>| match src {
                Some(j) => net.shapes[j],
                None => Shape::Maps {
                    c: net.spec.in_channels,
                    side: net.spec.input_size,
                },
            };
            match &net.spec.nodes[i].op {
                Layer::Add => srcs
                    .iter()
                    .for_each(|&j| add(j, s.shallow_clone(), &mut sig)),
                l if l.is_smooth() => {
                    for (&j, g) in srcs.iter().zip(smooth_back(net, trace, i, &s)) {
                        // A per-channel input broadcast over the maps sums back.
                        add(j, unbroadcast(&g, shape(j)), &mut sig);
                    }
                }
                Layer::Sub => {
                    add(srcs[0], unbroadcast(&s, shape(srcs[0])), &mut sig);
                    add(srcs[1], unbroadcast(&-&s, shape(srcs[1])), &mut sig);
                }
                Layer::Concat => {
                    let mut at = 0;
                    for &j in &srcs {
                        let Shape::Maps { c, .. } = shape(j) else {
                            unreachable!("concat of maps")
                        };
                        add(j, s.narrow(1, at, c), &mut sig);
                        at += c;
                    }
                }
                _ => add(
                    srcs[0],
                    step_back(net, trace, i, &s, shape(srcs[0]), rule),
                    &mut sig,
                ),
            }
        }
        (image.unwrap_or_else(|| signal.zeros_like()), captured)
    })
}

/// Project a signal living in unit `layer`'s maps (1-based, see
/// [`crate::net::Unit`]; [B, C, H, W]) down to pixels ([B, C_in, S, S]);
/// see [`project_from`].
pub fn project_signal(net: &Net, trace: &Trace, layer: usize, signal: &Tensor) -> Tensor {
    project_from(net, trace, net.units[layer - 1].node, signal)
}

/// Which activations of the chosen map are kept before projecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The strongest activation of the map (ties: first in row-major order).
    Strongest,
    /// The activation at (y, x).
    At(i64, i64),
    /// Every activation of the map.
    All,
}

#[derive(Debug, Clone)]
pub struct ProjectRequest {
    pub layer: usize,
    pub map: i64,
    pub keep: Keep,
}

pub struct Projection {
    /// The unit's number (1..N: the conv layers, then the named units).
    pub layer: usize,
    /// The conv number, or None for a named unit that is not a conv's maps.
    pub conv: Option<usize>,
    /// The unit's name (`conv3`, `features.6`, `layer3.1`).
    pub unit: String,
    pub map: i64,
    /// Value and position of the kept activation (the strongest for `All`).
    pub value: f64,
    pub y: i64,
    pub x: i64,
    /// Receptive field (y0, x0, y1, x1) inclusive, clipped to the input.
    pub field: (i64, i64, i64, i64),
    /// [C, S, S] float projection (RGB order; 1 channel for a grey network).
    pub pixels: Tensor,
}

/// Strongest activation (value, y, x) of `map` in layer `layer` of image 0.
pub fn strongest(trace: &Trace, layer: usize, map: i64) -> (f64, i64, i64) {
    let m = trace.maps[layer - 1].get(0).get(map);
    let w = m.size()[1];
    let flat = m.reshape([-1]);
    let i = flat.argmax(0, false).int64_value(&[]);
    (flat.double_value(&[i]), i / w, i % w)
}

pub fn clipped_field(net: &Net, layer: usize, y: i64, x: i64) -> (i64, i64, i64, i64) {
    let (y0, x0, y1, x1) = net.spec.receptive_field(layer, y, x);
    let s = net.spec.input_size - 1;
    (y0.max(0), x0.max(0), y1.min(s), x1.min(s))
}

/// One projection per request, computed as one batch over the shared trace.
pub fn project(net: &Net, trace: &Trace, reqs: &[ProjectRequest]) -> Result<Vec<Projection>> {
    if reqs.is_empty() {
        return Ok(vec![]);
    }
    let layer = reqs[0].layer;
    for r in reqs {
        crate::net::check::layer_map(&net.units, r.layer, r.map)?;
        if r.layer != layer {
            bail!("one batch of projections must share its layer");
        }
    }
    let maps = trace.maps[layer - 1].get(0);
    let (c, h, w) = (maps.size()[0], maps.size()[1], maps.size()[2]);
    let signal = Tensor::zeros([reqs.len() as i64, c, h, w], (Kind::Float, maps.device()));
    let mut meta = Vec::with_capacity(reqs.len());
    tch::no_grad(|| -> Result<()> {
        for (b, r) in reqs.iter().enumerate() {
            let (value, y, x) = match r.keep {
                Keep::Strongest | Keep::All => strongest(trace, layer, r.map),
                Keep::At(y, x) => {
                    if y < 0 || y >= h || x < 0 || x >= w {
                        bail!("position ({y}, {x}) is outside layer {layer}'s {h}x{w} maps");
                    }
                    (maps.double_value(&[r.map, y, x]), y, x)
                }
            };
            let mut dst = signal.get(b as i64).get(r.map);
            match r.keep {
                Keep::All => {
                    dst.copy_(&maps.get(r.map));
                }
                _ => {
                    let _ = dst.get(y).get(x).fill_(value);
                }
            }
            meta.push((value, y, x));
        }
        Ok(())
    })?;
    let mut pixels = project_signal(net, trace, layer, &signal);
    if net.bgr && pixels.size()[1] == 3 {
        // Shown and written in RGB order.
        pixels = pixels.flip([1]);
    }
    Ok(reqs
        .iter()
        .zip(meta)
        .enumerate()
        .map(|(b, (r, (value, y, x)))| Projection {
            layer,
            conv: net.units[layer - 1].layer,
            unit: net.units[layer - 1].name.clone(),
            map: r.map,
            value,
            y,
            x,
            field: clipped_field(net, layer, y, x),
            pixels: pixels.get(b as i64),
        })
        .collect())
}

/// The `n` maps of `layer` with the highest peaks, strongest first: (map, peak).
pub fn top_maps(trace: &Trace, layer: usize, n: usize) -> Result<Vec<(i64, f64)>> {
    let peaks = trace.maps[layer - 1]
        .get(0)
        .amax([1i64, 2].as_slice(), false);
    let n = (n as i64).min(peaks.size()[0]);
    let (v, i) = peaks.topk(n, 0, true, true);
    let v: Vec<f32> = crate::net::values(&v, "the maps' peaks")?;
    let i: Vec<i64> = crate::net::values(&i, "the strongest maps")?;
    Ok(i.into_iter().zip(v.into_iter().map(|x| x as f64)).collect())
}
