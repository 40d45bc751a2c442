//! A network is a graph of nodes (paper.md §6): conv, ReLU, LRN, max/avg
//! pooling, flatten, dropout, linear, affine, add, concat, pad. ZFNet and
//! single-tower AlexNet (paper.md §1) are presets that expand to a chain;
//! imported networks (torchvision, pytorchcv, ONNX) carry theirs in the
//! manifest. Conv layers are numbered 1..N in forward order; a conv's
//! feature maps are its output after the ReLU that follows it. Tensors keep
//! the checkpoint's names (`conv1.weight`, `features.0.weight` …) and
//! PyTorch layouts.
//!
//! Transformers add tokens (ViT: patch embedding, class token, self-attention,
//! block grids) and Swin's window attention and patch merging.
//!
//! `ops.rs` the ops (parameters, shape rule, forward), `transformer.rs` the
//! transformer ops' tensor code, `graph.rs` the node list and presets,
//! `units.rs` units and receptive fields, `forward.rs` the forward pass and
//! its trace; here the network with its weights.

pub mod check;
mod forward;
mod graph;
pub mod names;
mod ops;
mod transformer;
mod units;

pub use forward::Trace;
pub use graph::{Arch, NetSpec, Node, Preset};
pub use ops::{
    binary_shape, channels_last, concat_shape, lrn, lrn_with, shuffle, Layer, Params, Shape, Window,
};
pub use transformer::{attention_weights, heads_of, merge, relative_index, shift_mask, windows};
pub use units::{ConvInfo, Unit};

use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

/// A tensor's values on the host, flattened; an error naming `what` when
/// they cannot be read (never an empty or zero vector in their place).
pub fn values<T: tch::kind::Element>(t: &Tensor, what: &str) -> Result<Vec<T>>
where
    for<'a> Vec<T>: TryFrom<&'a Tensor, Error = tch::TchError>,
{
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(T::KIND)
        .contiguous()
        .reshape([-1]);
    Vec::<T>::try_from(&flat).map_err(|e| anyhow::anyhow!("cannot read {what}: {e}"))
}

/// How a fresh network's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// The paper: N(0, 0.01) weights, zero biases.
    Paper,
    /// He/Kaiming normal (fan-in, ReLU gain), zero biases.
    Kaiming,
}

pub struct Net {
    pub spec: NetSpec,
    pub vs: nn::VarStore,
    /// The conv layers (cached from the spec).
    pub convs: Vec<ConvInfo>,
    /// The units a user can pick (convs first; cached from the spec).
    pub units: Vec<Unit>,
    /// Fed BGR images (Caffe-trained): projections are flipped back to RGB.
    pub bgr: bool,
    /// params[i] for layer i if it is a conv or linear layer.
    params: Vec<Option<Params>>,
    /// Conv weights in channels-last layout for inference (see
    /// [`Net::for_inference`]); empty while the net may be trained.
    fast: Vec<Option<Tensor>>,
    hidden: Vec<(usize, String)>,
    /// Each node's inputs (`None`: the image) and output shape, and the last
    /// node that reads each node (cached from the spec).
    sources: Vec<Vec<Option<usize>>>,
    pub shapes: Vec<Shape>,
    last_use: Vec<usize>,
}

impl Net {
    pub fn new(spec: NetSpec, device: Device) -> Result<Net> {
        spec.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let params = spec
            .ops()
            .enumerate()
            .map(|(i, l)| {
                let (w, b) = l.param_shapes()?;
                // VarStore names may not contain dots; the checkpoint's names
                // live in the spec.
                let p = &root / format!("l{i:02}");
                Some(Params {
                    weight: p.var("weight", &w, nn::Init::Const(0.0)),
                    bias: p.var("bias", &b, nn::Init::Const(0.0)),
                })
            })
            .collect();
        let sources: Vec<Vec<Option<usize>>> =
            (0..spec.nodes.len()).map(|i| spec.sources(i)).collect();
        let mut last_use: Vec<usize> = (0..spec.nodes.len()).collect();
        for (i, s) in sources.iter().enumerate() {
            for &j in s.iter().flatten() {
                last_use[j] = last_use[j].max(i);
            }
        }
        Ok(Net {
            convs: spec.convs(),
            units: spec.unit_list(),
            bgr: false,
            hidden: spec.hidden_fcs(),
            shapes: spec.shapes()?,
            sources,
            last_use,
            fast: vec![],
            spec,
            vs,
            params,
        })
    }

