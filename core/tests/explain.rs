//! The deconvnet's successors against Captum (tests/explain_ref.py in the
//! venv): guided backprop, gradient, Grad-CAM, guided Grad-CAM and
//! integrated gradients on the bundled ZFNet and an imported torchvision
//! VGG11 (random weights); deletion/insertion AUCs against a NumPy/PyTorch
//! implementation of the formula; the sanity check's scores against scipy
//! and scikit-image.

mod common;

use common::{bundled_zfnet, cosine, imported, open, rel_l2};
use std::path::Path;
use zfvis_core::explain::{saliency, Explainer, Options, Target};
use zfvis_core::methods::Method;
use zfvis_core::sanity::{self, Scores};
use zfvis_core::tch::Tensor;
use zfvis_dev::testing::{python, tempdir};

/// Every Captum method's map equals ours by value (relative L2 error
/// <= 1e-4), Grad-CAM at the
/// default unit (the last conv layer: `last` is its number and Captum's
/// name for it); with `auc`, the deletion/insertion AUCs of two maps equal
/// the reference's within 2e-5.
fn family_matches_captum(
    tag: &str,
    model_dir: &Path,
    reference: &[&str],
    last: (usize, &str),
    ig_steps: i64,
    auc: bool,
    methods: &[Method],
) {
    let (net, x) = open(model_dir);
    let dir = tempdir(&format!("{tag}-maps"));
    let xp = dir.join("x.npy");
    x.write_npy(&xp).unwrap();
    let mut args: Vec<&str> = vec!["maps"];
    args.extend_from_slice(reference);
    let name = |m: Method| m.name().replace('-', "_");
    let names: Vec<String> = methods.iter().map(|&m| name(m)).collect();
    let names = names.join(",");
    let steps_s = ig_steps.to_string();
    let (size, stride) = (
        Options::new(&net).size.to_string(),
        OCCLUSION_STRIDE.to_string(),
    );
    args.extend([
        xp.to_str().unwrap(),
        dir.to_str().unwrap(),
        last.1,
        &steps_s,
        &names,
        &size,
        &stride,
    ]);
    python("explain_ref.py", &args);
    let class: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("class.json")).unwrap()).unwrap();
    let e = Explainer::new(&net, &x);
    let cls = e.top_class();
    assert_eq!(class["class"].as_i64(), Some(cls), "{tag}: top class");
    let mut o = Options::new(&net);
    assert_eq!(
        o.cam_layer, last.0,
        "{tag}: Grad-CAM's default unit is the last conv"
    );
    o.ig_steps = ig_steps;
    o.stride = OCCLUSION_STRIDE;
    let mut sal = vec![];
    for (m, file) in methods.iter().map(|&m| (m, name(m))) {
        let ours = m.map(&e, Target::Class(cls), &o).unwrap();
        let theirs = Tensor::read_npy(dir.join(format!("{file}.npy"))).unwrap();
        assert_eq!(ours.size(), theirs.size(), "{tag} {file}: shape");
        let (c, r) = (cosine(&ours, &theirs), rel_l2(&ours, &theirs));
        // Against the exact (float64) map, within 1e-4 or, where the map
        // is ill-defined in float32 (max-pool switches and ReLU masks of
        // near-equal values flip with rounding; folded batch norms round
        // differently), within 20x PyTorch's own float32 error: the same
        // order as any float32 implementation. Occlusion (forward passes
        // only) against float32 alone.
        let (exact, floor) = match Tensor::read_npy(dir.join(format!("{file}.f64.npy"))) {
            Ok(t64) => (rel_l2(&ours, &t64), rel_l2(&theirs, &t64)),
            Err(_) => (r, 0.0),
        };
        let bound = (20.0 * floor).max(1e-4);
        eprintln!(
            "{tag} {file}: relative L2 {r:.1e} to Captum's, {exact:.1e} to float64 \
             (PyTorch's float32: {floor:.1e}), cosine {c:.7}"
        );
        assert!(
            exact <= bound,
            "{tag} {file}: relative L2 error {exact} against the float64 map (bound {bound}; \
             {r} against Captum's float32, cosine {c})"
        );
        if auc && matches!(m.name(), "gradient" | "gradcam") {
            let p = dir.join(format!("sal-{file}.npy"));
            saliency(&ours).write_npy(&p).unwrap();
            sal.push((p, e.scores(cls, &saliency(&ours), 32).unwrap()));
        }
    }
    if !auc {
        return;
    }
    let mut args: Vec<String> = vec!["auc".into()];
    args.extend(reference.iter().map(|s| s.to_string()));
    args.extend([xp.to_str().unwrap().to_string(), cls.to_string()]);
    args.extend(sal.iter().map(|s| s.0.to_str().unwrap().to_string()));
    let out = python(
        "explain_ref.py",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for (line, (p, ours)) in out.lines().zip(&sal) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        for (k, v) in [
            ("deletion_auc", ours.deletion_auc),
            ("insertion_auc", ours.insertion_auc),
        ] {
            let want = r[k].as_f64().unwrap();
            eprintln!("{tag} {}: {k} {v:.6} (reference {want:.6})", p.display());
            assert!(
                // docs/science.md: measured < 2e-6; within 10x of it.
                (v - want).abs() < 2e-5,
                "{tag} {}: {k} {v} vs {want}",
                p.display()
            );
        }
        assert_eq!(ours.deletion.len(), 225);
    }
}

