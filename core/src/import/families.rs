//! torchvision's families of the last five years as graphs, built from their
//! state dicts: EfficientNet B0–B7 and V2 S/M/L, MobileNetV3 small/large,
//! MNASNet, RegNetX/Y, ConvNeXt, ShuffleNetV2, SqueezeNet 1.0/1.1 and
//! Inception v3 (without its auxiliary head, `transform_input=False`).
//! Widths, depths, kernels and groups are read off the file's tensor
//! shapes; what a state dict does not hold (strides, activations) comes
//! from torchvision's configurations. Each block's output is a unit named
//! by its module path; batch norms are folded into the convs before them.

use super::builder::{k, Builder, HARD_SWISH, RELU, SILU};
use super::layout::Layout;
use crate::net::Layer;
use anyhow::{bail, Result};
use std::collections::HashMap;

type Shapes = HashMap<String, Vec<i64>>;

/// One inverted-residual block `p` (EfficientNet's MBConv and FusedMBConv,
/// MobileNetV3's InvertedResidual): its parts `{p}.block.{j}` in order,
/// each a conv + batch norm with `act` (the last, the projection, without
/// one when there are several) or a squeeze-excite (`se_act`, `gate`);
/// `stride` on the first spatial conv; the input added when shapes allow.
fn inverted(
    g: &mut Builder,
    p: &str,
    stride: i64,
    act: &Option<Layer>,
    se: (Layer, Layer),
) -> Result<()> {
    let (input, in_c) = (g.last(), g.c);
    let parts = g.count(&format!("{p}.block"));
    if parts == 0 {
        bail!("missing tensors {p}.block.*");
    }
    let mut strided = false;
    for j in 0..parts {
        let q = format!("{p}.block.{j}");
        if g.has(&format!("{q}.fc1.weight")) {
            g.squeeze_excite(&q, se.0.clone(), se.1.clone())?;
            continue;
        }
        let spatial = g.shape(&format!("{q}.0.weight"))?.get(2).copied() > Some(1);
        let s = if spatial && !strided {
            strided = true;
            stride
        } else {
            1
        };
        let a = if j + 1 == parts && parts > 1 {
            None
        } else {
            act.clone()
        };
        g.conv(&format!("{q}.0"), Some(&format!("{q}.1")), s, None, a)?;
    }
    if stride == 1 && in_c == g.c {
        g.add(input);
    }
    g.unit(p);
    Ok(())
}

/// EfficientNet `b0`…`b7`, `v2_s`, `v2_m`, `v2_l`.
pub fn efficientnet(member: &str, shapes: &Shapes, classes: i64) -> Result<Layout> {
    let strides: &[i64] = match member {
        "v2_s" => &[1, 2, 2, 2, 1, 2],
        "v2_m" | "v2_l" | "b0" | "b1" | "b2" | "b3" | "b4" | "b5" | "b6" | "b7" => {
            &[1, 2, 2, 2, 1, 2, 1]
        }
        _ => bail!("unknown EfficientNet {member:?}: expected b0…b7, v2_s, v2_m or v2_l"),
    };
    let mut g = Builder::reading(shapes);
    g.conv("features.0.0", Some("features.0.1"), 2, None, SILU)?;
    g.unit("features.0");
    for (s, &stride) in strides.iter().enumerate() {
        let stage = format!("features.{}", s + 1);
        for b in 0..g.count(&stage) {
            let st = if b == 0 { stride } else { 1 };
            inverted(
                &mut g,
                &format!("{stage}.{b}"),
                st,
                &SILU,
                (Layer::Silu, Layer::Sigmoid),
            )?;
        }
    }
    let last = format!("features.{}", strides.len() + 1);
    g.conv(
        &format!("{last}.0"),
        Some(&format!("{last}.1")),
        1,
        None,
        SILU,
    )?;
    g.unit(&last);
    let c = g.c;
    let mut l = g.finish(c, "classifier.1", classes, 0.2);
    if !matches!(member, "b0" | "b1" | "b2" | "b3" | "b4") {
        l.bn_eps = 1e-3;
    }
    Ok(l)
}

fn hard_sigmoid() -> Layer {
    Layer::HardSigmoid {
        alpha: 1.0 / 6.0,
        beta: 0.5,
    }
}

