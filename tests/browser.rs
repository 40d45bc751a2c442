//! The real-browser end-to-end test (Debian's chromium driven by
//! playwright-core from npm; `make test` installs both).

mod common;

use common::*;
use std::process::Command;
use zfvis_core::net::Arch;

/// The empty page offers the bundled examples; one click on an example and
/// one on a map reach a projection, with no CSP violation on the way.
#[test]
fn newcomer_opens_an_example_in_chromium() {
    let dir = tempdir("browser-examples");
    random_model(&dir.join("models/tiny"), Arch::Zfnet);
    let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
    let v = run_node(
        "examples.mjs",
        &srv.base,
        std::path::Path::new("-"),
        &dir,
        &[],
    );
    let offered = v["offered"].as_array().unwrap();
    assert!(offered.len() >= 4, "{v}");
    assert!(
        offered
            .iter()
            .all(|e| e["title"].as_str().unwrap().contains("Licence")),
        "{v}"
    );
    assert!(
        v["title"].as_str().unwrap().contains("Try one of these"),
        "{v}"
    );
    let first = offered[0]["id"].as_str().unwrap();
    assert!(v["url"].as_str().unwrap().contains(first), "{v}");
    assert!(v["url"].as_str().unwrap().contains("map="), "{v}");
    assert_eq!(v["top5"], 4, "{v}");
    // The page says what the model can answer.
    let knows = v["knows"].as_str().unwrap();
    assert!(
        knows.contains("knows 4 classes: class 0, class 1, class 2, class 3"),
        "{knows}"
    );
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["csp"].as_array().unwrap().len(), 0, "{v}");
    assert!(dir.join("example-projection.png").exists());
    // The projection as Fig. 2 draws it by default, the full frame on request.
    let p = &v["patches"];
    assert_eq!(p["fieldShown"], true, "{v}");
    assert_eq!(p["fullShown"], false, "{v}");
    assert!(
        p["input"].as_i64().unwrap() > 20 && p["proj"].as_i64().unwrap() > 100,
        "{v}"
    );
    assert!(
        p["cap"].as_str().unwrap().contains("receptive field"),
        "{v}"
    );
    assert_eq!(p["fullAfterToggle"], true, "{v}");
    // Occlusion (e): one colour per label; (d): fitted scale, or 0-1 on request.
    let legend: Vec<&str> = v["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let distinct: std::collections::HashSet<_> = legend.iter().collect();
    assert!(!legend.is_empty() && distinct.len() == legend.len(), "{v}");
    assert_eq!(v["scaleFixed"], "0.000 1.000", "{v}");
    assert_ne!(v["scaleFitted"], v["scaleFixed"], "{v}");
    // Each view's "download figure" link answers its PNG, named after the figure.
    for (f, stem) in [
        ("fig7", "fig7-occlusion"),
        ("fig3", "fig3-architecture"),
        ("fig2", "fig2-top9"),
        ("fig4", "fig4-timeline"),
    ] {
        let d = &v["figures"][f];
        assert_eq!(d["status"], 200, "{f}: {v}");
        assert_eq!(d["type"], "image/png", "{f}: {v}");
        assert!(
            d["download"].as_str().unwrap().starts_with(stem),
            "{f}: {v}"
        );
        assert!(
            d["href"].as_str().unwrap().contains(&format!("figure={f}")),
            "{f}: {v}"
        );
    }
    // The dataset views over the image store, said so; the timeline never
    // shows the top-9 rows of the view before it.
    assert_eq!(
        v["randomHidden"], true,
        "no --dataset, no random image: {v}"
    );
    assert!(v["source"].as_str().unwrap().contains("--dataset"), "{v}");
    assert!(v["top9Rows"].as_i64().unwrap() >= 1, "{v}");
    assert!(
        v["dsFrame"]["full"]
            .as_str()
            .unwrap()
            .contains("frame=full"),
        "{v}"
    );
    assert!(
        v["dsFrame"]["field"]
            .as_str()
            .unwrap()
            .contains("frame=field"),
        "{v}"
    );
    assert_eq!(v["staleRows"], 0, "{v}");
    assert_eq!(v["timeline"]["rows"], 0, "{v}");
    assert_eq!(v["timeline"]["epochs"], 2, "{v}");
    assert!(
        v["timeline"]["title"].as_str().unwrap().contains("Fig. 4"),
        "{v}"
    );
    // Top 9 of the image: full frames on request, receptive-field cuts otherwise.
    assert!(
        v["top9Frame"]["full"]
            .as_str()
            .unwrap()
            .contains("frame=full"),
        "{v}"
    );
    assert!(
        v["top9Frame"]["field"]
            .as_str()
            .unwrap()
            .contains("frame=field"),
        "{v}"
    );
}

