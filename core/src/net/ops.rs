//! The ops a node can carry: their parameters (serialised in the manifest
//! as `{"op": "conv", …}`), their windows, their shape rule and their
//! forward. The walk back of each op is `crate::deconv`'s.

use super::transformer;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A conv, linear or affine node's parameters.
pub struct Params {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// A square window op: kernel, stride, padding (both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub k: i64,
    pub stride: i64,
    pub pad: i64,
}

impl Window {
    pub const fn new(k: i64, stride: i64, pad: i64) -> Self {
        Window { k, stride, pad }
    }
    /// Output side for input side `n` (PyTorch's rule, `ceil` as `ceil_mode`).
    pub fn out_size(&self, n: i64, ceil: bool) -> i64 {
        let span = n + 2 * self.pad - self.k;
        if span < 0 {
            return 0;
        }
        if !ceil {
            return span / self.stride + 1;
        }
        let mut out = (span + self.stride - 1) / self.stride + 1;
        // The last window must start inside the input or the left padding.
        if (out - 1) * self.stride >= n + self.pad {
            out -= 1;
        }
        out
    }
}

fn one() -> i64 {
    1
}
fn is_one(v: &i64) -> bool {
    *v == 1
}
fn yes() -> bool {
    true
}
fn sixth() -> f64 {
    1.0 / 6.0
}
fn half() -> f64 {
    0.5
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// One layer. Serialised in the manifest as `{"op": "conv", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    Conv {
        /// The checkpoint's name for it (`conv1`, `features.0`).
        name: String,
        #[serde(rename = "in")]
        in_c: i64,
        out: i64,
        k: i64,
        stride: i64,
        pad: i64,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: i64,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        dilation: i64,
        /// A non-square kernel's width (`k` is then its height: 1x7, 7x1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kw: Option<i64>,
        /// The width's padding when it differs from the height's `pad`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pad_w: Option<i64>,
        /// Tensor names; default `{name}.weight` / `{name}.bias`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
    },
    Relu,
    /// ReLU6 and ONNX `Clip(0, max)`: a ReLU-family activation.
    Clip {
        max: f64,
    },
    Lrn {
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    MaxPool {
        k: i64,
        stride: i64,
        #[serde(default)]
        pad: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
    },
    AvgPool {
        k: i64,
        stride: i64,
        #[serde(default)]
        pad: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
        #[serde(default = "yes")]
        count_include_pad: bool,
    },
    /// PyTorch's AdaptiveAvgPool2d to `out`x`out` (ONNX GlobalAveragePool: 1).
    AdaptiveAvgPool {
        out: i64,
    },
    Flatten,
    Dropout {
        p: f64,
    },
    Linear {
        name: String,
        #[serde(rename = "in")]
        in_f: i64,
        out: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
    },
    /// Per-channel `x·scale + shift` (a batch norm that could not be folded
    /// into a conv, ONNX `Mul`+`Add` by constants); tensors `{name}.scale`,
    /// `{name}.shift`.
    Affine {
        name: String,
        c: i64,
    },
    /// The sum of its inputs (residual connections).
    Add,
    /// Its inputs concatenated along the channel axis.
    Concat,
    /// The logistic function (squeeze-excite gates).
    Sigmoid,
    /// SiLU / swish: `x·sigmoid(x)` (EfficientNet).
    Silu,
    /// `clamp(alpha·x + beta, 0, 1)` (PyTorch's Hardsigmoid: 1/6, 1/2).
    HardSigmoid {
        #[serde(default = "sixth")]
        alpha: f64,
        #[serde(default = "half")]
        beta: f64,
    },
    /// `x·relu6(x + 3)/6` (MobileNetV3).
    HardSwish,
    /// GELU, exact (erf) or its tanh approximation (ConvNeXt, ViT).
    Gelu {
        #[serde(default, skip_serializing_if = "is_false")]
        tanh: bool,
    },
    /// The element-wise product of two inputs; the second (or the first)
    /// may be per channel ([C, 1, 1]: a squeeze-excite gate), broadcast.
    Mul,
    /// The first input minus the second (broadcast as for `mul`).
    Sub,
    /// The first input divided by the second (broadcast as for `mul`).
    Div,
    /// Layer normalisation over the channels at every position (ConvNeXt's
    /// LayerNorm2d, and its channels-last LayerNorm); tensors
    /// `{name}.weight`, `{name}.bias`.
    ChannelNorm {
        name: String,
        c: i64,
        eps: f64,
    },
    /// ShuffleNet's channel shuffle: [g, C/g] channels read as [C/g, g].
    ChannelShuffle {
        groups: i64,
    },
    /// Channels `start..start+len` of the maps (a Split or Slice on channels).
    Channels {
        start: i64,
        len: i64,
    },
    /// Zeros around the maps: `pads` = [top, left, bottom, right] (ONNX
    /// `Pad`, and the end row/column of TensorFlow's SAME padding); the
    /// maps stay square (top + bottom = left + right).
    Pad {
        pads: [i64; 4],
    },
    /// Patch tokens from maps (a vision transformer's embedding): the
    /// [B, C, S, S] maps read as S² tokens of C channels, after `prefix`
    /// learned tokens (the class token, a distillation token: tensor
    /// `weight`, [1, prefix, C]), plus the position embedding (tensor
    /// `bias`, [1, prefix + S², C]) -> [B, prefix + S², C].
    Embed {
        name: String,
        c: i64,
        prefix: i64,
        side: i64,
        weight: String,
        bias: String,
    },
    /// Multi-head self-attention on tokens holding [q | k | v] (3C
    /// channels: the output of the block's input projection) -> C channels:
    /// softmax(q kᵀ / √d) v in each of `heads` heads of d = C / heads.
    Attention {
        heads: i64,
    },
    /// A token sequence's patch tokens as maps, [B, prefix + S², C] ->
    /// [B, C, S, S], the `prefix` learned tokens dropped: a transformer
    /// block's output as the views see it (pytorch-grad-cam's
    /// `reshape_transform`).
    Grid {
        prefix: i64,
    },
    /// One token's channels, [B, N, C] -> [B, C] (the class token the head reads).
    Token {
        index: i64,
    },
    /// Swin's (shifted) window attention on maps holding [q | k | v] (3C
    /// channels, their side a multiple of the window): the maps rolled by
    /// −shift (no shift when one window covers them), split in windows of
    /// window² positions, multi-head attention in each with the relative
    /// position bias (tensor `weight`, the table, [(2·window − 1)², heads])
    /// and, when shifted, the mask between the rolled regions; rolled back.
    /// `cosine`: Swin V2's scaled cosine attention (tensor `bias`: the logit
    /// scale, [heads]; the table is then final, 16·sigmoid of its MLP).
    WindowAttention {
        name: String,
        c: i64,
        heads: i64,
        window: i64,
        shift: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        cosine: bool,
    },
    /// Swin's patch merging: each 2x2 block of positions as 4C channels
    /// (torchvision's order: (0, 0), (1, 0), (0, 1), (1, 1)), an odd side
    /// padded with zeros at the bottom and right first.
    PatchMerge,
    /// The top-left `side` x `side` of the maps (the padding a window
    /// attention needed, cut off again).
    Crop {
        side: i64,
    },
}