/// MobileNetV3 `small` or `large` (width 1.0, not dilated).
pub fn mobilenet_v3(member: &str, shapes: &Shapes, classes: i64) -> Result<Layout> {
    // Per block: (hard-swish, stride); torchvision's `_mobilenet_v3_conf`.
    let (hs, strides): (&[u8], &[i64]) = match member {
        "large" => (
            &[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            &[1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1],
        ),
        "small" => (
            &[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
            &[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
        ),
        _ => bail!("unknown MobileNetV3 {member:?}: expected small or large"),
    };
    let mut g = Builder::reading(shapes);
    g.conv("features.0.0", Some("features.0.1"), 2, None, HARD_SWISH)?;
    g.unit("features.0");
    for (b, (&h, &s)) in hs.iter().zip(strides).enumerate() {
        let act = if h == 1 { HARD_SWISH } else { RELU };
        let se = (Layer::Relu, hard_sigmoid());
        inverted(&mut g, &format!("features.{}", b + 1), s, &act, se)?;
    }
    let last = format!("features.{}", hs.len() + 1);
    g.conv(
        &format!("{last}.0"),
        Some(&format!("{last}.1")),
        1,
        None,
        HARD_SWISH,
    )?;
    g.unit(&last);
    g.then(Layer::AdaptiveAvgPool { out: 1 });
    g.then(Layer::Flatten);
    let hidden = g.shape("classifier.0.weight")?[0];
    g.then(Layer::linear("classifier.0", g.c, hidden));
    g.then(Layer::HardSwish);
    g.then(Layer::Dropout { p: 0.2 });
    g.then(Layer::linear("classifier.3", hidden, classes));
    Ok(g.layout(1e-3))
}

/// MNASNet 0.5, 0.75, 1.0, 1.3 (torchvision's version 2 stem).
pub fn mnasnet(shapes: &Shapes, classes: i64) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    g.conv("layers.0", Some("layers.1"), 2, None, RELU)?;
    g.conv("layers.3", Some("layers.4"), 1, None, RELU)?;
    g.conv("layers.6", Some("layers.7"), 1, None, None)?;
    g.unit("layers.7");
    for (s, stride) in [2, 2, 2, 1, 2, 1].into_iter().enumerate() {
        let stack = format!("layers.{}", s + 8);
        for b in 0..g.count(&stack) {
            let p = format!("{stack}.{b}");
            let st = if b == 0 { stride } else { 1 };
            let (input, in_c) = (g.last(), g.c);
            g.conv(
                &format!("{p}.layers.0"),
                Some(&format!("{p}.layers.1")),
                1,
                None,
                RELU,
            )?;
            g.conv(
                &format!("{p}.layers.3"),
                Some(&format!("{p}.layers.4")),
                st,
                None,
                RELU,
            )?;
            g.conv(
                &format!("{p}.layers.6"),
                Some(&format!("{p}.layers.7")),
                1,
                None,
                None,
            )?;
            if st == 1 && in_c == g.c {
                g.add(input);
            }
            g.unit(&p);
        }
    }
    g.conv("layers.14", Some("layers.15"), 1, None, RELU)?;
    g.unit("layers.16");
    let c = g.c;
    Ok(g.finish(c, "classifier.1", classes, 0.2))
}

/// RegNetX and RegNetY of any size: stages `trunk_output.block{s}`, blocks
/// `block{s}-{b}` (a 1x1, a grouped 3x3 with the stage's stride, RegNetY's
/// squeeze-excite, a 1x1; a projection shortcut where shapes change).
pub fn regnet(shapes: &Shapes, classes: i64) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    g.conv("stem.0", Some("stem.1"), 2, None, RELU)?;
    g.unit("stem");
    let mut s = 1;
    while g.has(&format!("trunk_output.block{s}.block{s}-0.f.a.0.weight")) {
        let mut b = 0;
        loop {
            let p = format!("trunk_output.block{s}.block{s}-{b}");
            if !g.has(&format!("{p}.f.a.0.weight")) {
                break;
            }
            let stride = if b == 0 { 2 } else { 1 };
            let (input, in_c) = (g.last(), g.c);
            let shortcut = if g.has(&format!("{p}.proj.0.weight")) {
                g.conv(
                    &format!("{p}.proj.0"),
                    Some(&format!("{p}.proj.1")),
                    stride,
                    None,
                    None,
                )?;
                g.last()
            } else {
                input
            };
            g.from(input, in_c);
            g.conv(
                &format!("{p}.f.a.0"),
                Some(&format!("{p}.f.a.1")),
                1,
                None,
                RELU,
            )?;
            g.conv(
                &format!("{p}.f.b.0"),
                Some(&format!("{p}.f.b.1")),
                stride,
                None,
                RELU,
            )?;
            if g.has(&format!("{p}.f.se.fc1.weight")) {
                g.squeeze_excite(&format!("{p}.f.se"), Layer::Relu, Layer::Sigmoid)?;
            }
            g.conv(
                &format!("{p}.f.c.0"),
                Some(&format!("{p}.f.c.1")),
                1,
                None,
                None,
            )?;
            g.add(shortcut);
            g.then(Layer::Relu);
            g.unit(&p);
            b += 1;
        }
        s += 1;
    }
    if s == 1 {
        bail!("missing tensor trunk_output.block1.block1-0.f.a.0.weight");
    }
    let c = g.c;
    Ok(g.finish(c, "fc", classes, 0.0))
}

/// ConvNeXt tiny/small/base/large: a 4x4 stride-4 stem, stages of blocks
/// (7x7 depthwise, layer norm over channels, two linear layers on the
/// channels with GELU between, layer scale, residual), layer norm and a
/// 2x2 stride-2 conv between stages.
pub fn convnext(shapes: &Shapes, classes: i64) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    g.conv("features.0.0", None, 4, Some(0), None)?;
    g.layer_norm("features.0.1", 1e-6);
    g.unit("features.0");
    for s in [1, 3, 5, 7] {
        if s > 1 {
            let d = format!("features.{}", s - 1);
            g.layer_norm(&format!("{d}.0"), 1e-6);
            g.conv(&format!("{d}.1"), None, 2, Some(0), None)?;
            g.unit(&d);
        }
        let stage = format!("features.{s}");
        let n = g.count(&stage);
        if n == 0 {
            bail!("missing tensors {stage}.*");
        }
        for b in 0..n {
            let p = format!("{stage}.{b}");
            let input = g.last();
            g.conv(&format!("{p}.block.0"), None, 1, None, None)?;
            g.layer_norm(&format!("{p}.block.2"), 1e-6);
            g.conv(
                &format!("{p}.block.3"),
                None,
                1,
                Some(0),
                Some(Layer::Gelu { tanh: false }),
            )?;
            g.conv(&format!("{p}.block.5"), None, 1, Some(0), None)?;
            let scale = format!("{p}.layer_scale");
            g.then(Layer::Affine {
                name: scale.clone(),
                c: g.c,
            });
            g.scales.insert(scale.clone(), scale);
            g.add(input);
            g.unit(&p);
        }
    }
    g.then(Layer::AdaptiveAvgPool { out: 1 });
    g.layer_norm("classifier.0", 1e-6);
    g.then(Layer::Flatten);
    g.then(Layer::linear("classifier.2", g.c, classes));
    Ok(g.layout(1e-5))
}

