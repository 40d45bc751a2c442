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
            if !matches!(n.op_type.as_str(), "Add" | "Sum") || ins.len() < 2 {
                bail!("{}: only Add/Sum of maps (a residual connection) is supported between two layers' outputs", at(n));
            }
            let vs: Vec<Value> = (0..ins.len())
                .map(|k| self.nchw(n, k))
                .collect::<Result<_>>()?;
            if vs.iter().any(|v| v.shape != vs[0].shape) {
                bail!("{}: adds values of different shapes", at(n));
            }
            let i = self.push(Layer::Add, &vs.iter().collect::<Vec<_>>());
            self.set(&n.output[0], i, vs[0].shape);
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
        let v = self.nchw(n, 1 - consts[0])?;
        let c = match v.shape {
            Shape::Maps { c, .. } => c,
            Shape::Flat(f) => f,
        };
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
                matches!(self.nodes[i].op, Layer::Linear { .. })
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
        let (one, zero) = (k.ones_like(), k.zeros_like());
        let (scale, shift) = match n.op_type.as_str() {
            "Mul" => (k, zero),
            "Div" => (k.reciprocal(), zero),
            "Sub" => (one, -k),
            _ => (one, k),
        };
        self.affine(n, &v, scale, shift)
    }

    /// Channel concatenation of maps.
    pub(super) fn concat(&mut self, n: &NodeProto) -> Result<()> {
        let vs: Vec<Value> = (0..n.input.len())
            .map(|k| self.nchw(n, k))
            .collect::<Result<_>>()?;
        let axis = attr_i(n, "axis", 1);
        let shape = crate::net::concat_shape(&vs.iter().map(|v| v.shape).collect::<Vec<_>>());
        match (axis, shape) {
            (1 | -3, Some(s)) => {
                let i = self.push(Layer::Concat, &vs.iter().collect::<Vec<_>>());
                self.set(&n.output[0], i, s);
                Ok(())
            }
            _ => bail!(
                "{}: only a concatenation of maps of one size along channels is supported",
                at(n)
            ),
        }
    }
}
