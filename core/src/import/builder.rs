//! A graph under construction, node by node in the order PyTorch's forward
//! runs them, for the state-dict layouts of `graphs.rs` and `families.rs`.
//! Where a family's sizes vary by member (widths, depths, kernels, groups),
//! they are read off the file's tensor shapes.

use super::layout::Layout;
use crate::net::{Layer, Node, Window};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;

/// A graph under construction; `at` is the node the next one reads.
pub struct Builder<'a> {
    pub nodes: Vec<Node>,
    pub bn: HashMap<String, String>,
    /// Per-channel scales read as tensors (affine name -> tensor).
    pub scales: HashMap<String, String>,
    /// The last node added (None: the image).
    pub at: Option<usize>,
    /// Channels of `at`'s output.
    pub c: i64,
    /// The file's tensor shapes (empty for fixed layouts).
    pub shapes: &'a HashMap<String, Vec<i64>>,
}

pub const RELU: Option<Layer> = Some(Layer::Relu);
pub const RELU6: Option<Layer> = Some(Layer::Clip { max: 6.0 });
pub const SILU: Option<Layer> = Some(Layer::Silu);
pub const HARD_SWISH: Option<Layer> = Some(Layer::HardSwish);

pub fn k(k: i64, stride: i64, pad: i64) -> Window {
    Window::new(k, stride, pad)
}

static NO_SHAPES: std::sync::LazyLock<HashMap<String, Vec<i64>>> =
    std::sync::LazyLock::new(HashMap::new);

