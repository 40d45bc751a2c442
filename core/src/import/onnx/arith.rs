//! Add/Sum, Mul/Sub/Div by constants, Concat.

use super::*;

impl Reader<'_> {
    /// Add/Sum of two maps (a residual connection), or Mul/Add/Sub/Div by a
    /// per-channel constant (an affine node), or a linear layer's bias Add.
    pub(super) fn arithmetic(&mut self, n: &NodeProto) -> Result<()> {
        let ins: Vec<String> = n.input.iter().filter(|i| !i.is_empty()).cloned().collect();
        let consts: Vec<usize> = (0..ins.len())
            .filter(|&k| self.consts.contains_key(&ins[k]))
            .collect();
        if consts.is_empty() {
            if ins.len() < 2 {
                bail!("{}: {} of one input is not supported", at(n), n.op_type);
            }
            let vs: Vec<Value> = (0..ins.len())
                .map(|k| self.value(n, k))
                .collect::<Result<_>>()?;
            if !matches!(n.op_type.as_str(), "Add" | "Sum") {
                if vs.len() != 2 {
                    bail!("{}: {} of {} inputs", at(n), n.op_type, vs.len());
                }
                return self.binary(n, vs[0].clone(), vs[1].clone());
            }
            if vs
                .iter()
                .any(|v| v.shape != vs[0].shape || v.nhwc != vs[0].nhwc)
            {
                bail!("{}: adds values of different shapes or layouts", at(n));
            }
            let i = self.push(Layer::Add, &vs.iter().collect::<Vec<_>>());
            self.set_layout(&n.output[0], i, vs[0].shape, vs[0].nhwc);
            return Ok(());
        }
        if ins.len() != 2
            || consts.len() != 1
            || (consts[0] == 0 && matches!(n.op_type.as_str(), "Sub" | "Div"))
        {
            bail!(
                "{}: only a map {} a per-channel constant is supported",
                at(n),
                n.op_type
            );
        }
        let v = self.value(n, 1 - consts[0])?;
        if v.grouped.is_some() {
            bail!("{}: reads maps in the middle of a channel shuffle", at(n));
        }
        let c = v.shape.channels();
        let k = self.consts[&ins[consts[0]]].to_kind(Kind::Float);
        let k = per_channel(&k, &v, c).ok_or_else(|| {
            anyhow!(
                "{}: its constant of shape {:?} is not per channel of {c} channels",
                at(n),
                k.size()
            )
        })?;
        // The bias of a MatMul read just before.
        if n.op_type == "Add" {
            if let Some(i) = v.node.filter(|&i| {
                matches!(self.nodes[i].op, Layer::Linear { .. } | Layer::Conv { .. })
                    && self.uses.get(&ins[1 - consts[0]]) == Some(&1)
                    && self.last == Some(i)
            }) {
                let (_, bn) = self.nodes[i].op.tensor_names().expect("linear");
                let b = &self.tensors[&bn] + &k;
                self.tensors.insert(bn, b);
                self.values.insert(n.output[0].clone(), v);
                return Ok(());
            }
        }
        // A constant added to (or subtracted from) the affine node read
        // just before: its shift (tf2onnx's batch norm as Mul then Add).
        if let (Some(i), "Add" | "Sub") = (v.node, n.op_type.as_str()) {
            let only = self.uses.get(&ins[1 - consts[0]]) == Some(&1) && self.last == Some(i);
            if let (true, Layer::Affine { name, .. }) = (only, &self.nodes[i].op) {
                let key = format!("{name}.shift");
                let k = if n.op_type == "Sub" { -k } else { k };
                let shifted = &self.tensors[&key] + &k;
                self.tensors.insert(key, shifted);
                self.values.insert(n.output[0].clone(), v);
                return Ok(());
            }
        }
        let (one, zero) = (k.ones_like(), k.zeros_like());
        let (scale, shift) = match n.op_type.as_str() {
            "Mul" => (k, zero),
            "Div" => (k.reciprocal(), zero),
            "Sub" => (one, -k),
            _ => (one, k),
        };
        self.affine(n, &v, scale, shift)
    }

    /// Channel concatenation of maps (axis 1, or the last axis of
    /// channels-last maps).
    pub(super) fn concat(&mut self, n: &NodeProto) -> Result<()> {
        let vs: Vec<Value> = (0..n.input.len())
            .map(|k| self.value(n, k))
            .collect::<Result<_>>()?;
        let nhwc = vs.first().is_some_and(|v| v.nhwc);
        if vs.iter().any(|v| v.nhwc != nhwc || v.grouped.is_some()) {
            bail!("{}: concatenates maps laid out differently", at(n));
        }
        let axis = match (attr_i(n, "axis", 1), nhwc) {
            (3 | -1, true) => 1,
            (_, true) => 0,
            (a, false) => a,
        };
        let shape = crate::net::concat_shape(&vs.iter().map(|v| v.shape).collect::<Vec<_>>());
        match (axis, shape) {
            (1 | -3, Some(s)) => {
                let i = self.push(Layer::Concat, &vs.iter().collect::<Vec<_>>());
                self.set_layout(&n.output[0], i, s, nhwc);
                Ok(())
            }
            _ => bail!(
                "{}: only a concatenation of maps of one size along channels is supported",
                at(n)
            ),
        }
    }
}
