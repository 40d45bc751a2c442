//! `zfvis import` against PyTorch (tests/import_ref.py in the venv): the
//! imported network's logits equal torchvision's and its deconvnet
//! projections equal the modified-gradient reference; ONNX graphs like the
//! zoo's reproduce the bundled model; bad files are refused by name.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::deconv::{self, Keep, ProjectRequest};
use zfvis_core::import::{import, ImportOptions};
use zfvis_core::net::Net;
use zfvis_core::tch::{Device, Kind, Tensor};
use zfvis_dev::testing::{root, tempdir, venv_python as python};

fn reference(args: &[&str]) {
    let out = Command::new(python())
        .arg(root().join("tests/import_ref.py"))
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "import_ref.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn opts(from: &Path, out: &Path, arch: Option<&str>) -> ImportOptions {
    ImportOptions {
        from: from.to_path_buf(),
        out: out.to_path_buf(),
        arch: arch.map(String::from),
        ..Default::default()
    }
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_kind(Kind::Double).reshape([-1]),
        b.to_kind(Kind::Double).reshape([-1]),
    );
    (a.dot(&b) / (a.norm() * b.norm() + 1e-30)).double_value(&[])
}

/// Logits within 1e-4 of the reference and projections of the first, a
/// middle and the last conv layer with cosine >= 0.999 at the same position.
fn check_against_reference(net: &Net, dir: &Path, what: &str) {
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let logits = Tensor::read_npy(dir.join("logits.npy")).unwrap();
    let trace = net.trace(&x);
    let d = (&trace.logits - &logits).abs().max().double_value(&[]);
    let scale = logits.abs().max().double_value(&[]);
    assert!(
        d < 1e-4 * scale.max(1.0),
        "{what}: logits differ by {d} (scale {scale})"
    );
    let p0 = trace.probs();
    let pr = logits.softmax(-1, Kind::Float);
    let dp = (&p0 - &pr).abs().max().double_value(&[]);
    assert!(dp < 1e-4, "{what}: probabilities differ by {dp}");

    let n = net.convs.len();
    let trace1 = net.trace(&x.narrow(0, 0, 1));
    let mut layers = vec![1, n.div_ceil(2), n];
    layers.dedup();
    for layer in layers {
        let meta: HashMap<String, i64> = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("proj{layer}.json"))).unwrap(),
        )
        .unwrap();
        let p = deconv::project(
            net,
            &trace1,
            &[ProjectRequest {
                layer,
                map: meta["map"],
                keep: Keep::Strongest,
            }],
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            (p.y, p.x),
            (meta["y"], meta["x"]),
            "{what}: layer {layer} position"
        );
        let r = Tensor::read_npy(dir.join(format!("proj{layer}.npy"))).unwrap();
        let c = cosine(&p.pixels, &r);
        assert!(c >= 0.999, "{what}: layer {layer} projection cosine {c}");
    }
}

