//! Self-attention in ONNX graphs (see `tokens`): q kᵀ of two index views
//! of one [q | k | v] node, scaled, a bias added (Swin's relative positions
//! and its shifted windows' mask), Softmax, times a third view, read as an
//! attention or window attention node once the views are checked, element
//! by element, to be its heads.

use super::tokens::{arange, describe, same, Scores, View};
use super::*;

impl Reader<'_> {
    /// Softmax of attention scores over their last axis.
    pub(super) fn softmax(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        let last = v.view.as_ref().map_or(0, |w| w.size().len() as i64 - 1);
        match v.view.as_deref() {
            Some(w @ View::Scores(Scores { softmax: false, .. }))
                if [-1, last].contains(&attr_i(n, "axis", -1)) =>
            {
                let view = w.scores(|s| s.softmax = true);
                self.put(&n.output[0], v, view);
                Ok(())
            }
            _ => bail!(
                "{}: a Softmax of {} (only attention scores' over their last axis is read)",
                at(n),
                describe(v)
            ),
        }
    }

    /// MatMul of two activations: q kᵀ (two views of one node), or the
    /// attention weights times v (an attention node).
    pub(super) fn product(&mut self, n: &NodeProto, a: &Value, b: &Value) -> Result<()> {
        let refuse = || {
            anyhow!(
                "{}: a MatMul of {} and {} (only self-attention's q kᵀ and weights·v are read)",
                at(n),
                describe(a),
                describe(b)
            )
        };
        if a.node != b.node {
            return Err(refuse());
        }
        match (a.view.as_deref(), self.index(b)) {
            (Some(View::Scores(Scores { softmax: true, .. })), Some((v, vs))) => {
                self.attend(n, a, v, vs)
            }
            (_, Some((k, ks))) => {
                let (q, qs) = self.index(a).ok_or_else(refuse)?;
                let mut shape = q.size();
                let last = shape.len() - 1;
                shape[last] = *k.size().last().unwrap_or(&0);
                // Swin V2: q and k divided by their norms first.
                let normed = |k: usize| n.input.get(k).and_then(|i| self.normed.get(i));
                let cosine = match (normed(0), normed(1)) {
                    (Some(a), Some(b)) => Some((a.shallow_clone(), b.shallow_clone())),
                    (None, None) => None,
                    _ => bail!("{}: q kᵀ with only one of them normalised", at(n)),
                };
                let view = View::Scores(Scores {
                    q,
                    k,
                    scale: qs * ks,
                    bias: Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu)),
                    shape,
                    softmax: false,
                    cosine,
                    logits: None,
                });
                self.put(&n.output[0], a, view);
                Ok(())
            }
            _ => Err(refuse()),
        }
    }

    /// softmax(scale·q kᵀ + bias)·v of views of one node holding [q | k |
    /// v]: an attention node (tokens; no bias) or a window attention node
    /// (Swin's maps), once q, k and v are checked to be its heads
    /// ([.., heads, N, d], kᵀ [.., heads, d, N]) and the scale 1/√d.
    fn attend(&mut self, n: &NodeProto, probs: &Value, v: Tensor, vscale: f64) -> Result<()> {
        let Some(View::Scores(sc)) = probs.view.as_deref() else {
            unreachable!("attention weights")
        };
        let (q, k, bias) = (&sc.q, &sc.k, &sc.bias);
        // Cosine attention's only scale is its per-head logits.
        let scale = if sc.cosine.is_some() {
            1.0 / (*q.size().last().unwrap_or(&1) as f64).sqrt() * sc.scale
        } else {
            sc.scale
        };
        if sc.cosine.is_none() && sc.logits.is_some() {
            bail!("{}: attention scores scaled per head", at(n));
        }
        let c3 = probs.shape.channels();
        let d = *q.size().last().unwrap_or(&0);
        let c = c3 / 3;
        if d == 0 || c3 % 3 != 0 || c % d != 0 {
            bail!(
                "{}: attention of heads of {d} channels on {c3} channels (expected [q | k | v])",
                at(n)
            );
        }
        let heads = c / d;
        let total = scale * vscale * (d as f64).sqrt();
        if (total - 1.0).abs() > 1e-4 || (vscale - 1.0).abs() > 1e-6 {
            bail!(
                "{}: attention scaled by {} (softmax(q kᵀ/√d) v is read, 1/√{d} = {})",
                at(n),
                scale * vscale,
                1.0 / (d as f64).sqrt()
            );
        }
        let fits = |eq: &Tensor, ek: &Tensor, ev: &Tensor| {
            let ends = |t: &Tensor, want: &Tensor| {
                let (a, b) = (t.size(), want.size());
                a.len() >= 2 && b.len() >= 2 && a[a.len() - 2..] == b[b.len() - 2..]
            };
            let kt = ek.transpose(-2, -1);
            ends(q, eq)
                && ends(k, &kt)
                && ends(&v, ev)
                && same(q, eq)
                && same(k, &kt)
                && same(&v, ev)
        };
        let refuse = || {
            anyhow!(
                "{}: attention whose q, k and v are not the heads of one [q | k | v] projection ({heads} heads of {d})",
                at(n)
            )
        };
        let mut qkv = probs.clone();
        qkv.view = None;
        let (i, shape, index) = match probs.shape {
            Shape::Tokens { side, prefix, .. } => {
                let tokens = prefix + side * side;
                let base = arange(tokens * c3).reshape([1, tokens, c3]);
                let (eq, ek, ev) = crate::net::heads_of(&base, heads);
                if !fits(&eq, &ek, &ev) {
                    return Err(refuse());
                }
                if bias.abs().max().double_value(&[]) > 0.0 || sc.cosine.is_some() {
                    bail!(
                        "{}: attention scores with a bias added or normalised",
                        at(n)
                    );
                }
                let i = self.push(Layer::Attention { heads }, &[&qkv]);
                let out = arange(tokens * c)
                    .reshape([tokens, heads, d])
                    .permute([1, 0, 2]);
                (i, Shape::Tokens { c, side, prefix }, out)
            }
            Shape::Maps { side, .. } => {
                let n_w = q.size()[q.dim() - 2];
                let w = (n_w as f64).sqrt().round() as i64;
                let base = arange(c3 * side * side).reshape([1, c3, side, side]);
                let shifts = if w >= side { vec![0] } else { (0..w).collect() };
                let shift = shifts
                    .into_iter()
                    .find(|&sh| {
                        let (eq, ek, ev) =
                            crate::net::heads_of(&crate::net::windows(&base, w, sh), heads);
                        w * w == n_w && side % w == 0 && fits(&eq, &ek, &ev)
                    })
                    .ok_or_else(refuse)?;
                // V2: q and k normalised over d, scaled per head.
                let logits = match (&sc.cosine, &sc.logits) {
                    (None, _) => None,
                    (Some((qn, kn)), Some(l)) if l.numel() as i64 == heads => {
                        let (eq, ek, _) =
                            crate::net::heads_of(&crate::net::windows(&base, w, shift), heads);
                        if !same(qn, &eq) || !same(kn, &ek) {
                            bail!("{}: q and k normalised over another axis than d", at(n));
                        }
                        Some(l.reshape([-1]).log())
                    }
                    _ => bail!("{}: cosine attention without a logit scale per head", at(n)),
                };
                let params = [c, heads, w, shift, side];
                let i = self.window_attention(n, &qkv, bias, logits, params)?;
                let out = arange(c * side * side).reshape([1, c, side, side]);
                let out = crate::net::windows(&out, w, shift);
                let nw = out.size()[0];
                let out = out.reshape([nw, w * w, heads, d]).permute([0, 2, 1, 3]);
                (i, Shape::Maps { c, side }, out)
            }
            Shape::Flat(_) => bail!("{}: attention over a vector", at(n)),
        };
        self.attended = true;
        // Swin's maps: channels-last in the graph.
        self.set_layout(&n.output[0], i, shape, matches!(shape, Shape::Maps { .. }));
        let w = self.values[&n.output[0]].clone();
        let index = index.reshape(q.size().as_slice());
        self.put(&n.output[0], &w, View::Index { index, scale: 1.0 });
        Ok(())
    }

    /// Swin's window attention node reading `qkv`, its relative position
    /// table read off the scores' `bias` (window 0, which the shift's mask
    /// leaves alone), checked to give that bias and the mask everywhere.
    fn window_attention(
        &mut self,
        n: &NodeProto,
        qkv: &Value,
        bias: &Tensor,
        logits: Option<Tensor>,
        [c, heads, w, shift, side]: [i64; 5],
    ) -> Result<usize> {
        let nn = w * w;
        let windows = (side / w) * (side / w);
        if bias.numel() as i64 != windows * heads * nn * nn {
            bail!(
                "{}: attention scores' bias of shape {:?}",
                at(n),
                bias.size()
            );
        }
        let bias = bias.reshape([windows, heads, nn, nn]);
        let rel = crate::net::relative_index(w, tch::Device::Cpu).reshape([-1]);
        let table = Tensor::zeros(
            [(2 * w - 1) * (2 * w - 1), heads],
            (Kind::Float, tch::Device::Cpu),
        );
        let first = bias.get(0).permute([1, 2, 0]).reshape([nn * nn, heads]);
        let table = table.index_put(&[Some(rel.shallow_clone())], &first, false);
        let relative = table
            .index_select(0, &rel)
            .view([nn, nn, heads])
            .permute([2, 0, 1])
            .unsqueeze(0);
        // Window by window: the mask broadcasts the bias over the windows.
        let want = match shift {
            0 => relative,
            _ => relative + crate::net::shift_mask(side, w, shift, tch::Device::Cpu).unsqueeze(1),
        };
        let off = (&want - &bias).abs().max().double_value(&[]);
        if off > 1e-4 {
            bail!(
                "{}: attention scores' bias is not a relative position bias{} (off by {off})",
                at(n),
                if shift > 0 {
                    " and the shifted windows' mask"
                } else {
                    ""
                }
            );
        }
        let name = self.fresh(layer_name(n, "window_attention"));
        self.tensors
            .insert(format!("{name}.relative_position_bias"), table.contiguous());
        let cosine = logits.is_some();
        let logits =
            logits.unwrap_or_else(|| Tensor::zeros([heads], (Kind::Float, tch::Device::Cpu)));
        self.tensors
            .insert(format!("{name}.logit_scale"), logits.to_kind(Kind::Float));
        let l = Layer::WindowAttention {
            name,
            c,
            heads,
            window: w,
            shift,
            cosine,
        };
        Ok(self.push(l, &[qkv]))
    }
}