impl Layer {
    /// The op applied to its inputs `ins` (one, or several for add and
    /// concat) with its parameters `p` (conv, linear, affine); `fast`: a
    /// conv's channels-last weight for inference; `switches` receives a
    /// max-pool's indices; dropout acts when `train`.
    pub fn forward(
        &self,
        ins: &[Tensor],
        p: Option<&Params>,
        fast: Option<&Tensor>,
        train: bool,
        switches: Option<&mut Option<Tensor>>,
    ) -> Tensor {
        let h = &ins[0];
        match self {
            Layer::Conv {
                stride,
                pad,
                groups,
                dilation,
                pad_w,
                ..
            } => {
                let p = p.expect("a conv's parameters");
                let (w, h) = match fast {
                    Some(w) => (w, channels_last(h)),
                    None => (&p.weight, h.shallow_clone()),
                };
                h.conv2d(
                    w,
                    Some(&p.bias),
                    [*stride, *stride],
                    [*pad, pad_w.unwrap_or(*pad)],
                    [*dilation, *dilation],
                    *groups,
                )
            }
            Layer::Relu => h.relu(),
            Layer::Clip { max } => h.clamp(0.0, *max),
            Layer::Lrn {
                size,
                alpha,
                beta,
                k,
            } => lrn_with(h, *size, *alpha, *beta, *k),
            Layer::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            } => match switches {
                Some(sw) => {
                    let (o, idx) = h.max_pool2d_with_indices(
                        [*k, *k],
                        [*stride, *stride],
                        [*pad, *pad],
                        [1, 1],
                        *ceil_mode,
                    );
                    *sw = Some(idx);
                    o
                }
                None => h.max_pool2d(
                    [*k, *k],
                    [*stride, *stride],
                    [*pad, *pad],
                    [1, 1],
                    *ceil_mode,
                ),
            },
            Layer::AvgPool {
                k,
                stride,
                pad,
                ceil_mode,
                count_include_pad,
            } => h.avg_pool2d(
                [*k, *k],
                [*stride, *stride],
                [*pad, *pad],
                *ceil_mode,
                *count_include_pad,
                None::<i64>,
            ),
            Layer::AdaptiveAvgPool { out } => h.adaptive_avg_pool2d([*out, *out]),
            Layer::Flatten => h.flatten(1, -1),
            Layer::Dropout { p } => h.dropout(*p, train),
            Layer::Linear { .. } => {
                let p = p.expect("a linear layer's parameters");
                h.linear(&p.weight, Some(&p.bias))
            }
            Layer::Affine { .. } => {
                let p = p.expect("an affine node's parameters");
                let view: &[i64] = if h.dim() == 4 {
                    &[1, -1, 1, 1]
                } else {
                    &[1, -1]
                };
                h * p.weight.view(view) + p.bias.view(view)
            }
            Layer::Add => ins[1..].iter().fold(h.shallow_clone(), |a, b| a + b),
            Layer::Concat => Tensor::cat(ins, 1),
            Layer::Pad { pads: [t, l, b, r] } => h.constant_pad_nd([*l, *r, *t, *b]),
            Layer::Sigmoid => h.sigmoid(),
            Layer::Silu => h.silu(),
            Layer::HardSigmoid { alpha, beta } => (h * *alpha + *beta).clamp(0.0, 1.0),
            Layer::HardSwish => h.hardswish(),
            Layer::Gelu { tanh } => h.gelu(if *tanh { "tanh" } else { "none" }),
            Layer::Mul => h * &ins[1],
            Layer::Sub => h - &ins[1],
            Layer::Div => h / &ins[1],
            Layer::ChannelNorm { c, eps, .. } => {
                let p = p.expect("a channel norm's parameters");
                if h.dim() == 4 {
                    h.permute([0, 2, 3, 1])
                        .layer_norm([*c], Some(&p.weight), Some(&p.bias), *eps, false)
                        .permute([0, 3, 1, 2])
                } else {
                    h.layer_norm([*c], Some(&p.weight), Some(&p.bias), *eps, false)
                }
            }
            Layer::ChannelShuffle { groups } => shuffle(h, *groups),
            Layer::Channels { start, len } => h.narrow(1, *start, *len),
            Layer::Embed { .. } => {
                let p = p.expect("an embedding's parameters");
                transformer::embed(h, &p.weight, &p.bias)
            }
            Layer::Attention { heads } => transformer::attention(h, *heads),
            Layer::Grid { prefix } => transformer::grid(h, *prefix),
            Layer::Token { index } => h.select(1, *index),
            Layer::WindowAttention {
                heads,
                window,
                shift,
                cosine,
                ..
            } => {
                let p = p.expect("a window attention's parameters");
                transformer::window_attention(
                    h, &p.weight, &p.bias, *heads, *window, *shift, *cosine,
                )
            }
            Layer::PatchMerge => transformer::merge(h),
            Layer::Crop { side } => h.narrow(2, 0, *side).narrow(3, 0, *side),
        }
    }

    pub fn conv(name: &str, in_c: i64, out: i64, w: Window) -> Layer {
        Layer::Conv {
            name: name.into(),
            in_c,
            out,
            k: w.k,
            stride: w.stride,
            pad: w.pad,
            groups: 1,
            dilation: 1,
            kw: None,
            pad_w: None,
            weight: None,
            bias: None,
        }
    }
    pub fn linear(name: &str, in_f: i64, out: i64) -> Layer {
        Layer::Linear {
            name: name.into(),
            in_f,
            out,
            weight: None,
            bias: None,
        }
    }
    pub fn max_pool(w: Window, ceil_mode: bool) -> Layer {
        Layer::MaxPool {
            k: w.k,
            stride: w.stride,
            pad: w.pad,
            ceil_mode,
        }
    }
    /// The paper's contrast normalisation (PyTorch's LocalResponseNorm(5, 1e-4, 0.75, 2)).
    pub fn paper_lrn() -> Layer {
        Layer::Lrn {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        }
    }

    /// The spatial window of a conv or pooling layer (a dilated conv's
    /// effective kernel; a non-square conv's is the square around it);
    /// pointwise layers have 1x1. Per axis: [`Layer::windows`].
    pub fn window(&self) -> Window {
        let [h, w] = self.windows();
        Window::new(h.k.max(w.k), h.stride, h.pad.max(w.pad))
    }

    /// The windows along the height and the width.
    pub fn windows(&self) -> [Window; 2] {
        match *self {
            Layer::Conv {
                k,
                stride,
                pad,
                dilation,
                kw,
                pad_w,
                ..
            } => [
                Window::new(dilation * (k - 1) + 1, stride, pad),
                Window::new(
                    dilation * (kw.unwrap_or(k) - 1) + 1,
                    stride,
                    pad_w.unwrap_or(pad),
                ),
            ],
            Layer::MaxPool { k, stride, pad, .. } | Layer::AvgPool { k, stride, pad, .. } => {
                [Window::new(k, stride, pad); 2]
            }
            _ => [Window::new(1, 1, 0); 2],
        }
    }

    pub fn ceil_mode(&self) -> bool {
        matches!(
            self,
            Layer::MaxPool {
                ceil_mode: true,
                ..
            } | Layer::AvgPool {
                ceil_mode: true,
                ..
            }
        )
    }

    /// (weight, bias) tensor names of a conv or linear layer.
    pub fn tensor_names(&self) -> Option<(String, String)> {
        match self {
            Layer::Conv {
                name, weight, bias, ..
            }
            | Layer::Linear {
                name, weight, bias, ..
            } => Some((
                weight.clone().unwrap_or_else(|| format!("{name}.weight")),
                bias.clone().unwrap_or_else(|| format!("{name}.bias")),
            )),
            Layer::Affine { name, .. } => Some((format!("{name}.scale"), format!("{name}.shift"))),
            Layer::ChannelNorm { name, .. } => {
                Some((format!("{name}.weight"), format!("{name}.bias")))
            }
            Layer::Embed { weight, bias, .. } => Some((weight.clone(), bias.clone())),
            Layer::WindowAttention { name, .. } => Some((
                format!("{name}.relative_position_bias"),
                format!("{name}.logit_scale"),
            )),
            _ => None,
        }
    }

    /// (weight shape, bias shape) of a layer with parameters.
    pub fn param_shapes(&self) -> Option<(Vec<i64>, Vec<i64>)> {
        match *self {
            Layer::Embed {
                c, prefix, side, ..
            } => Some((vec![1, prefix, c], vec![1, prefix + side * side, c])),
            Layer::WindowAttention { heads, window, .. } => Some((
                vec![(2 * window - 1) * (2 * window - 1), heads],
                vec![heads],
            )),
            _ => self.weight_shape().map(|(w, b)| (w, vec![b])),
        }
    }

    /// (weight shape, bias length) of a conv, linear, affine or norm layer.
    fn weight_shape(&self) -> Option<(Vec<i64>, i64)> {
        match *self {
            Layer::Conv {
                in_c,
                out,
                k,
                kw,
                groups,
                ..
            } => Some((vec![out, in_c / groups, k, kw.unwrap_or(k)], out)),
            Layer::Linear { in_f, out, .. } => Some((vec![out, in_f], out)),
            Layer::Affine { c, .. } | Layer::ChannelNorm { c, .. } => Some((vec![c], c)),
            _ => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Layer::Conv { name, .. }
            | Layer::Linear { name, .. }
            | Layer::Affine { name, .. }
            | Layer::ChannelNorm { name, .. }
            | Layer::Embed { name, .. }
            | Layer::WindowAttention { name, .. } => Some(name),
            _ => None,
        }
    }

    pub fn op(&self) -> &'static str {
        match self {
            Layer::Conv { .. } => "conv",
            Layer::Relu => "relu",
            Layer::Lrn { .. } => "lrn",
            Layer::MaxPool { .. } => "max_pool",
            Layer::AvgPool { .. } => "avg_pool",
            Layer::AdaptiveAvgPool { .. } => "adaptive_avg_pool",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
            Layer::Linear { .. } => "linear",
            Layer::Clip { .. } => "clip",
            Layer::Affine { .. } => "affine",
            Layer::Add => "add",
            Layer::Concat => "concat",
            Layer::Pad { .. } => "pad",
            Layer::Sigmoid => "sigmoid",
            Layer::Silu => "silu",
            Layer::HardSigmoid { .. } => "hard_sigmoid",
            Layer::HardSwish => "hard_swish",
            Layer::Gelu { .. } => "gelu",
            Layer::Mul => "mul",
            Layer::Sub => "sub",
            Layer::Div => "div",
            Layer::ChannelNorm { .. } => "channel_norm",
            Layer::ChannelShuffle { .. } => "channel_shuffle",
            Layer::Channels { .. } => "channels",
            Layer::Embed { .. } => "embed",
            Layer::Attention { .. } => "attention",
            Layer::Grid { .. } => "grid",
            Layer::Token { .. } => "token",
            Layer::WindowAttention { .. } => "window_attention",
            Layer::PatchMerge => "patch_merge",
            Layer::Crop { .. } => "crop",
        }
    }

    /// A ReLU-family activation (the deconvnet reverses it by a ReLU).
    pub fn is_relu(&self) -> bool {
        matches!(self, Layer::Relu | Layer::Clip { .. })
    }

    /// Any activation function: ReLU-family or smooth (sigmoid, SiLU,
    /// hard-sigmoid, hard-swish, GELU).
    pub fn is_activation(&self) -> bool {
        self.is_relu() || self.is_smooth()
    }

    /// An op that is neither linear nor ReLU-family: every walk back passes
    /// its exact derivative at the traced input (Captum's convention),
    /// whatever the rule.
    pub fn is_smooth(&self) -> bool {
        matches!(
            self,
            Layer::Sigmoid
                | Layer::Silu
                | Layer::HardSigmoid { .. }
                | Layer::HardSwish
                | Layer::Gelu { .. }
                | Layer::Mul
                | Layer::Div
                | Layer::ChannelNorm { .. }
                | Layer::Attention { .. }
                | Layer::WindowAttention { .. }
                | Layer::PatchMerge
                | Layer::Crop { .. }
        )
    }

    /// An activation a conv's maps may be read after: one that keeps their
    /// shape (not attention, patch merging or a crop, which `is_smooth`
    /// also counts).
    pub fn is_map_activation(&self) -> bool {
        self.is_activation()
            && !matches!(
                self,
                Layer::Attention { .. }
                    | Layer::WindowAttention { .. }
                    | Layer::PatchMerge
                    | Layer::Crop { .. }
            )
    }

    /// An element-wise op of two inputs (broadcast per channel).
    pub fn is_binary(&self) -> bool {
        matches!(self, Layer::Mul | Layer::Sub | Layer::Div)
    }
}

