//! The `--arch` names and the layout each one builds: the table of
//! contents of the state-dict layouts (chain layouts in `layouts.rs`, graph
//! layouts in `graphs.rs`).

use super::layout::Layout;
use super::{families, graphs, layouts, transformers};
use crate::net::{Arch, NetSpec};
use anyhow::{bail, Result};
use std::collections::HashMap;

pub const ARCHS: &[&str] = &[
    "torchvision:resnet18",
    "torchvision:resnet34",
    "torchvision:resnet50",
    "torchvision:resnet101",
    "torchvision:resnet152",
    "torchvision:densenet121",
    "torchvision:densenet161",
    "torchvision:densenet169",
    "torchvision:densenet201",
    "torchvision:resnext50_32x4d",
    "torchvision:resnext101_32x8d",
    "torchvision:resnext101_64x4d",
    "torchvision:wide_resnet50_2",
    "torchvision:wide_resnet101_2",
    "torchvision:googlenet",
    "torchvision:inception_v3",
    "torchvision:mobilenet_v2",
    "torchvision:mobilenet_v3_small",
    "torchvision:mobilenet_v3_large",
    "torchvision:mnasnet0_5",
    "torchvision:mnasnet0_75",
    "torchvision:mnasnet1_0",
    "torchvision:mnasnet1_3",
    "torchvision:efficientnet_b0",
    "torchvision:efficientnet_b1",
    "torchvision:efficientnet_b2",
    "torchvision:efficientnet_b3",
    "torchvision:efficientnet_b4",
    "torchvision:efficientnet_b5",
    "torchvision:efficientnet_b6",
    "torchvision:efficientnet_b7",
    "torchvision:efficientnet_v2_s",
    "torchvision:efficientnet_v2_m",
    "torchvision:efficientnet_v2_l",
    "torchvision:regnet_x_400mf",
    "torchvision:regnet_x_800mf",
    "torchvision:regnet_x_1_6gf",
    "torchvision:regnet_x_3_2gf",
    "torchvision:regnet_x_8gf",
    "torchvision:regnet_x_16gf",
    "torchvision:regnet_x_32gf",
    "torchvision:regnet_y_400mf",
    "torchvision:regnet_y_800mf",
    "torchvision:regnet_y_1_6gf",
    "torchvision:regnet_y_3_2gf",
    "torchvision:regnet_y_8gf",
    "torchvision:regnet_y_16gf",
    "torchvision:regnet_y_32gf",
    "torchvision:regnet_y_128gf",
    "torchvision:convnext_tiny",
    "torchvision:convnext_small",
    "torchvision:convnext_base",
    "torchvision:convnext_large",
    "torchvision:shufflenet_v2_x0_5",
    "torchvision:shufflenet_v2_x1_0",
    "torchvision:shufflenet_v2_x1_5",
    "torchvision:shufflenet_v2_x2_0",
    "torchvision:squeezenet1_0",
    "torchvision:squeezenet1_1",
    "torchvision:alexnet",
    "torchvision:vgg11",
    "torchvision:vgg11_bn",
    "torchvision:vgg13",
    "torchvision:vgg13_bn",
    "torchvision:vgg16",
    "torchvision:vgg16_bn",
    "torchvision:vgg19",
    "torchvision:vgg19_bn",
    "torchvision:swin_t",
    "torchvision:swin_s",
    "torchvision:swin_b",
    "torchvision:swin_v2_t",
    "torchvision:swin_v2_s",
    "torchvision:swin_v2_b",
    "torchvision:vit_b_16",
    "torchvision:vit_b_32",
    "torchvision:vit_l_16",
    "pytorchcv:zfnet",
    "pytorchcv:zfnetb",
    "pytorchcv:alexnet",
    "zfnet",
    "alexnet",
];

