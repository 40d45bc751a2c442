//! The forward pass: node by node, tensors freed after their last reader;
//! the trace keeps what the analyses read (maps, switches, hidden fc
//! outputs, named units, and for the gradient rules what they need).

use super::ops::{channels_last, lrn_with, Layer};
use super::Net;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Every conv layer's feature maps (after ReLU), every max-pool's switches,
/// every hidden fc layer's output and every named unit's output, kept from
/// one forward pass so that many projections can share it.
pub struct Trace {
    /// maps[l] = unit l+1's maps, [N, C, H, W] (conv{l+1}'s for l < #convs).
    pub maps: Vec<Tensor>,
    /// switches[i] = flat argmax indices of max-pool node i (None for other nodes).
    pub switches: Vec<Option<Tensor>>,
    /// Hidden fc layers' outputs after ReLU, [N, F], in order (fc6, fc7 for ZFNet).
    pub hidden: Vec<Tensor>,
    /// Outputs of the named units (node -> [N, C, H, W] or [N, F]).
    pub units: BTreeMap<usize, Tensor>,
    /// The maps that stand for "the last conv layer" ([`NetSpec::last_maps_node`]).
    pub last_maps: Tensor,
    pub logits: Tensor,
    /// What the gradient rules of [`crate::deconv::walk`] read, by node:
    /// a ReLU's or clip's output, an LRN's input. Empty unless the trace
    /// came from [`Net::trace_saving`].
    pub saved: Vec<Option<Tensor>>,
}

impl Trace {
    pub fn probs(&self) -> Tensor {
        self.logits.softmax(-1, Kind::Float)
    }
    /// The last hidden fc layer's output (fc7 for ZFNet).
    pub fn last_hidden(&self) -> &Tensor {
        self.hidden.last().unwrap_or(&self.logits)
    }
}

impl Net {
    /// Node `i` applied to its inputs (inference: no dropout, no switches kept).
    pub fn apply_node(&self, i: usize, ins: &[Tensor]) -> Tensor {
        self.apply(i, ins, false, None)
    }

    /// Apply node `i` to its inputs `ins`; `switches` receives a max-pool's indices.
    fn apply(
        &self,
        i: usize,
        ins: &[Tensor],
        train: bool,
        switches: Option<&mut Option<Tensor>>,
    ) -> Tensor {
        let h = &ins[0];
        match &self.spec.layers[i] {
            Layer::Conv {
                stride,
                pad,
                groups,
                dilation,
                ..
            } => {
                let p = self.params(i);
                let (w, h) = match self.fast.get(i) {
                    Some(Some(w)) if !train => (w, channels_last(h)),
                    _ => (&p.weight, h.shallow_clone()),
                };
                h.conv2d(
                    w,
                    Some(&p.bias),
                    [*stride, *stride],
                    [*pad, *pad],
                    [*dilation, *dilation],
                    *groups,
                )
            }
            Layer::Relu => h.relu(),
            Layer::Clip { max } => h.clamp(0.0, *max),
            Layer::Lrn {
                size,
                alpha,
                beta,
                k,
            } => lrn_with(h, *size, *alpha, *beta, *k),
            Layer::MaxPool {
                k,
                stride,
                pad,
                ceil_mode,
            } => match switches {
                Some(sw) => {
                    let (o, idx) = h.max_pool2d_with_indices(
                        [*k, *k],
                        [*stride, *stride],
                        [*pad, *pad],
                        [1, 1],
                        *ceil_mode,
                    );
                    *sw = Some(idx);
                    o
                }
                None => h.max_pool2d(
                    [*k, *k],
                    [*stride, *stride],
                    [*pad, *pad],
                    [1, 1],
                    *ceil_mode,
                ),
            },
            Layer::AvgPool {
                k,
                stride,
                pad,
                ceil_mode,
                count_include_pad,
            } => h.avg_pool2d(
                [*k, *k],
                [*stride, *stride],
                [*pad, *pad],
                *ceil_mode,
                *count_include_pad,
                None::<i64>,
            ),
            Layer::AdaptiveAvgPool { out } => h.adaptive_avg_pool2d([*out, *out]),
            Layer::Flatten => h.flatten(1, -1),
            Layer::Dropout { p } => h.dropout(*p, train),
            Layer::Linear { .. } => {
                let p = self.params(i);
                h.linear(&p.weight, Some(&p.bias))
            }
            Layer::Affine { .. } => {
                let p = self.params(i);
                let view: &[i64] = if h.dim() == 4 {
                    &[1, -1, 1, 1]
                } else {
                    &[1, -1]
                };
                h * p.weight.view(view) + p.bias.view(view)
            }
            Layer::Add => ins[1..].iter().fold(h.shallow_clone(), |a, b| a + b),
            Layer::Concat => Tensor::cat(ins, 1),
            Layer::Pad { pads: [t, l, b, r] } => h.constant_pad_nd([*l, *r, *t, *b]),
        }
    }