/// The shape of one layer's output (batch dimension left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Maps {
        c: i64,
        side: i64,
    },
    Flat(i64),
    /// A transformer's tokens, [prefix + side², c]: `prefix` learned
    /// tokens, then the patch grid's in row-major order.
    Tokens {
        c: i64,
        side: i64,
        prefix: i64,
    },
}

impl Shape {
    /// The channels (a vector's length).
    pub fn channels(&self) -> i64 {
        match *self {
            Shape::Maps { c, .. } | Shape::Tokens { c, .. } => c,
            Shape::Flat(n) => n,
        }
    }

    /// The tensor's size with batch `b`.
    pub fn size(&self, b: i64) -> Vec<i64> {
        match *self {
            Shape::Maps { c, side } => vec![b, c, side, side],
            Shape::Flat(n) => vec![b, n],
            Shape::Tokens { c, side, prefix } => vec![b, prefix + side * side, c],
        }
    }
}

/// The channel concatenation of maps of one side.
pub fn concat_shape(ins: &[Shape]) -> Option<Shape> {
    let mut total = 0;
    let mut side0 = None;
    for s in ins {
        let Shape::Maps { c, side } = *s else {
            return None;
        };
        if side0.is_some_and(|s0| s0 != side) {
            return None;
        }
        side0 = Some(side);
        total += c;
    }
    Some(Shape::Maps {
        c: total,
        side: side0?,
    })
}

