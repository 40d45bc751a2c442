//! What the views pick and where it looks: conv layers, units (conv maps
//! first, then named nodes), hidden fc layers, and receptive fields.

use super::graph::NetSpec;
use super::ops::{Layer, Shape, Window};
use anyhow::{bail, Result};
use serde::Serialize;

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
    /// The name a user knows ([`super::names::shorten`]): `block_1_depthwise`
    /// for a tf2onnx scope, `layer1.0` for a TorchScript exporter's name.
    pub short: String,
    /// The node whose output the unit is.
    #[serde(skip)]
    pub node: usize,
    /// The conv number (1-based), for conv units.
    pub layer: Option<usize>,
    pub c: i64,
    pub side: i64,
}

impl NetSpec {
    /// Where conv `i`'s feature maps are: after the batch-norm (affine)
    /// nodes and the activation that directly follow it, if any.
    fn map_at(&self, i: usize, consumers: &[Vec<usize>]) -> usize {
        let next = |j: usize| match consumers[j].as_slice() {
            [k] => Some(*k),
            _ => None,
        };
        let mut at = i;
        while let Some(k) = next(at).filter(|&k| matches!(self.op(k), Layer::Affine { .. })) {
            at = k;
        }
        if let Some(k) = next(at).filter(|&k| self.op(k).is_map_activation()) {
            at = k;
        }
        at
    }

    /// The conv layers in node order (conv 1 is index 0).
    pub fn convs(&self) -> Vec<ConvInfo> {
        let shapes = self.valid_shapes();
        let consumers = self.consumers();
        let side = |s: Option<usize>| match s {
            None => self.input_size,
            Some(j) => match shapes.get(j) {
                Some(Shape::Maps { side, .. }) => *side,
                _ => 0,
            },
        };
        self.ops()
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
        let shapes = self.valid_shapes();
        let convs = self.convs();
        let mut out: Vec<Unit> = convs
            .iter()
            .enumerate()
            .map(|(k, c)| Unit {
                name: self.nodes[c.map_at]
                    .name
                    .clone()
                    .unwrap_or_else(|| c.name.clone()),
                short: String::new(),
                node: c.map_at,
                layer: Some(k + 1),
                c: c.out_c,
                side: c.side,
            })
            .collect();
        for (node, name) in self.named() {
            if let (false, Some(Shape::Maps { c, side })) = (
                convs.iter().any(|c| c.map_at == node),
                shapes.get(node).copied(),
            ) {
                out.push(Unit {
                    name: name.to_string(),
                    short: String::new(),
                    node,
                    layer: None,
                    c,
                    side,
                });
            }
        }
        // Shortened in node order (a block's last node gets its short name).
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by_key(|&k| out[k].node);
        let names: Vec<String> = order.iter().map(|&k| out[k].name.clone()).collect();
        for (&k, s) in order.iter().zip(super::names::shorten(&names)) {
            out[k].short = s;
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
        if let Some(k) = units.iter().position(|u| u.short == name) {
            return Ok(k + 1);
        }
        if let Some(k) = self.convs().iter().position(|c| c.name == name) {
            return Ok(k + 1);
        }
        let some: Vec<&str> = units.iter().take(8).map(|u| u.short.as_str()).collect();
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
        let shapes = self.valid_shapes();
        // Linear layers on vectors (a transformer's on tokens are not fc layers).
        let lin: Vec<usize> = self
            .ops()
            .enumerate()
            .filter(|(i, l)| {
                matches!(l, Layer::Linear { .. }) && matches!(shapes.get(*i), Some(Shape::Flat(_)))
            })
            .map(|(i, _)| i)
            .collect();
        if let [last] = lin.as_slice() {
            // No hidden fc layer (ResNet, DenseNet…): the pooled features
            // the classifier reads stand for the last hidden layer.
            let mut j = self.sources(*last)[0];
            while let Some(k) = j.filter(|&k| matches!(self.op(k), Layer::Dropout { .. })) {
                j = self.sources(k)[0];
            }
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
                (at, self.op(i).name().unwrap_or("fc").to_string())
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
        let shapes = self.valid_shapes();
        shapes
            .iter()
            .rposition(|s| matches!(s, Shape::Maps { side, .. } if *side > 1))
            .unwrap_or(chain)
    }

    /// The suggested unit (1-based into `units`, the [`NetSpec::unit_list`]):
    /// the one at [`NetSpec::last_maps_node`], or, where that node has no
    /// name (DenseNet's functional ReLU after `norm5`), the unit it reads
    /// through single-input activations and affines (`features.norm5`, the
    /// grad-cam package's advice); else the last conv.
    pub fn suggested_unit(&self, units: &[Unit]) -> usize {
        // A class-token head reads no patch token of the last block, whose
        // patch tokens' gradient is then zero: the block before it
        // (pytorch-grad-cam's advice for ViTs).
        let grids: Vec<usize> = (0..units.len())
            .filter(|&k| matches!(self.op(units[k].node), Layer::Grid { .. }))
            .collect();
        if self.ops().any(|l| matches!(l, Layer::Token { .. })) {
            if let [.., before, _] = grids.as_slice() {
                return before + 1;
            }
        }
        let mut node = self.last_maps_node();
        loop {
            // The node's unit, or the grid unit of its tokens.
            let grid_of = |u: &Unit| {
                matches!(self.op(u.node), Layer::Grid { .. })
                    && self.sources(u.node) == [Some(node)]
            };
            if let Some(k) = units.iter().position(|u| u.node == node || grid_of(u)) {
                return k + 1;
            }
            // Back through activations, norms and a mean-pooling head's grid.
            let through = self.op(node).is_activation()
                || matches!(
                    self.op(node),
                    Layer::Affine { .. } | Layer::ChannelNorm { .. } | Layer::Grid { .. }
                );
            match self.sources(node).as_slice() {
                [Some(j)] if through => node = *j,
                _ => return units.iter().filter(|u| u.layer.is_some()).count().max(1),
            }
        }
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
        // Self-attention mixes every token, shifted windows every window
        // after a few blocks: the whole image.
        if self
            .ops()
            .take(node + 1)
            .any(|l| matches!(l, Layer::Attention { .. } | Layer::WindowAttention { .. }))
        {
            let s = self.input_size;
            return (0, 0, s - 1, s - 1);
        }
        let mut fields: Vec<Option<Field>> = vec![None; node + 1];
        fields[node] = Some((y, x, y, x));
        let mut image = None;
        let shapes = self.valid_shapes();
        for i in (0..=node).rev() {
            let Some((y0, x0, y1, x1)) = fields[i] else {
                continue;
            };
            let [wy, wx] = self.op(i).windows();
            // A Pad node shifts rows by its top and columns by its left pad.
            let (py, px) = match self.op(i) {
                Layer::Pad { pads } => (pads[0], pads[1]),
                _ => (wy.pad, wx.pad),
            };
            let back =
                |a: i64, b: i64, p: i64, w: Window| (a * w.stride - p, b * w.stride - p + w.k - 1);
            let ((y0, y1), (x0, x1)) = (back(y0, y1, py, wy), back(x0, x1, px, wx));
            // Global pooling (a squeeze-excite gate) sees its whole input.
            let (y0, x0, y1, x1) = match (self.op(i), self.sources(i)[0]) {
                (Layer::AdaptiveAvgPool { .. }, src) => {
                    let side = match src.and_then(|j| shapes.get(j)) {
                        Some(Shape::Maps { side, .. }) => *side,
                        _ => self.input_size,
                    };
                    (0, 0, side - 1, side - 1)
                }
                _ => (y0, x0, y1, x1),
            };
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