#[test]
fn live_occluder_follows_a_touch_drag() {
    let dir = tempdir("browser-touch");
    random_model(&dir.join("models/tiny"), Arch::Zfnet);
    let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
    let v = run_node("touch.mjs", &srv.base, std::path::Path::new("-"), &dir, &[]);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    // The drag moved the square (in input pixels, 224 across) by about half
    // the stage, and the page did not scroll instead.
    let (ox, oy) = (
        v["after"]["ox"].as_f64().unwrap(),
        v["after"]["oy"].as_f64().unwrap(),
    );
    assert!(ox > 60.0 && oy > 60.0, "{v}");
    assert_ne!(v["after"]["left"], v["before"]["left"], "{v}");
    assert!(
        v["after"]["prob"]
            .as_str()
            .unwrap()
            .chars()
            .any(|c| c.is_ascii_digit()),
        "{v}"
    );
    assert_eq!(v["after"]["scrolled"], 0, "{v}");
}

/// Feature analysis (paper §5) on a tiny labelled dataset: per-layer bars,
/// the transfer curve, the paper's tables, the shared URL; as a background
/// job that outlives a 1 s request timeout, a reload, and a restart of the
/// server; a second run cancelled.
#[test]
fn feature_analysis_view_in_chromium() {
    let dir = tempdir("browser-features");
    // The bundled ZFNet: full width, so that the job runs for seconds.
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::os::unix::fs::symlink(root().join("models/zfnet-woofnette"), dir.join("models/zf"))
        .unwrap();
    // Two classes told apart by colour, 6 training and 3 test images each.
    let ds = dir.join("ds");
    for (split, n) in [("train", 6), ("val", 3)] {
        for (c, id) in ["n001", "n002"].iter().enumerate() {
            let d = ds.join(split).join(id);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(48, 40, |x, y| {
                    let v = ((x * 7 + y * 13 + i * 31) % 64) as u8;
                    if c == 0 {
                        image::Rgb([160 + v, v, v])
                    } else {
                        image::Rgb([v, v, 160 + v])
                    }
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let args = ["--dataset", ds.to_str().unwrap(), "--request-timeout", "1"];
    let srv = serve(&dir.join("models"), &dir.join("data"), &args);
    let v = run_node("features.mjs", &srv.base, &ds, &dir, &[]);
    assert_eq!(v["same"], true);
    // The job outlived the request timeout, and the reload joined it.
    assert!(v["elapsed"].as_f64().unwrap() > 2.0, "{v}");
    let (before, after) = (
        v["beforeReload"].as_f64().unwrap(),
        v["afterReload"].as_f64().unwrap(),
    );
    assert!(
        before >= 100.0 && after >= before,
        "progress {before} before the reload, {after} after"
    );
    assert_eq!(v["cancelText"], "Cancelled.");
    assert_eq!(v["cancelled"]["state"], "cancelled", "{v}");
    // A restarted server answers the stored result at once.
    drop(srv);
    let srv = serve(&dir.join("models"), &dir.join("data"), &args);
    let url = v["url"].as_str().unwrap();
    let query = url.split_once('?').unwrap().1;
    let r = reqwest::blocking::get(format!("{}/api/features?{query}", srv.base)).unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let j: serde_json::Value = r.json().unwrap();
    assert_eq!(
        j["probe"]["layers"].as_array().map(|a| a.len()),
        Some(7),
        "{j}"
    );
    let url = v["url"].as_str().unwrap();
    assert!(
        url.contains("train_per_class=2") && url.contains("shots=1%2C2"),
        "{url}"
    );
    let layers = v["first"]["layers"].as_str().unwrap();
    for l in ["conv1", "conv5", "fc6", "fc7"] {
        assert!(layers.contains(l), "{layers}");
    }
    // 7 layers x (softmax, svm) bars, plus 2 legend swatches.
    assert_eq!(v["first"]["bars"], 16);
    assert!(v["first"]["progressHidden"].as_bool().unwrap());
    assert!(v["paperFirst"].as_str().unwrap().contains("86.2 ± 0.8"));
    assert!(v["first"]["curve"].as_str().unwrap().contains("2 draws"));
}

/// What a unit wants to see on the bundled ZFNet: four conv3 maps from a
/// shared URL, previews while the job runs, the stored pictures on reload,
/// and a picture's trio (its optimised image beside its dataset top 9).
#[test]
fn visualize_view_in_chromium() {
    let dir = tempdir("browser-visualize");
    let srv = serve(&root().join("models"), &dir.join("data"), &[]);
    let dog = root().join("examples/dog.jpg");
    let v = run_node("visualize.mjs", &srv.base, &dog, &dir, &[]);
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert!(
        v["previewSeen"].as_str().unwrap().contains("optimising"),
        "{v}"
    );
    let cells = v["cells"].as_array().unwrap();
    let maps: Vec<&str> = cells.iter().map(|c| c["map"].as_str().unwrap()).collect();
    assert_eq!(maps, ["0", "1", "2", "3"]);
    for c in cells {
        let t = c["title"].as_str().unwrap();
        assert!(t.contains("objective") && t.contains("64 steps"), "{t}");
    }
    assert!(v["title"]
        .as_str()
        .unwrap()
        .contains("What conv3 wants to see"));
    let url = v["url"].as_str().unwrap();
    for k in ["view=wants", "layer=3", "vmaps=0-3", "vsteps=64"] {
        assert!(url.contains(k), "{url}");
    }
    assert!(v["reloadMs"].as_u64().unwrap() < 20_000, "{v}");
    assert_eq!(v["trio"]["rows"], 1, "{v}");
    assert_eq!(v["trio"]["checked"], true);
    let trio = v["trioUrl"].as_str().unwrap();
    for k in ["view=dataset", "maps_sel=2", "want=1", "vsteps=64"] {
        assert!(trio.contains(k), "{trio}");
    }
}

/// Run an end-to-end script (tests/e2e) against the server; its last line of
/// output is JSON.
/// The methods view on the bundled ZFNet: every method's map of the dog
/// photo with its time and deletion/insertion AUCs, both curves, the shared
/// URL reloaded, the figure downloaded, a two-step sanity check.
#[test]
fn methods_view_in_chromium() {
    let dir = tempdir("browser-methods");
    let srv = serve(&root().join("models"), &dir.join("data"), &[]);
    let dog = root().join("examples/dog.jpg");
    let v = run_node("methods.mjs", &srv.base, &dog, &dir, &[]);
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    let methods: Vec<&str> = v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    // Every method but attention rollout's two (transformers only).
    let all: Vec<&str> = zfvis_core::methods::ALL
        .iter()
        .filter(|m| !m.needs().attention)
        .map(|m| m.name())
        .collect();
    assert_eq!(methods, all);
    assert!(all.len() >= 14, "the CAM family is on the page");
    for c in v["cards"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert!(
            t.contains(" s") && t.contains("deletion AUC") && t.contains("insertion AUC"),
            "{t}"
        );
    }
    assert_eq!(
        v["curves"].as_u64(),
        Some(2 * all.len() as u64),
        "a deletion and an insertion curve per method"
    );
    assert!(v["url"].as_str().unwrap().contains("image="), "{v}");
    assert_eq!(v["reloaded"].as_u64(), Some(all.len() as u64));
    // The suggested unit is the default, named; the units are listed by depth.
    assert_eq!(v["suggested"], "suggested: conv5", "{v}");
    let layers: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        layers[1].starts_with("conv1")
            && layers[5].starts_with("conv5")
            && layers[5].ends_with("(suggested)"),
        "{layers:?}"
    );
    // Another unit, SmoothGrad and the overlay: in the maps and the URL.
    let shared = v["sharedUrl"].as_str().unwrap();
    for q in ["layer=4", "smooth=3", "overlay=0.7"] {
        assert!(shared.contains(q), "{q} in {shared}");
    }
    for c in v["overlaid"].as_array().unwrap() {
        let (m, t) = (c["method"].as_str().unwrap(), c["text"].as_str().unwrap());
        assert_eq!(c["stack"], true, "{m}: over the image");
        assert_eq!(c["opacity"], "0.7", "{m}");
        let method = zfvis_core::methods::Method::parse(m).unwrap();
        if method.needs().layer {
            assert!(t.contains("at conv4"), "{m}: {t}");
        }
        assert_eq!(t.contains("SmoothGrad"), method.smoothable(), "{m}: {t}");
    }
    assert!(v["figure"].as_u64().unwrap() > 50_000, "{v}");
    assert_eq!(v["rows"], serde_json::json!(["– (trained)", "fc8", "fc7"]));
    eprintln!("screenshots in {}", dir.display());
}

fn run_node(
    script: &str,
    base: &str,
    image: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let e2e = root().join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core missing: run `make test` (it runs npm install in tests/e2e)"
    );
    let out = Command::new("node")
        .arg(e2e.join(script))
        .arg(base)
        .arg(image)
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// A torchvision ResNet-18 (random weights) imported with `zfvis import`:
/// the unit layer3.1 is picked from the grouped list and one of its maps
/// projected; the occlusion maps computed; the last conv layer's maps are
/// layer4.1's (the input of the global pooling).
#[test]
fn imported_resnet18_unit_and_occlusion_in_chromium() {
    let dir = tempdir("browser-resnet");
    let pth = dir.join("r18.pth");
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/import_ref.py"))
        .args(["save", "resnet18"])
        .arg(&pth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_zfvis"))
        .args(["import", "--arch", "torchvision:resnet18", "--from"])
        .arg(&pth)
        .arg("--out")
        .arg(dir.join("models/r18"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
    let dog = root().join("examples/dog.jpg");
    let v = run_node("graph.mjs", &srv.base, &dog, &dir, &[]);
    // 20 convs and the stem pool and 8 blocks.
    assert_eq!(v["options"], 29, "{v}");
    let caption = v["caption"].as_str().unwrap();
    assert!(caption.starts_with("layer3.1 map"), "{v}");
    assert!(
        v["src"]
            .as_str()
            .unwrap()
            .contains(&format!("/layers/{}/maps/", v["value"].as_str().unwrap())),
        "{v}"
    );
    assert_eq!(v["lastConv"], "layer4.1", "{v}");
    eprintln!("screenshots in {}", dir.display());
}

/// Tests that read ../shared/datasets: `make test` runs them where it is
/// present and names them where it is not (CI requires it).
mod needs_shared {
    use super::*;

    #[test]
    fn upload_click_share_in_chromium() {
        let beagle = shared("dog-faces/n02088364_beagle.JPEG");
        let dir = tempdir("browser");
        random_model(&dir.join("models/tiny"), Arch::Zfnet);
        let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
        let v = run_node("browser.mjs", &srv.base, &beagle, &dir, &[]);
        assert_eq!(v["same"], true);
        assert!(v["url"].as_str().unwrap().contains("layer=5"));
        assert!(dir.join("shared-phone.png").exists());
        eprintln!("screenshots in {}", dir.display());
    }

    /// A torchvision VGG11 (random weights) imported with `zfvis import`: its
    /// conv8 (features.18) maps are clicked and projected like ZFNet's.
    #[test]
    fn imported_vgg11_conv8_in_chromium() {
        let beagle = shared("dog-faces/n02088364_beagle.JPEG");
        let dir = tempdir("browser-vgg");
        let pth = dir.join("vgg11.pth");
        let out = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/import_ref.py"))
            .args(["save", "vgg11"])
            .arg(&pth)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(env!("CARGO_BIN_EXE_zfvis"))
            .args(["import", "--arch", "torchvision:vgg11", "--from"])
            .arg(&pth)
            .arg("--out")
            .arg(dir.join("models/vgg11"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("8 conv layers") && said.contains("features.18"),
            "{said}"
        );
        let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
        let v = run_node("browser.mjs", &srv.base, &beagle, &dir, &["8"]);
        assert_eq!(v["same"], true);
        assert_eq!(v["button"], "conv8features.18");
        assert!(
            v["caption"]
                .as_str()
                .unwrap()
                .starts_with("conv8 (features.18) map"),
            "{v}"
        );
    }

    #[test]
    fn compare_view_in_chromium() {
        let beagle = shared("dog-faces/n02088364_beagle.JPEG");
        let dir = tempdir("browser-compare");
        random_model(&dir.join("models/zf"), Arch::Zfnet);
        random_model(&dir.join("models/alex"), Arch::Alexnet);
        let srv = serve(&dir.join("models"), &dir.join("data"), &[]);
        let v = run_node("compare.mjs", &srv.base, &beagle, &dir, &[]);
        let table = v["table"].as_str().unwrap();
        assert!(table.contains("alex") && table.contains("zf"), "{table}");
        assert!(
            table.contains("dead filters") && table.contains("aliasing"),
            "{table}"
        );
        // Both models' filters have a hover target each (tiny models: 10 + 10).
        assert_eq!(v["hits"], 20);
        assert!(v["url"].as_str().unwrap().contains("norm=filter"));
    }
}
