//! A network is a list of layers (paper.md §6): conv, ReLU, LRN, max/avg
//! pooling, flatten, dropout, linear. ZFNet and single-tower AlexNet (paper.md
//! §1) are presets that expand to such a list; imported networks (torchvision,
//! pytorchcv, ONNX) carry theirs in the manifest. Conv layers are numbered
//! 1..N in forward order; a conv's feature maps are its output after the ReLU
//! that follows it. Tensors keep the checkpoint's names (`conv1.weight`,
//! `features.0.weight` …) and PyTorch layouts.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Zfnet,
    Alexnet,
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zfnet" => Ok(Arch::Zfnet),
            "alexnet" => Ok(Arch::Alexnet),
            other => bail!("unknown architecture {other:?}: expected \"zfnet\" or \"alexnet\""),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Zfnet => "zfnet",
            Arch::Alexnet => "alexnet",
        })
    }
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
    /// Zeros around the maps: `pads` = [top, left, bottom, right] (ONNX
    /// `Pad`, and the end row/column of TensorFlow's SAME padding); the
    /// maps stay square (top + bottom = left + right).
    Pad {
        pads: [i64; 4],
    },
}

impl Layer {
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
    /// effective kernel); pointwise layers have 1x1.
    pub fn window(&self) -> Window {
        match *self {
            Layer::Conv {
                k,
                stride,
                pad,
                dilation,
                ..
            } => Window::new(dilation * (k - 1) + 1, stride, pad),
            Layer::MaxPool { k, stride, pad, .. } | Layer::AvgPool { k, stride, pad, .. } => {
                Window::new(k, stride, pad)
            }
            _ => Window::new(1, 1, 0),
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
            _ => None,
        }
    }

    /// (weight shape, bias length) of a conv or linear layer.
    pub fn param_shapes(&self) -> Option<(Vec<i64>, i64)> {
        match *self {
            Layer::Conv {
                in_c,
                out,
                k,
                groups,
                ..
            } => Some((vec![out, in_c / groups, k, k], out)),
            Layer::Linear { in_f, out, .. } => Some((vec![out, in_f], out)),
            Layer::Affine { c, .. } => Some((vec![c], c)),
            _ => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Layer::Conv { name, .. } | Layer::Linear { name, .. } | Layer::Affine { name, .. } => {
                Some(name)
            }
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
        }
    }

    /// A ReLU-family activation (the deconvnet reverses it by a ReLU).
    pub fn is_relu(&self) -> bool {
        matches!(self, Layer::Relu | Layer::Clip { .. })
    }
}

/// The shape of one layer's output (batch dimension left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Maps { c: i64, side: i64 },
    Flat(i64),
}

/// A conv layer as the views see it.
#[derive(Debug, Clone)]
pub struct ConvInfo {
    /// Checkpoint name (`conv1`, `features.0`).
    pub name: String,
    /// Index of the conv in the layer list.
    pub index: usize,
    /// Index of the layer whose output is this conv's feature maps (its ReLU).
    pub map_at: usize,
    pub in_c: i64,
    pub out_c: i64,
    pub window: Window,
    pub groups: i64,
    /// Side of its input and of its feature maps.
    pub in_side: i64,
    pub side: i64,
}

/// A unit a user can pick: conv layers first (numbered 1..N in node order,
/// maps after their batch norm and ReLU), then every named node that is not
/// a conv's maps (a block's output), in node order. Views index units 1-based.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// The module path or ONNX output name (a conv's own name for a conv).
    pub name: String,
    /// The node whose output the unit is.
    #[serde(skip)]
    pub node: usize,
    /// The conv number (1-based), for conv units.
    pub layer: Option<usize>,
    pub c: i64,
    pub side: i64,
}

/// Where the preset came from, for manifests and training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub arch: Arch,
    /// Multiplier of every conv width (1.0 = the paper's 96/256/384/384/256).
    pub width: f64,
    /// Multiplier of the fc widths (1.0 = 4096).
    pub fc_width: f64,
}

/// A node as a manifest stores it: the layer, the nodes it reads when not
/// the one before it, and its unit name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub layer: Layer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    /// The nodes in topological order.
    pub layers: Vec<Layer>,
    /// The nodes node `i` reads where that is not node `i - 1` (node 0
    /// reads the image): graph networks (residual, dense, inception).
    pub inputs: BTreeMap<usize, Vec<usize>>,
    /// Named units: node -> name (a PyTorch module path, an ONNX output name).
    pub units: BTreeMap<usize, String>,
    /// Channels of the input image: 3 (RGB/BGR) or 1 (grey).
    pub in_channels: i64,
    pub input_size: i64,
    pub preset: Option<Preset>,
}

fn scaled(n: i64, w: f64) -> i64 {
    ((n as f64 * w).round() as i64).max(1)
}