impl<'a> Builder<'a> {
    pub fn new() -> Builder<'static> {
        Builder::reading(&NO_SHAPES)
    }

    /// A builder reading sizes off `shapes`.
    pub fn reading(shapes: &'a HashMap<String, Vec<i64>>) -> Self {
        Builder {
            nodes: vec![],
            bn: HashMap::new(),
            scales: HashMap::new(),
            at: None,
            c: 3,
            shapes,
        }
    }

    /// The shape of tensor `name` in the file.
    pub fn shape(&self, name: &str) -> Result<&'a [i64]> {
        self.shapes
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| anyhow!("missing tensor {name}"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    /// How many numbered children `{prefix}.0`, `{prefix}.1`… have tensors.
    pub fn count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                let p = format!("{prefix}.{i}.");
                self.shapes.keys().any(|k| k.starts_with(&p))
            })
            .count()
    }

    /// Add `l` reading `from` (the node before it when that is the last one added).
    pub fn node(&mut self, l: Layer, from: &[usize]) -> usize {
        let i = self.nodes.len();
        let chained = match (from, self.at) {
            ([j], _) => *j + 1 == i,
            ([], None) => i == 0,
            _ => false,
        };
        self.nodes.push(Node {
            op: l,
            inputs: (!chained).then(|| from.to_vec()),
            name: None,
        });
        self.at = Some(i);
        i
    }

    /// Add `l` reading the last node.
    pub fn then(&mut self, l: Layer) -> usize {
        let from: Vec<usize> = self.at.into_iter().collect();
        self.node(l, &from)
    }

    /// Layer normalisation over the channels (tensors `{name}.weight`,
    /// `{name}.bias`): ConvNeXt's, ViT's and Swin's.
    pub fn layer_norm(&mut self, name: &str, eps: f64) -> usize {
        self.then(Layer::ChannelNorm {
            name: name.to_string(),
            c: self.c,
            eps,
        })
    }

    /// Continue from node `at` with `c` channels.
    pub fn from(&mut self, at: usize, c: i64) {
        self.at = Some(at);
        self.c = c;
    }

    /// The last node, which must be there.
    pub fn last(&self) -> usize {
        self.at.expect("a node added before")
    }

    pub fn unit(&mut self, name: &str) {
        if let Some(i) = self.at {
            self.nodes[i].name = Some(name.to_string());
        }
    }

    fn then_act(&mut self, act: Option<Layer>) {
        if let Some(a) = act {
            self.then(a);
        }
    }

    /// Conv `name` (no bias in the file) + batch norm `bn` folded into it,
    /// reading the last node; then `act`.
    pub fn conv_bn(
        &mut self,
        name: &str,
        bn: &str,
        out: i64,
        w: Window,
        groups: i64,
        act: Option<Layer>,
    ) {
        let mut l = Layer::conv(name, self.c, out, w);
        if let Layer::Conv { groups: g, .. } = &mut l {
            *g = groups;
        }
        self.then(l);
        self.bn.insert(name.to_string(), bn.to_string());
        self.c = out;
        self.then_act(act);
    }

    /// Conv `name` as the file has it (its out channels, kernel, groups
    /// read off `{name}.weight`), padded `pad` (None: half the kernel, as
    /// torchvision pads), followed by batch norm `bn` when given, then `act`.
    pub fn conv(
        &mut self,
        name: &str,
        bn: Option<&str>,
        stride: i64,
        pad: Option<i64>,
        act: Option<Layer>,
    ) -> Result<()> {
        let s = self.shape(&format!("{name}.weight"))?;
        let (out, per_group, kh, kw) = match *s {
            [o, i, h, w] => (o, i, h, w),
            [o, i] => (o, i, 1, 1),
            _ => bail!("tensor {name}.weight: expected a conv weight, found shape {s:?}"),
        };
        if per_group < 1 || self.c % per_group != 0 {
            bail!(
                "tensor {name}.weight: {per_group} input channels per group do not divide {}",
                self.c
            );
        }
        let (ph, pw) = match pad {
            Some(p) => (p, p),
            None => ((kh - 1) / 2, (kw - 1) / 2),
        };
        let l = Layer::Conv {
            name: name.to_string(),
            in_c: self.c,
            out,
            k: kh,
            stride,
            pad: ph,
            groups: self.c / per_group,
            dilation: 1,
            kw: (kw != kh).then_some(kw),
            pad_w: (pw != ph).then_some(pw),
            weight: None,
            bias: None,
        };
        self.then(l);
        if let Some(b) = bn {
            self.bn.insert(name.to_string(), b.to_string());
        }
        self.c = out;
        self.then_act(act);
        Ok(())
    }

    /// A squeeze-excite block on the last node: global pooling, conv
    /// `{p}.fc1` (with bias), `act`, conv `{p}.fc2`, `gate`, and the
    /// product of the maps with the gate.
    pub fn squeeze_excite(&mut self, p: &str, act: Layer, gate: Layer) -> Result<()> {
        let (x, c) = (self.last(), self.c);
        self.then(Layer::AdaptiveAvgPool { out: 1 });
        self.conv(&format!("{p}.fc1"), None, 1, Some(0), Some(act))?;
        self.conv(&format!("{p}.fc2"), None, 1, Some(0), Some(gate))?;
        let g = self.last();
        self.node(Layer::Mul, &[x, g]);
        self.c = c;
        Ok(())
    }

    /// The sum of the last node and `shortcut`.
    pub fn add(&mut self, shortcut: usize) {
        let main = self.last();
        self.node(Layer::Add, &[main, shortcut]);
    }

    /// Global average pooling, flatten, dropout (when > 0) and the linear
    /// classifier `fc` on `flat` features.
    pub fn finish(mut self, flat: i64, fc: &str, classes: i64, dropout: f64) -> Layout {
        self.then(Layer::AdaptiveAvgPool { out: 1 });
        self.then(Layer::Flatten);
        if dropout > 0.0 {
            self.then(Layer::Dropout { p: dropout });
        }
        self.then(Layer::linear(fc, flat, classes));
        self.layout(1e-5)
    }

    /// The layout of the nodes built (batch norms with `eps`).
    pub fn layout(self, eps: f64) -> Layout {
        Layout {
            nodes: self.nodes,
            bn: self.bn,
            scales: self.scales,
            bn_eps: eps,
            convs_without_bias: true,
            preprocess: "torchvision",
            input_size: None,
        }
    }
}