/// The occluder's stride here (13 x 13 positions at 224 px, each a
/// forward pass in Captum).
const OCCLUSION_STRIDE: i64 = 16;

/// Every method of the registry: the deconvnet for a class (Captum's
/// `Deconvolution`; on LRN networks PyTorch's backward with the ReLU rule
/// and LRN skipped), its successors, and occlusion (Captum's `Occlusion`).
const ALL: [Method; 7] = [
    zfvis_core::methods::DECONV,
    zfvis_core::methods::GUIDED,
    zfvis_core::methods::GRADIENT,
    zfvis_core::methods::GRADCAM,
    zfvis_core::methods::GUIDED_GRADCAM,
    zfvis_core::methods::IG,
    zfvis_core::methods::OCCLUSION,
];

#[test]
fn bundled_zfnet_maps_match_captum() {
    let (dir, snap) = bundled_zfnet();
    family_matches_captum(
        "zfnet",
        &dir,
        &["zfnet", dir.to_str().unwrap(), snap.to_str().unwrap()],
        (5, "5"),
        50,
        true,
        &ALL,
    );
}

#[test]
fn imported_vgg11_maps_match_captum() {
    let (dir, pth) = imported("vgg11");
    family_matches_captum(
        "vgg11",
        &dir,
        &["torchvision:vgg11", pth.to_str().unwrap()],
        (8, "8"),
        10,
        false,
        &ALL,
    );
}

/// Graph networks (residual adds, folded batch norm, global pooling;
/// ReLU6 and depthwise convs; SiLU, squeeze-excite gates, GELU, layer
/// norm): every method, Grad-CAM at the input of the
/// global pooling. Guided backprop's reference replaces each ReLU module's
/// backward (torchvision's ResNet calls its ReLU modules more than once,
/// which Captum's hooks refuse; they guide nn.ReLU only, not ReLU6).
#[test]
fn imported_graph_networks_match_captum() {
    for (arch, unit) in [
        ("resnet18", "layer4.1"),
        ("mobilenet_v2", "features.18"),
        // No ReLU: SiLU, sigmoid gates (their exact derivatives in every rule).
        ("efficientnet_b0", "features.8"),
        // GELU, layer norm over channels, layer scale.
        ("convnext_tiny", "features.7.2"),
    ] {
        let (dir, pth) = imported(arch);
        let (net, _) = open(&dir);
        let last = net.last_unit();
        assert_eq!(net.units[last - 1].name, unit, "{arch}");
        let reference = format!("torchvision:{arch}");
        family_matches_captum(
            arch,
            &dir,
            &[&reference, pth.to_str().unwrap()],
            (last, unit),
            10,
            false,
            &ALL,
        );
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        // docs/science.md: measured < 1e-8; within 10x of it.
        (Some(a), Some(b)) => (a - b).abs() < 1e-7,
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn sanity_scores_match_scipy_and_scikit_image_and_repeat_per_seed() {
    let (dir, _) = bundled_zfnet();
    let methods = [
        zfvis_core::methods::DECONV,
        zfvis_core::methods::GUIDED,
        zfvis_core::methods::GRADIENT,
        zfvis_core::methods::GRADCAM,
    ];
    let run = |seed: u64| {
        let (mut net, x) = open(&dir);
        sanity::cascade(&mut net, &x, &methods, 3, seed, &mut |_, _| Ok(())).unwrap()
    };
    let (class, steps) = run(0);
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[3].randomised, ["fc8", "fc7", "fc6"]);
    for (m, s) in &steps[0].scores {
        for v in [s.spearman_abs, s.spearman, s.ssim, s.hog] {
            assert!(close(v, Some(1.0)), "step 0 {m:?}: {s:?}");
        }
    }
    // The same seed, the same scores; another seed, other scores.
    let (class2, again) = run(0);
    assert_eq!(class, class2);
    let scores = |st: &[sanity::Step]| -> Vec<Scores> {
        st.iter()
            .flat_map(|s| s.scores.iter().map(|x| x.1))
            .collect()
    };
    assert_eq!(scores(&steps), scores(&again));
    let (_, other) = run(1);
    assert_ne!(scores(&steps)[4..], scores(&other)[4..]);
    // Every score of steps 1..3 as scipy and scikit-image compute it.
    let tmp = tempdir("sanity");
    for s in &steps[1..] {
        for (i, (m, ours)) in s.scores.iter().enumerate() {
            let (a, b) = (tmp.join("base.npy"), tmp.join("map.npy"));
            steps[0].maps[i].write_npy(&a).unwrap();
            s.maps[i].write_npy(&b).unwrap();
            let out = python(
                "explain_ref.py",
                &["scores", a.to_str().unwrap(), b.to_str().unwrap()],
            );
            let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            for (k, v) in [
                ("spearman_abs", ours.spearman_abs),
                ("spearman", ours.spearman),
                ("ssim", ours.ssim),
                ("hog", ours.hog),
            ] {
                eprintln!("step {} {m:?} {k}: {v:?} (reference {})", s.step, r[k]);
                assert!(
                    close(v, r[k].as_f64()),
                    "step {} {m:?} {k}: {v:?} vs {}",
                    s.step,
                    r[k]
                );
            }
        }
    }
}
