//! The forward pass: node by node, tensors freed after their last reader;
//! the trace keeps what the analyses read (maps, switches, hidden fc
//! outputs, named units, and for the gradient rules what they need).

use super::ops::Layer;
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
    /// The values smooth ops read ([`Layer::is_smooth`]: SiLU, gates, layer
    /// norm), by the node that gave them (None: the image): every walk back
    /// takes their exact derivative there.
    pub inputs: BTreeMap<Option<usize>, Tensor>,
}

/// The values before a node that the nodes after it read (see
/// [`Net::frontier`]), by node (`None`: the image).
pub struct Frontier {
    pub node: usize,
    values: BTreeMap<Option<usize>, Tensor>,
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
        let fast = match self.fast.get(i) {
            Some(Some(w)) if !train => Some(w),
            _ => None,
        };
        let p = self.params.get(i).and_then(Option::as_ref);
        self.spec.op(i).forward(ins, p, fast, train, switches)
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
        let n = self.spec.nodes.len();
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
        tch::no_grad(|| self.differentiable_outputs_at(x, at))
    }

    /// [`Net::outputs_at`] recording the autograd graph (nodes in any
    /// order): what feature visualisation climbs.
    pub fn differentiable_outputs_at(&self, x: &Tensor, at: &[usize]) -> Vec<Tensor> {
        let h = x.to_device(self.device());
        let last = at.iter().copied().max().unwrap_or(0);
        let mut kept: BTreeMap<usize, Tensor> = BTreeMap::new();
        let _ = self.run(0, last, &h, false, None, |i, t| {
            if at.contains(&i) {
                kept.insert(i, t.shallow_clone());
            }
        });
        at.iter().map(|i| kept[i].shallow_clone()).collect()
    }

    /// What the nodes after `node` read from before it, for `x` (one image):
    /// with it, [`Net::forward_after`] runs the rest of the network on new
    /// outputs of `node` without recomputing anything before it.
    pub fn frontier(&self, x: &Tensor, node: usize) -> Frontier {
        let n = self.spec.nodes.len();
        let need: std::collections::HashSet<Option<usize>> = (node + 1..n)
            .flat_map(|i| self.sources[i].iter().copied())
            .filter(|s| s.is_none_or(|j| j < node))
            .collect();
        let mut values = BTreeMap::new();
        tch::no_grad(|| {
            let h = x.to_device(self.device());
            if need.contains(&None) {
                values.insert(None, h.shallow_clone());
            }
            let _ = self.run(0, node, &h, false, None, |i, t| {
                if need.contains(&Some(i)) {
                    values.insert(Some(i), t.shallow_clone());
                }
            });
        });
        Frontier { node, values }
    }

    /// The logits when node `f.node` outputs `value` (a batch, [B, ...]) and
    /// every node before it what it gave on the frontier's image (broadcast
    /// to the batch): one pass over the nodes after `f.node` (eval).
    pub fn forward_after(&self, f: &Frontier, value: &Tensor) -> Tensor {
        let n = self.spec.nodes.len();
        let b = value.size()[0];
        let mut vals: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let mut last = value.shallow_clone();
        for i in f.node + 1..n {
            let ins: Vec<Tensor> = self.sources[i]
                .iter()
                .map(|s| match *s {
                    Some(j) if j == f.node => value.shallow_clone(),
                    Some(j) if j > f.node => vals[j]
                        .as_ref()
                        .unwrap_or_else(|| panic!("node {i} reads node {j}, not computed"))
                        .shallow_clone(),
                    s => {
                        let t = &f.values[&s];
                        let mut size = t.size();
                        size[0] = b;
                        t.expand(size, false)
                    }
                })
                .collect();
            last = self.apply(i, &ins, false, None);
            for &j in self.sources[i].iter().flatten() {
                if j > f.node && self.last_use[j] <= i {
                    vals[j] = None;
                }
            }
            if self.last_use[i] > i {
                vals[i] = Some(last.shallow_clone());
            }
        }
        last
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
            let n = self.spec.nodes.len();
            let mut switches: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
            let last_node = self.spec.last_maps_node();
            let keep: std::collections::HashSet<usize> = self
                .units
                .iter()
                .map(|u| u.node)
                .chain(self.hidden.iter().map(|h| h.0))
                .chain(self.spec.named().map(|(i, _)| i))
                .chain([last_node])
                .collect();
            let mut outs: BTreeMap<usize, Tensor> = BTreeMap::new();
            let mut saved: Vec<Option<Tensor>> =
                (0..if save { n } else { 0 }).map(|_| None).collect();
            let spec = &self.spec;
            // LRN nodes by the node they read (None: the image).
            let mut lrn_of: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
            for (i, l) in spec.ops().enumerate().filter(|_| save) {
                if let (Layer::Lrn { .. }, [src]) = (l, self.sources[i].as_slice()) {
                    lrn_of.entry(*src).or_default().push(i);
                }
            }
            for &j in lrn_of.get(&None).into_iter().flatten() {
                saved[j] = Some(h.shallow_clone());
            }
            // What the smooth ops read, kept whatever the rule.
            let smooth_in: std::collections::HashSet<Option<usize>> = spec
                .ops()
                .enumerate()
                .filter(|(_, l)| l.is_smooth())
                .flat_map(|(i, _)| self.sources[i].iter().copied())
                .collect();
            let mut inputs: BTreeMap<Option<usize>, Tensor> = BTreeMap::new();
            if smooth_in.contains(&None) {
                inputs.insert(None, h.shallow_clone());
            }
            let logits = self.run(0, n - 1, &h, false, Some(&mut switches), |i, t| {
                if keep.contains(&i) {
                    outs.insert(i, t.shallow_clone());
                }
                if smooth_in.contains(&Some(i)) {
                    inputs.insert(Some(i), t.shallow_clone());
                }
                if save {
                    if spec.op(i).is_relu() {
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
                units: self.spec.named().map(|(i, _)| (i, take(i))).collect(),
                last_maps: take(last_node),
                logits,
                saved,
                inputs,
            }
        })
    }
}
