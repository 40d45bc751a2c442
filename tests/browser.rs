//! The real-browser end-to-end test (Debian's chromium driven by
//! playwright-core from npm; `make test` installs both).

mod common;

use common::*;
use std::process::Command;
use zfvis_core::net::Arch;

#[test]
fn upload_click_share_in_chromium() {
    let Some(beagle) = shared("dog-faces/n02088364_beagle.JPEG") else {
        return;
    };
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
    let Some(beagle) = shared("dog-faces/n02088364_beagle.JPEG") else {
        return;
    };
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
    let Some(beagle) = shared("dog-faces/n02088364_beagle.JPEG") else {
        return;
    };
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

/// Run an end-to-end script (tests/e2e) against the server; its last line of
/// output is JSON.
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