/// The output shape of a one-input node.
pub(super) fn node_shape(l: &Layer, s: Shape) -> Result<Shape> {
    if let Layer::Conv { k, stride, pad, .. }
    | Layer::MaxPool { k, stride, pad, .. }
    | Layer::AvgPool { k, stride, pad, .. } = l
    {
        let dilation = match l {
            Layer::Conv { dilation, .. } => *dilation,
            _ => 1,
        };
        if *k < 1 || *stride < 1 || *pad < 0 || dilation < 1 {
            bail!("kernel, stride and dilation must be >= 1, padding >= 0");
        }
    }
    if let Some(t) = token_shape(l, s) {
        return t;
    }
    Ok(match (l, s) {
        (
            Layer::Conv {
                in_c, out, groups, ..
            },
            Shape::Maps { c, side },
        ) => {
            if *in_c != c {
                bail!("expects {in_c} input channels, gets {c}");
            }
            if *groups < 1 || c % groups != 0 || out % groups != 0 {
                bail!("{groups} groups do not divide {c} -> {out}");
            }
            let [wh, ww] = l.windows();
            let (h, w) = (wh.out_size(side, false), ww.out_size(side, false));
            if h != w || ww.k < 1 || ww.pad < 0 {
                bail!(
                    "its {}x{} kernel gives {h}x{w} maps: maps must stay square",
                    wh.k,
                    ww.k
                );
            }
            Shape::Maps { c: *out, side: h }
        }
        (Layer::MaxPool { .. } | Layer::AvgPool { .. }, Shape::Maps { c, side }) => {
            let w = l.window();
            if w.pad * 2 > w.k {
                bail!("padding {} exceeds half the kernel {}", w.pad, w.k);
            }
            Shape::Maps {
                c,
                side: w.out_size(side, l.ceil_mode()),
            }
        }
        (Layer::AdaptiveAvgPool { out }, Shape::Maps { c, .. }) => Shape::Maps { c, side: *out },
        (Layer::Flatten, Shape::Maps { c, side }) => Shape::Flat(c * side * side),
        (Layer::Flatten, f) => f,
        (Layer::Linear { in_f, out, .. }, Shape::Flat(n)) => {
            if *in_f != n {
                bail!("expects {in_f} inputs, gets {n}");
            }
            Shape::Flat(*out)
        }
        (
            Layer::Affine { c, .. },
            s @ (Shape::Maps { c: n, .. } | Shape::Flat(n) | Shape::Tokens { c: n, .. }),
        ) => {
            if *c != n {
                bail!("expects {c} channels, gets {n}");
            }
            s
        }
        (Layer::Lrn { size, .. }, _) if *size < 1 => bail!("size must be at least 1"),
        (Layer::Relu | Layer::Clip { .. } | Layer::Lrn { .. } | Layer::Dropout { .. }, s) => s,
        (l, s) if l.is_activation() => s,
        (
            Layer::ChannelNorm { c, .. },
            s @ (Shape::Maps { c: n, .. } | Shape::Flat(n) | Shape::Tokens { c: n, .. }),
        ) => {
            if *c != n {
                bail!("expects {c} channels, gets {n}");
            }
            s
        }
        (Layer::ChannelShuffle { groups }, s @ Shape::Maps { c, .. }) => {
            if *groups < 1 || c % groups != 0 {
                bail!("{groups} groups do not divide {c} channels");
            }
            s
        }
        (Layer::Channels { start, len }, Shape::Maps { c, side }) => {
            if *start < 0 || *len < 1 || start + len > c {
                bail!("channels {start}..{} of {c}", start + len);
            }
            Shape::Maps { c: *len, side }
        }
        (Layer::Pad { pads: [t, l, b, r] }, Shape::Maps { c, side }) => {
            if [t, l, b, r].iter().any(|&v| *v < 0) || t + b != l + r {
                bail!(
                    "pads {:?}: must be at least 0, with top + bottom = left + right",
                    [t, l, b, r]
                );
            }
            Shape::Maps {
                c,
                side: side + t + b,
            }
        }
        (_, s) => bail!("cannot take an input of shape {s:?}"),
    })
}

