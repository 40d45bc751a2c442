//! Feature generalisation (paper §5): the linear classifiers against
//! hand-checkable cases and PyTorch's L-BFGS, the probe's features against a
//! PyTorch forward, the first-N rule, result shapes and refusals.

use std::path::Path;
use std::process::Command;
use zfvis_core::checkpoint::{self, ClassInfo, ModelDir};
use zfvis_core::classify::{Linear, Loss};
use zfvis_core::net::{Arch, NetSpec};
use zfvis_core::probe::{self, ProbeRequest};
use zfvis_core::tch::{self, Device, Kind, Tensor};
use zfvis_core::transfer::{self, TransferRequest};
use zfvis_dev::testing::{root, tempdir};

fn reference(args: &[&str]) {
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/probe_ref.py"))
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "probe_ref.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn separable_data_is_classified_perfectly_by_both_classifiers() {
    tch::manual_seed(1);
    // Three well-separated Gaussian blobs in 5 dimensions.
    let centres = Tensor::from_slice(&[
        4.0f32, 0., 0., 1., 0., //
        0., 4., 0., 0., 1., //
        0., 0., 4., 1., 1.,
    ])
    .view([3, 5]);
    let y = Tensor::arange(60, (Kind::Int64, Device::Cpu)).remainder(3);
    let x = centres.index_select(0, &y) + Tensor::randn([60, 5], (Kind::Float, Device::Cpu)) * 0.3;
    for loss in [Loss::Softmax, Loss::Svm] {
        let m = Linear::fit(loss, &x, &y, 3).unwrap();
        assert_eq!(m.accuracy(&x, &y), 1.0, "{loss:?}");
    }
    // One dimension decides: x > 0 is class 1. A point far out on each
    // side is classified by the rule.
    let x1 = Tensor::linspace(-3.0, 3.0, 40, (Kind::Float, Device::Cpu)).view([40, 1]);
    let y1 = x1.gt(0.0).to_kind(Kind::Int64).view([40]);
    for loss in [Loss::Softmax, Loss::Svm] {
        let m = Linear::fit_with(loss, &x1, &y1, 2, 1e-3);
        assert_eq!(m.accuracy(&x1, &y1), 1.0, "{loss:?}");
        let far = Tensor::from_slice(&[-100.0f32, 100.0]).view([2, 1]);
        let p: Vec<i64> = Vec::try_from(m.scores(&far).argmax(-1, false)).unwrap();
        assert_eq!(p, vec![0, 1], "{loss:?}");
    }
}

