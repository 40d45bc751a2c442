//! Vision transformers in ONNX graphs. The exporters write a transformer's
//! tokens ([batch, tokens, channels]) and Swin's channels-last maps through
//! layout ops: Reshape, Transpose, Gather, Slice, Split, Squeeze,
//! Unsqueeze, Concat of the tokens, the heads' [batch, heads, tokens, d],
//! the TorchScript exporter's [tokens, batch, channels], Swin's windows
//! and its `torch.roll`. Those are followed as views: an index tensor
//! giving, for each element of the value (at batch 1), the element of a
//! node's output (flat, batch 1, as zfvis computes it) it is. A view is
//! then read as what it is:
//! - a node's tokens (or maps, either layout) in order: those again;
//! - one token's channels (a Gather): a `token` node;
//! - a conv's maps as patch tokens (Reshape to [1, C, S²], Transpose): an
//!   `embed` node, which a Concat of learned tokens before them (the class
//!   and distillation tokens) and an Add of a constant (the position
//!   embedding) complete;
//! - whole tokens' (positions') channels times a constant matrix (MatMul,
//!   Gemm): a linear layer on the tokens (a 1x1 conv on maps);
//! - 2x2 positions as 4C channels: Swin's patch merging; the top-left of
//!   maps: a crop;
//! - the mean of the patch tokens: a mean-pooling head;
//! - attention: see `attention`.
//!
//! Each residual Add of tokens after an MLP ends a block: a `grid` node
//! reading it (the patch tokens as maps) is the block's unit.

use super::*;

/// How a value is held when not as its node's output.
pub(super) enum View {
    /// `index`: for each element of the value (its shape at batch 1), the
    /// element of the node's output it is; the value is those times `scale`.
    Index { index: Tensor, scale: f64 },
    /// Attention scores (see [`Scores`]).
    Scores(Scores),
    /// The L2 norm over the last axis of the index view `index` (kept as
    /// [.., 1]; clamped and expanded it stays one): Swin V2's normalising
    /// of q and k.
    Norm { index: Tensor },
}

/// `logits`·`scale`·q kᵀ + `bias` for two index views of the node (q: [..,
/// N, d], k: [.., d, N]), seen as `shape`; its softmax over the last axis
/// once `softmax`.
pub(super) struct Scores {
    pub q: Tensor,
    pub k: Tensor,
    pub scale: f64,
    pub bias: Tensor,
    pub shape: Vec<i64>,
    pub softmax: bool,
    /// Swin V2's cosine attention: q and k were normalised over d, in
    /// these layouts (their index views when divided by their norms).
    pub cosine: Option<(Tensor, Tensor)>,
    /// A per-head multiplier ([heads, 1, 1]: V2's exp of its logit scale).
    pub logits: Option<Tensor>,
}

impl Clone for Scores {
    fn clone(&self) -> Scores {
        let pair = |p: &(Tensor, Tensor)| (p.0.shallow_clone(), p.1.shallow_clone());
        Scores {
            q: self.q.shallow_clone(),
            k: self.k.shallow_clone(),
            scale: self.scale,
            bias: self.bias.shallow_clone(),
            shape: self.shape.clone(),
            softmax: self.softmax,
            cosine: self.cosine.as_ref().map(pair),
            logits: self.logits.as_ref().map(Tensor::shallow_clone),
        }
    }
}

impl View {
    /// The value's shape at batch 1.
    pub(super) fn size(&self) -> Vec<i64> {
        match self {
            View::Index { index, .. } => index.size(),
            View::Scores(s) => s.shape.clone(),
            View::Norm { index } => {
                let mut s = index.size();
                if let Some(last) = s.last_mut() {
                    *last = 1;
                }
                s
            }
        }
    }

    /// The same scores changed by `f`.
    pub(super) fn scores(&self, f: impl FnOnce(&mut Scores)) -> View {
        let View::Scores(s) = self else {
            unreachable!("attention scores")
        };
        let mut s = s.clone();
        f(&mut s);
        View::Scores(s)
    }
}

/// The ops that only move elements.
const LAYOUT: &[&str] = &[
    "Reshape",
    "Transpose",
    "Gather",
    "Slice",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Dropout",
];

/// A view for error messages.
pub(super) fn describe(v: &Value) -> String {
    match v.view.as_deref() {
        Some(View::Index { index, .. }) => format!("as {:?}", index.size()),
        Some(View::Scores(s)) => {
            format!("attention {}", if s.softmax { "weights" } else { "scores" })
        }
        Some(View::Norm { .. }) => "a norm of q or k".to_string(),
        None => format!("{:?}", v.shape),
    }
}