#[test]
fn torchvision_state_dicts_and_onnx_exports_match_pytorch() {
    for arch in ["alexnet", "vgg11", "vgg11_bn"] {
        let dir = tempdir(arch);
        reference(&["torchvision", arch, dir.to_str().unwrap()]);
        let convs = serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(dir.join("layers.json")).unwrap(),
        )
        .unwrap()["convs"]
            .as_i64()
            .unwrap();
        let mut files = vec![
            ("model.pth", Some(format!("torchvision:{arch}"))),
            ("model.onnx", None),
        ];
        if arch.ends_with("_bn") {
            // The dynamo exporter's graph, weights in a .data file beside it.
            assert!(dir.join("model_dynamo.onnx.data").exists());
            files.push(("model_dynamo.onnx", None));
        }
        for (file, a) in files {
            let out = dir.join(format!("imported-{file}"));
            let m = import(&opts(&dir.join(file), &out, a.as_deref())).unwrap();
            assert_eq!(m.manifest.preprocess.as_deref(), Some("torchvision"));
            assert_eq!(m.manifest.resize, Some(256));
            assert_eq!(m.manifest.classes.len(), 1000);
            assert_eq!(m.manifest.classes[154].name, "Pekinese");
            assert_eq!(m.manifest.classes[154].id, "n02086079");
            let net = ModelDir::open(&out)
                .unwrap()
                .load(None, Device::Cpu)
                .unwrap();
            assert_eq!(net.convs.len() as i64, convs, "{arch} {file}");
            assert_eq!(net.convs[0].name, "features.0");
            check_against_reference(&net, &dir, &format!("{arch} {file}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn pytorchcv_zfnet_and_alexnet_match_pytorch() {
    for (arch, side) in [("zfnet", 110), ("zfnetb", 110), ("alexnet", 54)] {
        let dir = tempdir(&format!("pcv-{arch}"));
        reference(&["pytorchcv", arch, dir.to_str().unwrap()]);
        let out = dir.join("m");
        let layout = format!("pytorchcv:{arch}");
        import(&opts(&dir.join("model.pth"), &out, Some(&layout))).unwrap();
        let net = ModelDir::open(&out)
            .unwrap()
            .load(None, Device::Cpu)
            .unwrap();
        assert_eq!(net.convs.len(), 5);
        assert_eq!(net.convs[0].side, side);
        assert_eq!(net.convs[0].name, "features.stage1.unit1.conv");
        check_against_reference(&net, &dir, &format!("pytorchcv {arch}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_zoo_like_onnx_graph_reproduces_the_bundled_model() {
    let bundled = root().join("models/zfnet-woofnette");
    let m0 = ModelDir::open(&bundled).unwrap();
    let weights = m0.snapshot_path(None).unwrap();
    let dir = tempdir("zoo");
    let onnx = dir.join("zfnet_zoo_like.onnx");
    reference(&["zoo", weights.to_str().unwrap(), onnx.to_str().unwrap()]);
    let out = dir.join("m");
    let m = import(&opts(&onnx, &out, None)).unwrap();
    // Caffe's input name: Caffe preprocessing unless told otherwise.
    assert_eq!(m.manifest.preprocess.as_deref(), Some("caffe"));
    assert!(m.manifest.bgr);
    let spec = m.manifest.spec().unwrap();
    assert_eq!(
        spec.convs()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["conv1", "conv2", "conv3", "conv4", "conv5"]
    );
    let a = m0.load(None, Device::Cpu).unwrap();
    let b = m.load(None, Device::Cpu).unwrap();
    // onnxruntime on the graph itself agrees with the imported network.
    let xo = Tensor::read_npy(format!("{}.x.npy", onnx.display())).unwrap();
    let po = Tensor::read_npy(format!("{}.probs.npy", onnx.display())).unwrap();
    let d = (b.trace(&xo).probs() - &po).abs().max().double_value(&[]);
    assert!(d < 1e-5, "probabilities differ from onnxruntime's by {d}");
    tch_seed();
    let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    let (ta, tb) = (a.trace(&x), b.trace(&x));
    let d = (&ta.logits - &tb.logits).abs().max().double_value(&[]);
    assert!(d < 1e-4, "logits differ by {d}");
    let (ta1, tb1) = (a.trace(&x.narrow(0, 0, 1)), b.trace(&x.narrow(0, 0, 1)));
    for layer in 1..=5 {
        let map = deconv::top_maps(&ta1, layer, 1).unwrap()[0].0;
        let req = [ProjectRequest {
            layer,
            map,
            keep: Keep::Strongest,
        }];
        let pa = deconv::project(&a, &ta1, &req).unwrap().remove(0);
        let pb = deconv::project(&b, &tb1, &req).unwrap().remove(0);
        // The zoo-like graph is fed BGR: its projections come back in RGB
        // order, so its channels are the bundled model's reversed.
        assert!(b.bgr && !a.bgr);
        let d = (&pa.pixels - &pb.pixels.flip([0]))
            .abs()
            .max()
            .double_value(&[]);
        let s = pa.pixels.abs().max().double_value(&[]);
        assert!(
            d <= 1e-5 * s.max(1e-6),
            "layer {layer}: projections differ by {d} (scale {s})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn other_onnx_ops_match_onnxruntime() {
    let dir = tempdir("ops");
    let onnx = dir.join("ops.onnx");
    reference(&["ops", onnx.to_str().unwrap()]);
    let out = dir.join("m");
    let m = import(&opts(&onnx, &out, None)).unwrap();
    assert_eq!(m.manifest.input_size, 64);
    let spec = m.manifest.spec().unwrap();
    let names: Vec<String> = spec.convs().iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["stem", "grouped"]);
    // The asymmetric pads became ceil mode; the grouped conv kept its groups.
    assert!(spec.ops().any(|l| l.ceil_mode()));
    assert!(spec.convs()[1].groups == 2);
    let net = m.load(None, Device::Cpu).unwrap();
    let x = Tensor::read_npy(format!("{}.x.npy", onnx.display())).unwrap();
    let p = Tensor::read_npy(format!("{}.probs.npy", onnx.display())).unwrap();
    let d = (net.trace(&x).probs() - &p).abs().max().double_value(&[]);
    assert!(d < 1e-5, "probabilities differ from onnxruntime's by {d}");
    // Projections run through BN-folded, grouped and average-pooled layers.
    let t = net.trace(&x);
    for layer in [1, 2] {
        let map = deconv::top_maps(&t, layer, 1).unwrap()[0].0;
        let pr = deconv::project(
            &net,
            &t,
            &[ProjectRequest {
                layer,
                map,
                keep: Keep::Strongest,
            }],
        )
        .unwrap()
        .remove(0);
        assert!(pr.pixels.abs().max().double_value(&[]) > 0.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tch_seed() {
    zfvis_core::tch::manual_seed(42);
}

#[test]
fn bad_files_are_refused_by_name() {
    let dir = tempdir("bad");
    // A pickle with a __reduce__ payload: refused, and nothing ran.
    let marker = dir.join("PWNED");
    let evil = dir.join("evil.pth");
    reference(&["evil", evil.to_str().unwrap(), marker.to_str().unwrap()]);
    let e = import(&opts(&evil, &dir.join("e"), Some("torchvision:alexnet"))).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("posix.system") && e.contains("never runs"),
        "{e}"
    );
    assert!(!marker.exists(), "the payload ran");
    assert!(!dir.join("e/manifest.json").exists());

    // An unsupported ONNX op, named with its node.
    let bad = dir.join("bad.onnx");
    reference(&["unsupported", bad.to_str().unwrap()]);
    let e = format!(
        "{:#}",
        import(&opts(&bad, &dir.join("b"), None)).unwrap_err()
    );
    assert!(e.contains("\"upsample\"") && e.contains("Resize"), "{e}");

    // Valid ONNX files no network can be read from: refused naming the node
    // and what is wrong, never a panic.
    let mal = dir.join("malformed");
    std::fs::create_dir_all(&mal).unwrap();
    reference(&["malformed", mal.to_str().unwrap()]);
    for (file, want) in [
        (
            "conv_one_input",
            "node \"c1\" (Conv): its weight input is missing",
        ),
        (
            "zero_strides",
            "node \"c1\" (Conv): kernel [3, 3] and strides [0, 0] must be at least 1",
        ),
        (
            "bn_no_tensors",
            "node \"bn1\" (BatchNormalization): its scale input is missing",
        ),
        ("gemm_1d", "node \"fc1\" (Gemm): its weight has shape [10]"),
        ("lrn_size_0", "layer 1 (lrn): size must be at least 1"),
    ] {
        let from = mal.join(format!("{file}.onnx"));
        let out = mal.join(file);
        let r = std::panic::catch_unwind(|| import(&opts(&from, &out, None)));
        let e = format!(
            "{:#}",
            r.unwrap_or_else(|_| panic!("{file}: import panicked"))
                .unwrap_err()
        );
        assert!(e.contains(want), "{file}: {e}");
        assert!(!out.join("manifest.json").exists(), "{file}");
    }

    // The wrong --arch: the first tensor that does not fit, expected vs found.
    let sd = dir.join("alex");
    std::fs::create_dir_all(&sd).unwrap();
    reference(&["torchvision", "alexnet", sd.to_str().unwrap()]);
    let e = format!(
        "{:#}",
        import(&opts(
            &sd.join("model.pth"),
            &dir.join("w"),
            Some("torchvision:vgg11")
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("features.0.weight")
            && e.contains("expected shape [64, 3, 3, 3]")
            && e.contains("found [64, 3, 11, 11]"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        import(&opts(
            &sd.join("model.pth"),
            &dir.join("w"),
            Some("pytorchcv:zfnet")
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("missing tensor") && e.contains("output.fc3.weight"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Logits within 1e-4 of torchvision's and, for each (unit, reference
/// module) pair, the projection of the strongest activation of the
/// reference's map at the same position with cosine >= 0.999.
fn check_units(net: &Net, dir: &Path, units: &[(&str, &str)], what: &str) {
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let logits = Tensor::read_npy(dir.join("logits.npy")).unwrap();
    let trace = net.trace(&x);
    let dp = (trace.probs() - logits.softmax(-1, Kind::Float))
        .abs()
        .max()
        .double_value(&[]);
    assert!(dp < 1e-4, "{what}: probabilities differ by {dp}");
    let d = (&trace.logits - &logits).abs().max().double_value(&[]);
    let scale = logits.abs().max().double_value(&[]);
    assert!(d < 1e-4 * scale.max(1.0), "{what}: logits differ by {d}");
    eprintln!("{what}: |dp| {dp:.1e}, |d logits| {d:.1e} of {scale:.1}");
    let trace1 = net.trace(&x.narrow(0, 0, 1));
    for &(unit, module) in units {
        let meta: HashMap<String, i64> = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("unit-{module}.json"))).unwrap(),
        )
        .unwrap();
        let layer = net.spec.find_unit(unit).unwrap();
        assert_eq!(net.units[layer - 1].name, *unit);
        let p = deconv::project(
            net,
            &trace1,
            &[ProjectRequest {
                layer,
                map: meta["map"],
                keep: Keep::Strongest,
            }],
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            (p.y, p.x),
            (meta["y"], meta["x"]),
            "{what}: {unit} position"
        );
        let r = Tensor::read_npy(dir.join(format!("unit-{module}.npy"))).unwrap();
        let c = cosine(&p.pixels, &r);
        eprintln!("{what}: {unit} projection cosine {c:.6}");
        assert!(c >= 0.999, "{what}: {unit} projection cosine {c}");
    }
}

/// Import torchvision's `arch` state dict (random weights) and check its
/// conv count, logits and the projections of `units` against PyTorch.
fn check_family(arch: &str, units: &[&str]) {
    let dir = tempdir(arch);
    reference(&["graph", arch, dir.to_str().unwrap(), &units.join(",")]);
    let convs = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.join("layers.json")).unwrap(),
    )
    .unwrap()["convs"]
        .as_u64()
        .unwrap() as usize;
    let out = dir.join("m");
    let a = format!("torchvision:{arch}");
    import(&opts(&dir.join("model.pth"), &out, Some(&a)))
        .unwrap_or_else(|e| panic!("{arch}: {e:#}"));
    let net = ModelDir::open(&out)
        .unwrap()
        .load(None, Device::Cpu)
        .unwrap();
    assert_eq!(net.convs.len(), convs, "{arch}: conv count");
    let pairs: Vec<(&str, &str)> = units.iter().map(|u| (*u, *u)).collect();
    check_units(&net, &dir, &pairs, arch);
    // Three maps projected as one batch over one image's trace (gates and
    // smooth ops broadcast the image's values to the batch) equal each
    // projected alone.
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap().narrow(0, 0, 1);
    let trace = net.trace(&x);
    let layer = net.spec.find_unit(units[0]).unwrap();
    let req = |map| ProjectRequest {
        layer,
        map,
        keep: Keep::Strongest,
    };
    let together = deconv::project(&net, &trace, &[req(0), req(1), req(2)]).unwrap();
    for (k, p) in together.iter().enumerate() {
        let alone = deconv::project(&net, &trace, &[req(k as i64)])
            .unwrap()
            .remove(0);
        let c = cosine(&p.pixels, &alone.pixels);
        assert!(
            c > 0.99999,
            "{arch}: map {k} in a batch vs alone: cosine {c}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn torchvision_graph_networks_match_pytorch() {
    check_family("resnet18", &["layer1.0", "layer3.1", "layer4.1"]);
    check_family("mobilenet_v2", &["features.3", "features.14"]);
    check_family(
        "densenet121",
        &["features.transition1", "features.denseblock3"],
    );
    check_family("googlenet", &["inception3a", "inception4c"]);
}

/// The families of the last five years (issue 36), smallest members: ops
/// beyond ReLU (SiLU, hard-swish, GELU, sigmoid gates, layer norm, channel
/// split and shuffle, non-square kernels, a conv classifier) walked back
/// with their exact derivatives, ReLUs with the deconvnet's rule.
#[test]
fn modern_torchvision_families_match_pytorch() {
    let cases: &[(&str, &[&str])] = &[
        ("efficientnet_b0", &["features.3.1", "features.6.2"]),
        ("convnext_tiny", &["features.1.2", "features.5.4"]),
        ("mobilenet_v3_large", &["features.4", "features.13"]),
        (
            "regnet_y_400mf",
            &[
                "trunk_output.block2.block2-1",
                "trunk_output.block3.block3-5",
            ],
        ),
        ("shufflenet_v2_x1_0", &["stage2.1", "stage3.3"]),
        ("squeezenet1_1", &["features.4", "features.12"]),
        ("inception_v3", &["Mixed_5b", "Mixed_6b", "Mixed_7b"]),
    ];
    let only = std::env::var("ZFVIS_ONLY").ok();
    for (arch, units) in cases {
        if only.as_deref().is_some_and(|o| o != *arch) {
            continue;
        }
        check_family(arch, units);
    }
}

/// Every `--arch` name of the families added for issue 36 instantiates
/// from torchvision's own state dict (random weights) and gives its logits
/// on one 128x128 image (within 1e-4 relative). One Python run per family
/// keeps the files of one family on disk at a time.
#[test]
fn every_modern_arch_name_matches_torchvision() {
    let families = [
        "efficientnet_",
        "convnext_",
        "mobilenet_v3_",
        "mnasnet",
        "regnet_x_",
        "regnet_y_",
        "shufflenet_v2_",
        "squeezenet",
        "inception_v3",
        "resnext",
        "wide_resnet",
        // The older names not checked elsewhere (resnet18/50, densenet121,
        // vgg11/vgg11_bn are): resnet34/101/152, densenet161/169/201,
        // vgg13/16/19 (their _bn twins share the code path of vgg11_bn).
        "resnet",
        "densenet",
        "vgg",
    ];
    let covered = [
        "resnet18",
        "resnet50",
        "densenet121",
        "vgg11",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "vgg19_bn",
    ];
    let mut skip: Vec<String> = std::env::var("ZFVIS_SKIP_ARCHS")
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default();
    skip.extend(covered.iter().map(|s| s.to_string()));
    let mut seen = 0;
    for f in families {
        let archs: Vec<&str> = zfvis_core::import::ARCHS
            .iter()
            .filter_map(|a| a.strip_prefix("torchvision:"))
            .filter(|a| a.starts_with(f) && !skip.iter().any(|s| s == a))
            .collect();
        let dir = tempdir(&format!("archs-{f}"));
        let mut args = vec!["archs", dir.to_str().unwrap(), "128"];
        args.extend(&archs);
        reference(&args);
        let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
        for arch in archs {
            let out = dir.join(format!("m-{arch}"));
            let mut o = opts(
                &dir.join(format!("{arch}.pth")),
                &out,
                Some(&format!("torchvision:{arch}")),
            );
            o.input_size = Some(128);
            import(&o).unwrap_or_else(|e| panic!("{arch}: {e:#}"));
            let net = ModelDir::open(&out)
                .unwrap()
                .load(None, Device::Cpu)
                .unwrap();
            suggested_unit_is_the_last_with_maps(&net, arch);
            let want = Tensor::read_npy(dir.join(format!("{arch}.logits.npy"))).unwrap();
            let got = net.forward_t(&x, false);
            let d = (&got - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]).max(1.0);
            assert!(
                d < 1e-4 * scale,
                "{arch}: logits differ by {d} (scale {scale})"
            );
            let _ = std::fs::remove_dir_all(&out);
            let _ = std::fs::remove_file(dir.join(format!("{arch}.pth")));
            seen += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(seen >= 49, "only {seen} names checked");
}

/// The CAM methods' default unit: no unit with maps (wider than 1×1) lies
/// after it; ResNets' is `layer4`'s last block, DenseNets' `features.norm5`,
/// EfficientNets' `features.8` (the last stage), VGGs' the last conv.
fn suggested_unit_is_the_last_with_maps(net: &Net, arch: &str) {
    let u = &net.units[net.last_unit() - 1];
    let later: Vec<&str> = net
        .units
        .iter()
        .filter(|v| v.side > 1 && v.node > u.node)
        .map(|v| v.short.as_str())
        .collect();
    assert!(
        u.side > 1 && later.is_empty(),
        "{arch}: suggested {} but {later:?} come after",
        u.short
    );
    let want = match arch {
        a if a.starts_with("resnet") || a.starts_with("resnext") || a.starts_with("wide_") => {
            "layer4."
        }
        a if a.starts_with("densenet") => "features.norm5",
        a if a.starts_with("efficientnet_b") => "features.8",
        a if a.starts_with("vgg") => "features.",
        _ => "",
    };
    assert!(u.short.starts_with(want), "{arch}: suggested {}", u.short);
    if arch.starts_with("vgg") {
        assert_eq!(u.layer, Some(net.convs.len()), "{arch}: the last conv");
    }
}

/// resnet18 and vgg11_bn (torchvision's zero classifier biases) through both
/// `torch.onnx.export` exporters: the graph as read equals PyTorch, and the
/// last Relu's output, named by its ONNX name, projects as PyTorch's.
#[test]
fn graphs_from_both_onnx_exporters_match_pytorch() {
    for (arch, module) in [("resnet18", "layer4.1"), ("vgg11_bn", "features.27")] {
        let dir = tempdir(&format!("onnx-{arch}"));
        reference(&["graph", arch, dir.to_str().unwrap(), module, "onnx"]);
        let names: HashMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("onnx-units.json")).unwrap())
                .unwrap();
        for file in ["model.onnx", "model_dynamo.onnx"] {
            let out = dir.join(format!("m-{file}"));
            import(&opts(&dir.join(file), &out, None))
                .unwrap_or_else(|e| panic!("{arch} {file}: {e:#}"));
            let net = ModelDir::open(&out)
                .unwrap()
                .load(None, Device::Cpu)
                .unwrap();
            let unit = names[file].as_str();
            check_units(&net, &dir, &[(unit, module)], &format!("{arch} {file}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The unit of `net` whose maps for `x` equal `want` ([C, H, W]), for
/// graphs that name units by their own output names.
fn unit_by_value(net: &Net, x: &Tensor, want: &Tensor) -> Option<String> {
    let trace = net.trace(x);
    net.units.iter().enumerate().find_map(|(k, u)| {
        let got = trace.maps.get(k)?.get(0);
        let same = got.size() == want.size()
            && (&got - want).abs().max().double_value(&[])
                <= 1e-4 * want.abs().max().double_value(&[]).max(1.0);
        same.then(|| u.name.clone())
    })
}

/// The families of issue 36 through both `torch.onnx.export` exporters
/// (TorchScript at opset 17, and ConvNeXt also at opset 14, where layer
/// norm is decomposed; the dynamo exporter's default): probabilities as
/// PyTorch's, and a block's maps, found by value, project as PyTorch's.
#[test]
fn modern_families_from_both_onnx_exporters_match_pytorch() {
    let cases = [
        ("efficientnet_b0", "features.5.1"),
        ("convnext_tiny", "features.3.1"),
        ("mobilenet_v3_large", "features.11"),
        ("regnet_y_400mf", "trunk_output.block3.block3-1"),
        ("shufflenet_v2_x1_0", "stage3.2"),
        ("squeezenet1_1", "features.10"),
        ("inception_v3", "Mixed_6c"),
    ];
    let only = std::env::var("ZFVIS_ONLY").ok();
    for (arch, module) in cases {
        if only.as_deref().is_some_and(|o| o != arch) {
            continue;
        }
        let dir = tempdir(&format!("onnx-{arch}"));
        reference(&["graph", arch, dir.to_str().unwrap(), module, "onnx"]);
        let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
        let want = Tensor::read_npy(dir.join(format!("unit-{module}.out.npy"))).unwrap();
        let mut files = vec!["model.onnx", "model_dynamo.onnx"];
        if arch == "convnext_tiny" {
            files.push("model_opset14.onnx");
        }
        for file in files {
            let what = format!("{arch} {file}");
            let out = dir.join(format!("m-{file}"));
            import(&opts(&dir.join(file), &out, None)).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            let net = ModelDir::open(&out)
                .unwrap()
                .load(None, Device::Cpu)
                .unwrap();
            let unit = unit_by_value(&net, &x.narrow(0, 0, 1), &want)
                .unwrap_or_else(|| panic!("{what}: no unit has {module}'s maps"));
            check_units(&net, &dir, &[(unit.as_str(), module)], &what);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Keras applications as Keras users convert them (a SavedModel through
/// the real tf2onnx 1.16.1; tests/keras_models.py wrote the committed
/// files): probabilities within 1e-5 of onnxruntime's, every conv's maps
/// a unit with a short name (the Keras layer's), and the projection of the last unit runs.
#[test]
fn keras_applications_through_tf2onnx_match_onnxruntime() {
    let files = [
        "mobilenet_v2",
        "efficientnet_b0",
        "resnet50",
        "xception",
        "inception_v3",
    ];
    for name in files {
        let onnx = root().join(format!("tests/keras/{name}.onnx"));
        let dir = tempdir(&format!("keras-{name}"));
        reference(&["ort", onnx.to_str().unwrap(), dir.to_str().unwrap()]);
        let out = dir.join("m");
        import(&opts(&onnx, &out, None)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let net = ModelDir::open(&out)
            .unwrap()
            .load(None, Device::Cpu)
            .unwrap();
        let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
        let p = Tensor::read_npy(dir.join("probs.npy")).unwrap();
        let trace = net.trace(&x);
        let d = (trace.probs() - &p).abs().max().double_value(&[]);
        eprintln!("keras {name}: |dp| {d:.1e} against onnxruntime");
        assert!(
            d < 1e-5,
            "{name}: probabilities differ from onnxruntime's by {d}"
        );
        for u in net.units.iter().filter(|u| u.layer.is_some()) {
            assert!(
                !u.short.contains('/') && !u.short.contains(':') && u.short.len() < 48,
                "{name}: unit {:?} shown as {:?}",
                u.name,
                u.short
            );
        }
        let layer = net.units.len();
        let pr = deconv::project(
            &net,
            &trace,
            &[ProjectRequest {
                layer,
                map: 0,
                keep: Keep::Strongest,
            }],
        )
        .unwrap();
        assert!(
            pr[0].pixels.isfinite().all().int64_value(&[]) == 1,
            "{name}: projection"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A tf2onnx-style graph of a Keras classifier equals onnxruntime on it.
#[test]
fn a_tf2onnx_style_graph_matches_onnxruntime() {
    let dir = tempdir("tf2onnx");
    let onnx = dir.join("keras.onnx");
    reference(&["tf2onnx", onnx.to_str().unwrap()]);
    let out = dir.join("m");
    let m = import(&opts(&onnx, &out, None)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(m.manifest.input_size, 32);
    let net = m.load(None, Device::Cpu).unwrap();
    assert_eq!(net.convs.len(), 2);
    let x = Tensor::read_npy(format!("{}.x.npy", onnx.display())).unwrap();
    let p = Tensor::read_npy(format!("{}.probs.npy", onnx.display())).unwrap();
    let d = (net.trace(&x).probs() - &p).abs().max().double_value(&[]);
    assert!(d < 1e-5, "probabilities differ from onnxruntime's by {d}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An ONNX Pad node (top-heavy pads) and a conv with TensorFlow's SAME
/// padding at stride 2 (pads [0, 0, 1, 1]): probabilities equal
/// onnxruntime's, and the projection of the unit after them equals the
/// PyTorch reference (the gradient with ReLU's backward as ReLU).
#[test]
fn pad_nodes_and_asymmetric_conv_pads_match_onnxruntime() {
    let dir = tempdir("pads");
    let onnx = dir.join("pads.onnx");
    reference(&["pads", onnx.to_str().unwrap()]);
    let m = import(&opts(&onnx, &dir.join("m"), None)).unwrap_or_else(|e| panic!("{e:#}"));
    let net = m.load(None, Device::Cpu).unwrap();
    let pads = net.spec.ops().filter(|l| l.op() == "pad").count();
    assert_eq!(pads, 2, "the conv's asymmetric pads and the Pad node");
    let x = Tensor::read_npy(format!("{}.x.npy", onnx.display())).unwrap();
    let p = Tensor::read_npy(format!("{}.probs.npy", onnx.display())).unwrap();
    let t = net.trace(&x);
    let d = (t.probs() - &p).abs().max().double_value(&[]);
    assert!(d < 1e-5, "probabilities differ from onnxruntime's by {d}");
    let want = Tensor::read_npy(format!("{}.proj.npy", onnx.display())).unwrap();
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.proj.json", onnx.display())).unwrap())
            .unwrap();
    let layer = net.spec.find_unit("r2").unwrap();
    let got = deconv::project(
        &net,
        &t,
        &[ProjectRequest {
            layer,
            map: j["map"].as_i64().unwrap(),
            keep: Keep::Strongest,
        }],
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        (got.y, got.x),
        (j["y"].as_i64().unwrap(), j["x"].as_i64().unwrap())
    );
    let c = cosine(&got.pixels, &want);
    assert!(c >= 0.999, "projection cosine {c}");
    // Receptive field by hand: r2 (y, x) reads rows y-2..y and columns
    // x-1..x+1 of r1 (the Pad's top 2 and left 1), each of which reads input
    // rows 2a..2a+2 (the SAME pads are at the end); clipped to 0..63.
    let (y, x) = (got.y, got.x);
    let clip = |v: i64| v.clamp(0, 63);
    let want_field = (
        clip(2 * (y - 2)),
        clip(2 * (x - 1)),
        clip(2 * y + 2),
        clip(2 * (x + 1) + 2),
    );
    assert_eq!(got.field, want_field, "receptive field of r2 ({y}, {x})");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 1-channel digit classifier imported from its state dict with
/// `--layers` and from ONNX gives the MNIST pipeline's probabilities
/// (PIL's convert("L"), bilinear resize to 28, one-value normalisation).
#[test]
fn a_grey_network_matches_the_mnist_pipeline() {
    let dir = tempdir("grey");
    reference(&["grey", dir.to_str().unwrap()]);
    let want = Tensor::read_npy(dir.join("probs.npy")).unwrap();
    let bytes = std::fs::read(dir.join("digit.png")).unwrap();
    for (file, layers) in [("model.pth", true), ("model.onnx", false)] {
        let out = dir.join(format!("m-{file}"));
        let mut o = opts(&dir.join(file), &out, None);
        if layers {
            o.layers = Some(dir.join("layers.json"));
        }
        o.input_size = Some(28);
        o.resize = Some(28);
        o.mean = Some([0.1307; 3]);
        o.std = Some([0.3081; 3]);
        o.preprocess = Some("zfvis".parse().unwrap());
        // Resize((28, 28)) of a 60x44 image: squashed, not cropped.
        o.fit = Some(zfvis_core::preprocess::Fit::Squash);
        // A 1-channel network is fed grey, not RGB.
        let rgb = ImportOptions {
            channels: Some(zfvis_core::import::Channels::Rgb),
            ..o.clone()
        };
        let e = import(&rgb).unwrap_err().to_string();
        assert!(e.contains("use --channels grey"), "{e}");
        let m = import(&o).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(m.manifest.fit, zfvis_core::preprocess::Fit::Squash);
        assert_eq!(m.manifest.in_channels, 1, "{file}");
        let net = m.load(None, Device::Cpu).unwrap();
        let pre = m.manifest.preprocess();
        let crop = pre.crop(&zfvis_core::preprocess::decode(&bytes).unwrap());
        let x = pre.tensor(&crop).unsqueeze(0);
        assert_eq!(x.size(), [1, 1, 28, 28]);
        let d = (net.trace(&x).probs() - &want)
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-4, "{file}: probabilities differ by {d}");
        // Its projections are 1-channel.
        let t = net.trace(&x);
        let p = deconv::project(
            &net,
            &t,
            &[ProjectRequest {
                layer: 2,
                map: deconv::top_maps(&t, 2, 1).unwrap()[0].0,
                keep: Keep::Strongest,
            }],
        )
        .unwrap()
        .remove(0);
        assert_eq!(p.pixels.size(), [1, 28, 28]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