#[test]
fn softmax_optimum_equals_pytorch_lbfgs() {
    tch::manual_seed(7);
    let dir = tempdir("lr");
    // Overlapping classes: the optimum is finite and the penalty matters.
    let x = Tensor::randn([90, 6], (Kind::Float, Device::Cpu));
    let y = (x.narrow(1, 0, 1).view([90]) + Tensor::randn([90], (Kind::Float, Device::Cpu)))
        .gt(0.0)
        .to_kind(Kind::Int64)
        + x.narrow(1, 1, 1).view([90]).gt(0.8).to_kind(Kind::Int64);
    x.write_npy(dir.join("x.npy")).unwrap();
    y.write_npy(dir.join("y.npy")).unwrap();
    for lambda in [1e-2, 1e-1] {
        let (w, b) = (dir.join("w.npy"), dir.join("b.npy"));
        reference(&[
            "softmax",
            dir.join("x.npy").to_str().unwrap(),
            dir.join("y.npy").to_str().unwrap(),
            "3",
            &lambda.to_string(),
            w.to_str().unwrap(),
            b.to_str().unwrap(),
        ]);
        let m = Linear::fit_with(Loss::Softmax, &x, &y, 3, lambda);
        let dw = (&m.w - Tensor::read_npy(&w).unwrap())
            .abs()
            .max()
            .double_value(&[]);
        // The bias of a softmax is defined up to a constant: compare centred.
        let centre = |t: &Tensor| t - t.mean(Kind::Double);
        let db = (centre(&m.b) - centre(&Tensor::read_npy(&b).unwrap()))
            .abs()
            .max()
            .double_value(&[]);
        eprintln!("lambda {lambda}: |dW| {dw:.1e}, |db| {db:.1e}");
        assert!(dw < 1e-3 && db < 1e-3, "lambda {lambda}: dW {dw}, db {db}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn features_equal_a_pytorch_forward() {
    let model = root().join("models/zfnet-woofnette");
    let m = ModelDir::open(&model).unwrap();
    let net = m.load(None, Device::Cpu).unwrap();
    let layers = probe::feature_layers(&net.spec);
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    );
    tch::manual_seed(3);
    let x = Tensor::randn([3, 3, 224, 224], (Kind::Float, Device::Cpu));
    let dir = tempdir("features");
    x.write_npy(dir.join("x.npy")).unwrap();
    reference(&[
        "features",
        model.to_str().unwrap(),
        dir.join("x.npy").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let ours = probe::features_of(&net, &x, &layers);
    let dims: Vec<i64> = ours.iter().map(|f| f.size()[1]).collect();
    // 4x4 grids of 24/64/96/96/64 channels; fc 512.
    assert_eq!(dims, [384, 1024, 1536, 1536, 1024, 512, 512]);
    for (l, f) in layers.iter().zip(&ours) {
        let r = Tensor::read_npy(dir.join(format!("{}.npy", l.name))).unwrap();
        let d = (f - &r).abs().max().double_value(&[]);
        let scale = r.abs().max().double_value(&[]).max(1e-6);
        assert!(
            d <= 1e-4 * scale,
            "{}: differs by {d} (scale {scale})",
            l.name
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two classes told apart by colour (reddish vs bluish PNGs), files named so
/// that sorted order differs from creation order; a classes.json.
fn dataset(root: &Path, train: usize, val: usize) {
    let mut seed = 5u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8
    };
    for (split, n) in [("train", train), ("val", val)] {
        for (c, id) in ["n001", "n002"].iter().enumerate() {
            let dir = root.join(split).join(id);
            std::fs::create_dir_all(&dir).unwrap();
            for i in (0..n).rev() {
                let img = image::RgbImage::from_fn(40, 30, |_, _| {
                    let (a, b) = (rnd() / 2, rnd() / 4);
                    if c == 0 {
                        image::Rgb([128 + a, b, b])
                    } else {
                        image::Rgb([b, b, 128 + a])
                    }
                });
                img.save(dir.join(format!("img{i:02}.png"))).unwrap();
            }
        }
    }
    std::fs::write(
        root.join("classes.json"),
        r#"[{"index":0,"wnid":"n001","name":"red"},{"index":1,"wnid":"n002","name":"blue"}]"#,
    )
    .unwrap();
}

fn tiny_model(dir: &Path) -> ModelDir {
    let spec = NetSpec::preset(Arch::Zfnet, 0.05, 0.01, 2);
    let classes = ["n001", "n002"]
        .iter()
        .enumerate()
        .map(|(index, id)| ClassInfo {
            index,
            id: id.to_string(),
            name: id.to_string(),
        })
        .collect();
    checkpoint::create_random(dir, &spec, classes, &[1], 4).unwrap()
}

#[test]
fn first_n_by_file_name_and_probe_result_shape() {
    let root = tempdir("shape");
    let data = root.join("data");
    dataset(&data, 6, 4);
    let (classes, val) = probe::classes_and_val(&data, &[]).unwrap();
    assert_eq!(val.files.len(), 8);
    let per = probe::train_files(&data, &classes).unwrap();
    let split = probe::first_n(&per, &classes, Some(2)).unwrap();
    let names: Vec<String> = split
        .files
        .iter()
        .map(|p| {
            let p = p.strip_prefix(&data).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "train/n001/img00.png",
            "train/n001/img01.png",
            "train/n002/img00.png",
            "train/n002/img01.png"
        ]
    );
    assert_eq!(split.labels, [0, 0, 1, 1]);

    tiny_model(&root.join("m"));
    let req = ProbeRequest {
        model: root.join("m"),
        snapshot: None,
        data: data.clone(),
        classes: vec!["red".into(), "n002".into()],
        train_per_class: Some(3),
        classifiers: vec![Loss::Softmax, Loss::Svm],
    };
    let r = probe::probe(&req, Device::Cpu, &|_, _, _| Ok(())).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 7);
    assert_eq!(layers[0]["layer"], "conv1");
    assert_eq!(layers[6]["layer"], "fc7");
    for l in layers {
        assert!(l["dims"].as_i64().unwrap() > 0);
        for k in ["softmax", "svm"] {
            let a = l[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{k} {a}");
        }
    }
    assert_eq!(v["train_per_class"], 3);
    assert_eq!(v["train_images"], 6);
    assert_eq!(v["test_images"], 8);
    assert_eq!(v["classes"], serde_json::json!(["red", "blue"]));
    // Colour is linearly separable in conv1's features even at random weights.
    assert!(r.layers[0].softmax.unwrap() >= 0.75, "{:?}", r.layers[0]);

    // Transfer: shapes, and the scratch arm trains and tests.
    let t = transfer::transfer(
        &TransferRequest {
            model: root.join("m"),
            snapshot: None,
            data: data.clone(),
            classes: vec![],
            per_class: vec![1, 3],
            seeds: 2,
            scratch_epochs: 1,
        },
        Device::Cpu,
        &|_, _, _| Ok(()),
    )
    .unwrap();
    assert_eq!(t.layer, "fc7");
    assert_eq!(t.pretrained.len(), 2);
    assert_eq!(t.scratch.as_ref().unwrap().len(), 2);
    for m in t.pretrained.iter().chain(t.scratch.as_ref().unwrap()) {
        assert!((0.0..=1.0).contains(&m.mean) && m.std >= 0.0, "{m:?}");
    }
    // An independent path to the same number: 3 a class is every training
    // image, so each draw holds the same set (std 0) and the pretrained arm
    // is the probe's fc7 softmax classifier on the same features.
    assert_eq!(t.pretrained[1].std, 0.0, "{:?}", t.pretrained[1]);
    assert_eq!(
        Some(t.pretrained[1].mean),
        r.layers[6].softmax,
        "transfer at 3 a class vs the probe's fc7"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let root = tempdir("bad");
    let data = root.join("data");
    dataset(&data, 3, 2);
    tiny_model(&root.join("m"));
    let req = |data: &Path, classes: &[&str], n: Option<usize>| ProbeRequest {
        model: root.join("m"),
        snapshot: None,
        data: data.to_path_buf(),
        classes: classes.iter().map(|s| s.to_string()).collect(),
        train_per_class: n,
        classifiers: vec![Loss::Softmax],
    };
    let err = |r: ProbeRequest| {
        probe::probe(&r, Device::Cpu, &|_, _, _| Ok(()))
            .unwrap_err()
            .to_string()
    };
    assert!(err(req(&data, &["n009"], None)).contains("unknown class \"n009\""));
    assert!(err(req(&data, &[], Some(4))).contains("fewer than the 4 asked for"));
    assert!(err(req(&data, &[], Some(0))).contains("at least 1"));
    std::fs::remove_dir_all(data.join("val")).unwrap();
    assert!(err(req(&data, &[], None)).contains("no val/ folder"));
    let t = transfer::transfer(
        &TransferRequest {
            model: root.join("m"),
            snapshot: None,
            data: data.clone(),
            classes: vec![],
            per_class: vec![0],
            seeds: 1,
            scratch_epochs: 0,
        },
        Device::Cpu,
        &|_, _, _| Ok(()),
    );
    assert!(t.unwrap_err().to_string().contains("at least 1"));
    let _ = std::fs::remove_dir_all(&root);
}
