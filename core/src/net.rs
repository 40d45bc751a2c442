//! ZFNet and single-tower AlexNet (paper.md §1), as an explicit list of conv
//! blocks so the deconvnet can walk them backwards. Tensor names match the
//! checkpoint names (`conv1.weight` … `fc8.bias`) in PyTorch layouts.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Zfnet,
    Alexnet,
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zfnet" => Ok(Arch::Zfnet),
            "alexnet" => Ok(Arch::Alexnet),
            other => bail!("unknown architecture {other:?}: expected \"zfnet\" or \"alexnet\""),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Zfnet => "zfnet",
            Arch::Alexnet => "alexnet",
        })
    }
}

/// A square window op: kernel, stride, padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub k: i64,
    pub stride: i64,
    pub pad: i64,
}

impl Window {
    pub const fn new(k: i64, stride: i64, pad: i64) -> Self {
        Window { k, stride, pad }
    }
    pub fn out_size(&self, n: i64) -> i64 {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }
}

/// One conv block: conv + ReLU, then optionally max-pool and LRN.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    pub name: String,
    pub in_c: i64,
    pub out_c: i64,
    pub conv: Window,
    pub pool: Option<Window>,
    pub lrn: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    pub arch: Arch,
    /// Multiplier of every conv width (1.0 = the paper's 96/256/384/384/256).
    pub width: f64,
    /// Multiplier of the fc widths (1.0 = 4096).
    pub fc_width: f64,
    pub num_classes: i64,
    pub input_size: i64,
}

fn scaled(n: i64, w: f64) -> i64 {
    ((n as f64 * w).round() as i64).max(1)
}

impl NetSpec {
    pub fn new(arch: Arch, width: f64, num_classes: i64) -> Self {
        NetSpec {
            arch,
            width,
            fc_width: width,
            num_classes,
            input_size: 224,
        }
    }

    /// The paper's layer table (Fig. 3 for ZFNet; §1 of paper.md for AlexNet).
    pub fn blocks(&self) -> Vec<ConvBlock> {
        let c: Vec<i64> = [96, 256, 384, 384, 256]
            .iter()
            .map(|&n| scaled(n, self.width))
            .collect();
        let (conv1, pool12, conv2) = match self.arch {
            Arch::Zfnet => (
                Window::new(7, 2, 1),
                Window::new(3, 2, 1),
                Window::new(5, 2, 0),
            ),
            Arch::Alexnet => (
                Window::new(11, 4, 2),
                Window::new(3, 2, 0),
                Window::new(5, 1, 2),
            ),
        };
        let b = |i: usize, in_c, conv, pool, lrn| ConvBlock {
            name: format!("conv{}", i + 1),
            in_c,
            out_c: c[i],
            conv,
            pool,
            lrn,
        };
        vec![
            b(0, 3, conv1, Some(pool12), true),
            b(1, c[0], conv2, Some(pool12), true),
            b(2, c[1], Window::new(3, 1, 1), None, false),
            b(3, c[2], Window::new(3, 1, 1), None, false),
            b(
                4,
                c[3],
                Window::new(3, 1, 1),
                Some(Window::new(3, 2, 0)),
                false,
            ),
        ]
    }

    /// Spatial sizes: for each block, (input size, conv-map size, size after pool).
    pub fn sizes(&self) -> Vec<(i64, i64, i64)> {
        let mut n = self.input_size;
        self.blocks()
            .iter()
            .map(|b| {
                let input = n;
                let m = b.conv.out_size(n);
                n = b.pool.map_or(m, |p| p.out_size(m));
                (input, m, n)
            })
            .collect()
    }

