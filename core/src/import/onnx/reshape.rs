//! Flatten/Reshape, Transpose (channels-last stretches) and constant folding of shape arithmetic.

use super::*;

/// The value's shape as ONNX's Shape gives it (batch 1).
pub(super) fn shape_tensor(v: &Value) -> Tensor {
    if let Some(view) = &v.view {
        return Tensor::from_slice(&view.size());
    }
    let dims: Vec<i64> = match (v.shape, v.nhwc) {
        (Shape::Maps { c, side }, false) => vec![1, c, side, side],
        (Shape::Maps { c, side }, true) => vec![1, side, side, c],
        (Shape::Flat(f), _) => vec![1, f],
        (Shape::Tokens { .. }, _) => v.shape.size(1),
    };
    Tensor::from_slice(&dims)
}

/// A Transpose's permutation; without one, ONNX reverses the axes.
pub(super) fn perm(n: &NodeProto, dims: usize) -> Vec<i64> {
    attr_ints(n, "perm").unwrap_or_else(|| (0..dims as i64).rev().collect())
}

/// Evaluate a shape-arithmetic op on constants.
pub(super) fn fold(n: &NodeProto, ins: &[Tensor]) -> Result<Tensor> {
    let x = &ins[0];
    // An input (opset 13 on) or the attribute of the same name; None if neither.
    let maybe = |k: usize, name: &str| -> Result<Option<Vec<i64>>> {
        match ins.get(k) {
            Some(t) => Ok(Some(crate::net::values(t, name)?)),
            None => Ok(attr_ints(n, name)),
        }
    };
    let ints = |k: usize, name: &str| -> Result<Vec<i64>> {
        maybe(k, name)?.ok_or_else(|| anyhow!("{}: no {name}", at(n)))
    };
    let axis = |a: i64, dims: i64| if a < 0 { a + dims } else { a };
    Ok(match n.op_type.as_str() {
        "Identity" => x.shallow_clone(),
        "Cast" => match attr_i(n, "to", 1) {
            1 | 10 | 11 => x.to_kind(Kind::Float),
            _ => x.to_kind(Kind::Int64),
        },
        "Gather" => {
            let a = axis(attr_i(n, "axis", 0), x.dim() as i64);
            let idx = ins[1].to_kind(Kind::Int64);
            let flat = idx.reshape([-1]);
            let size = x.size()[a as usize];
            let flat = flat.remainder(size);
            let g = x.index_select(a, &flat);
            if idx.dim() == 0 {
                g.squeeze_dim(a)
            } else {
                g
            }
        }
        "Unsqueeze" => {
            let mut t = x.shallow_clone();
            let mut axes = ints(1, "axes")?;
            let out_dims = x.dim() as i64 + axes.len() as i64;
            axes = axes.iter().map(|&a| axis(a, out_dims)).collect();
            axes.sort();
            for a in axes {
                t = t.unsqueeze(a);
            }
            t
        }
        "Squeeze" => match maybe(1, "axes")? {
            Some(axes) => {
                let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, x.dim() as i64)).collect();
                axes.sort();
                axes.iter()
                    .rev()
                    .fold(x.shallow_clone(), |t, &a| t.squeeze_dim(a))
            }
            None => x.squeeze(),
        },
        "Concat" => {
            let a = axis(attr_i(n, "axis", 0), x.dim() as i64);
            let k = if ins.iter().any(|t| t.kind() == Kind::Float) {
                Kind::Float
            } else {
                Kind::Int64
            };
            Tensor::cat(&ins.iter().map(|t| t.to_kind(k)).collect::<Vec<_>>(), a)
        }
        "Slice" => {
            let starts = ints(1, "starts")?;
            let ends = ints(2, "ends")?;
            let axes = maybe(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = maybe(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
            if ends.len() != starts.len()
                || axes.len() != starts.len()
                || steps.len() != starts.len()
            {
                bail!(
                    "{}: starts, ends, axes and steps of different lengths",
                    at(n)
                );
            }
            let mut t = x.shallow_clone();
            for k in 0..starts.len() {
                let a = axis(axes[k], x.dim() as i64);
                let size = t.size()[a as usize];
                let step = steps[k];
                if step == 0 {
                    bail!("{}: a slice step of 0", at(n));
                }
                // ONNX's clamping: [0, size] going forward, [-1, size - 1] back.
                let (lo, hi) = if step > 0 { (0, size) } else { (-1, size - 1) };
                let clamp = |v: i64| {
                    let v = if v < 0 { v.saturating_add(size) } else { v };
                    v.clamp(lo, hi)
                };
                let (b, e) = (clamp(starts[k]), clamp(ends[k]));
                let picked: Vec<i64> = if step > 0 {
                    (b..e).step_by(step as usize).collect()
                } else {
                    (e + 1..=b)
                        .rev()
                        .step_by(step.unsigned_abs() as usize)
                        .collect()
                };
                t = t.index_select(a, &Tensor::from_slice(&picked));
            }
            t
        }
        "Reshape" => {
            let shape = ints(1, "shape")?;
            let shape: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(k, &d)| if d == 0 { x.size()[k] } else { d })
                .collect();
            x.reshape(shape.as_slice())
        }
        "Flatten" => x.flatten(attr_i(n, "axis", 1), -1),
        "Transpose" => x.permute(perm(n, x.dim()).as_slice()),
        "Mul" => x * &ins[1],
        "Add" => x + &ins[1],
        "Sub" => x - &ins[1],
        "Div" => {
            if x.kind() == Kind::Int64 {
                x.floor_divide(&ins[1])
            } else {
                x / &ins[1]
            }
        }
        _ => return super::consts::fold(n, ins),
    })
}