fn int64(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Int64)
}

pub(super) fn arange(n: i64) -> Tensor {
    Tensor::arange(n, (Kind::Int64, tch::Device::Cpu))
}

/// Whether `index` (any shape) is `want` element by element.
pub(super) fn same(index: &Tensor, want: &Tensor) -> bool {
    index.numel() == want.numel() && index.reshape([-1]).equal(&want.reshape([-1]))
}

impl Reader<'_> {
    /// Read node `n` when it works on tokens, a view, or a conv's maps
    /// becoming patch tokens; false: not such a node.
    pub(super) fn tokens(&mut self, n: &NodeProto) -> Result<bool> {
        let op = n.op_type.as_str();
        let vals: Vec<Option<Value>> = n
            .input
            .iter()
            .map(|i| self.values.get(i).cloned())
            .collect();
        let Some(Some(v)) = vals.first().cloned() else {
            return self.before_tokens(n, &vals);
        };
        let tokens = matches!(v.shape, Shape::Tokens { .. }) || v.view.is_some();
        let to_patches = op == "Reshape"
            && matches!(v.shape, Shape::Maps { .. })
            && !v.nhwc
            && v.grouped.is_none()
            && self.target_dims(n) == Some(3);
        if LAYOUT.contains(&op) && (tokens || to_patches || self.spatial(n, &v)?) {
            return self.rearrange(n, &v).map(|_| true);
        }
        if op == "Concat" && self.joins(n) {
            return self.join(n).map(|_| true);
        }
        if !tokens {
            return Ok(false);
        }
        let other = vals.get(1).cloned().flatten();
        match (op, other) {
            ("MatMul", Some(b)) => self.product(n, &v, &b).map(|_| true),
            ("MatMul" | "Gemm", None) => self.token_linear(n, &v).map(|_| true),
            ("Softmax", _) => self.softmax(n, &v).map(|_| true),
            ("Add", Some(b)) if v.view.is_none() && b.view.is_none() => {
                self.residual(n, &v, &b).map(|_| true)
            }
            ("Add" | "Mul" | "Div" | "Sub", None) => self.by_constant(n, &v, 0),
            ("Concat", _) => self.prefix(n).map(|_| true),
            ("ReduceMean", None) => self.token_mean(n, &v).map(|_| true),
            ("ReduceL2", _) => self.norm_of(n, &v).map(|_| true),
            ("Clip" | "Expand", _) if matches!(v.view.as_deref(), Some(View::Norm { .. })) => {
                self.norm_kept(n, &v).map(|_| true)
            }
            ("Div", Some(b)) if matches!(b.view.as_deref(), Some(View::Norm { .. })) => {
                self.normalise(n, &v, &b).map(|_| true)
            }
            _ => Ok(false),
        }
    }

    /// Nodes whose first input is a constant: Add(constant, tokens),
    /// Mul(scale, view), Concat(class token, patch tokens).
    fn before_tokens(&mut self, n: &NodeProto, vals: &[Option<Value>]) -> Result<bool> {
        // Concat reads the patch tokens last; Add and Mul their second input.
        let k = if n.op_type == "Concat" {
            vals.len() - 1
        } else {
            1
        };
        let Some(Some(v)) = vals.get(k).cloned() else {
            return Ok(false);
        };
        let tokens = matches!(v.shape, Shape::Tokens { .. }) || v.view.is_some();
        match n.op_type.as_str() {
            "Concat" if tokens => self.prefix(n).map(|_| true),
            "Add" | "Mul" if tokens => self.by_constant(n, &v, 1),
            _ => Ok(false),
        }
    }

    /// Whether layout op `n` moves plain maps other than as the CNN
    /// readers do (NHWC <-> NCHW, flattens, channel slices): Swin's
    /// windows, roll and patch merging on channels-last maps.
    fn spatial(&self, n: &NodeProto, v: &Value) -> Result<bool> {
        if !matches!(v.shape, Shape::Maps { .. }) || v.view.is_some() || v.grouped.is_some() {
            return Ok(false);
        }
        // Slice's axes: an input (opset 10 on) or the attribute; all if neither.
        let axes = match n.input.get(3).filter(|s| !s.is_empty()) {
            Some(s) => Some(crate::net::values(&self.get(s, n)?, "axes")?),
            None => attr_ints(n, "axes"),
        };
        let channel = |a: i64| {
            if v.nhwc {
                a == 3 || a == -1
            } else {
                a == 1 || a == -3
            }
        };
        Ok(match n.op_type.as_str() {
            "Reshape" => v.nhwc && self.target_dims(n).is_some_and(|d| d != 2),
            "Slice" => axes.is_none_or(|axes| axes.iter().any(|&a| !channel(a))),
            "Transpose" => perm(n, 4) != (if v.nhwc { [0, 3, 1, 2] } else { [0, 2, 3, 1] }),
            _ => false,
        })
    }

    /// Whether Concat `n` joins views (or layouts) of one node's output.
    fn joins(&self, n: &NodeProto) -> bool {
        let vs: Vec<Option<&Value>> = n.input.iter().map(|i| self.values.get(i)).collect();
        vs.len() > 1
            && vs.iter().all(|v| {
                v.is_some_and(|v| v.node.is_some() && v.node == vs[0].and_then(|w| w.node))
            })
            && vs.iter().any(|v| v.is_some_and(|v| v.view.is_some()))
    }

    /// A Concat of views of one node: their indices joined.
    fn join(&mut self, n: &NodeProto) -> Result<()> {
        let vs: Vec<Value> = (0..n.input.len())
            .map(|k| self.raw(n, k))
            .collect::<Result<_>>()?;
        let parts: Vec<(Tensor, f64)> = vs
            .iter()
            .map(|v| self.index(v))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("{}: joins attention scores", at(n)))?;
        let scale = parts[0].1;
        if parts.iter().any(|p| p.1 != scale) {
            bail!("{}: joins views scaled differently", at(n));
        }
        let dims = parts[0].0.dim() as i64;
        let axis = attr_i(n, "axis", 0);
        let axis = if axis < 0 { axis + dims } else { axis };
        let index = Tensor::cat(
            &parts
                .iter()
                .map(|p| p.0.shallow_clone())
                .collect::<Vec<_>>(),
            axis,
        );
        self.put(&n.output[0], &vs[0], View::Index { index, scale });
        self.settle(n, &n.output[0].clone())
    }

    /// How many axes a Reshape's constant target shape has.
    fn target_dims(&self, n: &NodeProto) -> Option<usize> {
        let s = n.input.get(1)?;
        self.consts.get(s).map(|t| t.numel())
    }

    /// `v` as an index view of its node (its elements in order when it is
    /// the node's output).
    pub(super) fn index(&self, v: &Value) -> Option<(Tensor, f64)> {
        match v.view.as_deref() {
            Some(View::Index { index, scale }) => Some((index.shallow_clone(), *scale)),
            Some(View::Scores(_) | View::Norm { .. }) => None,
            None if v.grouped.is_some() => None,
            None => {
                let size = v.shape.size(1);
                let index = arange(size.iter().product()).reshape(size.as_slice());
                match (v.nhwc, v.shape) {
                    (true, Shape::Maps { .. }) => Some((index.permute([0, 2, 3, 1]), 1.0)),
                    _ => Some((index, 1.0)),
                }
            }
        }
    }

    /// Name `out` a view of `v`'s node.
    pub(super) fn put(&mut self, out: &str, v: &Value, view: View) {
        let mut w = v.clone();
        w.view = Some(Rc::new(view));
        self.values.insert(out.to_string(), w);
    }

    /// A layout op on a view (or on tokens, or on a conv's maps).
    fn rearrange(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        if let (Some(w @ View::Scores(_)), "Reshape") = (v.view.as_deref(), n.op_type.as_str()) {
            // Scores regrouped (Swin's [windows, heads] <-> [batch, windows, heads]).
            let from = w.size();
            let shape = fold(
                n,
                &[
                    Tensor::zeros(from.as_slice(), (Kind::Float, tch::Device::Cpu)),
                    self.get(required(n, 1, "shape")?, n)?,
                ],
            )?
            .size();
            if shape.len() < 2 || shape[shape.len() - 2..] != from[from.len() - 2..] {
                bail!("{}: reshapes attention scores {from:?} to {shape:?}", at(n));
            }
            let view = w.scores(|s| s.shape = shape);
            self.put(&n.output[0], v, view);
            return Ok(());
        }
        let (index, scale) = self.index(v).ok_or_else(|| {
            anyhow!(
                "{}: moves {} (zfvis reads them only into the attention's product)",
                at(n),
                describe(v)
            )
        })?;
        if matches!(n.op_type.as_str(), "Identity" | "Dropout") {
            let view = View::Index { index, scale };
            self.put(&n.output[0], v, view);
            self.carry_norm(n);
            return self.settle(n, &n.output[0].clone());
        }
        let mut ins = vec![index];
        for k in n.input.iter().skip(1).filter(|s| !s.is_empty()) {
            ins.push(self.get(k, n)?);
        }
        let outs: Vec<Tensor> = if n.op_type == "Split" {
            self.split_index(n, &ins)?
        } else {
            vec![fold(n, &ins)?]
        };
        if outs.len() > n.output.len() {
            bail!("{}: {} outputs expected", at(n), outs.len());
        }
        for (t, out) in outs.into_iter().zip(&n.output) {
            self.put(
                out,
                v,
                View::Index {
                    index: int64(&t),
                    scale,
                },
            );
            self.settle(n, out)?;
        }
        self.carry_norm(n);
        Ok(())
    }

    /// Swin V2's normalising of q and k (see `View::Norm`): the L2 norm
    /// over the last axis of an index view.
    fn norm_of(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => crate::net::values(&self.get(s, n)?, "axes")?,
            None => attr_ints(n, "axes")
                .ok_or_else(|| anyhow!("{}: a mean or norm over every axis", at(n)))?,
        };
        let (index, _) = self
            .index(v)
            .filter(|_| v.view.is_some())
            .ok_or_else(|| anyhow!("{}: a norm of {}", at(n), describe(v)))?;
        let last = index.dim() as i64 - 1;
        if !matches!(axes.as_slice(), [a] if *a == -1 || *a == last)
            || attr_i(n, "keepdims", 1) != 1
        {
            bail!(
                "{}: a norm over axes {axes:?} (only over the last, kept)",
                at(n)
            );
        }
        self.put(&n.output[0], v, View::Norm { index });
        Ok(())
    }

    /// A norm clamped from below by a tiny epsilon (F.normalize's) or
    /// expanded over its axis: the same norm.
    fn norm_kept(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        if n.op_type == "Clip" {
            let bound = |k: usize, name: &str| -> Result<Option<f64>> {
                match n.input.get(k).filter(|s| !s.is_empty()) {
                    Some(s) => Ok(Some(
                        self.get(s, n)?
                            .to_kind(Kind::Double)
                            .reshape([-1])
                            .double_value(&[0]),
                    )),
                    None => Ok(attr(n, name).map(|a| a.f as f64)),
                }
            };
            let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
            if hi.is_some() || lo.is_none_or(|l| !(0.0..=1e-6).contains(&l)) {
                bail!("{}: clips a norm to [{lo:?}, {hi:?}]", at(n));
            }
        }
        let view = match v.view.as_deref() {
            Some(View::Norm { index }) => View::Norm {
                index: index.shallow_clone(),
            },
            _ => unreachable!("a norm"),
        };
        self.put(&n.output[0], v, view);
        Ok(())
    }

    /// An index view divided by its own norm: the same view, normalised
    /// (remembered in `normed` with its layout now).
    fn normalise(&mut self, n: &NodeProto, a: &Value, b: &Value) -> Result<()> {
        let Some(View::Norm { index: of }) = b.view.as_deref() else {
            unreachable!("a norm")
        };
        let (index, _) = self
            .index(a)
            .filter(|(i, _)| a.node == b.node && same(i, of) && i.size() == of.size())
            .ok_or_else(|| anyhow!("{}: divides {} by another's norm", at(n), describe(a)))?;
        self.normed
            .insert(n.output[0].clone(), index.shallow_clone());
        self.put(&n.output[0], a, View::Index { index, scale: 1.0 });
        Ok(())
    }

    /// A layout op or scale keeps its input's normalising.
    fn carry_norm(&mut self, n: &NodeProto) {
        let Some(t) = n.input.first().and_then(|i| self.normed.get(i)) else {
            return;
        };
        let t = t.shallow_clone();
        for out in &n.output {
            self.normed.insert(out.clone(), t.shallow_clone());
        }
    }

    /// A Split's pieces of `ins[0]` (sizes from input 1, the `split`
    /// attribute, or equal parts, one per output).
    fn split_index(&self, n: &NodeProto, ins: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &ins[0];
        let mut axis = attr_i(n, "axis", 0);
        if axis < 0 {
            axis += x.dim() as i64;
        }
        let len = *x
            .size()
            .get(axis as usize)
            .ok_or_else(|| anyhow!("{}: axis {axis} of {:?}", at(n), x.size()))?;
        let sizes = match ins.get(1) {
            Some(t) => crate::net::values(t, "split")?,
            None => attr_ints(n, "split").unwrap_or_else(|| {
                let k = n.output.len().max(1) as i64;
                vec![len / k; k as usize]
            }),
        };
        if sizes.iter().sum::<i64>() != len {
            bail!("{}: splits {sizes:?} of {len}", at(n));
        }
        Ok(x.split_with_sizes(sizes.as_slice(), axis))
    }

    /// Read the view named `out` as what it is (see the module's header),
    /// when it is one of those.
    fn settle(&mut self, n: &NodeProto, out: &str) -> Result<()> {
        let v = self.values[out].clone();
        let Some(View::Index { index, scale }) = v.view.as_deref() else {
            return Ok(());
        };
        if *scale != 1.0 {
            return Ok(());
        }
        let size = index.size();
        match v.shape {
            Shape::Tokens { c, .. } => {
                if size == v.shape.size(1) && same(index, &arange(index.numel() as i64)) {
                    let mut w = v.clone();
                    w.view = None;
                    self.values.insert(out.to_string(), w);
                } else if size == [1, c] {
                    let first = index.reshape([-1]).int64_value(&[0]);
                    if first % c == 0 && same(index, &(arange(c) + first)) {
                        let i = self.push(Layer::Token { index: first / c }, &[&v]);
                        self.set(out, i, Shape::Flat(c));
                    }
                }
            }
            Shape::Maps { c, side } => {
                let s2 = side * side;
                let nchw = arange(c * s2).reshape([1, c, side, side]);
                let nhwc = nchw.permute([0, 2, 3, 1]);
                let patches = nchw.reshape([c, s2]).tr();
                let mut plain = v.clone();
                plain.view = None;
                // A conv's maps as patch tokens (not Swin's channels-last
                // maps in one window, which index the same).
                let conv = v
                    .node
                    .is_some_and(|i| matches!(self.nodes[i].op, Layer::Conv { .. }));
                if size == [1, s2, c] && same(index, &patches) && !v.nhwc && conv {
                    self.patches(n, out, &v, c, side);
                } else if size == [1, c, side, side] && same(index, &nchw) {
                    plain.nhwc = false;
                    self.values.insert(out.to_string(), plain);
                } else if size == [1, side, side, c] && same(index, &nhwc) {
                    plain.nhwc = true;
                    self.values.insert(out.to_string(), plain);
                } else if size.len() == 4 && size[1] == size[2] && size[1] < side && size[3] == c {
                    // The top-left of the maps (padding to the window, cut off).
                    let cut = size[1];
                    if same(index, &nhwc.narrow(1, 0, cut).narrow(2, 0, cut)) {
                        let i = self.push(Layer::Crop { side: cut }, &[&plain]);
                        self.set_layout(out, i, Shape::Maps { c, side: cut }, true);
                    }
                } else if side % 2 == 0
                    && size == [1, side / 2, side / 2, 4 * c]
                    && same(index, &crate::net::merge(&nchw).permute([0, 2, 3, 1]))
                {
                    // Swin's patch merging: 2x2 positions as 4C channels.
                    let i = self.push(Layer::PatchMerge, &[&plain]);
                    let merged = Shape::Maps {
                        c: 4 * c,
                        side: side / 2,
                    };
                    self.set_layout(out, i, merged, true);
                }
            }
            Shape::Flat(_) => {}
        }
        Ok(())
    }

    /// A conv's maps read as patch tokens: an embed node with no learned
    /// tokens and a zero position embedding yet.
    fn patches(&mut self, n: &NodeProto, out: &str, v: &Value, c: i64, side: i64) {
        let name = self.fresh(layer_name(n, "embedding"));
        let zeros = |k: i64| Tensor::zeros([1, k, c], (Kind::Float, tch::Device::Cpu));
        let (weight, bias) = (format!("{name}.tokens"), format!("{name}.position"));
        self.tensors.insert(weight.clone(), zeros(0));
        self.tensors.insert(bias.clone(), zeros(side * side));
        let mut m = v.clone();
        m.view = None;
        let l = Layer::Embed {
            name,
            c,
            prefix: 0,
            side,
            weight,
            bias,
        };
        let i = self.push(l, &[&m]);
        self.set(out, i, Shape::Tokens { c, side, prefix: 0 });
    }

    /// The embed node `v` reads, when it is the last node added (its
    /// learned tokens and position embedding can still change).
    fn open_embed(&self, v: &Value) -> Option<usize> {
        let i = v
            .node
            .filter(|&i| self.last == Some(i) && v.view.is_none())?;
        matches!(self.nodes[i].op, Layer::Embed { .. }).then_some(i)
    }

    /// Concat along the tokens of constants (learned tokens) before patch
    /// tokens: the embed node's prefix.
    fn prefix(&mut self, n: &NodeProto) -> Result<()> {
        let ins: Vec<&String> = n.input.iter().filter(|s| !s.is_empty()).collect();
        let (_, learned) = ins.split_last().expect("an input");
        let v = self.raw(n, ins.len() - 1)?;
        let axis = attr_i(n, "axis", 1);
        let embed = self.open_embed(&v);
        let (Some(i), true, Shape::Tokens { c, side, prefix }) =
            (embed, axis == 1 || axis == -2, v.shape)
        else {
            bail!(
                "{}: a Concat of tokens other than learned tokens before a patch embedding's",
                at(n)
            );
        };
        let mut tokens = vec![];
        for k in learned {
            let t = self.get(k, n)?.to_kind(Kind::Float);
            match t.size().as_slice() {
                [1, _, cc] if *cc == c => tokens.push(t),
                s => bail!("{}: learned tokens of shape {s:?}, not [1, k, {c}]", at(n)),
            }
        }
        let Layer::Embed {
            weight,
            bias,
            prefix: p,
            ..
        } = &mut self.nodes[i].op
        else {
            unreachable!("an embed node")
        };
        tokens.push(self.tensors[weight.as_str()].shallow_clone());
        let added: i64 = tokens.iter().map(|t| t.size()[1]).sum::<i64>() - prefix;
        let pos = Tensor::cat(
            &[
                Tensor::zeros([1, added, c], (Kind::Float, tch::Device::Cpu)),
                self.tensors[bias.as_str()].shallow_clone(),
            ],
            1,
        );
        // The new learned tokens, then those the embed node had.
        let all = Tensor::cat(&tokens, 1);
        *p = prefix + added;
        let (weight, bias) = (weight.clone(), bias.clone());
        self.tensors.insert(weight, all);
        self.tensors.insert(bias, pos);
        let mut out = v.clone();
        out.shape = Shape::Tokens {
            c,
            side,
            prefix: prefix + added,
        };
        self.values.insert(n.output[0].clone(), out);
        Ok(())
    }

    /// Add, Mul, Sub or Div of tokens or a view by the constant input
    /// `1 - at`: a position embedding (added to an open embed node), a
    /// linear layer's bias, a view's scale. False: left to `arithmetic`.
    fn by_constant(&mut self, n: &NodeProto, v: &Value, at_: usize) -> Result<bool> {
        let k = required(n, 1 - at_, "constant")?;
        let Some(t) = self.consts.get(k).map(|t| t.to_kind(Kind::Float)) else {
            return Ok(false);
        };
        let op = n.op_type.as_str();
        if let (Some(i), "Add", Shape::Tokens { c, side, prefix }) =
            (self.open_embed(v), op, v.shape)
        {
            let want = [1, prefix + side * side, c];
            if t.numel() as i64 == want.iter().product::<i64>() {
                let Layer::Embed { bias, .. } = &self.nodes[i].op else {
                    unreachable!("an embed node")
                };
                let pos = &self.tensors[bias.as_str()] + t.reshape(want);
                self.tensors.insert(bias.clone(), pos);
                self.values.insert(n.output[0].clone(), v.clone());
                return Ok(true);
            }
        }
        let Some(view) = v.view.as_deref() else {
            return Ok(false);
        };
        let scalar = (t.numel() == 1).then(|| t.double_value(&[]));
        if let (View::Scores(Scores { softmax: false, .. }), "Add") = (view, op) {
            // A bias on the scores (Swin's relative positions, its mask).
            let mut fits = true;
            let added = view.scores(|s| {
                let sum = s.bias.reshape(s.shape.as_slice()) + &t;
                fits = sum.size() == s.shape;
                s.bias = sum;
            });
            if !fits {
                bail!(
                    "{}: adds {:?} to attention scores {:?}",
                    at(n),
                    t.size(),
                    view.size()
                );
            }
            self.put(&n.output[0], v, added);
            return Ok(true);
        }
        if let (View::Scores(sc @ Scores { softmax: false, .. }), "Mul", None) = (view, op, scalar)
        {
            // A multiplier per head ([heads, 1, 1]: V2's logit scale).
            let per_head = t.dim() >= 3
                && t.size()[t.dim() - 2..] == [1, 1]
                && sc.logits.is_none()
                && sc.bias.abs().max().double_value(&[]) == 0.0;
            if !per_head {
                bail!("{}: scales attention scores by {:?}", at(n), t.size());
            }
            let scaled = view.scores(|s| s.logits = Some(t.shallow_clone()));
            self.put(&n.output[0], v, scaled);
            return Ok(true);
        }
        self.carry_norm(n);
        let by = match (op, scalar, at_) {
            ("Mul", Some(s), _) => s,
            ("Div", Some(s), 0) if s != 0.0 => 1.0 / s,
            ("Add", _, _) => return self.view_bias(n, v, &t).map(|_| true),
            _ => bail!(
                "{}: {op} of {} by a constant of shape {:?}",
                at(n),
                describe(v),
                t.size()
            ),
        };
        let scaled = match view {
            View::Index { index, scale } => View::Index {
                index: index.shallow_clone(),
                scale: scale * by,
            },
            View::Scores(Scores { softmax: false, .. }) => view.scores(|s| {
                s.scale *= by;
                s.bias = &s.bias * by;
            }),
            View::Scores(_) | View::Norm { .. } => {
                bail!("{}: scales {}", at(n), describe(v))
            }
        };
        self.put(&n.output[0], v, scaled);
        Ok(true)
    }

    /// A per-channel constant added to a view of the linear layer added
    /// last: its bias.
    fn view_bias(&mut self, n: &NodeProto, v: &Value, t: &Tensor) -> Result<()> {
        let c = v.shape.channels();
        let i = v
            .node
            .filter(|&i| self.last == Some(i))
            .filter(|&i| matches!(self.nodes[i].op, Layer::Linear { .. } | Layer::Conv { .. }));
        let whole_rows = self
            .index(v)
            .is_some_and(|(ix, s)| s == 1.0 && ix.size().last() == Some(&c));
        match (i, whole_rows, t.numel() as i64 == c) {
            (Some(i), true, true) => {
                let (_, b) = self.nodes[i].op.tensor_names().expect("a linear layer");
                let sum = &self.tensors[&b] + t.reshape([-1]);
                self.tensors.insert(b, sum);
                self.values.insert(n.output[0].clone(), v.clone());
                Ok(())
            }
            _ => bail!(
                "{}: an Add of {} and a constant of shape {:?} (only a linear layer's bias is read)",
                at(n),
                describe(v),
                t.size()
            ),
        }
    }

    /// MatMul or Gemm of whole tokens' (or positions') channels by a
    /// constant: a linear layer on the tokens (a 1x1 conv on maps), in the
    /// view's layout.
    fn token_linear(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        let refuse = || anyhow!("{}: a linear layer on {}", at(n), describe(v));
        let (c, stride) = match v.shape {
            Shape::Tokens { c, .. } => (c, 1),
            Shape::Maps { c, side } => (c, side * side),
            Shape::Flat(_) => return Err(refuse()),
        };
        let (index, scale) = self.index(v).ok_or_else(refuse)?;
        let rows = index.reshape([-1, c]);
        let first = rows.narrow(1, 0, 1);
        // A row's channels in order: a token's (t·C + j), a position's (p + j·S²).
        let whole = index.size().last() == Some(&c)
            && same(&rows, &(&first + arange(c) * stride))
            && match v.shape {
                Shape::Tokens { .. } => same(&first.remainder(c), &first.zeros_like()),
                _ => first.max().int64_value(&[]) < stride,
            };
        if !whole {
            bail!(
                "{}: a linear layer on {} that are not whole tokens' channels",
                at(n),
                describe(v)
            );
        }
        let (w, b) = self.weights(n)?;
        let (o, inp) = (w.size()[0], w.size()[1]);
        if inp != c || b.size() != [o] {
            bail!(
                "{}: weight {:?} / bias {:?} do not fit {c} channels",
                at(n),
                w.size(),
                b.size()
            );
        }
        let w = w * scale;
        let mut plain = v.clone();
        plain.view = None;
        let mut size = index.size();
        *size.last_mut().expect("an axis") = o;
        let (l, shape, out) = match v.shape {
            Shape::Tokens { side, prefix, .. } => {
                self.n_fc += 1;
                let name = self.fresh(layer_name(n, &format!("fc{}", self.n_fc)));
                self.tensors
                    .insert(format!("{name}.weight"), w.contiguous());
                let out = first.floor_divide_scalar(c) * o + arange(o);
                (
                    Layer::linear(&name, c, o),
                    Shape::Tokens { c: o, side, prefix },
                    out,
                )
            }
            _ => {
                let side = (stride as f64).sqrt().round() as i64;
                self.n_conv += 1;
                let name = self.fresh(layer_name(n, &format!("conv{}", self.n_conv)));
                self.tensors.insert(
                    format!("{name}.weight"),
                    w.reshape([o, c, 1, 1]).contiguous(),
                );
                let out = &first + arange(o) * stride;
                let l = Layer::conv(&name, c, o, Window::new(1, 1, 0));
                (l, Shape::Maps { c: o, side }, out)
            }
        };
        let name = l.name().expect("a named layer").to_string();
        self.tensors.insert(format!("{name}.bias"), b.contiguous());
        let i = self.push(l, &[&plain]);
        // Maps the graph holds channels-last (Swin's windows of them).
        self.set_layout(&n.output[0], i, shape, matches!(shape, Shape::Maps { .. }));
        let w = self.values[&n.output[0]].clone();
        let index = out.reshape(size.as_slice());
        self.put(&n.output[0], &w, View::Index { index, scale: 1.0 });
        self.settle(n, &n.output[0].clone())
    }

    /// The mean of the patch tokens (after the learned ones, a Slice), a
    /// mean-pooling head: the grid's global average.
    fn token_mean(&mut self, n: &NodeProto, v: &Value) -> Result<()> {
        let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => crate::net::values(&self.get(s, n)?, "axes")?,
            None => attr_ints(n, "axes")
                .ok_or_else(|| anyhow!("{}: a mean or norm over every axis", at(n)))?,
        };
        let Shape::Tokens { c, side, prefix } = v.shape else {
            unreachable!("tokens")
        };
        let s2 = side * side;
        let patches = self.index(v).is_some_and(|(index, scale)| {
            scale == 1.0
                && index.size() == [1, s2, c]
                && same(&index, &(arange(s2 * c) + prefix * c))
        });
        if !patches || !matches!(axes.as_slice(), [1] | [-2]) || attr_i(n, "keepdims", 1) != 0 {
            bail!(
                "{}: a ReduceMean of {} over axes {axes:?} (only the mean of the patch tokens is read)",
                at(n),
                describe(v)
            );
        }
        let mut plain = v.clone();
        plain.view = None;
        let g = self.push(Layer::Grid { prefix }, &[&plain]);
        let maps = Value {
            node: Some(g),
            shape: Shape::Maps { c, side },
            nhwc: false,
            hwc: None,
            grouped: None,
            view: None,
        };
        let p = self.push(Layer::AdaptiveAvgPool { out: 1 }, &[&maps]);
        let pooled = Value {
            node: Some(p),
            shape: Shape::Maps { c, side: 1 },
            ..maps
        };
        let f = self.push(Layer::Flatten, &[&pooled]);
        self.set(&n.output[0], f, Shape::Flat(c));
        Ok(())
    }

    /// Tokens plus tokens: a residual connection. The one after an MLP (no
    /// attention since the last) ends a block, whose unit is a grid node of
    /// its patch tokens.
    fn residual(&mut self, n: &NodeProto, a: &Value, b: &Value) -> Result<()> {
        if a.shape != b.shape {
            bail!(
                "{}: adds tokens of shapes {:?} and {:?}",
                at(n),
                a.shape,
                b.shape
            );
        }
        let i = self.push(Layer::Add, &[a, b]);
        self.set(&n.output[0], i, a.shape);
        if std::mem::take(&mut self.attended) {
            return Ok(());
        }
        let Shape::Tokens { prefix, .. } = a.shape else {
            unreachable!("tokens")
        };
        let name = self.fresh(block_name(n));
        let sum = self.values[&n.output[0]].clone();
        let g = self.push(Layer::Grid { prefix }, &[&sum]);
        self.nodes[g].name = Some(name);
        Ok(())
    }
}

/// A block's name: the module path the dynamo exporter records
/// (`encoder.layers.encoder_layer_3`), else the Add's output, which the
/// TorchScript exporter names by scope (`/blocks/blocks.3/Add_1_output_0`).
fn block_name(n: &NodeProto) -> String {
    let module = n
        .metadata_props
        .iter()
        .find(|p| p.key == "pkg.torch.onnx.name_scopes")
        .and_then(|p| {
            let scopes: Vec<&str> = p
                .value
                .trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .map(|s| s.trim_matches('\''))
                .collect();
            match scopes.as_slice() {
                [.., module, _] if !module.is_empty() => Some(module.to_string()),
                _ => None,
            }
        });
    match module {
        Some(m) => m,
        None => n.output[0].clone(),
    }
}