    /// (in, out) of fc6, fc7, fc8.
    pub fn fc_dims(&self) -> [(i64, i64); 3] {
        let blocks = self.blocks();
        let last = self.sizes()[4].2;
        let f = scaled(4096, self.fc_width);
        [
            (blocks[4].out_c * last * last, f),
            (f, f),
            (f, self.num_classes),
        ]
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.width > 0.0 && self.width <= 4.0) {
            bail!(
                "width: expected a multiplier in (0, 4], found {}",
                self.width
            );
        }
        if !(self.fc_width > 0.0 && self.fc_width <= 4.0) {
            bail!(
                "fc_width: expected a multiplier in (0, 4], found {}",
                self.fc_width
            );
        }
        if self.num_classes < 1 {
            bail!(
                "classes: expected at least one class, found {}",
                self.num_classes
            );
        }
        if self.input_size < 64 || self.input_size > 1024 {
            bail!("input_size: expected 64..=1024, found {}", self.input_size);
        }
        if self.sizes().iter().any(|s| s.2 < 1) {
            bail!(
                "input_size {} is too small for {}",
                self.input_size,
                self.arch
            );
        }
        Ok(())
    }

    /// Receptive field of unit (y, x) of conv layer `layer` (1-based) in input
    /// pixels: (y0, x0, y1, x1), inclusive, not clipped to the image.
    pub fn receptive_field(&self, layer: usize, y: i64, x: i64) -> (i64, i64, i64, i64) {
        let blocks = self.blocks();
        let (mut y0, mut x0, mut y1, mut x1) = (y, x, y, x);
        let back =
            |w: &Window, a: i64, b: i64| (a * w.stride - w.pad, b * w.stride - w.pad + w.k - 1);
        for l in (0..layer).rev() {
            let b = &blocks[l];
            // Step back through conv l, then the pool of the layer below (if any).
            (y0, y1) = back(&b.conv, y0, y1);
            (x0, x1) = back(&b.conv, x0, x1);
            if l > 0 {
                if let Some(p) = &blocks[l - 1].pool {
                    (y0, y1) = back(p, y0, y1);
                    (x0, x1) = back(p, x0, x1);
                }
            }
        }
        (y0, x0, y1, x1)
    }
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
    pub blocks: Vec<ConvBlock>,
    convs: Vec<nn::Conv2D>,
    fcs: Vec<nn::Linear>,
}

