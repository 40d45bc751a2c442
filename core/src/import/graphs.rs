//! The graphs of torchvision's residual, dense, inception and inverted-residual
//! networks (paper.md §7), built from their state dicts' module paths: ResNet
//! 18/34/50/101/152, DenseNet 121/161/169/201, GoogLeNet (without its
//! auxiliary heads, `transform_input=False`) and MobileNetV2. Nodes come in
//! the order PyTorch's forward runs them; each block's output is a unit named
//! by its module path. Batch norm after a conv is folded into it; batch norm
//! on a concatenation (DenseNet) is an affine node.

use super::builder::{k, Builder, RELU, RELU6};
use super::layout::Layout;
use crate::net::{Layer, Window};
use anyhow::{bail, Result};
use std::collections::HashMap;

/// torchvision's ResNet: `depth` 18, 34 (basic blocks) or 50, 101, 152
/// (bottlenecks); the widths and groups of ResNeXt and Wide ResNet are
/// read off the file.
pub fn resnet(depth: &str, shapes: &HashMap<String, Vec<i64>>, classes: i64) -> Result<Layout> {
    let (blocks, bottleneck): ([usize; 4], bool) = match depth {
        "18" => ([2, 2, 2, 2], false),
        "34" => ([3, 4, 6, 3], false),
        "50" => ([3, 4, 6, 3], true),
        "101" => ([3, 4, 23, 3], true),
        "152" => ([3, 8, 36, 3], true),
        _ => bail!("unknown ResNet depth {depth:?}: expected 18, 34, 50, 101 or 152"),
    };
    let mut g = Builder::reading(shapes);
    g.conv("conv1", Some("bn1"), 2, Some(3), RELU)?;
    g.then(Layer::max_pool(k(3, 2, 1), false));
    g.unit("maxpool");
    for (s, &n) in blocks.iter().enumerate() {
        for b in 0..n {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", s + 1);
            let (input, in_c) = (g.last(), g.c);
            let cv = |i: usize| (format!("{p}.conv{i}"), format!("{p}.bn{i}"));
            let convs: &[(usize, i64)] = if bottleneck {
                &[(1, 1), (2, stride), (3, 1)]
            } else {
                &[(1, stride), (2, 1)]
            };
            for (j, &(i, st)) in convs.iter().enumerate() {
                let (c, bn) = cv(i);
                let act = if j + 1 < convs.len() { RELU } else { None };
                g.conv(&c, Some(&bn), st, None, act)?;
            }
            let (main, out_c) = (g.last(), g.c);
            let shortcut = if g.has(&format!("{p}.downsample.0.weight")) {
                g.from(input, in_c);
                g.conv(
                    &format!("{p}.downsample.0"),
                    Some(&format!("{p}.downsample.1")),
                    stride,
                    Some(0),
                    None,
                )?;
                g.last()
            } else {
                input
            };
            g.node(Layer::Add, &[main, shortcut]);
            g.then(Layer::Relu);
            g.c = out_c;
            g.unit(&p);
        }
    }
    let c = g.c;
    Ok(g.finish(c, "fc", classes, 0.0))
}

/// torchvision's MobileNetV2 (width 1.0).
pub fn mobilenet_v2(classes: i64) -> Layout {
    let mut g = Builder::new();
    g.conv_bn("features.0.0", "features.0.1", 32, k(3, 2, 1), 1, RELU6);
    g.unit("features.0");
    let settings: [(i64, i64, usize, i64); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut f = 1;
    for (t, c, n, s) in settings {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let (input, inp) = (g.at.expect("the stem"), g.c);
            let hidden = inp * t;
            let p = format!("features.{f}.conv");
            let mut m = 0;
            if t != 1 {
                g.conv_bn(
                    &format!("{p}.0.0"),
                    &format!("{p}.0.1"),
                    hidden,
                    k(1, 1, 0),
                    1,
                    RELU6,
                );
                m = 1;
            }
            g.conv_bn(
                &format!("{p}.{m}.0"),
                &format!("{p}.{m}.1"),
                hidden,
                k(3, stride, 1),
                hidden,
                RELU6,
            );
            g.conv_bn(
                &format!("{p}.{}", m + 1),
                &format!("{p}.{}", m + 2),
                c,
                k(1, 1, 0),
                1,
                None,
            );
            if stride == 1 && inp == c {
                let main = g.at.expect("the block");
                g.node(Layer::Add, &[main, input]);
            }
            g.unit(&format!("features.{f}"));
            f += 1;
        }
    }
    g.conv_bn("features.18.0", "features.18.1", 1280, k(1, 1, 0), 1, RELU6);
    g.unit("features.18");
    g.finish(1280, "classifier.1", classes, 0.2)
}