    /// Run nodes `from..=to` on `h`, the output of node `from - 1` (the image
    /// when `from` is 0), calling `keep` with every node's output; returns
    /// node `to`'s. In a graph, no node from `from` on may read a node before
    /// `from - 1` ([`NetSpec::is_chain`] networks can start anywhere).
    fn run(
        &self,
        from: usize,
        to: usize,
        h: &Tensor,
        train: bool,
        mut switches: Option<&mut Vec<Option<Tensor>>>,
        mut keep: impl FnMut(usize, &Tensor),
    ) -> Tensor {
        let n = self.spec.layers.len();
        let to = to.min(n - 1);
        let mut vals: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let mut last = h.shallow_clone();
        for i in from..=to {
            let ins: Vec<Tensor> = self.sources[i]
                .iter()
                .map(|s| match *s {
                    None => h.shallow_clone(),
                    Some(j) if j + 1 == from => h.shallow_clone(),
                    Some(j) => vals[j]
                        .as_ref()
                        .unwrap_or_else(|| panic!("node {i} reads node {j}, not computed"))
                        .shallow_clone(),
                })
                .collect();
            let sw = switches.as_deref_mut().map(|s| &mut s[i]);
            last = self.apply(i, &ins, train, sw);
            keep(i, &last);
            for &j in self.sources[i].iter().flatten() {
                if self.last_use[j] <= i {
                    vals[j] = None;
                }
            }
            if self.last_use[i] > i {
                vals[i] = Some(last.shallow_clone());
            }
        }
        last
    }

    /// Layers `from..` applied to `h` (eval: no dropout), to logits.
    pub fn forward_from(&self, from: usize, h: &Tensor) -> Tensor {
        self.run(from, usize::MAX, h, false, None, |_, _| {})
    }

    /// Layers `from..=to` applied to `h` (eval).
    pub fn forward_range(&self, from: usize, to: usize, h: &Tensor) -> Tensor {
        self.run(from, to, h, false, None, |_, _| {})
    }

    /// Outputs of the layers at indices `at` (ascending) for input `x`, from
    /// one inference pass that stops at the last of them.
    pub fn outputs_at(&self, x: &Tensor, at: &[usize]) -> Vec<Tensor> {
        tch::no_grad(|| {
            let h = x.to_device(self.device());
            let last = at.iter().copied().max().unwrap_or(0);
            let mut kept: BTreeMap<usize, Tensor> = BTreeMap::new();
            let _ = self.run(0, last, &h, false, None, |i, t| {
                if at.contains(&i) {
                    kept.insert(i, t.shallow_clone());
                }
            });
            at.iter().map(|i| kept[i].shallow_clone()).collect()
        })
    }

    /// Training/inference forward to logits; dropout layers act when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.run(0, usize::MAX, x, train, None, |_, _| {})
    }

    /// Inference forward (no grad) keeping maps, switches, hidden fc outputs
    /// and the named units' outputs.
    pub fn trace(&self, x: &Tensor) -> Trace {
        self.trace_with(x, false)
    }

    /// [`Net::trace`] that also saves what the gradient and guided backprop
    /// rules need (every ReLU's output, every LRN's input).
    pub fn trace_saving(&self, x: &Tensor) -> Trace {
        self.trace_with(x, true)
    }

    fn trace_with(&self, x: &Tensor, save: bool) -> Trace {
        tch::no_grad(|| {
            let h = x.to_device(self.device());
            let n = self.spec.layers.len();
            let mut switches: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
            let last_node = self.spec.last_maps_node();
            let keep: std::collections::HashSet<usize> = self
                .units
                .iter()
                .map(|u| u.node)
                .chain(self.hidden.iter().map(|h| h.0))
                .chain(self.spec.units.keys().copied())
                .chain([last_node])
                .collect();
            let mut outs: BTreeMap<usize, Tensor> = BTreeMap::new();
            let mut saved: Vec<Option<Tensor>> =
                (0..if save { n } else { 0 }).map(|_| None).collect();
            let layers = &self.spec.layers;
            // LRN nodes by the node they read (None: the image).
            let mut lrn_of: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
            for (i, l) in layers.iter().enumerate().filter(|_| save) {
                if let (Layer::Lrn { .. }, [src]) = (l, self.sources[i].as_slice()) {
                    lrn_of.entry(*src).or_default().push(i);
                }
            }
            for &j in lrn_of.get(&None).into_iter().flatten() {
                saved[j] = Some(h.shallow_clone());
            }
            let logits = self.run(0, n - 1, &h, false, Some(&mut switches), |i, t| {
                if keep.contains(&i) {
                    outs.insert(i, t.shallow_clone());
                }
                if save {
                    if layers[i].is_relu() {
                        saved[i] = Some(t.shallow_clone());
                    }
                    for &j in lrn_of.get(&Some(i)).into_iter().flatten() {
                        saved[j] = Some(t.shallow_clone());
                    }
                }
            });
            let take = |i: usize| outs[&i].shallow_clone();
            Trace {
                maps: self.units.iter().map(|u| take(u.node)).collect(),
                switches,
                hidden: self.hidden.iter().map(|f| take(f.0)).collect(),
                units: self.spec.units.keys().map(|&i| (i, take(i))).collect(),
                last_maps: take(last_node),
                logits,
                saved,
            }
        })
    }
}
