//! Answers tied to what is in the model folder now: a folder replaced or
//! rewritten under a running server answers with its new network on the
//! next request (predictions, ETags, stored job results, dataset indexes),
//! and after a restart too.

mod common;

use common::*;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;

/// A command's stdout; it must have succeeded (else its stderr is shown).
fn succeeded(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `zfvis predict` on the folder, in its own process: the independent answer.
fn predict_cli(model: &Path, image: &Path) -> Value {
    zfvis_json(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--snapshot",
        "24",
        "--image",
        image.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ])
}

fn top(v: &Value) -> (String, f64) {
    (
        v["top"][0]["name"].as_str().unwrap().to_string(),
        v["top"][0]["prob"].as_f64().unwrap(),
    )
}

#[test]
fn a_model_folder_replaced_under_a_running_server_answers_with_the_new_network() {
    let dir = tempdir("trust-identity");
    let models = dir.join("models");
    let m = models.join("m");
    copy_dir(&root().join("models/zfnet-woofnette"), &m);
    let srv = serve(&models, &dir.join("data"), &[]);
    let c = Client::new();
    let get = |p: &str| c.get(format!("{}{p}", srv.base)).send().unwrap();
    let dog = root().join("examples/dog.jpg");
    let id = upload(&srv.base, std::fs::read(&dog).unwrap())
        .json::<Value>()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pred = format!("/api/models/m/snapshots/24/images/{id}/predictions");
    let methods = format!("/api/methods?model=m&epoch=24&image={id}&methods=gradient");

    let zf = get(&pred);
    let etag = zf.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(zf.headers()["cache-control"], "no-cache");
    let zf: Value = zf.json().unwrap();
    assert_eq!(top(&zf), top(&predict_cli(&m, &dog)));
    let zf_job = job_result(&srv.base, &methods, 120);
    // The browser's copy is current while the folder is unchanged.
    let same = c
        .get(format!("{}{pred}", srv.base))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);

    // Replace the folder with an AlexNet (epochs 2 and 24), as a re-import would.
    let new = models.join(".incoming");
    copy_dir(&root().join("models/alexnet-woofnette"), &new);
    std::fs::remove_dir_all(&m).unwrap();
    std::fs::rename(&new, &m).unwrap();
    let alex_cli = predict_cli(&m, &dog);
    assert_ne!(top(&alex_cli), top(&zf), "the two networks must differ");

    let info: Value = get("/api/models/m").json().unwrap();
    assert_eq!(info["architecture"], "alexnet");
    let r = c
        .get(format!("{}{pred}", srv.base))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the old ETag no longer matches");
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let alex: Value = r.json().unwrap();
    assert_eq!(top(&alex), top(&alex_cli));
    assert!((top(&alex).1 - top(&alex_cli).1).abs() < 1e-6);
    // The old network's stored job result is not answered for the new one.
    let first = get(&methods);
    assert_eq!(
        first.status(),
        StatusCode::ACCEPTED,
        "a new job, not the stored one"
    );
    let alex_job = job_result(&srv.base, &methods, 120);
    assert_ne!(alex_job, zf_job);

    // Rewrite the weights in place (a retrain into the same folder): the
    // snapshot's identity, the loaded network and its index change with them.
    let before =
        zfvis_core::identity::snapshot(&zfvis_core::checkpoint::ModelDir::open(&m).unwrap(), 24)
            .unwrap();
    std::fs::copy(
        m.join("epoch-002.safetensors"),
        m.join("epoch-024.safetensors"),
    )
    .unwrap();
    let after =
        zfvis_core::identity::snapshot(&zfvis_core::checkpoint::ModelDir::open(&m).unwrap(), 24)
            .unwrap();
    assert_ne!(before, after);
    let rewritten: Value = get(&pred).json().unwrap();
    let cli = predict_cli(&m, &dog);
    assert_eq!(top(&rewritten), top(&cli));
    assert!((top(&rewritten).1 - top(&cli).1).abs() < 1e-6);
    let ix = job_index(&srv.base, "/api/models/m/snapshots/24/dataset/index");
    assert_eq!(ix["state"], "done");
    let files: Vec<String> = std::fs::read_dir(m.join("index"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.contains(&format!("epoch-024-{}.json", &after[..12])),
        "{files:?}"
    );

    // After a restart, the stored results are those of the folder's content.
    drop(srv);
    let srv = serve(&models, &dir.join("data"), &[]);
    let again = job_result(&srv.base, &methods, 120);
    assert_ne!(
        again, alex_job,
        "weights changed since that result was stored"
    );
    let p: Value = Client::new()
        .get(format!("{}{pred}", srv.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(top(&p), top(&cli));
}

/// Poll a dataset index's status until it is no longer building.
fn job_index(base: &str, url: &str) -> Value {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let v: Value = reqwest::blocking::get(format!("{base}{url}"))
            .unwrap()
            .json()
            .unwrap();
        if v["state"] != "queued" && v["state"] != "running" {
            return v;
        }
        assert!(std::time::Instant::now() < end, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Folders under `--models` that do not load are listed with their error
/// (API, page, `zfvis models`), naming no path above the folder; a
/// `--models` that is missing or holds no model folder stops the start.
#[test]
fn broken_model_folders_are_shown_with_their_error() {
    let dir = tempdir("trust-broken");
    let models = dir.join("models");
    random_model(&models.join("good"), zfvis_core::net::Arch::Zfnet);
    std::fs::create_dir_all(models.join("bad")).unwrap();
    std::fs::write(models.join("bad/manifest.json"), "{\"architecture\": ").unwrap();
    random_model(&models.join("noweights"), zfvis_core::net::Arch::Zfnet);
    std::fs::remove_file(models.join("noweights/epoch-003.safetensors")).unwrap();
    std::fs::create_dir_all(models.join("empty")).unwrap();

    // The command line: one line per folder, exit 1 since some do not load.
    let out = zfvis(&["models", "--models", models.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 of 4 model folders do not load"),
        "{stderr}"
    );
    check_listing(&v, &models);

    let srv = serve(&models, &dir.join("data"), &[]);
    let v: Value = reqwest::blocking::get(format!("{}/api/models", srv.base))
        .unwrap()
        .json()
        .unwrap();
    check_listing(&v, &models);
    let page = reqwest::blocking::get(format!("{}/", srv.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("id=\"broken-models\""), "the page lists them");
    assert!(page.contains("<code>bad</code>") && page.contains("<code>empty</code>"));
    assert!(
        !page.contains(models.to_str().unwrap()),
        "no server path on the page"
    );
    drop(srv);

    for (arg, needle) in [
        (dir.join("nowhere"), "no such folder"),
        (models.join("empty"), "no model folder in it"),
    ] {
        let out = zfvis(&[
            "serve",
            "--models",
            arg.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

fn check_listing(v: &Value, models: &Path) {
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["good"]);
    let broken: Vec<(&str, &str)> = v["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["error"].as_str().unwrap()))
        .collect();
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert_eq!(broken[0].0, "bad");
    assert!(
        broken[0].1.starts_with("bad/manifest.json: "),
        "{}",
        broken[0].1
    );
    assert_eq!(broken[1], ("empty", "no manifest.json in it"));
    assert_eq!(broken[2].0, "noweights");
    assert!(
        broken[2].1.contains("epoch-003.safetensors"),
        "{}",
        broken[2].1
    );
    for (_, e) in &broken {
        assert!(
            !e.contains('\n') && !e.contains(models.to_str().unwrap()),
            "{e}"
        );
    }
}

/// A Keras user's import: `--fit squash` without `--resize` squashes to
/// the input size (no torchvision 256/224 step), the import prints the
/// pipeline it recorded, and the predictions on a non-square photo are the
/// network's own runtime's (onnxruntime on PIL's `img.resize((n, n))`).
#[test]
fn a_squash_import_is_the_pipeline_asked_for_and_says_it() {
    let dir = tempdir("trust-squash");
    let onnx = root().join("tests/keras/mobilenet_v2.onnx");
    let out = dir.join("m");
    let o = zfvis(&[
        "import",
        "--from",
        onnx.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--fit",
        "squash",
        "--filter",
        "bicubic",
        "--mean",
        "0.5",
        "--std",
        "0.5",
    ]);
    let stdout = succeeded(&o);
    assert!(
        stdout.contains("input: 96 px; squash to 96×96 (bicubic), RGB, mean 0.5 std 0.5"),
        "{stdout}"
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["resize"], 96);
    let dog = root().join("examples/dog.jpg");
    python(
        "import_ref.py",
        &[
            "ort_image",
            onnx.to_str().unwrap(),
            dog.to_str().unwrap(),
            "bicubic",
            "0.5",
            "0.5",
            dir.to_str().unwrap(),
        ],
    );
    let want = zfvis_core::tch::Tensor::read_npy(dir.join("probs.npy")).unwrap();
    let got = zfvis_json(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--image",
        dog.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    let mut worst: f64 = 0.0;
    for p in got["top"].as_array().unwrap() {
        let i = p["index"].as_i64().unwrap();
        worst = worst.max((p["prob"].as_f64().unwrap() - want.double_value(&[i])).abs());
    }
    eprintln!("squash import vs onnxruntime on PIL's resize: |dp| {worst:.1e}");
    assert!(worst < 1e-4, "{worst}");
}

/// An ONNX input named `data` (the Caffe zoo's) gets Caffe preprocessing,
/// and the import says so and why; the page's model info carries it.
#[test]
fn a_guessed_caffe_preprocessing_is_said() {
    let dir = tempdir("trust-caffe");
    let onnx = dir.join("zoo.onnx");
    let weights = root().join("models/zfnet-woofnette-noclip/epoch-024.safetensors");
    python(
        "import_ref.py",
        &["zoo", weights.to_str().unwrap(), onnx.to_str().unwrap()],
    );
    let models = dir.join("models");
    let out = models.join("zoo");
    let o = zfvis(&[
        "import",
        "--from",
        onnx.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = succeeded(&o);
    assert!(
        stdout.contains("BGR, mean 0.48235,0.45882,0.40784 std 0.00392"),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: caffe preprocessing") && stdout.contains("--preprocess torchvision"),
        "{stdout}"
    );
    let info = zfvis_core::models::model_info(&models, "zoo").unwrap();
    assert!(info.preprocess_note.unwrap().contains("Caffe model zoo"));
    // Asked for, it is not a guess: no note.
    let o = zfvis(&[
        "import",
        "--from",
        onnx.to_str().unwrap(),
        "--out",
        models.join("tv").to_str().unwrap(),
        "--preprocess",
        "torchvision",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        !stdout.contains("note:")
            && stdout.contains("RGB, mean 0.485,0.456,0.406 std 0.229,0.224,0.225"),
        "{stdout}"
    );
}

/// `zfvis eval`, `probe` and `transfer` as a user runs them, on a few
/// woofnette images: eval's top-1 is what `zfvis predict` says image by
/// image; a probe too small to cross-validate says so.
mod needs_shared {
    use super::*;

    #[test]
    fn eval_probe_and_transfer_as_processes() {
        let dir = tempdir("trust-eval");
        let data = tiny_dataset(&dir.join("data"), 3, 2, 3);
        let model = root().join("models/zfnet-woofnette");
        let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
        let val = data.join("val");
        let e = zfvis_json(&[
            "eval",
            "--model",
            m,
            "--data",
            val.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
        ]);
        // Independent: each val image through `zfvis predict`.
        let mut right = 0;
        let mut n = 0;
        for class in std::fs::read_dir(&val).unwrap() {
            let class = class.unwrap();
            let wnid = class.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(class.path()).unwrap() {
                let p = zfvis_json(&[
                    "predict",
                    "--model",
                    m,
                    "--image",
                    f.unwrap().path().to_str().unwrap(),
                    "--device",
                    "cpu",
                    "--json",
                ]);
                right += (p["top"][0]["id"] == wnid.as_str()) as usize;
                n += 1;
            }
        }
        assert_eq!(n, 9);
        assert_eq!(e["n"], 9, "{e}");
        let top1 = e["top1"].as_f64().unwrap();
        assert!((top1 - right as f64 / 9.0).abs() < 1e-9, "{e} vs {right}/9");

        let probe = [
            "probe",
            "--model",
            m,
            "--data",
            d,
            "--train-per-class",
            "2",
            "--device",
            "cpu",
        ];
        let text = succeeded(&zfvis(&probe));
        assert!(
            text.contains("note: penalties not cross-validated"),
            "{text}"
        );
        let p = zfvis_json(&[&probe[..], &["--json"]].concat());
        assert_eq!(p["cross_validated"], false, "{p}");
        assert_eq!(p["layers"].as_array().unwrap().len(), 7);

        let t = zfvis_json(&[
            "transfer",
            "--model",
            m,
            "--data",
            d,
            "--per-class",
            "1,2",
            "--seeds",
            "2",
            "--scratch-epochs",
            "1",
            "--device",
            "cpu",
            "--json",
        ]);
        for arm in ["pretrained", "scratch"] {
            let rows = t[arm].as_array().unwrap();
            assert_eq!(rows.len(), 2, "{t}");
            assert!(
                rows.iter()
                    .all(|r| (0.0..=1.0).contains(&r["mean"].as_f64().unwrap())),
                "{t}"
            );
        }
        assert_eq!(t["test_images"], 9);
    }
}

/// The JSON routes beside their pictures: `/figure` (Fig. 3's weight count
/// against the snapshot file's tensors, counted by libtorch) and
/// `/occlusion/projection` (the map the live occluder names, projected).
#[test]
fn figure_and_occluded_projection_json_routes() {
    let dir = tempdir("trust-routes");
    let m = random_model(&dir.join("models/tiny"), zfvis_core::net::Arch::Zfnet);
    let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
    let get = |p: &str| -> Value {
        let r = reqwest::blocking::get(format!("{}{p}", srv.base)).unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        r.json().unwrap()
    };
    let f = get("/api/models/tiny/snapshots/3/figure?figure=fig3");
    let weights: i64 = zfvis_core::tch::Tensor::read_safetensors(m.join("epoch-003.safetensors"))
        .unwrap()
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(f["data"]["weights"].as_i64(), Some(weights), "{f}");
    let rows: i64 = f["data"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["weights"].as_str().and_then(|w| w.parse::<i64>().ok()))
        .sum();
    assert_eq!(rows, weights, "the rows add up");

    let id = upload(&srv.base, test_png()).json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = format!("/api/models/tiny/snapshots/3/images/{id}");
    let live = get(&format!("{b}/occlusion/live?x=32&y=16&size=48"));
    let p = get(&format!("{b}/occlusion/projection?x=32&y=16&size=48"));
    let info = get("/api/models/tiny");
    let last = info["last_unit"].as_u64().unwrap() as usize;
    assert_eq!(p["unit"], info["layers"][last - 1]["name"], "{p}");
    assert_eq!(p["map"], live["strongest_map"], "{p} {live}");
    assert!(p["value"].as_f64().unwrap() > 0.0, "{p}");
    let side = info["input_size"].as_i64().unwrap();
    let fld = &p["field"];
    assert!(
        fld["y0"].as_i64().unwrap() <= fld["y1"].as_i64().unwrap()
            && fld["x1"].as_i64().unwrap() < side + 200,
        "{p}"
    );
}

/// State dicts as users save them, through `zfvis import`: safetensors, a
/// checkpoint nesting it under `state_dict`, one under `model` with
/// DataParallel's `module.` prefix: each imports to the weights of the
/// plain `.pth`; a whole pickled model is refused in one line.
#[test]
fn state_dicts_as_users_save_them_import_alike() {
    let dir = tempdir("trust-wrapped");
    python("import_ref.py", &["wrapped", dir.to_str().unwrap()]);
    let import = |file: &str| {
        let out = dir.join(format!("m-{file}"));
        let o = zfvis(&[
            "import",
            "--from",
            dir.join(file).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--arch",
            "torchvision:resnet18",
        ]);
        (o, out)
    };
    let (o, plain) = import("plain.pth");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = std::fs::read(plain.join("epoch-000.safetensors")).unwrap();
    for file in ["plain.safetensors", "nested.pth", "module.pth"] {
        let (o, out) = import(file);
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = std::fs::read(out.join("epoch-000.safetensors")).unwrap();
        assert!(
            got == want,
            "{file}: its weights differ from the plain state dict's"
        );
    }
    let (o, _) = import("whole.pth");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("state_dict"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A request that outlives `--request-timeout` is answered 408 with a JSON
/// message, and the server keeps serving.
#[test]
fn a_request_past_its_time_is_a_408_and_the_server_serves_on() {
    let dir = tempdir("trust-408");
    random_model(&dir.join("models/tiny"), zfvis_core::net::Arch::Zfnet);
    let srv = serve(
        &dir.join("models"),
        &dir.join("data"),
        &["--request-timeout", "1"],
    );
    let id = upload(&srv.base, test_png()).json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // 217 x 217 occluder positions, one forward pass each: far over 1 s.
    let t0 = std::time::Instant::now();
    let r = reqwest::blocking::get(format!(
        "{}/api/models/tiny/snapshots/3/images/{id}/occlusion?size=8&stride=1&method=naive",
        srv.base
    ))
    .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    let ok = reqwest::blocking::get(format!("{}/api/models", srv.base)).unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