/// torchvision's DenseNet 121, 161, 169 or 201.
pub fn densenet(depth: &str, classes: i64) -> Result<Layout> {
    let (growth, blocks, init): (i64, [usize; 4], i64) = match depth {
        "121" => (32, [6, 12, 24, 16], 64),
        "161" => (48, [6, 12, 36, 24], 96),
        "169" => (32, [6, 12, 32, 32], 64),
        "201" => (32, [6, 12, 48, 32], 64),
        _ => bail!("unknown DenseNet depth {depth:?}: expected 121, 161, 169 or 201"),
    };
    let mut g = Builder::new();
    g.conv_bn(
        "features.conv0",
        "features.norm0",
        init,
        k(7, 2, 3),
        1,
        RELU,
    );
    g.then(Layer::max_pool(k(3, 2, 1), false));
    g.unit("features.pool0");
    for (b, &n) in blocks.iter().enumerate() {
        let block = format!("features.denseblock{}", b + 1);
        let mut parts = vec![g.at.expect("the stem")];
        let mut part_c = vec![g.c];
        for j in 1..=n {
            let p = format!("{block}.denselayer{j}");
            if parts.len() > 1 {
                g.node(Layer::Concat, &parts);
            } else {
                g.at = Some(parts[0]);
            }
            g.c = part_c.iter().sum();
            g.then(Layer::Affine {
                name: format!("{p}.norm1"),
                c: g.c,
            });
            g.then(Layer::Relu);
            g.conv_bn(
                &format!("{p}.conv1"),
                &format!("{p}.norm2"),
                4 * growth,
                k(1, 1, 0),
                1,
                RELU,
            );
            parts.push(g.then(Layer::conv(
                &format!("{p}.conv2"),
                4 * growth,
                growth,
                k(3, 1, 1),
            )));
            part_c.push(growth);
        }
        g.node(Layer::Concat, &parts);
        g.c = part_c.iter().sum();
        g.unit(&block);
        if b < 3 {
            let t = format!("features.transition{}", b + 1);
            g.then(Layer::Affine {
                name: format!("{t}.norm"),
                c: g.c,
            });
            g.then(Layer::Relu);
            g.then(Layer::conv(&format!("{t}.conv"), g.c, g.c / 2, k(1, 1, 0)));
            g.c /= 2;
            g.then(Layer::AvgPool {
                k: 2,
                stride: 2,
                pad: 0,
                ceil_mode: false,
                count_include_pad: true,
            });
            g.unit(&t);
        }
    }
    g.then(Layer::Affine {
        name: "features.norm5".into(),
        c: g.c,
    });
    g.unit("features.norm5");
    g.then(Layer::Relu);
    let c = g.c;
    Ok(g.finish(c, "classifier", classes, 0.0))
}

/// torchvision's GoogLeNet without its auxiliary heads (`transform_input=False`).
pub fn googlenet(classes: i64) -> Layout {
    let mut g = Builder::new();
    let basic = |g: &mut Builder, p: &str, out: i64, w: Window| {
        g.conv_bn(&format!("{p}.conv"), &format!("{p}.bn"), out, w, 1, RELU);
    };
    let pool = |g: &mut Builder, name: &str, kk: i64| {
        g.then(Layer::max_pool(k(kk, 2, 0), true));
        g.unit(name);
    };
    basic(&mut g, "conv1", 64, k(7, 2, 3));
    pool(&mut g, "maxpool1", 3);
    basic(&mut g, "conv2", 64, k(1, 1, 0));
    basic(&mut g, "conv3", 192, k(3, 1, 1));
    pool(&mut g, "maxpool2", 3);
    let table: [(&str, [i64; 6]); 9] = [
        ("3a", [64, 96, 128, 16, 32, 32]),
        ("3b", [128, 128, 192, 32, 96, 64]),
        ("4a", [192, 96, 208, 16, 48, 64]),
        ("4b", [160, 112, 224, 24, 64, 64]),
        ("4c", [128, 128, 256, 24, 64, 64]),
        ("4d", [112, 144, 288, 32, 64, 64]),
        ("4e", [256, 160, 320, 32, 128, 128]),
        ("5a", [256, 160, 320, 32, 128, 128]),
        ("5b", [384, 192, 384, 48, 128, 128]),
    ];
    for (name, ch) in table {
        let p = format!("inception{name}");
        let (input, in_c) = (g.at.expect("the stem"), g.c);
        let from = |g: &mut Builder| {
            g.at = Some(input);
            g.c = in_c;
        };
        basic(&mut g, &format!("{p}.branch1"), ch[0], k(1, 1, 0));
        let b1 = g.at.expect("branch");
        from(&mut g);
        basic(&mut g, &format!("{p}.branch2.0"), ch[1], k(1, 1, 0));
        basic(&mut g, &format!("{p}.branch2.1"), ch[2], k(3, 1, 1));
        let b2 = g.at.expect("branch");
        from(&mut g);
        basic(&mut g, &format!("{p}.branch3.0"), ch[3], k(1, 1, 0));
        basic(&mut g, &format!("{p}.branch3.1"), ch[4], k(3, 1, 1));
        let b3 = g.at.expect("branch");
        from(&mut g);
        g.node(Layer::max_pool(k(3, 1, 1), true), &[input]);
        basic(&mut g, &format!("{p}.branch4.1"), ch[5], k(1, 1, 0));
        let b4 = g.at.expect("branch");
        g.node(Layer::Concat, &[b1, b2, b3, b4]);
        g.c = ch[0] + ch[2] + ch[4] + ch[5];
        g.unit(&p);
        match name {
            "3b" => pool(&mut g, "maxpool3", 3),
            "4e" => pool(&mut g, "maxpool4", 2),
            _ => {}
        }
    }
    let mut l = g.finish(1024, "fc", classes, 0.2);
    l.bn_eps = 1e-3;
    l
}
