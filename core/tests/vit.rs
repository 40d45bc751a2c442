//! Vision transformers (torchvision's ViT, random weights) against the
//! real tools (tests/vit_ref.py): logits against torchvision for every
//! `--arch` name; on a 4-block ViT-B/16 layout, a block's token grid against
//! PyTorch's tokens, Grad-CAM against the grad-cam package with its
//! `reshape_transform`, the gradient and integrated gradients against
//! Captum, attention rollout and its gradient-weighted variant against
//! NumPy from the attention weights forward hooks captured; ViTs, DeiT
//! and Swin as both ONNX exporters write them, against PyTorch.

mod common;

use common::{cosine, rel_l2};
use std::path::Path;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::deconv::{self, Keep, ProjectRequest};
use zfvis_core::explain::{Explainer, Options, Target};
use zfvis_core::import::{import, ImportOptions};
use zfvis_core::methods::{self, rollout, Fusion};
use zfvis_core::net::{Layer, Net};
use zfvis_core::tch::{Device, Kind, Tensor};
use zfvis_dev::testing::{python, tempdir};

fn import_vit(pth: &Path, out: &Path, arch: &str, size: i64) -> Net {
    import(&ImportOptions {
        from: pth.to_path_buf(),
        out: out.to_path_buf(),
        arch: Some(format!("torchvision:{arch}")),
        input_size: Some(size),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{arch}: {e:#}"));
    ModelDir::open(out)
        .unwrap()
        .load(None, Device::Cpu)
        .unwrap()
}

/// An ONNX file imported into `out` and loaded (`what` names it in a failure).
fn import_onnx(file: &Path, out: &Path, what: &str) -> Net {
    import(&ImportOptions {
        from: file.to_path_buf(),
        out: out.to_path_buf(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    ModelDir::open(out)
        .unwrap()
        .load(None, Device::Cpu)
        .unwrap()
}

/// The grad-cam package's normalisation (`scale_cam_image`).
fn scaled(t: &Tensor) -> Tensor {
    let t = t.to_kind(Kind::Double);
    let t = &t - t.min();
    &t / (t.max() + 1e-7)
}

/// Max |a - b| relative to b's largest value.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).abs().max().double_value(&[]);
    d / b.abs().max().double_value(&[]).max(1.0)
}

/// Every ViT and Swin `--arch` name instantiates from torchvision's own
/// state dict and gives its logits on one input (within 1e-4 relative): at
/// 224 px, where Swin V2's 8x8 windows pad the 28, 14 and 7 grids, and
/// Swin V2-T also at its own 256 px.
#[test]
fn every_transformer_arch_name_matches_torchvision() {
    let archs: Vec<&str> = zfvis_core::import::ARCHS
        .iter()
        .filter_map(|a| a.strip_prefix("torchvision:"))
        .filter(|a| a.starts_with("vit_") || a.starts_with("swin_"))
        .collect();
    assert_eq!(archs.len(), 9, "{archs:?}");
    let runs = archs.iter().map(|a| (*a, 224)).chain([("swin_v2_t", 256)]);
    for (arch, size) in runs {
        let dir = tempdir(&format!("vit-{arch}"));
        let s = size.to_string();
        python("vit_ref.py", &["archs", dir.to_str().unwrap(), arch, &s]);
        let pth = dir.join(format!("{arch}.pth"));
        let net = import_vit(&pth, &dir.join("m"), arch, size);
        let _ = std::fs::remove_file(&pth);
        let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
        let want = Tensor::read_npy(dir.join(format!("{arch}.logits.npy"))).unwrap();
        let got = zfvis_core::tch::no_grad(|| net.forward_t(&x, false));
        let d = max_rel(&got, &want);
        eprintln!("{arch} at {size} px: logits within {d:.2e} relative");
        assert!(
            d < 1e-4,
            "{arch} at {size} px: logits differ by {d} relative"
        );
        if arch.starts_with("vit_") {
            let blocks = net.units.iter().filter(|u| u.layer.is_none()).count();
            let want_blocks = if arch.starts_with("vit_l") { 24 } else { 12 };
            assert_eq!(blocks, want_blocks, "{arch}: a unit per block");
        }
    }
}

#[test]
fn a_small_vit_in_every_method_matches_the_reference_tools() {
    let dir = tempdir("vit-small");
    python("vit_ref.py", &["small", dir.to_str().unwrap()]);
    let net = import_vit(&dir.join("model.pth"), &dir.join("m"), "vit_b_16", 224);
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let read = |n: &str| Tensor::read_npy(dir.join(n)).unwrap();

    // The units: the patch embedding, then one token grid per block (the
    // class token dropped), 14x14 at 224 px; the suggested unit is the
    // next-to-last block; a position sees the whole image.
    let names: Vec<&str> = net.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv_proj",
            "encoder.layers.encoder_layer_0",
            "encoder.layers.encoder_layer_1",
            "encoder.layers.encoder_layer_2",
            "encoder.layers.encoder_layer_3"
        ]
    );
    assert!(net.units[1..].iter().all(|u| u.c == 192 && u.side == 14));
    assert_eq!(net.last_unit(), 4, "the next-to-last block");
    assert_eq!(net.spec.receptive_field(3, 7, 7), (0, 0, 223, 223));

    let e = Explainer::new(&net, &x);
    let d = max_rel(&e.trace.logits, &read("logits.npy"));
    assert!(d < 1e-4, "logits differ by {d} relative");
    let cls: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("class.json")).unwrap()).unwrap();
    let cls = cls["class"].as_i64().unwrap();
    assert_eq!(e.top_class(), cls);
    let block1 = e.trace.maps[2].get(0);
    let d = max_rel(&block1, &read("block1.npy"));
    assert!(d < 1e-4, "encoder_layer_1's grid differs by {d} relative");
    // Projections of several maps walk back as one batch (GELU's backward
    // on tokens does not broadcast one image's input): each equals its own.
    let reqs: Vec<ProjectRequest> = (0..3)
        .map(|map| ProjectRequest {
            layer: 3,
            map,
            keep: Keep::Strongest,
        })
        .collect();
    let together = deconv::project(&net, &e.trace, &reqs).unwrap();
    for (k, p) in together.iter().enumerate() {
        let one = deconv::project(&net, &e.trace, &reqs[k..k + 1]).unwrap();
        let d = rel_l2(&p.pixels, &one[0].pixels);
        assert!(
            d < 1e-5,
            "map {k}: batched projection differs by {d} (relative L2)"
        );
    }

    // Rollout: every fusion, and no discarding, against NumPy (1e-5).
    let mut o = Options::new(&net);
    let fused = |f: Fusion| -> Vec<Tensor> {
        rollout::attentions(&e)
            .iter()
            .map(|(_, a)| f.fuse(a).get(0))
            .collect()
    };
    for (f, discard, file) in [
        (Fusion::Mean, 0.9, "rollout_mean.npy"),
        (Fusion::Max, 0.9, "rollout_max.npy"),
        (Fusion::Min, 0.9, "rollout_min.npy"),
        (Fusion::Mean, 0.0, "rollout_mean_d0.npy"),
    ] {
        let ours = rollout::rollout(&e, &fused(f), discard);
        let d = (&ours - read(file)).abs().max().double_value(&[]);
        eprintln!("rollout {f} discard {discard}: max |diff| {d:.2e}");
        assert!(d <= 1e-5, "rollout {f} discard {discard}: max |diff| {d}");
    }
    let weighted: Vec<Tensor> = methods::grad_rollout_weights(&e, cls)
        .iter()
        .map(|w| w.get(0))
        .collect();
    let ours = rollout::rollout(&e, &weighted, 0.9);
    let d = (&ours - read("grad_rollout.npy"))
        .abs()
        .max()
        .double_value(&[]);
    eprintln!("gradient rollout: max |diff| {d:.2e}");
    assert!(d <= 1e-5, "gradient rollout: max |diff| {d}");
    // The methods give these maps, upsampled to the input.
    for m in [methods::ROLLOUT, methods::GRAD_ROLLOUT] {
        let map = m.map(&e, Target::Class(cls), &o).unwrap();
        assert_eq!(map.size(), [224, 224], "{m}");
        let top = map.max().double_value(&[]);
        assert!(
            top > 0.5 && top <= 1.0 + 1e-6,
            "{m}: its largest value {top}"
        );
    }

    // Grad-CAM at the suggested block against the package (normalised as
    // it normalises); the gradient and IG against Captum.
    let ours = methods::GRADCAM.map(&e, Target::Class(cls), &o).unwrap();
    let (a, b) = (scaled(&ours), scaled(&read("gradcam.npy")));
    let (cos, rel) = (cosine(&a, &b), rel_l2(&a, &b));
    eprintln!("Grad-CAM: cosine {cos:.7}, relative L2 {rel:.2e}");
    assert!(cos >= 0.999, "Grad-CAM: cosine {cos}");
    o.ig_steps = 16;
    for (m, file) in [(methods::GRADIENT, "gradient.npy"), (methods::IG, "ig.npy")] {
        let ours = m.map(&e, Target::Class(cls), &o).unwrap();
        let theirs = read(file);
        let (cos, rel) = (cosine(&ours, &theirs), rel_l2(&ours, &theirs));
        eprintln!("{m}: cosine {cos:.7}, relative L2 {rel:.2e}");
        assert!(
            cos >= 0.999 && rel <= 1e-3,
            "{m}: cosine {cos}, relative L2 {rel}"
        );
    }

    // Rollout refuses a network without attention and a bad discard.
    o.discard = 1.0;
    let err = methods::ROLLOUT
        .map(&e, Target::Class(cls), &o)
        .unwrap_err();
    assert!(err.to_string().contains("discard"), "{err}");
}

/// A torchvision ViT, a timm DeiT (a distillation token beside the class
/// token), a timm DeiT III (layer scale) and a timm ViT with a mean-pooling
/// head, 3 blocks each, as both `torch.onnx.export` exporters write them:
/// read as embed, attention and grid nodes. Logits against PyTorch (1e-4
/// relative); one unit per block whose maps are PyTorch's patch tokens
/// (1e-4 relative), the next-to-last suggested (the last under a
/// mean-pooling head); attention rollout against NumPy from the weights
/// forward hooks captured (1e-5). An attention scaled otherwise than by
/// 1/√d is refused by name.
#[test]
fn vits_from_both_onnx_exporters_match_pytorch() {
    let dir = tempdir("vit-onnx");
    python("vit_ref.py", &["onnx", dir.to_str().unwrap()]);
    let read = |n: &str| Tensor::read_npy(dir.join(n)).unwrap();
    let x = read("x.npy");
    for (model, prefix) in [("vit", 1), ("deit", 2), ("deit3", 1), ("avgvit", 1)] {
        for exporter in ["ts", "dynamo"] {
            let what = format!("{model} ({exporter})");
            let file = dir.join(format!("{model}_{exporter}.onnx"));
            let net = import_onnx(&file, &dir.join(format!("{model}-{exporter}")), &what);
            let e = Explainer::new(&net, &x);
            let d = max_rel(&e.trace.logits, &read(&format!("{model}.logits.npy")));
            eprintln!("{what}: logits within {d:.2e} relative");
            assert!(d < 1e-4, "{what}: logits differ by {d} relative");
            let attention = net
                .spec
                .nodes
                .iter()
                .filter(|n| matches!(n.op, Layer::Attention { heads: 4 }))
                .count();
            assert_eq!(attention, 3, "{what}: an attention node per block");
            let blocks: Vec<usize> = (0..net.units.len())
                .filter(|&k| matches!(net.spec.nodes[net.units[k].node].op, Layer::Grid { prefix: p } if p == prefix))
                .collect();
            assert_eq!(blocks.len(), 3, "{what}: a grid unit per block");
            for (b, &k) in blocks.iter().enumerate() {
                let (u, maps) = (&net.units[k], e.trace.maps[k].get(0));
                assert_eq!((u.c, u.side), (64, 14), "{what}: {}", u.name);
                let d = max_rel(&maps, &read(&format!("{model}.block{b}.npy")));
                assert!(d < 1e-4, "{what}: block {b} ({}) differs by {d}", u.name);
            }
            // A class-token head reads no patch token of the last block; a
            // mean-pooling head reads them all.
            let suggested = if model == "avgvit" {
                blocks[2]
            } else {
                blocks[1]
            };
            assert_eq!(
                net.last_unit(),
                suggested + 1,
                "{what}: the suggested block"
            );
            let fused: Vec<Tensor> = rollout::attentions(&e)
                .iter()
                .map(|(_, a)| Fusion::Mean.fuse(a).get(0))
                .collect();
            let ours = rollout::rollout(&e, &fused, 0.9);
            let d = (&ours - read(&format!("{model}.rollout.npy")))
                .abs()
                .max()
                .double_value(&[]);
            eprintln!("{what}: rollout within {d:.2e}");
            assert!(d <= 1e-5, "{what}: rollout differs by {d}");
        }
    }
    // Attention scaled otherwise is refused, naming the node and the scale.
    let err = import(&ImportOptions {
        from: dir.join("odd_scale.onnx"),
        out: dir.join("odd"),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("MatMul") && msg.contains("attention scaled by 0.5"),
        "{msg}"
    );
}

/// A torchvision Swin (two stages of two blocks, 7x7 windows) as both
/// exporters write it (channels-last maps, the windows' reshapes, the
/// shift's `torch.roll` as Slice and Concat, the relative position bias
/// and the mask as constants, patch merging as strided slices): read as
/// window attention and patch merging nodes, logits against PyTorch
/// (1e-4 relative), at 112 px, at 96 px (24 = 28 − 4: padded to the
/// window and cropped back) and at 56 px (stage 2 is one window); Swin V2
/// (cosine attention) at 128 px.
#[test]
fn swin_from_both_onnx_exporters_matches_pytorch() {
    for (size, version) in [(112, "v1"), (96, "v1"), (56, "v1"), (128, "v2")] {
        let dir = tempdir("swin-onnx");
        let s = size.to_string();
        python(
            "vit_ref.py",
            &["swin_onnx", dir.to_str().unwrap(), &s, version],
        );
        let read = |n: &str| Tensor::read_npy(dir.join(n)).unwrap();
        let x = read("x.npy");
        for exporter in ["ts", "dynamo"] {
            let what = format!("Swin {version} ({exporter}, {size} px)");
            let file = dir.join(format!("swin_{exporter}.onnx"));
            let net = import_onnx(&file, &dir.join(format!("swin-{exporter}")), &what);
            let got = zfvis_core::tch::no_grad(|| net.forward_t(&x, false));
            let d = max_rel(&got, &read("swin.logits.npy"));
            eprintln!("{what}: logits within {d:.2e} relative");
            assert!(d < 1e-4, "{what}: logits differ by {d} relative");
            let count = |f: fn(&Layer) -> bool| net.spec.nodes.iter().filter(|n| f(&n.op)).count();
            let shifted = |l: &Layer| matches!(l, Layer::WindowAttention { shift: 3 | 4, .. });
            assert_eq!(
                count(|l| matches!(l, Layer::WindowAttention { .. })),
                4,
                "{what}: a window attention per block"
            );
            // Stage 2's grid (14, 12 padded to 14, V2's 16) holds 2x2
            // windows: its second block shifts too; at 56 px it is one
            // window, which no shift moves.
            let want = if size == 56 { 1 } else { 2 };
            assert_eq!(count(shifted), want, "{what}: the shifted blocks");
            assert_eq!(count(|l| matches!(l, Layer::PatchMerge)), 1, "{what}");
            let cosine = count(|l| matches!(l, Layer::WindowAttention { cosine: true, .. }));
            assert_eq!(
                cosine,
                if version == "v2" { 4 } else { 0 },
                "{what}: cosine attention"
            );
        }
    }
}

/// A Swin cut to two stages: the suggested unit is the last block, its
/// Grad-CAM equals the grad-cam package's (its maps permuted from
/// [B, H, W, C]) and its gradient Captum's.
#[test]
fn a_small_swin_matches_the_reference_tools() {
    let dir = tempdir("swin-small");
    python("vit_ref.py", &["swin", dir.to_str().unwrap()]);
    let net = import_vit(&dir.join("model.pth"), &dir.join("m"), "swin_t", 224);
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let read = |n: &str| Tensor::read_npy(dir.join(n)).unwrap();
    let e = Explainer::new(&net, &x);
    let d = max_rel(&e.trace.logits, &read("logits.npy"));
    assert!(d < 1e-4, "logits differ by {d} relative");
    let cls = e.top_class();
    let o = Options::new(&net);
    assert_eq!(net.units[o.cam_layer - 1].name, "features.3.1");
    let ours = methods::GRADCAM.map(&e, Target::Class(cls), &o).unwrap();
    let (a, b) = (scaled(&ours), scaled(&read("gradcam.npy")));
    let cos = cosine(&a, &b);
    eprintln!("Swin Grad-CAM: cosine {cos:.7}");
    assert!(cos >= 0.999, "Swin Grad-CAM: cosine {cos}");
    let ours = methods::GRADIENT.map(&e, Target::Class(cls), &o).unwrap();
    let theirs = read("gradient.npy");
    let (cos, rel) = (cosine(&ours, &theirs), rel_l2(&ours, &theirs));
    eprintln!("Swin gradient: cosine {cos:.7}, relative L2 {rel:.2e}");
    assert!(cos >= 0.999 && rel <= 1e-3, "Swin gradient: {cos}, {rel}");
    let err = methods::ROLLOUT
        .map(&e, Target::Class(cls), &o)
        .unwrap_err();
    assert!(
        err.to_string().contains("no global self-attention"),
        "{err}"
    );
}
