//! The command line: happy paths and one-line errors for bad input.

mod common;

use common::*;
use std::process::{Command, Output};
use zfvis_core::net::Arch;

fn one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
}

/// Structurally malformed files other tools could write (cycles, names
/// nothing produces, zero, negative and huge sizes, wrong ranks and shapes,
/// state dicts that do not fit their layout): `zfvis import` ends with exit
/// 1 and one line naming what is wrong, never a panic, an internal error or
/// a signal, and leaves no model folder (an integer tensor of the right
/// shape is read as floats: that file imports and loads).
#[test]
fn malformed_imports_exit_1_in_one_line() {
    let dir = tempdir("cli-malformed");
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/import_ref.py"))
        .args(["malformed", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx" || e == "pth"))
        .collect();
    files.sort();
    assert!(files.len() >= 35, "{} files", files.len());
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let to = dir.join(format!("m-{name}"));
        let mut args = vec![
            "import",
            "--from",
            f.to_str().unwrap(),
            "--out",
            to.to_str().unwrap(),
        ];
        let layers = dir.join(format!("{name}.layers.json"));
        if f.extension().is_some_and(|e| e == "pth") {
            args.extend(["--layers", layers.to_str().unwrap(), "--input-size", "28"]);
        }
        let o = zfvis(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            // Only what can be read as a network: then the folder loads.
            assert_eq!(name, "sd_int_tensor", "{name} was imported");
            let m = zfvis_core::checkpoint::ModelDir::open(&to).unwrap();
            m.load(None, zfvis_core::tch::Device::Cpu).unwrap();
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{name}: {:?} {err}", o.status);
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("error: ") && !err.contains("internal"),
            "{name}: {err}"
        );
        assert!(
            !to.join("manifest.json").exists(),
            "{name}: a model folder was left"
        );
        eprintln!("{name}: {}", err.trim_end());
    }
}

#[test]
fn predict_and_project() {
    let dir = tempdir("cli-ok");
    let model = random_model(&dir.join("m"), Arch::Zfnet);
    let img = dir.join("a.png");
    std::fs::write(&img, test_png()).unwrap();
    let m = model.to_str().unwrap();
    let v = zfvis_json(&[
        "predict",
        "--model",
        m,
        "--image",
        img.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 4);
    let sum: f64 = top.iter().map(|p| p["prob"].as_f64().unwrap()).sum();
    assert!(
        (sum - 1.0).abs() < 1e-4,
        "all 4 classes listed, probabilities sum to {sum}"
    );
    assert!(top[0]["prob"].as_f64() >= top[1]["prob"].as_f64());

    let png = dir.join("p.png");
    let npy = dir.join("p.npy");
    let v = zfvis_json(&[
        "project",
        "--model",
        m,
        "--snapshot",
        "1",
        "--image",
        img.to_str().unwrap(),
        "--layer",
        "3",
        "--map",
        "2",
        "--out",
        png.to_str().unwrap(),
        "--out-raw",
        npy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["layer"], 3);
    assert!(v["y"].as_i64().unwrap() < 13 && v["x"].as_i64().unwrap() < 13);
    let p = image::open(&png).unwrap();
    assert_eq!((p.width(), p.height()), (224, 224));
    let raw = zfvis_core::tch::Tensor::read_npy(&npy).unwrap();
    assert_eq!(raw.size(), vec![3, 224, 224]);
}

#[test]
fn bad_input_is_one_line() {
    let dir = tempdir("cli-bad");
    let model = random_model(&dir.join("m"), Arch::Zfnet);
    let m = model.to_str().unwrap();
    let img = dir.join("a.png");
    std::fs::write(&img, test_png()).unwrap();
    let i = img.to_str().unwrap();
    let text = dir.join("t.jpg");
    std::fs::write(&text, "not an image").unwrap();
    let out = dir.join("o.png");
    let o = out.to_str().unwrap();

    one_line_error(
        &zfvis(&["predict", "--model", m, "--image", "/nonexistent.jpg"]),
        "cannot read /nonexistent.jpg",
    );
    one_line_error(
        &zfvis(&["predict", "--model", m, "--image", text.to_str().unwrap()]),
        "not a supported image",
    );
    one_line_error(
        &zfvis(&[
            "project", "--model", m, "--image", i, "--layer", "9", "--map", "0", "--out", o,
        ]),
        "layer 9 is out of range",
    );
    one_line_error(
        &zfvis(&[
            "project", "--model", m, "--image", i, "--layer", "2", "--map", "9999", "--out", o,
        ]),
        "map 9999 is out of range",
    );
    one_line_error(
        &zfvis(&["predict", "--model", m, "--snapshot", "7", "--image", i]),
        "no snapshot for epoch 7",
    );
    one_line_error(
        &zfvis(&["predict", "--model", "/nonexistent", "--image", i]),
        "manifest.json",
    );
    // A corrupt checkpoint.
    std::fs::write(
        model.join("epoch-003.safetensors"),
        b"garbage garbage garbage",
    )
    .unwrap();
    one_line_error(
        &zfvis(&["predict", "--model", m, "--image", i]),
        "epoch-003.safetensors",
    );
    // A manifest with an unknown architecture names the field.
    let text = std::fs::read_to_string(model.join("manifest.json"))
        .unwrap()
        .replace("\"zfnet\"", "\"vgg\"");
    std::fs::write(model.join("manifest.json"), text).unwrap();
    one_line_error(
        &zfvis(&["predict", "--model", m, "--image", i]),
        "architecture",
    );
}

#[test]
fn occlude_json_and_pngs() {
    let dir = tempdir("cli-occ");
    let model = random_model(&dir.join("m"), Arch::Zfnet);
    let img = dir.join("a.png");
    std::fs::write(&img, test_png()).unwrap();
    let out_dir = dir.join("maps");
    let v = zfvis_json(&[
        "occlude",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--size",
        "64",
        "--stride",
        "32",
        "--class",
        "1",
        "--json",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(v["class"], 1);
    assert_eq!(
        (v["size"].as_i64(), v["stride"].as_i64()),
        (Some(64), Some(32))
    );
    assert_eq!(
        v["positions"]["x"],
        serde_json::json!([0, 32, 64, 96, 128, 160])
    );
    assert_eq!(v["class_prob"].as_array().unwrap().len(), 6);
    assert_eq!(v["map_activation"][5].as_array().unwrap().len(), 6);
    assert!(v["top_label"][0][0].as_i64().unwrap() < 4);
    for f in ["class_prob.png", "map_activation.png", "top_label.png"] {
        assert!(image::open(out_dir.join(f)).is_ok(), "{f}");
    }
    let m = model.to_str().unwrap();
    let i = img.to_str().unwrap();
    one_line_error(
        &zfvis(&["occlude", "--model", m, "--image", i, "--size", "300"]),
        "occluder size",
    );
    one_line_error(
        &zfvis(&["occlude", "--model", m, "--image", i, "--stride", "0"]),
        "stride must be at least 1",
    );
    one_line_error(
        &zfvis(&["occlude", "--model", m, "--image", i, "--class", "9"]),
        "class 9 is out of range",
    );
}

#[test]
fn invariance_and_correspondence_cli() {
    let dir = tempdir("cli-exp");
    let model = random_model(&dir.join("m"), Arch::Zfnet);
    let m = model.to_str().unwrap();
    let img = dir.join("a.png");
    std::fs::write(&img, test_png()).unwrap();
    let v = zfvis_json(&[
        "invariance",
        "--model",
        m,
        "--image",
        img.to_str().unwrap(),
        "--steps",
        "3",
        "--json",
    ]);
    assert_eq!(
        v["rotate"]["values"],
        serde_json::json!([0.0, 180.0, 360.0])
    );
    assert_eq!(v["scale"]["dist_layer1"][0], 0.0);

    // A landmarks file beside two images.
    std::fs::write(dir.join("b.png"), test_png()).unwrap();
    std::fs::write(dir.join("lm.json"), r#"{"a.png": {"eye": [50, 60], "nose": [150, 100]}, "b.png": {"eye": [60, 60], "nose": [140, 100]}}"#).unwrap();
    let lm = dir.join("lm.json");
    let v = zfvis_json(&[
        "correspondence",
        "--model",
        m,
        "--landmarks",
        lm.to_str().unwrap(),
        "--seed",
        "4",
        "--json",
    ]);
    for p in ["eye", "nose", "random"] {
        assert!(v["parts"][p]["layer7"]["std"].as_f64().is_some(), "{p}");
    }
    std::fs::write(dir.join("bad.json"), r#"{"../a.png": {"eye": [1, 1]}}"#).unwrap();
    one_line_error(
        &zfvis(&[
            "correspondence",
            "--model",
            m,
            "--landmarks",
            dir.join("bad.json").to_str().unwrap(),
        ]),
        "relative",
    );
}

#[test]
fn compare_two_models() {
    let dir = tempdir("cli-compare");
    let zf = random_model(&dir.join("zf"), Arch::Zfnet);
    let alex = random_model(&dir.join("alex"), Arch::Alexnet);
    let (zf, alex) = (zf.to_str().unwrap(), alex.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec!["compare", "--a", alex, "--b", zf, "--images", "3"];
        args.extend_from_slice(extra);
        let out = zfvis(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = run(&["--snapshot-b", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (side, arch, stride, epoch) in [("a", "alexnet", 4, 3), ("b", "zfnet", 2, 1)] {
        let s = &v[side];
        assert_eq!(s["architecture"], arch);
        assert_eq!(s["epoch"], epoch);
        assert_eq!(s["conv1"]["stride"], stride);
        assert!(s["dead_filters"].is_array());
        let b = &s["band_energy"];
        let sum: f64 = ["low", "mid", "high"]
            .iter()
            .map(|k| b[k].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "{b}");
        // Random filters are white: most energy in the high band.
        assert!(b["high"].as_f64().unwrap() > 0.6, "{b}");
        let a = s["aliasing"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
        assert_eq!(s["nyquist"].as_f64().unwrap(), 1.0 / (2.0 * stride as f64));
    }
    assert_eq!(v["method"]["images"], 3);
    assert!(v["method"]["image_source"]
        .as_str()
        .unwrap()
        .contains("1/f noise"));
    // The same for people.
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dead filters") && text.contains("band energy") && text.contains("aliasing"),
        "{text}"
    );
    // On a dataset (a folder of 4 photos): the images come from it.
    let d = dir.join("photos");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..4u32 {
        let img = image::RgbImage::from_fn(120, 90, |x, y| {
            image::Rgb([(x * 2 + i * 40) as u8, (y * 3) as u8, (x ^ y) as u8])
        });
        img.save(d.join(format!("{i}.png"))).unwrap();
    }
    let out = run(&["--dataset", d.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["method"]["images"], 3);
    assert!(v["a"]["never_active"].is_array());
    assert!(
        !v["method"]["image_source"]
            .as_str()
            .unwrap()
            .contains("1/f noise"),
        "{v}"
    );
    // Bad input: one line each.
    let err = |args: &[&str], needle: &str| one_line_error(&zfvis(args), needle);
    err(
        &["compare", "--a", alex, "--b", zf, "--images", "0"],
        "1..=",
    );
    err(
        &["compare", "--a", alex, "--b", "/nonexistent/m"],
        "/nonexistent/m",
    );
    err(
        &["compare", "--a", alex, "--b", zf, "--snapshot-a", "99"],
        "99",
    );
    err(
        &[
            "compare",
            "--a",
            alex,
            "--b",
            zf,
            "--dataset",
            "/nonexistent/d",
        ],
        "/nonexistent/d",
    );
}

/// Non-blank: distinct colours (plots and tables are lines and text: few) and dark pixels.
/// `zfvis explain`: every method on the bundled ZFNet writes its picture
/// and its raw map in the documented layout; deconv for a map equals
/// `zfvis project`; `--score` adds the two AUCs; bad requests are one line.
#[test]
fn explain_every_method() {
    use zfvis_core::tch::Tensor;
    let dir = tempdir("cli-explain");
    let model = root().join("models/zfnet-woofnette");
    let (m, img) = (model.to_str().unwrap(), root().join("examples/dog.jpg"));
    let img = img.to_str().unwrap();
    for method in cnn_methods() {
        let (png, raw) = (
            dir.join(format!("{method}.png")),
            dir.join(format!("{method}.npy")),
        );
        let out = zfvis(&[
            "explain",
            "--model",
            m,
            "--image",
            img,
            "--method",
            method,
            "--out",
            png.to_str().unwrap(),
            "--out-raw",
            raw.to_str().unwrap(),
            "--score",
            "--json",
            "--stride",
            "16",
        ]);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["method"], method);
        assert_eq!(v["class"], 3, "{method}: the top class (beagle)");
        for k in ["deletion_auc", "insertion_auc"] {
            let a = v[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{method} {k} {a}");
        }
        assert_eq!(v["deletion"].as_array().unwrap().len(), 225);
        let t = Tensor::read_npy(&raw).unwrap();
        let want: Vec<i64> = if zfvis_core::methods::Method::parse(method)
            .unwrap()
            .per_pixel()
        {
            vec![224, 224]
        } else {
            vec![3, 224, 224]
        };
        assert_eq!(t.size(), want, "{method}: raw map layout");
        assert_eq!(v["shape"], serde_json::json!(want));
        let pic = image::open(&png).unwrap();
        assert_eq!((pic.width(), pic.height()), (224, 224));
    }
    // The deconvnet of a map is the projection.
    let (a, b) = (dir.join("e.npy"), dir.join("p.npy"));
    let v = zfvis_json(&[
        "explain",
        "--model",
        m,
        "--image",
        img,
        "--method",
        "deconv",
        "--layer",
        "3",
        "--map",
        "5",
        "--out-raw",
        a.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (v["layer"].as_i64(), v["unit"].as_str(), v["map"].as_i64()),
        (Some(3), Some("conv3"), Some(5))
    );
    assert!(v["class"].is_null());
    let p = dir.join("p.png");
    let out = zfvis(&[
        "project",
        "--model",
        m,
        "--image",
        img,
        "--layer",
        "3",
        "--map",
        "5",
        "--out",
        p.to_str().unwrap(),
        "--out-raw",
        b.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (Tensor::read_npy(&a).unwrap(), Tensor::read_npy(&b).unwrap());
    assert!(
        a.equal(&b),
        "explain --method deconv --layer 3 --map 5 equals project"
    );
    let bad = |args: &[&str], needle: &str| {
        let mut all = vec!["explain", "--model", m, "--image", img];
        all.extend_from_slice(args);
        one_line_error(&zfvis(&all), needle);
    };
    bad(&["--method", "saliency"], "unknown method \"saliency\"");
    bad(
        &["--method", "gradcam", "--layer", "2", "--map", "1"],
        "gradcam explains a class",
    );
    bad(
        &["--method", "gradient", "--class", "20"],
        "class 20 is out of range",
    );
    bad(
        &["--method", "gradient", "--map", "3"],
        "a map needs its layer",
    );
    bad(
        &["--method", "deconv", "--layer", "5", "--map", "9999"],
        "map 9999 is out of range",
    );
    bad(&["--method", "occlusion", "--size", "500"], "occluder size");
    bad(
        &["--method", "gradient", "--smooth", "0"],
        "1 to 1000 samples",
    );
    bad(
        &["--method", "scorecam", "--smooth", "4"],
        "scorecam does not walk back",
    );
    bad(
        &["--method", "gradcam", "--overlay"],
        "--overlay draws into --out",
    );
    bad(
        &["--method", "gradcam", "--layer", "fc6"],
        "the network has no unit \"fc6\"",
    );
    bad(
        &[
            "--method", "gradient", "--layer", "2", "--map", "1", "--score",
        ],
        "need a class",
    );
}

/// The CAMs' unit, SmoothGrad and the overlay on the command line: `zfvis
/// models --units` lists the units by depth with the suggested one marked;
/// `--smooth` is said in the text and the JSON; `--overlay` draws the map
/// over the crop (not the plain picture), at the opacity asked.
#[test]
fn cam_units_smoothgrad_and_overlay() {
    let dir = tempdir("cli-cams");
    let out = zfvis(&[
        "models",
        "--models",
        root().join("models").to_str().unwrap(),
        "--units",
        "zfnet-woofnette",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("conv1") && lines[4].contains("conv5") && lines[4].contains("suggested"),
        "{text}"
    );
    let v = zfvis_json(&[
        "models",
        "--models",
        root().join("models").to_str().unwrap(),
        "--units",
        "zfnet-woofnette",
        "--json",
    ]);
    assert_eq!(v["suggested"], 5);
    let (m, img) = (
        root().join("models/zfnet-woofnette"),
        root().join("examples/dog.jpg"),
    );
    let (m, img) = (m.to_str().unwrap(), img.to_str().unwrap());
    let run = |args: &[&str]| {
        let mut all = vec!["explain", "--model", m, "--image", img];
        all.extend_from_slice(args);
        let out = zfvis(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let said = run(&[
        "--method",
        "gradient",
        "--smooth",
        "4",
        "--noise",
        "0.2",
        "--squared",
    ]);
    assert!(
        said.contains("SmoothGrad², 4 samples, σ 20% of the input range, seed 0"),
        "{said}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&run(&["--method", "guided", "--smooth", "2", "--json"])).unwrap();
    assert_eq!(v["smooth"]["samples"], 2);
    let said = run(&["--method", "layercam", "--layer", "conv4"]);
    assert!(said.contains("at conv4"), "{said}");
    let (plain, half, full) = (
        dir.join("plain.png"),
        dir.join("half.png"),
        dir.join("full.png"),
    );
    run(&["--method", "gradcam++", "--out", plain.to_str().unwrap()]);
    run(&[
        "--method",
        "gradcam++",
        "--out",
        half.to_str().unwrap(),
        "--overlay",
    ]);
    run(&[
        "--method",
        "gradcam++",
        "--out",
        full.to_str().unwrap(),
        "--overlay",
        "1",
    ]);
    let open = |p: &std::path::Path| image::open(p).unwrap().to_rgb8();
    let (plain, half, full) = (open(&plain), open(&half), open(&full));
    assert_eq!(half.dimensions(), (224, 224));
    assert_ne!(plain, half);
    // Opacity 1 is the jet map alone; 0.5 keeps half the photo.
    let crop = zfvis_core::preprocess::decode(&std::fs::read(img).unwrap()).unwrap();
    let crop = zfvis_core::checkpoint::ModelDir::open(std::path::Path::new(m))
        .unwrap()
        .manifest
        .preprocess()
        .crop(&crop);
    let dist = |a: &image::RgbImage, b: &image::RgbImage| -> f64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.as_raw().len() as f64
    };
    assert!(
        dist(&half, &crop) < dist(&full, &crop),
        "the half overlay is nearer the photo"
    );
}

/// A greyscale network (an MNIST-style ONNX export, imported with
/// `--channels grey --fit squash`): every method's raw map is 1xHxW (HxW
/// for Grad-CAM and occlusion), and occlusion and invariance run on one
/// channel (they assumed three before).
#[test]
fn grey_network_explains_occludes_and_turns() {
    use zfvis_core::tch::Tensor;
    let dir = tempdir("cli-grey");
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/import_ref.py"))
        .args(["grey", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = dir.join("m");
    let out = zfvis(&[
        "import",
        "--from",
        dir.join("model.onnx").to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--channels",
        "grey",
        "--fit",
        "squash",
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (m, img) = (model.to_str().unwrap(), dir.join("digit.png"));
    let img = img.to_str().unwrap();
    // What a map of a grey network wants to see: a grey picture.
    let grey = dir.join("wants.png");
    let out = zfvis(&[
        "visualize",
        "--model",
        m,
        "--layer",
        "1",
        "--map",
        "0",
        "--steps",
        "4",
        "--out",
        grey.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pic = image::open(&grey).unwrap().to_rgb8();
    assert!(pic.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    for method in cnn_methods() {
        let raw = dir.join(format!("{method}.npy"));
        let out = zfvis(&[
            "explain",
            "--model",
            m,
            "--image",
            img,
            "--method",
            method,
            "--size",
            "8",
            "--stride",
            "4",
            "--out-raw",
            raw.to_str().unwrap(),
            "--score",
        ]);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<i64> = if zfvis_core::methods::Method::parse(method)
            .unwrap()
            .per_pixel()
        {
            vec![28, 28]
        } else {
            vec![1, 28, 28]
        };
        assert_eq!(Tensor::read_npy(&raw).unwrap().size(), want, "{method}");
    }
    for args in [
        vec![
            "occlude", "--model", m, "--image", img, "--size", "8", "--stride", "4", "--json",
        ],
        vec!["invariance", "--model", m, "--image", img, "--json"],
    ] {
        let out = zfvis(&args);
        assert!(
            out.status.success(),
            "{}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    }
    // index and top9 over a folder of digits (the index's speed peer was a
    // 3-channel input before).
    let ds = dir.join("digits");
    std::fs::create_dir_all(&ds).unwrap();
    for k in 0..3 {
        std::fs::copy(dir.join("digit.png"), ds.join(format!("d{k}.png"))).unwrap();
    }
    let d = ds.to_str().unwrap();
    let out = zfvis(&["index", "--model", m, "--dataset", d, "--device", "cpu"]);
    assert!(
        out.status.success(),
        "index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = zfvis_json(&[
        "top9",
        "--model",
        m,
        "--dataset",
        d,
        "--layer",
        "1",
        "--map",
        "0",
        "--json",
    ]);
    let items = t.as_array().unwrap();
    assert_eq!(items.len(), 3, "one per image: {t}");
    assert!(
        items.iter().all(|i| i["value"] == items[0]["value"]),
        "the same digit thrice: {t}"
    );
}

/// `zfvis sanity`: the documented JSON and files; the same seed, the same
/// scores.
#[test]
fn sanity_json_and_maps() {
    let dir = tempdir("cli-sanity");
    let model = root().join("models/zfnet-woofnette");
    let (m, img) = (model.to_str().unwrap(), root().join("examples/dog.jpg"));
    let img = img.to_str().unwrap();
    let run = |seed: &str, out: &std::path::Path| {
        let o = zfvis(&[
            "sanity",
            "--model",
            m,
            "--image",
            img,
            "--methods",
            "gradient,gradcam",
            "--steps",
            "2",
            "--seed",
            seed,
            "--json",
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let v = run("3", &dir.join("a"));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["step"], 0);
    assert_eq!(steps[0]["randomised"], serde_json::json!([]));
    assert_eq!(steps[2]["randomised"], serde_json::json!(["fc8", "fc7"]));
    for method in ["gradient", "gradcam"] {
        for k in ["spearman_abs", "spearman", "ssim", "hog"] {
            let x = steps[0]["scores"][method][k].as_f64().unwrap();
            assert!((x - 1.0).abs() < 1e-9, "step 0 {method} {k} = {x}");
        }
        for s in 0..3 {
            assert!(dir.join(format!("a/{s}-{method}.npy")).exists());
        }
    }
    assert!(
        steps[0].get("png").is_none(),
        "no pictures in the CLI's JSON"
    );
    assert_eq!(run("3", &dir.join("b")), v, "same seed, same scores");
    assert_ne!(
        run("4", &dir.join("c"))["steps"][1],
        v["steps"][1],
        "another seed"
    );
    one_line_error(
        &zfvis(&[
            "sanity",
            "--model",
            m,
            "--image",
            img,
            "--methods",
            "gradient,saliency",
        ]),
        "unknown method",
    );
}

fn assert_picture(png: &[u8], what: &str) -> image::RgbImage {
    let table = ["fig3", "fig5", "table1"]
        .iter()
        .any(|t| what.starts_with(t));
    let img = image::load_from_memory(png)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let least = if table { 3 } else { 40 };
    assert!(colours.len() >= least, "{what}: {} colours", colours.len());
    let dark = img
        .pixels()
        .filter(|p| p.0.iter().all(|&c| c < 100))
        .count();
    assert!(
        dark > 200,
        "{what}: {dark} dark pixels (no text or pictures)"
    );
    img
}

#[test]
fn figures_of_the_bundled_model() {
    use base64::Engine as _;
    let out = tempdir("cli-figures");
    let model = root().join("models/zfnet-woofnette");
    let image = root().join("examples/cat.jpg");
    let landmarks = shared_or_none("dog-faces/landmarks.json");
    let mut args = vec![
        "figures".to_string(),
        "--model".into(),
        model.to_str().unwrap().into(),
        "--image".into(),
        image.to_str().unwrap().into(),
        "--models".into(),
        root().join("models").to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
        "--device".into(),
        "cpu".into(),
    ];
    if let Some(l) = &landmarks {
        args.extend(["--landmarks".into(), l.to_str().unwrap().into()]);
    }
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let r = zfvis(&a);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Self-contained: nothing fetched from elsewhere.
    assert!(!report.contains("src=\"http") && !report.contains("href=\"http"));
    let mut stems = vec![
        "fig2-top9",
        "fig3-architecture",
        "fig4-timeline",
        "fig5-invariance",
        "fig6-compare",
        "fig7-occlusion",
    ];
    if landmarks.is_some() {
        stems.push("table1-correspondence");
    } else {
        assert!(report.contains("Not drawn: needs --landmarks"));
    }
    for stem in &stems {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_picture(&png, stem);
        // The report holds the same picture, inline.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        assert!(
            report.contains(&format!("<figure id=\"{stem}\">")),
            "{stem}"
        );
        assert!(
            report.contains(&b64),
            "{stem}: the report's picture differs"
        );
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        assert!(j["caption"].as_str().unwrap().len() > 80, "{stem}: {j}");
        assert!(!j["data"].is_null(), "{stem}");
        let svg = out.join(format!("{stem}.svg"));
        if [
            "fig3-architecture",
            "fig5-invariance",
            "table1-correspondence",
        ]
        .contains(stem)
        {
            let s = std::fs::read_to_string(&svg).unwrap();
            assert!(
                s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
                "{stem}"
            );
            assert!(s.matches("<text").count() > 10, "{stem}: text stays text");
        } else {
            assert!(!svg.exists(), "{stem}: pictures have no SVG");
        }
    }
    let json = |stem: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap()
    };
    // Fig. 3's weight count against the snapshot file, counted by safetensors in Python.
    let count = Command::new(root().join(".venv/bin/python"))
        .args([
            "-c",
            "import sys; from safetensors.numpy import load_file; print(sum(v.size for v in load_file(sys.argv[1]).values()))",
        ])
        .arg(model.join("epoch-024.safetensors"))
        .output()
        .unwrap();
    assert!(
        count.status.success(),
        "{}",
        String::from_utf8_lossy(&count.stderr)
    );
    let n: i64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(json("fig3-architecture")["data"]["weights"], n);
    // Fig. 5's numbers are `zfvis invariance`'s for the same image.
    let inv = zfvis(&[
        "invariance",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let inv: serde_json::Value = serde_json::from_slice(&inv.stdout).unwrap();
    let fig5 = json("fig5-invariance")["data"].clone();
    for t in ["translate", "scale", "rotate"] {
        assert_eq!(fig5[t]["prob"], inv[t]["prob"], "{t}");
        assert_eq!(fig5[t]["dist_layer7"], inv[t]["dist_layer7"], "{t}");
    }
    // Fig. 6 compares with the bundled AlexNet (the other architecture).
    let fig6 = json("fig6-compare")["data"].clone();
    assert_eq!(fig6["models"][1]["architecture"], "alexnet", "{fig6}");
    assert_eq!(fig6["models"][0]["kernel"], 7);
    assert_eq!(fig6["models"][1]["kernel"], 11);
    // Fig. 2 and Fig. 4 ran over the images given and the examples (no
    // --dataset): the bundled examples (the cat among them) and 5
    // landmarked dogs.
    let fig2 = json("fig2-top9")["data"].clone();
    let examples: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/examples.json")).unwrap(),
    )
    .unwrap();
    let n = examples.as_array().unwrap().len() + if landmarks.is_some() { 5 } else { 0 };
    assert_eq!(fig2["images"], n, "{}", fig2["images"]);
    assert_eq!(
        fig2["maps"].as_array().unwrap().len(),
        15,
        "5 layers x 3 maps"
    );
    let fig4 = json("fig4-timeline")["data"].clone();
    assert_eq!(
        fig4["layers"][0]["epochs"].as_array().unwrap().len(),
        9,
        "every snapshot"
    );
    // Fig. 7's numbers: the grid of class probabilities.
    let fig7 = json("fig7-occlusion")["data"].clone();
    assert!(fig7["class_prob"].as_array().unwrap().len() > 10);
    let _ = std::fs::remove_dir_all(&out);
}

/// A temp folder with a random ZFNet `models/tiny` and a test image `a.png`.
fn tiny_and_image(tag: &str) -> (common::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempdir(tag);
    let model = random_model(&dir.join("models/tiny"), Arch::Zfnet);
    let img = dir.join("a.png");
    std::fs::write(&img, test_png()).unwrap();
    (dir, model, img)
}

#[test]
fn figures_one_failure_keeps_the_others() {
    let (dir, model, img) = tiny_and_image("cli-figures-fail");
    // The compared model's snapshot is corrupt: Fig. 6 fails, Fig. 3 is written.
    let broken = random_model(&dir.join("broken"), Arch::Alexnet);
    std::fs::write(broken.join("epoch-003.safetensors"), b"corrupt").unwrap();
    let out = dir.join("out");
    let r = zfvis(&[
        "figures",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--compare",
        broken.to_str().unwrap(),
        "--only",
        "fig3,fig6,fig7",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    one_line_error(&r, "1 of 3 figures failed: fig6-compare");
    assert_picture(
        &std::fs::read(out.join("fig3-architecture.png")).unwrap(),
        "fig3",
    );
    assert_picture(
        &std::fs::read(out.join("fig7-occlusion.png")).unwrap(),
        "fig7",
    );
    assert!(!out.join("fig6-compare.png").exists());
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("<figure id=\"fig6-compare\"><h2>Fig. 6"));
    assert!(report.contains("Not drawn:"));
    // A bad figure name is refused before anything runs.
    let r = zfvis(&[
        "figures",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--only",
        "fig9",
        "--out",
        out.to_str().unwrap(),
    ]);
    one_line_error(&r, "--only \"fig9\"");
}

/// `zfvis visualize`: the picture of one map, a whole layer's grid, the
/// same bytes for the same seed, JSON, the figure of 9 maps a layer, and
/// bad input refused in one line.
#[test]
fn visualize_writes_pictures_and_refuses_bad_input() {
    let (dir, model, _) = tiny_and_image("cli-visualize");
    let m = model.to_str().unwrap();
    let one = dir.join("one.png");
    let run = |extra: &[&str], out: &std::path::Path| {
        let mut a = vec!["visualize", "--model", m, "--out", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        let r = zfvis(&a);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8_lossy(&r.stdout).to_string()
    };
    let text = run(
        &["--layer", "2", "--map", "1", "--steps", "8", "--seed", "4"],
        &one,
    );
    assert!(
        text.contains("conv2 map 1") && text.contains("map 1: objective"),
        "{text}"
    );
    let img = image::open(&one).unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));
    let again = dir.join("again.png");
    run(
        &["--layer", "2", "--map", "1", "--steps", "8", "--seed", "4"],
        &again,
    );
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&again).unwrap());
    // A whole layer: 10 maps, 8 a row.
    let grid = dir.join("grid.png");
    run(&["--layer", "1", "--maps", "0-9", "--steps", "2"], &grid);
    let img = image::open(&grid).unwrap();
    assert_eq!((img.width(), img.height()), (8 * 226 - 2, 2 * 226 - 2));
    // JSON: the objective of each image, no picture in it.
    let v = zfvis_json(&[
        "visualize",
        "--model",
        m,
        "--class",
        "1",
        "--steps",
        "4",
        "--json",
    ]);
    assert_eq!(v["class_name"], "class 1");
    assert!(
        v["images"][0]["objective"].is_number() && v["images"][0]["png"].is_null(),
        "{v}"
    );
    // The figure: 9 maps of each conv layer.
    let out = dir.join("figs");
    let r = zfvis(&[
        "figures",
        "--model",
        m,
        "--image",
        dir.join("a.png").to_str().unwrap(),
        "--only",
        "vis",
        "--vis-steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(out.join("vis-wants.png")).unwrap();
    assert_picture(&png, "vis-wants");
    // Bad input: exit 1 (2 for clap's own checks), one line.
    for (args, says) in [
        (vec!["--layer", "99", "--map", "0"], "layer"),
        (vec!["--layer", "2", "--map", "9999"], "map"),
        (
            vec!["--layer", "2", "--map", "0", "--diversity", "1"],
            "diversity",
        ),
        (vec!["--layer", "2", "--map", "0", "--steps", "0"], "steps"),
        (vec!["--class", "77"], "class"),
    ] {
        let mut a = vec!["visualize", "--model", m, "--out", one.to_str().unwrap()];
        a.extend(args);
        one_line_error(&zfvis(&a), says);
    }
    one_line_error(
        &zfvis(&["visualize", "--model", m, "--layer", "2"]),
        "--out",
    );
    let r = zfvis(&[
        "visualize",
        "--model",
        m,
        "--class",
        "1",
        "--layer",
        "2",
        "--json",
    ]);
    assert_eq!(r.status.code(), Some(2));
}

/// The web views' "download figure" links give the file `zfvis figures` writes.
#[test]
fn figure_downloads_equal_the_cli_files() {
    let (dir, model, img) = tiny_and_image("cli-figures-http");
    let out = dir.join("out");
    let r = zfvis(&[
        "figures",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--only",
        "fig3,fig5,fig7",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
    let c = reqwest::blocking::Client::new();
    let up: serde_json::Value = upload(&srv.base, test_png()).json().unwrap();
    let id = up["id"].as_str().unwrap();
    for (f, stem) in [
        ("fig3", "fig3-architecture"),
        ("fig5", "fig5-invariance"),
        ("fig7", "fig7-occlusion"),
    ] {
        let url = format!(
            "{}/api/models/tiny/snapshots/3/figure.png?figure={f}&image={id}",
            srv.base
        );
        let got = c.get(url).send().unwrap().bytes().unwrap();
        let file = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert!(got == file, "{f}: the download differs from {stem}.png");
    }
}

/// Tests that read ../shared/datasets: `make test` runs them where it is
/// present and names them where it is not (CI requires it).
mod needs_shared {
    use super::*;

    #[test]
    fn projects_the_beagle() {
        let beagle = shared("dog-faces/n02088364_beagle.JPEG");
        let dir = tempdir("cli-beagle");
        let model = random_model(&dir.join("m"), Arch::Alexnet);
        let png = dir.join("p.png");
        let out = zfvis(&[
            "project",
            "--model",
            model.to_str().unwrap(),
            "--image",
            beagle.to_str().unwrap(),
            "--layer",
            "5",
            "--map",
            "0",
            "--all",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(image::open(&png).is_ok());
    }

    #[test]
    fn correspondence_on_the_dog_faces() {
        let lm = shared("dog-faces/landmarks.json");
        let dir = tempdir("cli-dogs");
        let model = random_model(&dir.join("m"), Arch::Zfnet);
        let v = zfvis_json(&[
            "correspondence",
            "--model",
            model.to_str().unwrap(),
            "--landmarks",
            lm.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(v["pairs"], 10);
        for p in ["eye_left", "eye_right", "nose", "random"] {
            assert!(v["parts"][p]["layer5"]["mean"].as_f64().is_some(), "{p}");
        }
    }
}

/// Every method that applies to a CNN (attention rollout's two need a transformer).
fn cnn_methods() -> Vec<&'static str> {
    zfvis_core::methods::ALL
        .iter()
        .filter(|m| !m.needs().attention)
        .map(|m| m.name())
        .collect()
}