/// The output shape of a transformer op (and of a linear layer or layer
/// norm on tokens) for input `s`; None for the other ops.
fn token_shape(l: &Layer, s: Shape) -> Option<Result<Shape>> {
    let rule = |l: &Layer, s: Shape| -> Result<Shape> {
        Ok(match (l, s) {
            (Layer::Linear { in_f, out, .. }, Shape::Tokens { c, side, prefix }) => {
                if *in_f != c {
                    bail!("expects {in_f} channels a token, gets {c}");
                }
                Shape::Tokens {
                    c: *out,
                    side,
                    prefix,
                }
            }
            (
                Layer::Embed {
                    c: ec,
                    prefix,
                    side: es,
                    ..
                },
                Shape::Maps { c, side },
            ) => {
                if *ec != c || *es != side || *prefix < 0 {
                    bail!("expects {ec} maps of {es}x{es}, gets {c} of {side}x{side}");
                }
                Shape::Tokens {
                    c,
                    side,
                    prefix: *prefix,
                }
            }
            (Layer::Attention { heads }, Shape::Tokens { c, side, prefix }) => {
                if c % 3 != 0 || *heads < 1 || (c / 3) % heads != 0 {
                    bail!("{c} channels are not [q | k | v] of {heads} heads");
                }
                Shape::Tokens {
                    c: c / 3,
                    side,
                    prefix,
                }
            }
            (Layer::Grid { prefix }, Shape::Tokens { c, side, prefix: p }) => {
                if *prefix != p {
                    bail!("drops {prefix} learned tokens, the tokens have {p}");
                }
                Shape::Maps { c, side }
            }
            (
                Layer::WindowAttention {
                    c: ac,
                    heads,
                    window,
                    shift,
                    ..
                },
                Shape::Maps { c, side },
            ) => {
                if c != 3 * ac || *heads < 1 || ac % heads != 0 {
                    bail!("{c} channels are not [q | k | v] of {heads} heads of {ac}");
                }
                if *window < 1 || side % window != 0 || *shift < 0 || *shift >= *window {
                    bail!("maps of {side} do not split in windows of {window} (shift {shift})");
                }
                Shape::Maps { c: *ac, side }
            }
            (Layer::PatchMerge, Shape::Maps { c, side }) => Shape::Maps {
                c: 4 * c,
                side: (side + 1) / 2,
            },
            (Layer::Crop { side: s }, Shape::Maps { c, side }) => {
                if *s < 1 || *s > side {
                    bail!("a crop of {s} of maps of {side}");
                }
                Shape::Maps { c, side: *s }
            }
            (Layer::Token { index }, Shape::Tokens { c, side, prefix }) => {
                if *index < 0 || *index >= prefix + side * side {
                    bail!("token {index} of {}", prefix + side * side);
                }
                Shape::Flat(c)
            }
            _ => unreachable!("checked by the caller"),
        })
    };
    let ours = matches!(
        (l, s),
        (Layer::Linear { .. }, Shape::Tokens { .. })
            | (Layer::Embed { .. }, _)
            | (Layer::Attention { .. }, _)
            | (Layer::Grid { .. }, _)
            | (Layer::Token { .. }, _)
            | (Layer::WindowAttention { .. }, _)
            | (Layer::PatchMerge, _)
            | (Layer::Crop { .. }, _)
    );
    ours.then(|| match (l, s) {
        (Layer::Linear { .. }, _)
        | (Layer::Embed { .. }, Shape::Maps { .. })
        | (Layer::Attention { .. }, Shape::Tokens { .. })
        | (Layer::Grid { .. }, Shape::Tokens { .. })
        | (Layer::Token { .. }, Shape::Tokens { .. })
        | (Layer::WindowAttention { .. }, Shape::Maps { .. })
        | (Layer::PatchMerge, Shape::Maps { .. })
        | (Layer::Crop { .. }, Shape::Maps { .. }) => rule(l, s),
        _ => Err(anyhow::anyhow!("cannot take an input of shape {s:?}")),
    })
}