/// The layout named `arch` for a file whose tensors are `shapes` (zfvis's
/// presets read their widths and every layout its class count from them),
/// at `input_size` when the user gives one (Swin's padding follows it).
pub fn layout(
    arch: &str,
    shapes: &HashMap<String, Vec<i64>>,
    input_size: Option<i64>,
) -> Result<Layout> {
    let classes = |name: &str| -> Result<i64> {
        match shapes.get(name) {
            Some(s) if s.len() == 2 => Ok(s[0]),
            Some(s) => bail!("tensor {name}: expected a 2-d weight, found shape {s:?}"),
            None => bail!("missing tensor {name} (the class scores of --arch {arch})"),
        }
    };
    Ok(match arch {
        "torchvision:alexnet" => layouts::torchvision_alexnet(classes("classifier.6.weight")?),
        a if a.starts_with("torchvision:resnet") => graphs::resnet(
            &a["torchvision:resnet".len()..],
            shapes,
            classes("fc.weight")?,
        )?,
        "torchvision:resnext50_32x4d" | "torchvision:wide_resnet50_2" => {
            graphs::resnet("50", shapes, classes("fc.weight")?)?
        }
        "torchvision:resnext101_32x8d"
        | "torchvision:resnext101_64x4d"
        | "torchvision:wide_resnet101_2" => graphs::resnet("101", shapes, classes("fc.weight")?)?,
        "torchvision:inception_v3" => families::inception_v3(shapes, classes("fc.weight")?)?,
        a if a.starts_with("torchvision:mobilenet_v3_") => families::mobilenet_v3(
            &a["torchvision:mobilenet_v3_".len()..],
            shapes,
            classes("classifier.3.weight")?,
        )?,
        a if a.starts_with("torchvision:mnasnet") => {
            families::mnasnet(shapes, classes("classifier.1.weight")?)?
        }
        a if a.starts_with("torchvision:efficientnet_") => families::efficientnet(
            &a["torchvision:efficientnet_".len()..],
            shapes,
            classes("classifier.1.weight")?,
        )?,
        a if a.starts_with("torchvision:regnet_") => {
            families::regnet(shapes, classes("fc.weight")?)?
        }
        a if a.starts_with("torchvision:convnext_") => {
            families::convnext(shapes, classes("classifier.2.weight")?)?
        }
        a if a.starts_with("torchvision:shufflenet_v2_") => {
            families::shufflenet_v2(shapes, classes("fc.weight")?)?
        }
        "torchvision:squeezenet1_0" | "torchvision:squeezenet1_1" => families::squeezenet(shapes)?,
        a if a.starts_with("torchvision:densenet") => graphs::densenet(
            &a["torchvision:densenet".len()..],
            classes("classifier.weight")?,
        )?,
        a if a.starts_with("torchvision:swin_") => transformers::swin(
            &a["torchvision:swin_".len()..],
            shapes,
            input_size.unwrap_or(224),
            classes("head.weight")?,
        )?,
        a if a.starts_with("torchvision:vit_") => transformers::vit(
            &a["torchvision:vit_".len()..],
            shapes,
            classes("heads.head.weight")?,
        )?,
        "torchvision:googlenet" => graphs::googlenet(classes("fc.weight")?),
        "torchvision:mobilenet_v2" => graphs::mobilenet_v2(classes("classifier.1.weight")?),
        a if a.starts_with("torchvision:vgg") => {
            let rest = &a["torchvision:vgg".len()..];
            let (depth, bn) = match rest.strip_suffix("_bn") {
                Some(d) => (d, true),
                None => (rest, false),
            };
            layouts::vgg(depth, bn, classes("classifier.6.weight")?)?
        }
        "pytorchcv:zfnet" | "pytorchcv:zfnetb" | "pytorchcv:alexnet" => {
            layouts::pytorchcv(arch, classes("output.fc3.weight")?)
        }
        "zfnet" | "alexnet" => {
            let a: Arch = arch.parse()?;
            let out = |n: &str| shapes.get(n).and_then(|s| s.first().copied());
            let (Some(c1), Some(f6)) = (out("conv1.weight"), out("fc6.weight")) else {
                bail!("missing tensor conv1.weight or fc6.weight (zfvis's {arch} layout)");
            };
            let spec = NetSpec::preset(
                a,
                c1 as f64 / 96.0,
                f6 as f64 / 4096.0,
                classes("fc8.weight")?,
            );
            Layout {
                nodes: spec.nodes,
                ..Layout::chain(vec![], HashMap::new(), "zfvis")
            }
        }
        other => bail!(
            "unknown --arch {other:?}: expected one of {}",
            ARCHS.join(", ")
        ),
    })
}
