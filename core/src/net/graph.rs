//! A network as a graph: nodes in topological order, each an op, the nodes
//! it reads and its unit name; the paper's presets expand to a chain of
//! them. Shape inference and validation are here; the units and receptive
//! fields are `units.rs`'s, the forward pass `forward.rs`'s.

use super::ops::{binary_shape, concat_shape, node_shape, Layer, Shape, Window};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

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

/// Where the preset came from, for manifests and training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub arch: Arch,
    /// Multiplier of every conv width (1.0 = the paper's 96/256/384/384/256).
    pub width: f64,
    /// Multiplier of the fc widths (1.0 = 4096).
    pub fc_width: f64,
}

/// One node of the graph, as the manifest stores it (`{"op": "conv", …,
/// "inputs": [3, 7], "unit": "layer1.0"}`): its op with the op's
/// parameters, the nodes it reads where that is not the node before it
/// (graph networks: residual, dense, inception; node 0 reads the image),
/// and its name as a unit (a PyTorch module path, an ONNX output name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub op: Layer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<usize>>,
    #[serde(default, rename = "unit", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl From<Layer> for Node {
    /// A node reading the node before it, without a unit name.
    fn from(op: Layer) -> Node {
        Node {
            op,
            inputs: None,
            name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    /// The nodes in topological order.
    pub nodes: Vec<Node>,
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
            nodes: layers.into_iter().map(Node::from).collect(),
            in_channels: 3,
            input_size,
            preset: None,
        }
    }

    /// The network of a manifest's nodes.
    pub fn from_nodes(nodes: &[Node], in_channels: i64, input_size: i64) -> Self {
        NetSpec {
            nodes: nodes.to_vec(),
            in_channels,
            input_size,
            preset: None,
        }
    }

    /// The op of node `i`.
    pub fn op(&self, i: usize) -> &Layer {
        &self.nodes[i].op
    }

    /// The ops in node order.
    pub fn ops(&self) -> impl DoubleEndedIterator<Item = &Layer> + ExactSizeIterator {
        self.nodes.iter().map(|n| &n.op)
    }

    /// Add a node reading the node before it.
    pub fn push(&mut self, op: Layer) {
        self.nodes.push(op.into());
    }

    /// The named nodes (units by name): (node, name), in node order.
    pub fn named(&self) -> impl Iterator<Item = (usize, &str)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.name.as_deref().map(|u| (i, u)))
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
        layers.push(Layer::max_pool(Window::new(3, 2, 0), false));
        let mut spec = NetSpec {
            preset: Some(Preset {
                arch,
                width,
                fc_width,
            }),
            ..NetSpec::chain(layers, 224)
        };
        // fc6's input follows from the conv stack at 224 px; other input sizes
        // are set with `with_input_size`.
        spec.push_head(f, num_classes);
        spec
    }

    fn push_head(&mut self, f: i64, num_classes: i64) {
        self.push(Layer::Flatten);
        let flat = match self.shapes() {
            Ok(s) => match s.last() {
                Some(Shape::Flat(n)) => *n,
                _ => 0,
            },
            Err(_) => 0,
        };
        self.nodes.extend(
            [
                Layer::linear("fc6", flat, f),
                Layer::Relu,
                Layer::Dropout { p: 0.5 },
                Layer::linear("fc7", f, f),
                Layer::Relu,
                Layer::Dropout { p: 0.5 },
                Layer::linear("fc8", f, num_classes),
            ]
            .map(Node::from),
        );
    }

    /// A preset at another input size (fc6's input follows).
    pub fn with_input_size(mut self, size: i64) -> Self {
        self.input_size = size;
        if let Some(p) = self.preset {
            let n = self.num_classes();
            let keep = self.ops().position(|l| *l == Layer::Flatten);
            if let Some(k) = keep {
                self.nodes.truncate(k);
                self.push_head(scaled(4096, p.fc_width), n);
            }
        }
        self
    }

    /// The length of the class scores: the last node's flat output (a
    /// linear layer's, or a conv's after global pooling as in SqueezeNet).
    pub fn num_classes(&self) -> i64 {
        match self.valid_shapes().last() {
            Some(Shape::Flat(n)) => *n,
            _ => 0,
        }
    }

    /// A short name: the preset's architecture or "custom".
    pub fn arch_name(&self) -> String {
        self.preset
            .map(|p| p.arch.to_string())
            .unwrap_or_else(|| "custom".into())
    }

    /// The nodes node `i` reads; `None` is the image.
    pub fn sources(&self, i: usize) -> Vec<Option<usize>> {
        match &self.nodes[i].inputs {
            Some(v) => v.iter().map(|&j| Some(j)).collect(),
            None => vec![i.checked_sub(1)],
        }
    }

    /// A plain chain: every node reads the one before it.
    pub fn is_chain(&self) -> bool {
        self.nodes.iter().all(|n| n.inputs.is_none())
    }

    /// The nodes that read each node.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![vec![]; self.nodes.len()];
        for i in 0..self.nodes.len() {
            for j in self.sources(i).into_iter().flatten() {
                if j < out.len() {
                    out[j].push(i);
                }
            }
        }
        out
    }

    /// Each node's output shape, checking that every node fits its inputs.
    /// The shapes of a spec [`NetSpec::validate`] accepted (it refuses one
    /// whose shapes fail; a model folder's spec is validated when it is
    /// read): the structural queries (units, fields, classes) read these.
    /// An unvalidated spec whose shapes fail gets none, and validation's
    /// own error says why.
    pub fn valid_shapes(&self) -> Vec<Shape> {
        self.shapes().unwrap_or_default()
    }

    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let image = Shape::Maps {
            c: self.in_channels,
            side: self.input_size,
        };
        let mut out: Vec<Shape> = Vec::with_capacity(self.nodes.len());
        for (i, l) in self.ops().enumerate() {
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
                (l, [a, b]) if l.is_binary() => binary_shape(*a, *b).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: its inputs' shapes {a:?} and {b:?} neither agree nor broadcast per channel",
                        at()
                    )
                })?,
                (l, _) if l.is_binary() => bail!("{}: takes two inputs, given {}", at(), ins.len()),
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
}

impl NetSpec {
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
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.inputs.as_ref().is_some_and(|v| v.is_empty()))
        {
            bail!("layer {i}: an empty list of inputs");
        }
        let shapes = self.shapes()?;
        if self.convs().is_empty() {
            bail!("layers: the network has no conv layer");
        }
        match shapes.last() {
            Some(Shape::Flat(n)) if *n >= 1 => {}
            _ => bail!("layers: the last layer must give the class scores as a vector (a linear layer, or global pooling and a flatten)"),
        }
        Ok(())
    }
}