/// ShuffleNetV2 x0.5…x2.0: stages of blocks that split the channels (or,
/// first in a stage, run two strided branches), concatenate and shuffle.
pub fn shufflenet_v2(shapes: &Shapes, classes: i64) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    g.conv("conv1.0", Some("conv1.1"), 2, None, RELU)?;
    g.then(Layer::max_pool(k(3, 2, 1), false));
    g.unit("maxpool");
    for s in 2..=4 {
        let stage = format!("stage{s}");
        for b in 0..g.count(&stage) {
            let p = format!("{stage}.{b}");
            let (input, c) = (g.last(), g.c);
            let strided = g.has(&format!("{p}.branch1.0.weight"));
            let (left, left_c, right_from, right_c) = if strided {
                let b1 = |i: usize| format!("{p}.branch1.{i}");
                g.conv(&b1(0), Some(&b1(1)), 2, None, None)?;
                g.conv(&b1(2), Some(&b1(3)), 1, None, RELU)?;
                (g.last(), g.c, input, c)
            } else {
                let half = c / 2;
                let left = g.then(Layer::Channels {
                    start: 0,
                    len: half,
                });
                g.from(input, c);
                let right = g.then(Layer::Channels {
                    start: half,
                    len: c - half,
                });
                (left, half, right, c - half)
            };
            let stride = if strided { 2 } else { 1 };
            g.from(right_from, right_c);
            let b2 = |i: usize| format!("{p}.branch2.{i}");
            g.conv(&b2(0), Some(&b2(1)), 1, None, RELU)?;
            g.conv(&b2(3), Some(&b2(4)), stride, None, None)?;
            g.conv(&b2(5), Some(&b2(6)), 1, None, RELU)?;
            let right = g.last();
            let out = left_c + g.c;
            g.node(Layer::Concat, &[left, right]);
            g.c = out;
            g.then(Layer::ChannelShuffle { groups: 2 });
            g.unit(&p);
        }
    }
    g.conv("conv5.0", Some("conv5.1"), 1, None, RELU)?;
    g.unit("conv5");
    let c = g.c;
    Ok(g.finish(c, "fc", classes, 0.0))
}

