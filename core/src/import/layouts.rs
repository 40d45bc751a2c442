//! The layer lists of the state-dict layouts people hold (paper.md §6):
//! torchvision's AlexNet and VGG 11/13/16/19 (with and without batch norm),
//! pytorchcv's ZFNet, ZFNet-b and AlexNet, and zfvis's own presets. Tensor
//! names are the checkpoints' own; channel counts are the packages' (zfvis's
//! presets take their widths from the file).

use super::layout::Layout;
use crate::net::{Layer, Window};
use anyhow::{bail, Result};
use std::collections::HashMap;

/// A layout from a user's `--layers` file: a JSON list of nodes in the
/// manifest's format (`{"op": "conv", "name": "conv1", "in": 1, …}`),
/// tensors named by the state dict's keys; the first conv gives the
/// input's channels.
pub fn from_file(path: &std::path::Path) -> Result<(Layout, i64)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --layers {}: {e}", path.display()))?;
    let nodes: Vec<crate::net::Node> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--layers {}: {e}", path.display()))?;
    let in_c = nodes
        .iter()
        .map(|n| &n.op)
        .find_map(|l| match l {
            Layer::Conv { in_c, groups, .. } if *groups == 1 => Some(*in_c),
            _ => None,
        })
        .unwrap_or(3);
    let mut l = Layout::chain(vec![], HashMap::new(), "torchvision");
    l.nodes = nodes;
    l.convs_without_bias = true;
    Ok((l, in_c))
}

fn head(first: &str, flat: i64, classes: i64, dropout_first: bool) -> Vec<Layer> {
    let d = Layer::Dropout { p: 0.5 };
    let lin = |i: usize, a, b| Layer::linear(&format!("{first}.{i}"), a, b);
    if dropout_first {
        // torchvision AlexNet: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear.
        vec![
            d.clone(),
            lin(1, flat, 4096),
            Layer::Relu,
            d,
            lin(4, 4096, 4096),
            Layer::Relu,
            lin(6, 4096, classes),
        ]
    } else {
        // torchvision VGG: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
        vec![
            lin(0, flat, 4096),
            Layer::Relu,
            d.clone(),
            lin(3, 4096, 4096),
            Layer::Relu,
            d,
            lin(6, 4096, classes),
        ]
    }
}

pub fn torchvision_alexnet(classes: i64) -> Layout {
    let c = |i: usize, a, b, w| Layer::conv(&format!("features.{i}"), a, b, w);
    let pool = || Layer::max_pool(Window::new(3, 2, 0), false);
    let mut layers = vec![
        c(0, 3, 64, Window::new(11, 4, 2)),
        Layer::Relu,
        pool(),
        c(3, 64, 192, Window::new(5, 1, 2)),
        Layer::Relu,
        pool(),
        c(6, 192, 384, Window::new(3, 1, 1)),
        Layer::Relu,
        c(8, 384, 256, Window::new(3, 1, 1)),
        Layer::Relu,
        c(10, 256, 256, Window::new(3, 1, 1)),
        Layer::Relu,
        pool(),
        Layer::AdaptiveAvgPool { out: 6 },
        Layer::Flatten,
    ];
    layers.extend(head("classifier", 256 * 36, classes, true));
    Layout::chain(layers, HashMap::new(), "torchvision")
}

/// torchvision's `cfgs` (0 = max-pool).
fn vgg_cfg(depth: &str) -> Option<&'static [i64]> {
    Some(match depth {
        "11" => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        "13" => &[
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
        "16" => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        "19" => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
        _ => return None,
    })
}

pub fn vgg(depth: &str, bn: bool, classes: i64) -> Result<Layout> {
    let Some(cfg) = vgg_cfg(depth) else {
        bail!("unknown VGG depth {depth:?}: expected 11, 13, 16 or 19");
    };
    let mut layers = vec![];
    let mut bns = HashMap::new();
    let (mut i, mut in_c) = (0usize, 3i64);
    for &v in cfg {
        if v == 0 {
            layers.push(Layer::max_pool(Window::new(2, 2, 0), false));
            i += 1;
            continue;
        }
        let name = format!("features.{i}");
        layers.push(Layer::conv(&name, in_c, v, Window::new(3, 1, 1)));
        layers.push(Layer::Relu);
        if bn {
            bns.insert(name, format!("features.{}", i + 1));
            i += 3;
        } else {
            i += 2;
        }
        in_c = v;
    }
    layers.push(Layer::AdaptiveAvgPool { out: 7 });
    layers.push(Layer::Flatten);
    layers.extend(head("classifier", 512 * 49, classes, false));
    Ok(Layout::chain(layers, bns, "torchvision"))
}

pub fn pytorchcv(arch: &str, classes: i64) -> Layout {
    let stage3: [i64; 3] = if arch == "pytorchcv:zfnetb" {
        [512, 1024, 512]
    } else {
        [384, 384, 256]
    };
    let (conv1, conv2) = if arch == "pytorchcv:alexnet" {
        (Window::new(11, 4, 0), Window::new(5, 1, 2))
    } else {
        (Window::new(7, 2, 1), Window::new(5, 2, 0))
    };
    let c = |s: usize, u: usize, a, b, w| {
        Layer::conv(&format!("features.stage{s}.unit{u}.conv"), a, b, w)
    };
    let pool = || Layer::max_pool(Window::new(3, 2, 0), true);
    let k3 = Window::new(3, 1, 1);
    // pytorchcv's AlexConv applies LRN(5, 1e-4, 0.75, 2) after the ReLU of
    // stages 1 and 2, before their pools.
    let mut layers = vec![
        c(1, 1, 3, 96, conv1),
        Layer::Relu,
        Layer::paper_lrn(),
        pool(),
        c(2, 1, 96, 256, conv2),
        Layer::Relu,
        Layer::paper_lrn(),
        pool(),
        c(3, 1, 256, stage3[0], k3),
        Layer::Relu,
        c(3, 2, stage3[0], stage3[1], k3),
        Layer::Relu,
        c(3, 3, stage3[1], stage3[2], k3),
        Layer::Relu,
        pool(),
        Layer::Flatten,
    ];
    let d = Layer::Dropout { p: 0.5 };
    layers.extend([
        Layer::linear("output.fc1.fc", stage3[2] * 36, 4096),
        Layer::Relu,
        d.clone(),
        Layer::linear("output.fc2.fc", 4096, 4096),
        Layer::Relu,
        d,
        Layer::linear("output.fc3", 4096, classes),
    ]);
    Layout::chain(layers, HashMap::new(), "torchvision")
}