impl Reader<'_> {
    /// Flatten (axis 1) or Reshape to [N, features]: a flatten of maps (in
    /// the maps' layout), nothing for a flat value.
    pub(super) fn flatten(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        if n.op_type == "Reshape" {
            if let Some(done) = self.reshape_maps(n, &v)? {
                return done;
            }
        }
        let (c, side) = match v.shape {
            Shape::Flat(_) => return self.alias(n),
            Shape::Maps { c, side } => (c, side),
            Shape::Tokens { .. } => bail!("{}: a reshape of tokens", n.name),
        };
        let f = c * side * side;
        if n.op_type == "Flatten" {
            if attr_i(n, "axis", 1) != 1 {
                bail!("{}: only Flatten with axis 1 is supported", at(n));
            }
        } else {
            let shape = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(s) => {
                    Vec::<i64>::try_from(&self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]))?
                }
                None => attr_ints(n, "shape").ok_or_else(|| anyhow!("{}: no shape", at(n)))?,
            };
            // [batch, features], or one axis (the dynamo exporter's flatten
            // of pooled 1x1 maps at batch 1).
            let fits = match shape.as_slice() {
                [b, g] => (*b == -1 || *b == 0 || *b == 1) && (*g == f || *g == -1),
                [g] => side == 1 && (*g == f || *g == -1),
                _ => false,
            };
            if !fits {
                bail!(
                    "{}: only a reshape to [batch, {f}] (a flatten) is supported, not {shape:?}",
                    at(n)
                );
            }
        }
        let i = self.push(Layer::Flatten, &[&v]);
        if side == 1 {
            self.flattened.insert(i, v.clone());
        }
        self.values.insert(
            n.output[0].clone(),
            Value {
                node: Some(i),
                shape: Shape::Flat(f),
                nhwc: false,
                hwc: v.nhwc.then_some((c, side, side)),
                grouped: None,
                view: None,
            },
        );
        Ok(())
    }

    /// The Reshapes that keep maps: to [N, g, C/g, H, W] and back after the
    /// group axes were swapped (a channel shuffle), and a vector flattened
    /// from 1x1 maps back to [N, C, 1, 1] or [N, 1, 1, C]. None: another
    /// reshape (a flatten, read by the caller).
    fn reshape_maps(&mut self, n: &NodeProto, v: &Value) -> Result<Option<Result<()>>> {
        let Some(s) = n.input.get(1).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let shape = Vec::<i64>::try_from(&self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]))?;
        let batch = |b: i64| b == 1 || b == -1 || b == 0;
        Ok(match (v.shape, v.grouped, shape.as_slice()) {
            (Shape::Maps { c, side }, None, [b, g, cg, h, w])
                if !v.nhwc
                    && batch(*b)
                    && *g > 0
                    && (*cg == -1 || g * cg == c)
                    && c % g == 0
                    && [*h, *w] == [side, side] =>
            {
                let mut m = v.clone();
                m.grouped = Some((*g, false));
                self.values.insert(n.output[0].clone(), m);
                Some(Ok(()))
            }
            (Shape::Maps { c, side }, Some((g, true)), [b, cc, h, w])
                if batch(*b) && (*cc == c || *cc == -1) && [*h, *w] == [side, side] =>
            {
                let mut m = v.clone();
                m.grouped = None;
                let i = self.push(Layer::ChannelShuffle { groups: g }, &[&m]);
                self.set(&n.output[0], i, v.shape);
                Some(Ok(()))
            }
            (Shape::Maps { c, side }, None, [b, cc, h, w])
                if !v.nhwc && batch(*b) && (*cc == c || *cc == -1) && [*h, *w] == [side, side] =>
            {
                // A reshape to the shape it has.
                Some(self.alias(n))
            }
            (_, Some(_), _) => bail!(
                "{}: only the end of a channel shuffle may reshape grouped maps (to {shape:?})",
                at(n)
            ),
            (Shape::Flat(c), None, [b, x, y, z]) if batch(*b) => {
                let nhwc = match [*x, *y, *z] {
                    [cc, 1, 1] if cc == c || cc == -1 => false,
                    [1, 1, cc] if cc == c || cc == -1 => true,
                    _ => bail!(
                        "{}: only a reshape of a vector to 1x1 maps is supported, not {shape:?}",
                        at(n)
                    ),
                };
                Some(self.unflatten(n, v, c, nhwc))
            }
            _ => None,
        })
    }

    /// NHWC <-> NCHW transposes of maps (tf2onnx's around a Keras network),
    /// and the swap of the group axes in a channel shuffle.
    pub(super) fn transpose(&mut self, n: &NodeProto) -> Result<()> {
        let mut v = self.value(n, 0)?;
        let perm = perm(n, 4);
        if let (Some((g, false)), [0, 2, 1, 3, 4]) = (v.grouped, perm.as_slice()) {
            v.grouped = Some((g, true));
            self.values.insert(n.output[0].clone(), v);
            return Ok(());
        }
        match (perm.as_slice(), v.nhwc, v.shape) {
            ([0, 3, 1, 2], true, Shape::Maps { .. }) => v.nhwc = false,
            ([0, 2, 3, 1], false, Shape::Maps { .. }) => v.nhwc = true,
            _ => bail!(
                "{}: only NHWC <-> NCHW transposes of maps are supported (perm {perm:?})",
                at(n)
            ),
        }
        self.values.insert(n.output[0].clone(), v);
        Ok(())
    }
}