/// SqueezeNet 1.0 and 1.1: fire modules between ceil-mode max pools; the
/// class scores are a 1x1 conv's maps after global pooling.
pub fn squeezenet(shapes: &Shapes) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    g.conv("features.0", None, 2, Some(0), RELU)?;
    let mut last_fire = 0;
    for i in 2..=12 {
        let p = format!("features.{i}");
        if g.has(&format!("{p}.squeeze.weight")) {
            g.conv(&format!("{p}.squeeze"), None, 1, None, RELU)?;
            let (sq, c) = (g.last(), g.c);
            g.conv(&format!("{p}.expand1x1"), None, 1, None, RELU)?;
            let (e1, c1) = (g.last(), g.c);
            g.from(sq, c);
            g.conv(&format!("{p}.expand3x3"), None, 1, None, RELU)?;
            let e3 = g.last();
            g.node(Layer::Concat, &[e1, e3]);
            g.c += c1;
            last_fire = i;
        } else {
            g.then(Layer::max_pool(k(3, 2, 0), true));
        }
        g.unit(&p);
    }
    if last_fire != 12 {
        bail!("missing tensor features.12.squeeze.weight");
    }
    g.then(Layer::Dropout { p: 0.5 });
    g.conv("classifier.1", None, 1, Some(0), RELU)?;
    g.unit("classifier.2");
    g.then(Layer::AdaptiveAvgPool { out: 1 });
    g.then(Layer::Flatten);
    Ok(g.layout(1e-5))
}

/// Inception v3 without its auxiliary head (`transform_input=False`, the
/// `weights=None` default).
pub fn inception_v3(shapes: &Shapes, classes: i64) -> Result<Layout> {
    let mut g = Builder::reading(shapes);
    basic(&mut g, "Conv2d_1a_3x3", 2, Some(0))?;
    basic(&mut g, "Conv2d_2a_3x3", 1, Some(0))?;
    basic(&mut g, "Conv2d_2b_3x3", 1, None)?;
    g.then(Layer::max_pool(k(3, 2, 0), false));
    g.unit("maxpool1");
    basic(&mut g, "Conv2d_3b_1x1", 1, None)?;
    basic(&mut g, "Conv2d_4a_3x3", 1, Some(0))?;
    g.then(Layer::max_pool(k(3, 2, 0), false));
    g.unit("maxpool2");
    let blocks: [(&str, char); 11] = [
        ("Mixed_5b", 'A'),
        ("Mixed_5c", 'A'),
        ("Mixed_5d", 'A'),
        ("Mixed_6a", 'B'),
        ("Mixed_6b", 'C'),
        ("Mixed_6c", 'C'),
        ("Mixed_6d", 'C'),
        ("Mixed_6e", 'C'),
        ("Mixed_7a", 'D'),
        ("Mixed_7b", 'E'),
        ("Mixed_7c", 'E'),
    ];
    for (name, kind) in blocks {
        mixed(&mut g, name, kind)?;
    }
    let mut l = g.finish(2048, "fc", classes, 0.5);
    l.bn_eps = 1e-3;
    Ok(l)
}

/// BasicConv2d: conv (no bias) + batch norm + ReLU.
fn basic(g: &mut Builder, p: &str, stride: i64, pad: Option<i64>) -> Result<()> {
    g.conv(
        &format!("{p}.conv"),
        Some(&format!("{p}.bn")),
        stride,
        pad,
        RELU,
    )
}