    /// Keep a channels-last copy of every conv weight for the inference
    /// paths (trace, occlusion). Call once the weights are final: later
    /// changes to the weights would not reach the copies.
    pub fn for_inference(&mut self) {
        self.fast = tch::no_grad(|| {
            self.spec
                .ops()
                .zip(&self.params)
                .map(|(l, p)| match (l, p) {
                    (Layer::Conv { .. }, Some(p)) => Some(channels_last(&p.weight.detach())),
                    _ => None,
                })
                .collect()
        });
    }

    /// The weight the inference paths convolve with (channels-last when prepared).
    pub fn inference_weight(&self, i: usize) -> &Tensor {
        match self.fast.get(i) {
            Some(Some(w)) => w,
            _ => &self.params(i).weight,
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// (checkpoint name, tensor) of every parameter, sorted by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for (l, p) in self.spec.ops().zip(&self.params) {
            if let (Some((wn, bn)), Some(p)) = (l.tensor_names(), p) {
                out.push((wn, p.weight.shallow_clone()));
                out.push((bn, p.bias.shallow_clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Redraw every weight with `init` (biases 0), from torch's global RNG.
    pub fn init(&mut self, init: Init) {
        let last = self
            .spec
            .ops()
            .rposition(|l| matches!(l, Layer::Linear { .. }));
        let last_w = last
            .and_then(|i| self.spec.op(i).tensor_names())
            .map(|n| n.0);
        let weights: std::collections::HashSet<String> = self
            .spec
            .ops()
            .filter_map(|l| l.tensor_names().map(|n| n.0))
            .collect();
        // Sorted, so the same seed always draws the same weights.
        tch::no_grad(|| {
            for (name, mut t) in self.named_tensors() {
                if !weights.contains(&name) {
                    let _ = t.zero_();
                    continue;
                }
                let std = match init {
                    Init::Paper => 0.01,
                    Init::Kaiming => {
                        let fan_in: i64 = t.size()[1..].iter().product();
                        let gain = if Some(&name) == last_w.as_ref() {
                            1.0
                        } else {
                            2.0
                        };
                        (gain / fan_in as f64).sqrt()
                    }
                };
                let _ = t.normal_(0.0, std);
            }
        });
    }

    pub fn params(&self, layer_index: usize) -> &Params {
        self.params[layer_index]
            .as_ref()
            .expect("conv or linear layer")
    }

    /// Weight of conv `c` (0-based conv number).
    pub fn conv_weight(&self, c: usize) -> &Tensor {
        &self.params(self.convs[c].index).weight
    }

    pub fn conv_bias(&self, c: usize) -> &Tensor {
        &self.params(self.convs[c].index).bias
    }

    /// The unit (1-based) that stands for "the last conv layer" in the views:
    /// the last conv in a chain, the input of the global pooling in a graph.
    pub fn last_unit(&self) -> usize {
        self.spec.suggested_unit(&self.units)
    }

    /// Name of the last hidden fc layer (fc7 for ZFNet).
    pub fn last_hidden_name(&self) -> String {
        self.hidden
            .last()
            .map(|h| h.1.clone())
            .unwrap_or_else(|| "logits".into())
    }

    /// The nodes node `i` reads (`None`: the image).
    pub fn sources(&self, i: usize) -> &[Option<usize>] {
        &self.sources[i]
    }

    /// Feature-scale clipping (paper §2): rescale each conv filter whose RMS
    /// exceeds `max_rms` to exactly `max_rms`.
    pub fn clip_filters(&mut self, max_rms: f64) {
        tch::no_grad(|| {
            for c in 0..self.convs.len() {
                let mut w = self.conv_weight(c).shallow_clone();
                let rms = w
                    .square()
                    .mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float)
                    .sqrt();
                let scale = (rms.reciprocal() * max_rms).clamp_max(1.0);
                let _ = w.g_mul_(&scale);
            }
        });
    }
}

#[cfg(test)]
mod tests;
