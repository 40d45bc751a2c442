//! The ops of the last five years' CNNs: smooth activations, products and
//! differences of two maps (squeeze-excite gates, SiLU as x·sigmoid(x)),
//! LayerNormalization over the channels, MatMul on channels-last maps,
//! channel Split/Slice, Squeeze/Unsqueeze around global pooling.

use super::*;

/// A Slice/Split axis as a channel axis of `v`: 1 in NCHW, 3 (or -1) when
/// the graph sees `v` channels-last.
fn channel_axis(v: &Value, axis: i64) -> bool {
    match v.nhwc {
        false => axis == 1 || axis == -3,
        true => axis == 3 || axis == -1,
    }
}

impl Reader<'_> {
    /// An element-wise activation, on maps in either layout or on a vector.
    pub(super) fn activation(&mut self, n: &NodeProto, l: Layer) -> Result<()> {
        let v = self.value(n, 0)?;
        if v.grouped.is_some() {
            bail!("{}: reads maps in the middle of a channel shuffle", at(n));
        }
        let i = self.push(l, &[&v]);
        self.set_layout(&n.output[0], i, v.shape, v.nhwc);
        Ok(())
    }

    /// Mul, Sub or Div of two values: x·sigmoid(x) becomes a SiLU node,
    /// anything else a node of the op, broadcasting per-channel values
    /// ([N, C, 1, 1], a squeeze-excite gate) over maps.
    pub(super) fn binary(&mut self, n: &NodeProto, a: Value, b: Value) -> Result<()> {
        if n.op_type == "Mul" {
            for (x, s, s_name) in [(&a, &b, &n.input[1]), (&b, &a, &n.input[0])] {
                let Some(j) = s.node else { continue };
                let silu = self.nodes[j].op == Layer::Sigmoid
                    && self.last == Some(j)
                    && self.uses.get(s_name) == Some(&1)
                    && {
                        let got = self.reads(j);
                        got == [x.node] || (x.node.is_none() && got == [Some(0)])
                    }
                    && x.shape == s.shape;
                if silu {
                    self.nodes[j].op = Layer::Silu;
                    self.set_layout(&n.output[0], j, x.shape, x.nhwc);
                    return Ok(());
                }
            }
        }
        let l = match n.op_type.as_str() {
            "Mul" => Layer::Mul,
            "Sub" => Layer::Sub,
            "Div" => Layer::Div,
            op => bail!("{}: {op} of two maps is not supported", at(n)),
        };
        let Some(shape) = crate::net::binary_shape(a.shape, b.shape) else {
            bail!(
                "{}: its inputs' shapes {:?} and {:?} neither agree nor broadcast per channel",
                at(n),
                a.shape,
                b.shape
            );
        };
        let big = if shape == a.shape { &a } else { &b };
        let small = if shape == a.shape { &b } else { &a };
        if small.shape == big.shape && a.nhwc != b.nhwc {
            bail!("{}: its inputs are laid out differently", at(n));
        }
        let nhwc = big.nhwc;
        let i = self.push(l, &[&a, &b]);
        self.set_layout(&n.output[0], i, shape, nhwc);
        Ok(())
    }

    /// LayerNormalization over the channels: the last axis of channels-last
    /// maps or of a vector (ConvNeXt), or axis 1 of 1x1 maps.
    pub(super) fn layer_norm(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let axis = attr_i(n, "axis", -1);
        // A fused decomposition normalises over its one axis only.
        let one_axis = attr_i(n, "zfvis_one_axis", 0) == 1;
        let c = match (v.shape, v.nhwc) {
            (Shape::Maps { c, .. }, true) if axis == -1 || axis == 3 => c,
            (Shape::Maps { c, side }, false)
                if (axis == 1 || axis == -3) && (side == 1 || one_axis) =>
            {
                c
            }
            (Shape::Flat(f), _) if axis == -1 || axis == 1 => f,
            (Shape::Tokens { c, .. }, _) if axis == -1 || axis == 2 => c,
            _ => bail!(
                "{}: only a layer norm over the channels is supported (axis {axis} of {:?}{})",
                at(n),
                v.shape,
                if v.nhwc { " channels-last" } else { "" }
            ),
        };
        let vector = |k: usize, fill: f64| -> Result<Tensor> {
            let t = match n.input.get(k).filter(|s| !s.is_empty()) {
                Some(s) => self.get(s, n)?.to_kind(Kind::Float).reshape([-1]),
                None => Tensor::full([c], fill, (Kind::Float, tch::Device::Cpu)),
            };
            if t.size() != [c] {
                bail!("{}: {} values for {c} channels", at(n), t.size()[0]);
            }
            Ok(t)
        };
        let (w, b) = (vector(1, 1.0)?, vector(2, 0.0)?);
        let name = self.fresh(layer_name(n, &format!("norm{}", self.nodes.len())));
        self.tensors.insert(format!("{name}.weight"), w);
        self.tensors.insert(format!("{name}.bias"), b);
        let eps = attr_f(n, "epsilon", 1e-5);
        let i = self.push(Layer::ChannelNorm { name, c, eps }, &[&v]);
        self.set_layout(&n.output[0], i, v.shape, v.nhwc);
        Ok(())
    }

    /// MatMul of channels-last maps by a [C_in, C_out] constant: a linear
    /// layer on the channels at every position, read as a 1x1 conv.
    pub(super) fn channel_linear(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        let Shape::Maps { c, side } = v.shape else {
            unreachable!("maps")
        };
        let w0 = self.get(required(n, 1, "weight")?, n)?.to_kind(Kind::Float);
        if w0.dim() != 2 || w0.size()[0] != c {
            bail!(
                "{}: its weight has shape {:?}, not [{c}, outputs]",
                at(n),
                w0.size()
            );
        }
        let o = w0.size()[1];
        self.n_conv += 1;
        let name = self.fresh(layer_name(n, &format!("conv{}", self.n_conv)));
        let w = w0.tr().contiguous().reshape([o, c, 1, 1]);
        self.tensors.insert(format!("{name}.weight"), w);
        self.tensors.insert(
            format!("{name}.bias"),
            Tensor::zeros([o], (Kind::Float, tch::Device::Cpu)),
        );
        let i = self.push(Layer::conv(&name, c, o, Window::new(1, 1, 0)), &[v]);
        self.set_layout(&n.output[0], i, Shape::Maps { c: o, side }, true);
        Ok(())
    }

    /// Squeeze of 1x1 maps to a vector (a flatten), or Unsqueeze of a vector
    /// that was flattened from 1x1 maps back to them.
    pub(super) fn squeeze(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => Vec::<i64>::try_from(&self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]))?,
            None => attr_ints(n, "axes").ok_or_else(|| anyhow!("{}: no axes", at(n)))?,
        };
        match (n.op_type.as_str(), v.shape) {
            ("Squeeze", Shape::Maps { c, side: 1 }) => {
                let mut a: Vec<i64> = axes
                    .iter()
                    .map(|&x| if x < 0 { x + 4 } else { x })
                    .collect();
                a.sort();
                let spatial: &[i64] = if v.nhwc { &[1, 2] } else { &[2, 3] };
                if !a.is_empty() && a != spatial {
                    bail!(
                        "{}: only a squeeze of the 1x1 spatial axes is supported (axes {axes:?})",
                        at(n)
                    );
                }
                let i = self.push(Layer::Flatten, &[&v]);
                self.flattened.insert(i, v);
                self.set(&n.output[0], i, Shape::Flat(c));
                Ok(())
            }
            ("Unsqueeze", Shape::Flat(c)) => {
                let mut a: Vec<i64> = axes
                    .iter()
                    .map(|&x| if x < 0 { x + 4 } else { x })
                    .collect();
                a.sort();
                let nhwc = match a.as_slice() {
                    [2, 3] => false,
                    [1, 2] => true,
                    _ => bail!("{}: only an unsqueeze of a vector to 1x1 maps is supported (axes {axes:?})", at(n)),
                };
                self.unflatten(n, &v, c, nhwc)
            }
            _ => bail!(
                "{}: only Squeeze of 1x1 maps and Unsqueeze of their vector are supported",
                at(n)
            ),
        }
    }

    /// A vector of `c` values back to the 1x1 maps it was flattened from.
    pub(super) fn unflatten(&mut self, n: &NodeProto, v: &Value, c: i64, nhwc: bool) -> Result<()> {
        let maps = v.node.and_then(|i| self.flattened.get(&i)).cloned();
        match maps {
            Some(mut m) if m.shape == (Shape::Maps { c, side: 1 }) => {
                m.nhwc = nhwc;
                self.values.insert(n.output[0].clone(), m);
                Ok(())
            }
            _ => bail!(
                "{}: only a vector flattened from 1x1 maps can become maps again",
                at(n)
            ),
        }
    }

    /// Gather along axis 0 of a vector flattened from 1x1 maps, by the
    /// indices 0..C shaped as those maps (the dynamo exporter's as_strided
    /// after a flatten): the maps again.
    pub(super) fn gather(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let idx = self
            .get(required(n, 1, "indices")?, n)?
            .to_kind(Kind::Int64);
        let Shape::Flat(c) = v.shape else {
            bail!("{}: only a Gather of a vector is supported", at(n));
        };
        let arange = Tensor::arange(c, (Kind::Int64, tch::Device::Cpu));
        let in_order = idx.numel() as i64 == c && idx.reshape([-1]).equal(&arange);
        match (attr_i(n, "axis", 0), idx.size().as_slice(), in_order) {
            (0, [1, cc, 1, 1], true) if *cc == c => self.unflatten(n, &v, c, false),
            (0, [1, 1, 1, cc], true) if *cc == c => self.unflatten(n, &v, c, true),
            (0, [_], true) => self.alias(n),
            _ => bail!(
                "{}: only a Gather of a whole vector in order is supported",
                at(n)
            ),
        }
    }

    /// A Slice of maps along the channels (constant bounds, step 1).
    pub(super) fn slice(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let ints = |k: usize, name: &str| -> Result<Option<Vec<i64>>> {
            match n.input.get(k).filter(|s| !s.is_empty()) {
                Some(s) => Ok(Some(Vec::<i64>::try_from(
                    &self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]),
                )?)),
                None => Ok(attr_ints(n, name)),
            }
        };
        let (starts, ends) = (ints(1, "starts")?, ints(2, "ends")?);
        let axes = ints(3, "axes")?;
        let steps = ints(4, "steps")?;
        let Shape::Maps { c, side } = v.shape else {
            bail!(
                "{}: only a Slice of maps along the channels is supported",
                at(n)
            );
        };
        let (Some([s0]), Some([e0]), Some([a0])) =
            (starts.as_deref(), ends.as_deref(), axes.as_deref())
        else {
            bail!("{}: only a Slice of one axis is supported", at(n));
        };
        if !channel_axis(&v, *a0) || steps.is_some_and(|s| s != [1]) {
            bail!(
                "{}: only a Slice along the channels with step 1 is supported",
                at(n)
            );
        }
        let clamp = |x: i64| if x < 0 { (x + c).max(0) } else { x.min(c) };
        let (start, end) = (clamp(*s0), clamp(*e0));
        if end <= start {
            bail!("{}: an empty slice of channels {s0}..{e0}", at(n));
        }
        let len = end - start;
        let i = self.push(Layer::Channels { start, len }, &[&v]);
        self.set_layout(&n.output[0], i, Shape::Maps { c: len, side }, v.nhwc);
        Ok(())
    }

    /// A Split of maps along the channels: one channels node per output.
    pub(super) fn split(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!(
                "{}: only a Split of maps along the channels is supported",
                at(n)
            );
        };
        if !channel_axis(&v, attr_i(n, "axis", 0)) {
            bail!("{}: only a Split along the channels is supported", at(n));
        }
        let k = n.output.len() as i64;
        let sizes = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => Vec::<i64>::try_from(&self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]))?,
            None => attr_ints(n, "split").unwrap_or_else(|| {
                let each = (c + k - 1) / k;
                (0..k).map(|j| each.min(c - j * each)).collect()
            }),
        };
        if sizes.len() as i64 != k || sizes.iter().any(|&s| s < 1) || sizes.iter().sum::<i64>() != c
        {
            bail!("{}: split sizes {sizes:?} do not cover {c} channels", at(n));
        }
        let mut start = 0;
        for (out, len) in n.output.iter().zip(sizes) {
            let i = self.push(Layer::Channels { start, len }, &[&v]);
            self.set_layout(out, i, Shape::Maps { c: len, side }, v.nhwc);
            start += len;
        }
        Ok(())
    }
}
