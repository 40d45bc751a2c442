//! Helpers shared by the end-to-end tests.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::{self, ClassInfo};
use zfvis_core::net::{Arch, NetSpec};

pub use zfvis_dev::testing::{
    python, root, run_json, shared, shared_or_none, tempdir, venv_python, TempDir,
};

/// Run the `zfvis` binary under test; it must succeed and print JSON.
pub fn zfvis_json(args: &[&str]) -> serde_json::Value {
    run_json(Path::new(env!("CARGO_BIN_EXE_zfvis")), args)
}

/// Run the `zfvis` binary under test.
pub fn zfvis(args: &[&str]) -> std::process::Output {
    zfvis_dev::testing::run(Path::new(env!("CARGO_BIN_EXE_zfvis")), args)
}

/// A small random ZFNet model folder with snapshots at epochs 1 and 3.
pub fn random_model(dir: &Path, arch: Arch) -> PathBuf {
    let spec = NetSpec::preset(arch, 0.1, 0.02, 4);
    let classes = (0..4)
        .map(|i| ClassInfo {
            index: i,
            id: format!("c{i}"),
            name: format!("class {i}"),
        })
        .collect();
    checkpoint::create_random(dir, &spec, classes, &[1, 3], 7).unwrap();
    dir.to_path_buf()
}

/// A 300x200 test image with some structure, as PNG bytes.
pub fn test_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y * 3 % 256) as u8, ((x * y) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Upload image bytes to a server (multipart, as the page does); the 201 answer.
pub fn upload(base: &str, bytes: Vec<u8>) -> reqwest::blocking::Response {
    let form = reqwest::blocking::multipart::Form::new().part(
        "image",
        reqwest::blocking::multipart::Part::bytes(bytes).file_name("x.png"),
    );
    reqwest::blocking::Client::new()
        .post(format!("{base}/api/images"))
        .multipart(form)
        .send()
        .unwrap()
}

pub use zfvis_dev::child::Server;

/// A binary of the workspace beside `zfvis` (e.g. `zfvis-dev`), built by
/// `make test` (`cargo build --release --workspace` first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_zfvis")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} not found: build the workspace first (cargo build --release --workspace)",
        p.display()
    );
    p
}

/// A running `zfvis serve` on a free port; killed on drop.
pub fn serve(models: &Path, data: &Path, extra: &[&str]) -> Server {
    zfvis_dev::testing::serve(Path::new(env!("CARGO_BIN_EXE_zfvis")), models, data, extra)
}

/// The result of the job at `url` (GET until 200, following its progress
/// URL), within `secs` seconds.
pub fn job_result(base: &str, url: &str, secs: u64) -> serde_json::Value {
    let get = |u: &str| reqwest::blocking::get(format!("{base}{u}")).unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let r = get(url);
        if r.status() == reqwest::StatusCode::OK {
            return r.json().unwrap();
        }
        assert_eq!(
            r.status(),
            reqwest::StatusCode::ACCEPTED,
            "{url}: {}",
            r.text().unwrap_or_default()
        );
        let p = r.json::<serde_json::Value>().unwrap()["progress"]
            .as_str()
            .unwrap()
            .to_string();
        loop {
            let s: serde_json::Value = get(&p).json().unwrap();
            assert!(
                s["done"].as_u64() <= s["total"].as_u64().filter(|&t| t > 0).or(Some(u64::MAX)),
                "{s}"
            );
            if s["state"] != "queued" && s["state"] != "running" {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "{url}: still {s} after {secs} s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// `classes` classes of the shared woofnette, `train` and `val` images each
/// (the first by file name), linked under `dir`.
pub fn tiny_dataset(dir: &Path, classes: usize, train: usize, val: usize) -> PathBuf {
    let src = shared("woofnette");
    for (split, n) in [("train", train), ("val", val)] {
        if n == 0 {
            continue;
        }
        let mut ids: Vec<_> = std::fs::read_dir(src.join(split))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        ids.sort();
        for id in ids.into_iter().take(classes) {
            let to = dir.join(split).join(&id);
            std::fs::create_dir_all(&to).unwrap();
            let mut files: Vec<_> = std::fs::read_dir(src.join(split).join(&id))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files.into_iter().take(n) {
                std::os::unix::fs::symlink(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::copy(src.join("classes.json"), dir.join("classes.json")).unwrap();
    dir.to_path_buf()
}
