//! BatchNormalization (folded into its conv, or an affine node), per-channel affine maps, Clip.

use super::*;

/// A constant broadcast per channel of `v` ([], [1], [c], [1, c, 1, 1],
/// [c, 1, 1]; [c] last for channels-last) as a [c] vector.
pub(super) fn per_channel(k: &Tensor, v: &Value, c: i64) -> Option<Tensor> {
    let n = k.numel() as i64;
    let sz = k.size();
    let ok = match n {
        1 => true,
        _ if n == c => match v.shape {
            Shape::Flat(_) | Shape::Tokens { .. } => true,
            Shape::Maps { .. } => {
                let dims: Vec<i64> = sz.iter().copied().skip_while(|&d| d == 1).collect();
                dims.first() == Some(&c) && dims[1..].iter().all(|&d| d == 1)
            }
        },
        _ => false,
    };
    ok.then(|| k.reshape([-1]).expand([c], false).contiguous())
}

impl Reader<'_> {
    /// Batch norm: folded into the conv before it when that conv's output
    /// feeds nothing else, otherwise a per-channel affine node.
    pub(super) fn batch_norm(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let c = v.shape.channels();
        let what = ["input", "scale", "bias", "mean", "variance"];
        let g = |k: usize| -> Result<Tensor> {
            let t = self.get(required(n, k, what[k])?, n)?.reshape([-1]);
            if t.size() != [c] {
                bail!(
                    "{}: its {} has {} values for {c} channels",
                    at(n),
                    what[k],
                    t.size()[0]
                );
            }
            Ok(t)
        };
        let (gamma, beta, mean, var) = (g(1)?, g(2)?, g(3)?, g(4)?);
        let eps = attr_f(n, "epsilon", 1e-5);
        let conv = v.node.filter(|&i| {
            matches!(self.nodes[i].op, Layer::Conv { .. })
                && self.uses.get(required(n, 0, "input").unwrap_or("")) == Some(&1)
                && self.nodes[i].name.as_deref() == n.input.first().map(String::as_str)
        });
        if let Some(i) = conv {
            let (wn, bn) = self.nodes[i].op.tensor_names().expect("a conv");
            let (w, b) = fold_bn(
                &self.tensors[&wn],
                &self.tensors[&bn],
                &gamma,
                &beta,
                &mean,
                &var,
                eps,
            );
            self.tensors.insert(wn, w);
            self.tensors.insert(bn, b);
            self.set(&n.output[0], i, v.shape);
            return Ok(());
        }
        let (scale, shift) = bn_affine(&gamma, &beta, &mean, &var, eps);
        self.affine(n, &v, scale, shift)
    }

    /// A per-channel `x·scale + shift` node.
    pub(super) fn affine(
        &mut self,
        n: &NodeProto,
        v: &Value,
        scale: Tensor,
        shift: Tensor,
    ) -> Result<()> {
        let c = v.shape.channels();
        let name = self.fresh(layer_name(n, &format!("affine{}", self.nodes.len())));
        self.tensors.insert(format!("{name}.scale"), scale);
        self.tensors.insert(format!("{name}.shift"), shift);
        let i = self.push(Layer::Affine { name, c }, &[v]);
        self.set_layout(&n.output[0], i, v.shape, v.nhwc);
        Ok(())
    }

    /// ReLU, or Clip(0, max): ReLU6 and its kin.
    pub(super) fn clip(&self, n: &NodeProto) -> Result<Layer> {
        let (lo, hi) = if n.input.len() > 1 {
            let v = |k: usize| -> Result<Option<f64>> {
                match n.input.get(k).filter(|s| !s.is_empty()) {
                    Some(s) => Ok(Some(self.get(s, n)?.double_value(&[]))),
                    None => Ok(None),
                }
            };
            (v(1)?, v(2)?)
        } else {
            (
                attr(n, "min").map(|a| a.f as f64),
                attr(n, "max").map(|a| a.f as f64),
            )
        };
        match (lo, hi) {
            (Some(0.0), None) => Ok(Layer::Relu),
            (Some(l), Some(h)) if l == 0.0 && h >= 3.0e38 => Ok(Layer::Relu),
            (Some(l), Some(h)) if l == 0.0 && h > 0.0 => Ok(Layer::Clip { max: h }),
            _ => bail!(
                "{}: only Clip with min 0 (a ReLU, ReLU6) is supported",
                at(n)
            ),
        }
    }
}