impl NetSpec {
    /// A plain chain of layers on 3-channel images.
    pub fn chain(layers: Vec<Layer>, input_size: i64) -> Self {
        NetSpec {
            layers,
            inputs: BTreeMap::new(),
            units: BTreeMap::new(),
            in_channels: 3,
            input_size,
            preset: None,
        }
    }

    /// The network of a manifest's nodes.
    pub fn from_nodes(nodes: &[Node], in_channels: i64, input_size: i64) -> Self {
        let mut spec = NetSpec::chain(nodes.iter().map(|n| n.layer.clone()).collect(), input_size);
        spec.in_channels = in_channels;
        for (i, n) in nodes.iter().enumerate() {
            if let Some(v) = &n.inputs {
                spec.inputs.insert(i, v.clone());
            }
            if let Some(u) = &n.unit {
                spec.units.insert(i, u.clone());
            }
        }
        spec
    }

    /// The nodes as a manifest stores them.
    pub fn nodes(&self) -> Vec<Node> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                layer: l.clone(),
                inputs: self.inputs.get(&i).cloned(),
                unit: self.units.get(&i).cloned(),
            })
            .collect()
    }
    /// ZFNet or AlexNet at width multiplier `width` (fc layers too).
    pub fn new(arch: Arch, width: f64, num_classes: i64) -> Self {
        NetSpec::preset(arch, width, width, num_classes)
    }

    /// The paper's layer table (Fig. 3 for ZFNet; §1 of paper.md for AlexNet).
    pub fn preset(arch: Arch, width: f64, fc_width: f64, num_classes: i64) -> Self {
        let c: Vec<i64> = [96, 256, 384, 384, 256]
            .iter()
            .map(|&n| scaled(n, width))
            .collect();
        let (conv1, pool12, conv2) = match arch {
            Arch::Zfnet => (
                Window::new(7, 2, 1),
                Window::new(3, 2, 1),
                Window::new(5, 2, 0),
            ),
            Arch::Alexnet => (
                Window::new(11, 4, 2),
                Window::new(3, 2, 0),
                Window::new(5, 1, 2),
            ),
        };
        let f = scaled(4096, fc_width);
        let mut layers = vec![
            Layer::conv("conv1", 3, c[0], conv1),
            Layer::Relu,
            Layer::max_pool(pool12, false),
            Layer::paper_lrn(),
            Layer::conv("conv2", c[0], c[1], conv2),
            Layer::Relu,
            Layer::max_pool(pool12, false),
            Layer::paper_lrn(),
        ];
        for i in 2..5 {
            layers.push(Layer::conv(
                &format!("conv{}", i + 1),
                c[i - 1],
                c[i],
                Window::new(3, 1, 1),
            ));
            layers.push(Layer::Relu);
        }
        let mut spec = NetSpec {
            layers,
            inputs: BTreeMap::new(),
            units: BTreeMap::new(),
            in_channels: 3,
            input_size: 224,
            preset: Some(Preset {
                arch,
                width,
                fc_width,
            }),
        };
        spec.layers
            .push(Layer::max_pool(Window::new(3, 2, 0), false));
        // fc6's input follows from the conv stack at 224 px; other input sizes
        // are set with `with_input_size`.
        spec.push_head(f, num_classes);
        spec
    }

    fn push_head(&mut self, f: i64, num_classes: i64) {
        self.layers.push(Layer::Flatten);
        let flat = match self.shapes() {
            Ok(s) => match s.last() {
                Some(Shape::Flat(n)) => *n,
                _ => 0,
            },
            Err(_) => 0,
        };
        self.layers.extend([
            Layer::linear("fc6", flat, f),
            Layer::Relu,
            Layer::Dropout { p: 0.5 },
            Layer::linear("fc7", f, f),
            Layer::Relu,
            Layer::Dropout { p: 0.5 },
            Layer::linear("fc8", f, num_classes),
        ]);
    }

    /// A preset at another input size (fc6's input follows).
    pub fn with_input_size(mut self, size: i64) -> Self {
        self.input_size = size;
        if let Some(p) = self.preset {
            let n = self.num_classes();
            let keep = self.layers.iter().position(|l| *l == Layer::Flatten);
            if let Some(k) = keep {
                self.layers.truncate(k);
                self.push_head(scaled(4096, p.fc_width), n);
            }
        }
        self
    }

    pub fn num_classes(&self) -> i64 {
        self.layers
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Linear { out, .. } => Some(*out),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// A short name: the preset's architecture or "custom".
    pub fn arch_name(&self) -> String {
        self.preset
            .map(|p| p.arch.to_string())
            .unwrap_or_else(|| "custom".into())
    }

    /// The nodes node `i` reads; `None` is the image.
    pub fn sources(&self, i: usize) -> Vec<Option<usize>> {
        match self.inputs.get(&i) {
            Some(v) => v.iter().map(|&j| Some(j)).collect(),
            None => vec![i.checked_sub(1)],
        }
    }

    /// A plain chain: every node reads the one before it.
    pub fn is_chain(&self) -> bool {
        self.inputs.is_empty()
    }

    /// The nodes that read each node.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![vec![]; self.layers.len()];
        for i in 0..self.layers.len() {
            for j in self.sources(i).into_iter().flatten() {
                if j < out.len() {
                    out[j].push(i);
                }
            }
        }
        out
    }

    /// Each node's output shape, checking that every node fits its inputs.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let image = Shape::Maps {
            c: self.in_channels,
            side: self.input_size,
        };
        let mut out: Vec<Shape> = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let at = || format!("layer {i} ({})", l.op());
            let mut ins = vec![];
            for s in self.sources(i) {
                ins.push(match s {
                    None => image,
                    Some(j) if j < i => out[j],
                    Some(j) => bail!("{}: reads layer {j}, which does not come before it", at()),
                });
            }
            let s = match (l, ins.as_slice()) {
                (Layer::Add, [first, ..]) => {
                    if ins.iter().any(|s| s != first) {
                        bail!("{}: adds inputs of different shapes {ins:?}", at());
                    }
                    *first
                }
                (Layer::Concat, [_, ..]) => concat_shape(&ins).ok_or_else(|| {
                    anyhow::anyhow!("{}: cannot concatenate shapes {ins:?} by channel", at())
                })?,
                (_, [one]) => node_shape(l, *one).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?,
                _ => bail!("{}: takes one input, given {}", at(), ins.len()),
            };
            if let Shape::Maps { side, c } = s {
                if side < 1 || c < 1 {
                    bail!(
                        "{}: the input size {} is too small for this network",
                        at(),
                        self.input_size
                    );
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Where conv `i`'s feature maps are: after the batch-norm node and the
    /// ReLU-family activation that directly follow it, if any.
    fn map_at(&self, i: usize, consumers: &[Vec<usize>]) -> usize {
        let next = |j: usize| match consumers[j].as_slice() {
            [k] => Some(*k),
            _ => None,
        };
        let mut at = i;
        if let Some(k) = next(at).filter(|&k| matches!(self.layers[k], Layer::Affine { .. })) {
            at = k;
        }
        if let Some(k) = next(at).filter(|&k| self.layers[k].is_relu()) {
            at = k;
        }
        at
    }

    /// The conv layers in node order (conv 1 is index 0).
    pub fn convs(&self) -> Vec<ConvInfo> {
        let shapes = self.shapes().unwrap_or_default();
        let consumers = self.consumers();
        let side = |s: Option<usize>| match s {
            None => self.input_size,
            Some(j) => match shapes.get(j) {
                Some(Shape::Maps { side, .. }) => *side,
                _ => 0,
            },
        };
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                Layer::Conv {
                    name,
                    in_c,
                    out,
                    groups,
                    ..
                } => Some(ConvInfo {
                    name: name.clone(),
                    index: i,
                    map_at: self.map_at(i, &consumers),
                    in_c: *in_c,
                    out_c: *out,
                    window: l.window(),
                    groups: *groups,
                    in_side: side(self.sources(i)[0]),
                    side: side(Some(i)),
                }),
                _ => None,
            })
            .collect()
    }

    /// The units (see [`Unit`]): convs, then named nodes with maps.
    pub fn unit_list(&self) -> Vec<Unit> {
        let shapes = self.shapes().unwrap_or_default();
        let convs = self.convs();
        let mut out: Vec<Unit> = convs
            .iter()
            .enumerate()
            .map(|(k, c)| Unit {
                name: self
                    .units
                    .get(&c.map_at)
                    .cloned()
                    .unwrap_or_else(|| c.name.clone()),
                node: c.map_at,
                layer: Some(k + 1),
                c: c.out_c,
                side: c.side,
            })
            .collect();
        for (&node, name) in &self.units {
            if let (false, Some(Shape::Maps { c, side })) = (
                convs.iter().any(|c| c.map_at == node),
                shapes.get(node).copied(),
            ) {
                out.push(Unit {
                    name: name.clone(),
                    node,
                    layer: None,
                    c,
                    side,
                });
            }
        }
        out
    }

    /// The unit (1-based index into [`NetSpec::unit_list`]) a user means by
    /// `key`: a conv number, a unit or conv name, or `u:NAME` (always a name).
    pub fn find_unit(&self, key: &str) -> Result<usize> {
        let units = self.unit_list();
        let n_convs = units.iter().filter(|u| u.layer.is_some()).count();
        let (name, named) = match key.strip_prefix("u:") {
            Some(n) => (n, true),
            None => (key, false),
        };
        if !named {
            if let Ok(l) = name.parse::<usize>() {
                if (1..=n_convs).contains(&l) {
                    return Ok(l);
                }
                bail!("layer {l} is out of range: expected 1..={n_convs} or a unit name");
            }
        }
        if let Some(k) = units.iter().position(|u| u.name == name) {
            return Ok(k + 1);
        }
        if let Some(k) = self.convs().iter().position(|c| c.name == name) {
            return Ok(k + 1);
        }
        let some: Vec<&str> = units.iter().take(8).map(|u| u.name.as_str()).collect();
        bail!(
            "layer must be a conv number 1..={n_convs} or a unit's name; the network has no unit {name:?} (units: {}{})",
            some.join(", "),
            if units.len() > 8 { ", ..." } else { "" }
        )
    }

    /// Index of the output of every hidden linear layer (after its ReLU), and
    /// its name; without one, the flat features the classifier reads.
    pub fn hidden_fcs(&self) -> Vec<(usize, String)> {
        let consumers = self.consumers();
        let lin: Vec<usize> = self
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Layer::Linear { .. }))
            .map(|(i, _)| i)
            .collect();
        if let [last] = lin.as_slice() {
            // No hidden fc layer (ResNet, DenseNet…): the pooled features
            // the classifier reads stand for the last hidden layer.
            let mut j = self.sources(*last)[0];
            while let Some(k) = j.filter(|&k| matches!(self.layers[k], Layer::Dropout { .. })) {
                j = self.sources(k)[0];
            }
            let shapes = self.shapes().unwrap_or_default();
            return match j {
                Some(k) if matches!(shapes.get(k), Some(Shape::Flat(_))) => {
                    vec![(k, "pooled features".to_string())]
                }
                _ => vec![],
            };
        }
        lin.iter()
            .take(lin.len().saturating_sub(1))
            .map(|&i| {
                let at = self.map_at(i, &consumers);
                (at, self.layers[i].name().unwrap_or("fc").to_string())
            })
            .collect()
    }

    /// The node whose maps stand for "the last conv layer" in the views:
    /// the last conv's maps in a chain; in a graph, the last node with maps
    /// larger than 1x1 (the input of the global pooling).
    pub fn last_maps_node(&self) -> usize {
        let chain = self.convs().last().map_or(0, |c| c.map_at);
        if self.is_chain() {
            return chain;
        }
        let shapes = self.shapes().unwrap_or_default();
        shapes
            .iter()
            .rposition(|s| matches!(s, Shape::Maps { side, .. } if *side > 1))
            .unwrap_or(chain)
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(p) = self.preset {
            if !(p.width > 0.0 && p.width <= 4.0) {
                bail!("width: expected a multiplier in (0, 4], found {}", p.width);
            }
            if !(p.fc_width > 0.0 && p.fc_width <= 4.0) {
                bail!(
                    "fc_width: expected a multiplier in (0, 4], found {}",
                    p.fc_width
                );
            }
        }
        if self.input_size < 28 || self.input_size > 1024 {
            bail!("input_size: expected 28..=1024, found {}", self.input_size);
        }
        if self.in_channels != 1 && self.in_channels != 3 {
            bail!("in_channels: expected 1 or 3, found {}", self.in_channels);
        }
        if let Some((&i, _)) = self.inputs.iter().find(|(_, v)| v.is_empty()) {
            bail!("layer {i}: an empty list of inputs");
        }
        if let Some((&i, _)) = self.units.iter().find(|(&i, _)| i >= self.layers.len()) {
            bail!(
                "unit of layer {i}: the network has {} layers",
                self.layers.len()
            );
        }
        let shapes = self.shapes()?;
        if self.convs().is_empty() {
            bail!("layers: the network has no conv layer");
        }
        match (self.layers.last(), shapes.last()) {
            (Some(Layer::Linear { .. }), Some(Shape::Flat(n))) if *n >= 1 => {}
            _ => bail!("layers: the last layer must be a linear layer giving the class scores"),
        }
        Ok(())
    }

    /// Receptive field of position (y, x) of node `node`'s output in input
    /// pixels: (y0, x0, y1, x1), inclusive, not clipped to the image; the
    /// union over every path back to the image.
    pub fn field_of_node(&self, node: usize, y: i64, x: i64) -> (i64, i64, i64, i64) {
        type Field = (i64, i64, i64, i64);
        let union = |a: Option<Field>, b: Field| match a {
            None => b,
            Some(a) => (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
        };
        let mut fields: Vec<Option<Field>> = vec![None; node + 1];
        fields[node] = Some((y, x, y, x));
        let mut image = None;
        for i in (0..=node).rev() {
            let Some((y0, x0, y1, x1)) = fields[i] else {
                continue;
            };
            let w = self.layers[i].window();
            // A Pad node shifts rows by its top and columns by its left pad.
            let (py, px) = match self.layers[i] {
                Layer::Pad { pads } => (pads[0], pads[1]),
                _ => (w.pad, w.pad),
            };
            let back = |a: i64, b: i64, p: i64| (a * w.stride - p, b * w.stride - p + w.k - 1);
            let ((y0, y1), (x0, x1)) = (back(y0, y1, py), back(x0, x1, px));
            for s in self.sources(i) {
                match s {
                    None => image = Some(union(image, (y0, x0, y1, x1))),
                    Some(j) => fields[j] = Some(union(fields[j], (y0, x0, y1, x1))),
                }
            }
        }
        image.unwrap_or((y, x, y, x))
    }

    /// Receptive field of position (y, x) of unit `layer` (1-based, see [`Unit`]).
    pub fn receptive_field(&self, layer: usize, y: i64, x: i64) -> (i64, i64, i64, i64) {
        self.field_of_node(self.unit_list()[layer - 1].node, y, x)
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
fn node_shape(l: &Layer, s: Shape) -> Result<Shape> {
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
            Shape::Maps {
                c: *out,
                side: l.window().out_size(side, false),
            }
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
        (Layer::Affine { c, .. }, s @ (Shape::Maps { c: n, .. } | Shape::Flat(n))) => {
            if *c != n {
                bail!("expects {c} channels, gets {n}");
            }
            s
        }
        (Layer::Lrn { size, .. }, _) if *size < 1 => bail!("size must be at least 1"),
        (Layer::Relu | Layer::Clip { .. } | Layer::Lrn { .. } | Layer::Dropout { .. }, s) => s,
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

/// How a fresh network's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// The paper: N(0, 0.01) weights, zero biases.
    Paper,
    /// He/Kaiming normal (fan-in, ReLU gain), zero biases.
    Kaiming,
}

/// A conv or linear layer's parameters.
pub struct Params {
    pub weight: Tensor,
    pub bias: Tensor,
}

pub struct Net {
    pub spec: NetSpec,
    pub vs: nn::VarStore,
    /// The conv layers (cached from the spec).
    pub convs: Vec<ConvInfo>,
    /// The units a user can pick (convs first; cached from the spec).
    pub units: Vec<Unit>,
    /// Fed BGR images (Caffe-trained): projections are flipped back to RGB.
    pub bgr: bool,
    /// params[i] for layer i if it is a conv or linear layer.
    params: Vec<Option<Params>>,
    /// Conv weights in channels-last layout for inference (see
    /// [`Net::for_inference`]); empty while the net may be trained.
    fast: Vec<Option<Tensor>>,
    hidden: Vec<(usize, String)>,
    /// Each node's inputs (`None`: the image) and output shape, and the last
    /// node that reads each node (cached from the spec).
    sources: Vec<Vec<Option<usize>>>,
    pub shapes: Vec<Shape>,
    last_use: Vec<usize>,
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
    let div = x
        .square()
        .unsqueeze(1)
        .constant_pad_nd([0, 0, 0, 0, size / 2, (size - 1) / 2])
        .avg_pool3d([size, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None::<i64>)
        .squeeze_dim(1);
    x / (div * alpha + k).pow_tensor_scalar(beta)
}

/// The paper's contrast normalisation, exactly PyTorch's
/// `LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2)`.
pub fn lrn(x: &Tensor) -> Tensor {
    lrn_with(x, 5, 1e-4, 0.75, 2.0)
}

/// Every conv layer's feature maps (after ReLU), every max-pool's switches,
/// every hidden fc layer's output and every named unit's output, kept from
/// one forward pass so that many projections can share it.
pub struct Trace {
    /// maps[l] = unit l+1's maps, [N, C, H, W] (conv{l+1}'s for l < #convs).
    pub maps: Vec<Tensor>,
    /// switches[i] = flat argmax indices of max-pool node i (None for other nodes).
    pub switches: Vec<Option<Tensor>>,
    /// Hidden fc layers' outputs after ReLU, [N, F], in order (fc6, fc7 for ZFNet).
    pub hidden: Vec<Tensor>,
    /// Outputs of the named units (node -> [N, C, H, W] or [N, F]).
    pub units: BTreeMap<usize, Tensor>,
    /// The maps that stand for "the last conv layer" ([`NetSpec::last_maps_node`]).
    pub last_maps: Tensor,
    pub logits: Tensor,
    /// What the gradient rules of [`crate::deconv::walk`] read, by node:
    /// a ReLU's or clip's output, an LRN's input. Empty unless the trace
    /// came from [`Net::trace_saving`].
    pub saved: Vec<Option<Tensor>>,
}

impl Trace {
    pub fn probs(&self) -> Tensor {
        self.logits.softmax(-1, Kind::Float)
    }
    /// The last hidden fc layer's output (fc7 for ZFNet).
    pub fn last_hidden(&self) -> &Tensor {
        self.hidden.last().unwrap_or(&self.logits)
    }
}

impl Net {
    pub fn new(spec: NetSpec, device: Device) -> Result<Net> {
        spec.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let params = spec
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (w, b) = l.param_shapes()?;
                // VarStore names may not contain dots; the checkpoint's names
                // live in the spec.
                let p = &root / format!("l{i:02}");
                Some(Params {
                    weight: p.var("weight", &w, nn::Init::Const(0.0)),
                    bias: p.var("bias", &[b], nn::Init::Const(0.0)),
                })
            })
            .collect();
        let sources: Vec<Vec<Option<usize>>> =
            (0..spec.layers.len()).map(|i| spec.sources(i)).collect();
        let mut last_use: Vec<usize> = (0..spec.layers.len()).collect();
        for (i, s) in sources.iter().enumerate() {
            for &j in s.iter().flatten() {
                last_use[j] = last_use[j].max(i);
            }
        }
        Ok(Net {
            convs: spec.convs(),
            units: spec.unit_list(),
            bgr: false,
            hidden: spec.hidden_fcs(),
            shapes: spec.shapes()?,
            sources,
            last_use,
            fast: vec![],
            spec,
            vs,
            params,
        })
    }

    /// Keep a channels-last copy of every conv weight for the inference
    /// paths (trace, occlusion). Call once the weights are final: later
    /// changes to the weights would not reach the copies.
    pub fn for_inference(&mut self) {
        self.fast = tch::no_grad(|| {
            self.spec
                .layers
                .iter()
                .zip(&self.params)
                .map(|(l, p)| match (l, p) {
                    (Layer::Conv { .. }, Some(p)) => Some(channels_last(&p.weight.detach())),
                    _ => None,
                })
                .collect()
        });
    }

    /// The weight the inference paths convolve with (channels-last when prepared).
    pub fn inference_weight(&self, i: usize) -> &Tensor {
        match self.fast.get(i) {
            Some(Some(w)) => w,
            _ => &self.params(i).weight,
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// (checkpoint name, tensor) of every parameter, sorted by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for (l, p) in self.spec.layers.iter().zip(&self.params) {
            if let (Some((wn, bn)), Some(p)) = (l.tensor_names(), p) {
                out.push((wn, p.weight.shallow_clone()));
                out.push((bn, p.bias.shallow_clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Redraw every weight with `init` (biases 0), from torch's global RNG.
    pub fn init(&mut self, init: Init) {
        let last = self
            .spec
            .layers
            .iter()
            .rposition(|l| matches!(l, Layer::Linear { .. }));
        let last_w = last
            .and_then(|i| self.spec.layers[i].tensor_names())
            .map(|n| n.0);
        let weights: std::collections::HashSet<String> = self
            .spec
            .layers
            .iter()
            .filter_map(|l| l.tensor_names().map(|n| n.0))
            .collect();
        // Sorted, so the same seed always draws the same weights.
        tch::no_grad(|| {
            for (name, mut t) in self.named_tensors() {
                if !weights.contains(&name) {
                    let _ = t.zero_();
                    continue;
                }
                let std = match init {
                    Init::Paper => 0.01,
                    Init::Kaiming => {
                        let fan_in: i64 = t.size()[1..].iter().product();
                        let gain = if Some(&name) == last_w.as_ref() {
                            1.0
                        } else {
                            2.0
                        };
                        (gain / fan_in as f64).sqrt()
                    }
                };
                let _ = t.normal_(0.0, std);
            }
        });
    }

    pub fn params(&self, layer_index: usize) -> &Params {
        self.params[layer_index]
            .as_ref()
            .expect("conv or linear layer")
    }

    /// Weight of conv `c` (0-based conv number).
    pub fn conv_weight(&self, c: usize) -> &Tensor {
        &self.params(self.convs[c].index).weight
    }

    pub fn conv_bias(&self, c: usize) -> &Tensor {
        &self.params(self.convs[c].index).bias
    }

    /// The unit (1-based) that stands for "the last conv layer" in the views:
    /// the last conv in a chain, the input of the global pooling in a graph.
    pub fn last_unit(&self) -> usize {
        let node = self.spec.last_maps_node();
        self.units
            .iter()
            .position(|u| u.node == node)
            .map_or(self.convs.len(), |k| k + 1)
    }

    /// Name of the last hidden fc layer (fc7 for ZFNet).
    pub fn last_hidden_name(&self) -> String {
        self.hidden
            .last()
            .map(|h| h.1.clone())
            .unwrap_or_else(|| "logits".into())
    }

    /// The nodes node `i` reads (`None`: the image).
    pub fn sources(&self, i: usize) -> &[Option<usize>] {
        &self.sources[i]
    }

    /// Node `i` applied to its inputs (inference: no dropout, no switches kept).
    pub fn apply_node(&self, i: usize, ins: &[Tensor]) -> Tensor {
        self.apply(i, ins, false, None)
    }

    /// Apply node `i` to its inputs `ins`; `switches` receives a max-pool's indices.
    fn apply(
        &self,
        i: usize,
        ins: &[Tensor],
        train: bool,
        switches: Option<&mut Option<Tensor>>,
    ) -> Tensor {
        let h = &ins[0];
        match &self.spec.layers[i] {
            Layer::Conv {
                stride,
                pad,
                groups,
                dilation,
                ..
            } => {
                let p = self.params(i);
                let (w, h) = match self.fast.get(i) {
                    Some(Some(w)) if !train => (w, channels_last(h)),
                    _ => (&p.weight, h.shallow_clone()),
                };
                h.conv2d(
                    w,
                    Some(&p.bias),
                    [*stride, *stride],
                    [*pad, *pad],
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
                let p = self.params(i);
                h.linear(&p.weight, Some(&p.bias))
            }
            Layer::Affine { .. } => {
                let p = self.params(i);
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
        }
    }

    /// Run nodes `from..=to` on `h`, the output of node `from - 1` (the image
    /// when `from` is 0), calling `keep` with every node's output; returns
    /// node `to`'s. In a graph, no node from `from` on may read a node before
    /// `from - 1` ([`NetSpec::is_chain`] networks can start anywhere).
    fn run(
        &self,
        from: usize,
        to: usize,
        h: &Tensor,
        train: bool,
        mut switches: Option<&mut Vec<Option<Tensor>>>,
        mut keep: impl FnMut(usize, &Tensor),
    ) -> Tensor {
        let n = self.spec.layers.len();
        let to = to.min(n - 1);
        let mut vals: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let mut last = h.shallow_clone();
        for i in from..=to {
            let ins: Vec<Tensor> = self.sources[i]
                .iter()
                .map(|s| match *s {
                    None => h.shallow_clone(),
                    Some(j) if j + 1 == from => h.shallow_clone(),
                    Some(j) => vals[j]
                        .as_ref()
                        .unwrap_or_else(|| panic!("node {i} reads node {j}, not computed"))
                        .shallow_clone(),
                })
                .collect();
            let sw = switches.as_deref_mut().map(|s| &mut s[i]);
            last = self.apply(i, &ins, train, sw);
            keep(i, &last);
            for &j in self.sources[i].iter().flatten() {
                if self.last_use[j] <= i {
                    vals[j] = None;
                }
            }
            if self.last_use[i] > i {
                vals[i] = Some(last.shallow_clone());
            }
        }
        last
    }

    /// Layers `from..` applied to `h` (eval: no dropout), to logits.
    pub fn forward_from(&self, from: usize, h: &Tensor) -> Tensor {
        self.run(from, usize::MAX, h, false, None, |_, _| {})
    }

    /// Layers `from..=to` applied to `h` (eval).
    pub fn forward_range(&self, from: usize, to: usize, h: &Tensor) -> Tensor {
        self.run(from, to, h, false, None, |_, _| {})
    }

    /// Outputs of the layers at indices `at` (ascending) for input `x`, from
    /// one inference pass that stops at the last of them.
    pub fn outputs_at(&self, x: &Tensor, at: &[usize]) -> Vec<Tensor> {
        tch::no_grad(|| {
            let h = x.to_device(self.device());
            let last = at.iter().copied().max().unwrap_or(0);
            let mut kept: BTreeMap<usize, Tensor> = BTreeMap::new();
            let _ = self.run(0, last, &h, false, None, |i, t| {
                if at.contains(&i) {
                    kept.insert(i, t.shallow_clone());
                }
            });
            at.iter().map(|i| kept[i].shallow_clone()).collect()
        })
    }

    /// Training/inference forward to logits; dropout layers act when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.run(0, usize::MAX, x, train, None, |_, _| {})
    }

    /// Inference forward (no grad) keeping maps, switches, hidden fc outputs
    /// and the named units' outputs.
    pub fn trace(&self, x: &Tensor) -> Trace {
        self.trace_with(x, false)
    }

    /// [`Net::trace`] that also saves what the gradient and guided backprop
    /// rules need (every ReLU's output, every LRN's input).
    pub fn trace_saving(&self, x: &Tensor) -> Trace {
        self.trace_with(x, true)
    }

    fn trace_with(&self, x: &Tensor, save: bool) -> Trace {
        tch::no_grad(|| {
            let h = x.to_device(self.device());
            let n = self.spec.layers.len();
            let mut switches: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
            let last_node = self.spec.last_maps_node();
            let keep: std::collections::HashSet<usize> = self
                .units
                .iter()
                .map(|u| u.node)
                .chain(self.hidden.iter().map(|h| h.0))
                .chain(self.spec.units.keys().copied())
                .chain([last_node])
                .collect();
            let mut outs: BTreeMap<usize, Tensor> = BTreeMap::new();
            let mut saved: Vec<Option<Tensor>> =
                (0..if save { n } else { 0 }).map(|_| None).collect();
            let layers = &self.spec.layers;
            // LRN nodes by the node they read (None: the image).
            let mut lrn_of: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
            for (i, l) in layers.iter().enumerate().filter(|_| save) {
                if let (Layer::Lrn { .. }, [src]) = (l, self.sources[i].as_slice()) {
                    lrn_of.entry(*src).or_default().push(i);
                }
            }
            for &j in lrn_of.get(&None).into_iter().flatten() {
                saved[j] = Some(h.shallow_clone());
            }
            let logits = self.run(0, n - 1, &h, false, Some(&mut switches), |i, t| {
                if keep.contains(&i) {
                    outs.insert(i, t.shallow_clone());
                }
                if save {
                    if layers[i].is_relu() {
                        saved[i] = Some(t.shallow_clone());
                    }
                    for &j in lrn_of.get(&Some(i)).into_iter().flatten() {
                        saved[j] = Some(t.shallow_clone());
                    }
                }
            });
            let take = |i: usize| outs[&i].shallow_clone();
            Trace {
                maps: self.units.iter().map(|u| take(u.node)).collect(),
                switches,
                hidden: self.hidden.iter().map(|f| take(f.0)).collect(),
                units: self.spec.units.keys().map(|&i| (i, take(i))).collect(),
                last_maps: take(last_node),
                logits,
                saved,
            }
        })
    }

    /// Feature-scale clipping (paper §2): rescale each conv filter whose RMS
    /// exceeds `max_rms` to exactly `max_rms`.
    pub fn clip_filters(&mut self, max_rms: f64) {
        tch::no_grad(|| {
            for c in 0..self.convs.len() {
                let mut w = self.conv_weight(c).shallow_clone();
                let rms = w
                    .square()
                    .mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float)
                    .sqrt();
                let scale = (rms.reciprocal() * max_rms).clamp_max(1.0);
                let _ = w.g_mul_(&scale);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_sides(s: &NetSpec) -> Vec<i64> {
        s.convs().iter().map(|c| c.side).collect()
    }

    #[test]
    fn zfnet_sizes_match_the_paper() {
        let s = NetSpec::new(Arch::Zfnet, 1.0, 1000);
        assert_eq!(map_sides(&s), vec![110, 26, 13, 13, 13]);
        let shapes = s.shapes().unwrap();
        assert_eq!(shapes[2], Shape::Maps { c: 96, side: 55 });
        assert_eq!(shapes[6], Shape::Maps { c: 256, side: 13 });
        assert!(s.layers.contains(&Layer::linear("fc6", 9216, 4096)));
        assert_eq!(s.num_classes(), 1000);
        let hidden: Vec<String> = s.hidden_fcs().into_iter().map(|h| h.1).collect();
        assert_eq!(hidden, ["fc6", "fc7"]);
    }

    #[test]
    fn alexnet_sizes_match_the_paper() {
        let s = NetSpec::new(Arch::Alexnet, 1.0, 1000);
        assert_eq!(map_sides(&s), vec![55, 27, 13, 13, 13]);
        assert!(s.layers.contains(&Layer::linear("fc6", 9216, 4096)));
    }

    #[test]
    fn ceil_mode_follows_pytorch() {
        // pytorchcv's ZFNet: 110 -> 55 with a 3x3 s2 ceil-mode pool; 13 -> 6.
        assert_eq!(Window::new(3, 2, 0).out_size(110, true), 55);
        assert_eq!(Window::new(3, 2, 0).out_size(13, true), 6);
        assert_eq!(Window::new(2, 2, 0).out_size(7, true), 4);
        assert_eq!(Window::new(2, 2, 0).out_size(7, false), 3);
    }

    #[test]
    fn conv1_receptive_field_is_the_kernel() {
        let s = NetSpec::new(Arch::Zfnet, 1.0, 10);
        assert_eq!(s.receptive_field(1, 0, 0), (-1, -1, 5, 5));
        assert_eq!(s.receptive_field(1, 3, 2), (5, 3, 11, 9));
        // conv2 (5x5 s2) on pool1 (3x3 s2 p1) on conv1 (7x7 s2 p1).
        let (y0, _, y1, _) = s.receptive_field(2, 0, 0);
        assert_eq!((y0, y1), (-3, 23));
    }

    #[test]
    fn manifest_layers_round_trip() {
        let s = NetSpec::new(Arch::Alexnet, 0.5, 10);
        let text = serde_json::to_string(&s.layers).unwrap();
        assert!(text
            .contains(r#"{"op":"conv","name":"conv1","in":3,"out":48,"k":11,"stride":4,"pad":2}"#));
        let back: Vec<Layer> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s.layers);
    }

    #[test]
    fn bad_layer_lists_are_refused_with_the_layer() {
        let mut s = NetSpec::new(Arch::Zfnet, 0.1, 3);
        s.layers[4] = Layer::conv("conv2", 7, 26, Window::new(5, 2, 0));
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("layer 4 (conv)") && e.contains("7 input channels"),
            "{e}"
        );
    }

    #[test]
    fn clipping_rescales_only_large_filters() {
        let mut net = Net::new(NetSpec::new(Arch::Zfnet, 0.1, 3), Device::Cpu).unwrap();
        tch::no_grad(|| {
            let w = net.conv_weight(0).shallow_clone();
            let mut big = w.get(0);
            let _ = big.fill_(1.0);
            let mut small = w.get(1);
            let _ = small.fill_(0.01);
        });
        net.clip_filters(0.1);
        let w = net.conv_weight(0);
        let rms = |t: Tensor| t.square().mean(Kind::Float).sqrt().double_value(&[]);
        assert!((rms(w.get(0)) - 0.1).abs() < 1e-6);
        assert!((rms(w.get(1)) - 0.01).abs() < 1e-6);
    }
}