/// One of Inception v3's mixed blocks (`kind` A–E, torchvision's
/// InceptionA–E) on the last node: its branches, concatenated.
fn mixed(g: &mut Builder, name: &str, kind: char) -> Result<()> {
    // Each branch: the convs it chains from the block's input, a pool and
    // a conv, or two convs it splits into (InceptionE).
    let (x, c) = (g.last(), g.c);
    let mut outs: Vec<(usize, i64)> = vec![];
    let chain = |g: &mut Builder, convs: &[(&str, i64, Option<i64>)]| -> Result<(usize, i64)> {
        g.from(x, c);
        for (b, stride, pad) in convs {
            basic(g, &format!("{name}.{b}"), *stride, *pad)?;
        }
        Ok((g.last(), g.c))
    };
    let avg_pool_branch = |g: &mut Builder| -> Result<(usize, i64)> {
        g.from(x, c);
        g.then(Layer::AvgPool {
            k: 3,
            stride: 1,
            pad: 1,
            ceil_mode: false,
            count_include_pad: true,
        });
        basic(g, &format!("{name}.branch_pool"), 1, None)?;
        Ok((g.last(), g.c))
    };
    let max_pool_branch = |g: &mut Builder| {
        g.node(Layer::max_pool(k(3, 2, 0), false), &[x]);
        (g.last(), c)
    };
    // Two convs on one input, concatenated (InceptionE's split).
    let split = |g: &mut Builder, from: (usize, i64), a: &str, b: &str| -> Result<(usize, i64)> {
        g.from(from.0, from.1);
        basic(g, &format!("{name}.{a}"), 1, None)?;
        let (ya, ca) = (g.last(), g.c);
        g.from(from.0, from.1);
        basic(g, &format!("{name}.{b}"), 1, None)?;
        let (yb, cb) = (g.last(), g.c);
        Ok((g.node(Layer::Concat, &[ya, yb]), ca + cb))
    };
    match kind {
        'A' => {
            outs.push(chain(g, &[("branch1x1", 1, None)])?);
            outs.push(chain(
                g,
                &[("branch5x5_1", 1, None), ("branch5x5_2", 1, None)],
            )?);
            outs.push(chain(
                g,
                &[
                    ("branch3x3dbl_1", 1, None),
                    ("branch3x3dbl_2", 1, None),
                    ("branch3x3dbl_3", 1, None),
                ],
            )?);
            outs.push(avg_pool_branch(g)?);
        }
        'B' => {
            outs.push(chain(g, &[("branch3x3", 2, Some(0))])?);
            outs.push(chain(
                g,
                &[
                    ("branch3x3dbl_1", 1, None),
                    ("branch3x3dbl_2", 1, None),
                    ("branch3x3dbl_3", 2, Some(0)),
                ],
            )?);
            outs.push(max_pool_branch(g));
        }
        'C' => {
            outs.push(chain(g, &[("branch1x1", 1, None)])?);
            let seven: Vec<String> = (1..=3).map(|i| format!("branch7x7_{i}")).collect();
            let dbl: Vec<String> = (1..=5).map(|i| format!("branch7x7dbl_{i}")).collect();
            let c = |v: &[String]| -> Vec<(String, i64, Option<i64>)> {
                v.iter().map(|s| (s.clone(), 1, None)).collect()
            };
            for v in [c(&seven), c(&dbl)] {
                let refs: Vec<(&str, i64, Option<i64>)> =
                    v.iter().map(|(s, a, b)| (s.as_str(), *a, *b)).collect();
                outs.push(chain(g, &refs)?);
            }
            outs.push(avg_pool_branch(g)?);
        }
        'D' => {
            outs.push(chain(
                g,
                &[("branch3x3_1", 1, None), ("branch3x3_2", 2, Some(0))],
            )?);
            outs.push(chain(
                g,
                &[
                    ("branch7x7x3_1", 1, None),
                    ("branch7x7x3_2", 1, None),
                    ("branch7x7x3_3", 1, None),
                    ("branch7x7x3_4", 2, Some(0)),
                ],
            )?);
            outs.push(max_pool_branch(g));
        }
        _ => {
            outs.push(chain(g, &[("branch1x1", 1, None)])?);
            let b3 = chain(g, &[("branch3x3_1", 1, None)])?;
            outs.push(split(g, b3, "branch3x3_2a", "branch3x3_2b")?);
            let d = chain(
                g,
                &[("branch3x3dbl_1", 1, None), ("branch3x3dbl_2", 1, None)],
            )?;
            outs.push(split(g, d, "branch3x3dbl_3a", "branch3x3dbl_3b")?);
            outs.push(avg_pool_branch(g)?);
        }
    }
    let ids: Vec<usize> = outs.iter().map(|o| o.0).collect();
    g.node(Layer::Concat, &ids);
    g.c = outs.iter().map(|o| o.1).sum();
    g.unit(name);
    Ok(())
}