/// The shape of an element-wise op of two inputs: equal shapes, or maps
/// and per-channel values ([C, 1, 1]) of the same channels, either order.
pub fn binary_shape(a: Shape, b: Shape) -> Option<Shape> {
    match (a, b) {
        _ if a == b => Some(a),
        (Shape::Maps { c, .. }, Shape::Maps { c: c2, side: 1 }) if c == c2 => Some(a),
        (Shape::Maps { c, side: 1 }, Shape::Maps { c: c2, .. }) if c == c2 => Some(b),
        _ => None,
    }
}

/// ShuffleNet's channel shuffle of [N, C, H, W] maps in `groups` groups.
pub fn shuffle(x: &Tensor, groups: i64) -> Tensor {
    let s = x.size();
    x.reshape([s[0], groups, s[1] / groups, s[2], s[3]])
        .transpose(1, 2)
        .reshape([s[0], s[1], s[2], s[3]])
}

/// The same values laid out channels-last (NHWC strides), which oneDNN's
/// convolutions run 15–20% faster on this project's CPUs. A no-op when
/// already so.
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    let s = x.size();
    let want = [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]];
    if x.stride() == want {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Local response normalisation across channels, exactly PyTorch's
/// `LocalResponseNorm(size, alpha, beta, k)` (and ONNX's / Caffe's LRN).
pub fn lrn_with(x: &Tensor, size: i64, alpha: f64, beta: f64, k: f64) -> Tensor {
    // PyTorch's average over a window of channels (zeros beyond the ends,
    // counted), as a sum of shifted slices: the same numbers as its
    // avg_pool3d, forward and backward, in a fraction of the time.
    let c = x.size()[1];
    let sq = x
        .square()
        .constant_pad_nd([0, 0, 0, 0, size / 2, (size - 1) / 2]);
    // Not `+=`: the first slice is a view of `sq`, which must stay as it is.
    let sum = (1..size).fold(sq.narrow(1, 0, c), |acc, i| acc + sq.narrow(1, i, c));
    let div = sum / size as f64;
    x / (div * alpha + k).pow_tensor_scalar(beta)
}

/// The paper's contrast normalisation, exactly PyTorch's
/// `LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2)`.
pub fn lrn(x: &Tensor) -> Tensor {
    lrn_with(x, 5, 1e-4, 0.75, 2.0)
}
