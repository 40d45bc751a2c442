//! Gemm, and MatMul + Add, as linear layers.

use super::*;

impl Reader<'_> {
    /// Gemm, or MatMul (its bias Add is read by `arithmetic`).
    pub(super) fn linear(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        if let (Shape::Maps { .. }, true, "MatMul") = (v.shape, v.nhwc, n.op_type.as_str()) {
            return self.channel_linear(n, &v);
        }
        let Shape::Flat(f) = v.shape else {
            bail!("{}: a fully connected layer before any Flatten", at(n));
        };
        let (mut w, b) = self.weights(n)?;
        let (o, inp) = (w.size()[0], w.size()[1]);
        if inp != f || b.size() != [o] {
            bail!(
                "{}: weight {:?} / bias {:?} do not fit {f} inputs",
                at(n),
                w.size(),
                b.size()
            );
        }
        if let Some((c, h, ww)) = v.hwc {
            // Columns in channels-last order -> channels-first.
            w = w
                .reshape([o, h, ww, c])
                .permute([0, 3, 1, 2])
                .reshape([o, f]);
        }
        self.n_fc += 1;
        let name = self.fresh(layer_name(n, &format!("fc{}", self.n_fc)));
        self.tensors
            .insert(format!("{name}.weight"), w.contiguous());
        self.tensors.insert(format!("{name}.bias"), b.contiguous());
        let i = self.push(Layer::linear(&name, f, o), &[&v]);
        self.set(&n.output[0], i, Shape::Flat(o));
        Ok(())
    }

    /// A Gemm's or MatMul's weight as [out, in] (alpha applied) and bias
    /// ([out]; beta applied, zeros for MatMul, whose bias Add comes after).
    pub(super) fn weights(&self, n: &NodeProto) -> Result<(Tensor, Tensor)> {
        let w0 = self.get(required(n, 1, "weight")?, n)?.to_kind(Kind::Float);
        if w0.dim() != 2 {
            bail!(
                "{}: its weight has shape {:?}; a fully connected layer's is 2-d",
                at(n),
                w0.size()
            );
        }
        let (mut w, b): (Tensor, Tensor);
        if n.op_type == "Gemm" {
            if attr_i(n, "transA", 0) != 0 {
                bail!("{}: transA is not supported", at(n));
            }
            w = if attr_i(n, "transB", 0) == 1 {
                w0
            } else {
                w0.tr()
            };
            #[allow(clippy::assign_op_pattern)] // w may be a constant's view
            {
                w = w * attr_f(n, "alpha", 1.0);
            }
            b = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(s) => self.get(s, n)?.reshape([-1]) * attr_f(n, "beta", 1.0),
                None => Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu)),
            };
        } else {
            w = w0.tr();
            b = Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu));
        }
        Ok((w, b))
    }
}