/// The paper's contrast normalisation, exactly PyTorch's
/// `LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2)`.
pub fn lrn(x: &Tensor) -> Tensor {
    let div = x
        .square()
        .unsqueeze(1)
        .constant_pad_nd([0, 0, 0, 0, 2, 2])
        .avg_pool3d([5, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None::<i64>)
        .squeeze_dim(1);
    x / (div * 1e-4 + 2.0).pow_tensor_scalar(0.75)
}

/// Every conv layer's feature maps (after ReLU) and every pool's switches,
/// kept from one forward pass so that many projections can share it.
pub struct Trace {
    /// maps[l] = conv{l+1} output after ReLU, [N, C, H, W].
    pub maps: Vec<Tensor>,
    /// switches[l] = flat argmax indices of pool after conv{l+1}, if any.
    pub switches: Vec<Option<Tensor>>,
    pub fc6: Tensor,
    pub fc7: Tensor,
    pub logits: Tensor,
}

impl Trace {
    pub fn probs(&self) -> Tensor {
        self.logits.softmax(-1, Kind::Float)
    }
}

impl Net {
    pub fn new(spec: NetSpec, device: Device) -> Result<Net> {
        spec.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let blocks = spec.blocks();
        let convs = blocks
            .iter()
            .map(|b| {
                let cfg = nn::ConvConfig {
                    stride: b.conv.stride,
                    padding: b.conv.pad,
                    ..Default::default()
                };
                nn::conv2d(&root / b.name.as_str(), b.in_c, b.out_c, b.conv.k, cfg)
            })
            .collect();
        let fcs = spec
            .fc_dims()
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                nn::linear(&root / format!("fc{}", i + 6), a, b, Default::default())
            })
            .collect();
        Ok(Net {
            spec,
            vs,
            blocks,
            convs,
            fcs,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Redraw every weight with `init` (biases 0), from torch's global RNG.
    pub fn init(&mut self, init: Init) {
        // Sorted, so the same seed always draws the same weights.
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (name, mut t) in vars {
                if name.ends_with(".bias") {
                    let _ = t.zero_();
                    continue;
                }
                let std = match init {
                    Init::Paper => 0.01,
                    Init::Kaiming => {
                        let fan_in: i64 = t.size()[1..].iter().product();
                        if name.starts_with("fc8") {
                            (1.0 / fan_in as f64).sqrt()
                        } else {
                            (2.0 / fan_in as f64).sqrt()
                        }
                    }
                };
                let _ = t.normal_(0.0, std);
            }
        });
    }

    pub fn conv_weight(&self, layer: usize) -> &Tensor {
        &self.convs[layer].ws
    }

    pub fn conv_bias(&self, layer: usize) -> &Tensor {
        self.convs[layer].bs.as_ref().expect("conv bias")
    }

    /// fc6 -> fc7 -> fc8 on flattened pool5 output (eval: no dropout).
    pub fn forward_head(&self, h: &Tensor) -> Tensor {
        let h = self.fcs[0].forward(h).relu();
        let h = self.fcs[1].forward(&h).relu();
        self.fcs[2].forward(&h)
    }

    /// Training/inference forward to logits; dropout 0.5 on fc6 and fc7 when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (b, conv) in self.blocks.iter().zip(&self.convs) {
            h = conv.forward(&h).relu();
            if let Some(p) = &b.pool {
                h = h.max_pool2d(
                    [p.k, p.k],
                    [p.stride, p.stride],
                    [p.pad, p.pad],
                    [1, 1],
                    false,
                );
            }
            if b.lrn {
                h = lrn(&h);
            }
        }
        h = h.flatten(1, -1);
        h = self.fcs[0].forward(&h).relu().dropout(0.5, train);
        h = self.fcs[1].forward(&h).relu().dropout(0.5, train);
        self.fcs[2].forward(&h)
    }

    /// Inference forward (no grad) keeping maps and switches.
    pub fn trace(&self, x: &Tensor) -> Trace {
        tch::no_grad(|| {
            let mut h = x.to_device(self.device());
            let mut maps = Vec::with_capacity(5);
            let mut switches = Vec::with_capacity(5);
            for (b, conv) in self.blocks.iter().zip(&self.convs) {
                h = conv.forward(&h).relu();
                maps.push(h.shallow_clone());
                if let Some(p) = &b.pool {
                    let (o, idx) = h.max_pool2d_with_indices(
                        [p.k, p.k],
                        [p.stride, p.stride],
                        [p.pad, p.pad],
                        [1, 1],
                        false,
                    );
                    switches.push(Some(idx));
                    h = o;
                } else {
                    switches.push(None);
                }
                if b.lrn {
                    h = lrn(&h);
                }
            }
            let h = h.flatten(1, -1);
            let fc6 = self.fcs[0].forward(&h).relu();
            let fc7 = self.fcs[1].forward(&fc6).relu();
            let logits = self.fcs[2].forward(&fc7);
            Trace {
                maps,
                switches,
                fc6,
                fc7,
                logits,
            }
        })
    }

    /// Feature-scale clipping (paper §2): rescale each conv filter whose RMS
    /// exceeds `max_rms` to exactly `max_rms`.
    pub fn clip_filters(&mut self, max_rms: f64) {
        tch::no_grad(|| {
            for conv in &mut self.convs {
                let rms = conv
                    .ws
                    .square()
                    .mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float)
                    .sqrt();
                let scale = (rms.reciprocal() * max_rms).clamp_max(1.0);
                let _ = conv.ws.g_mul_(&scale);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zfnet_sizes_match_the_paper() {
        let s = NetSpec::new(Arch::Zfnet, 1.0, 1000);
        let sz = s.sizes();
        assert_eq!(
            sz.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![110, 26, 13, 13, 13]
        );
        assert_eq!(sz[0].2, 55);
        assert_eq!(sz[1].2, 13);
        assert_eq!(sz[4].2, 6);
        assert_eq!(s.fc_dims()[0], (9216, 4096));
    }

    #[test]
    fn alexnet_sizes_match_the_paper() {
        let s = NetSpec::new(Arch::Alexnet, 1.0, 1000);
        let sz = s.sizes();
        assert_eq!(
            sz.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![55, 27, 13, 13, 13]
        );
        assert_eq!((sz[0].2, sz[1].2, sz[4].2), (27, 13, 6));
    }

    #[test]
    fn conv1_receptive_field_is_the_kernel() {
        let s = NetSpec::new(Arch::Zfnet, 1.0, 10);
        assert_eq!(s.receptive_field(1, 0, 0), (-1, -1, 5, 5));
        assert_eq!(s.receptive_field(1, 3, 2), (5, 3, 11, 9));
    }

    #[test]
    fn clipping_rescales_only_large_filters() {
        let mut net = Net::new(NetSpec::new(Arch::Zfnet, 0.1, 3), Device::Cpu).unwrap();
        tch::no_grad(|| {
            let w = net.conv_weight(0).shallow_clone();
            let mut big = w.get(0);
            let _ = big.fill_(1.0);
            let mut small = w.get(1);
            let _ = small.fill_(0.01);
        });
        net.clip_filters(0.1);
        let w = net.conv_weight(0);
        let rms = |t: Tensor| t.square().mean(Kind::Float).sqrt().double_value(&[]);
        assert!((rms(w.get(0)) - 0.1).abs() < 1e-6);
        assert!((rms(w.get(1)) - 0.01).abs() < 1e-6);
    }
}
