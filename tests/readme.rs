//! The README works for a stranger: the shell blocks of its quick start and
//! of "Your own model" run as pasted in a fresh clone, and every flag its
//! command table names exists in that command's `--help`.

mod common;

use common::{root, tempdir};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The text of the README's section `## title`.
fn section(readme: &str, title: &str) -> String {
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |k| k + 3);
    rest[..end].to_string()
}

/// The fenced blocks of `lang` in `text`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("a closed block");
        out.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `make run` as the quick start says, in the clone: it must serve the
/// bundled model. The build step is taken as done (`make -o build`): the
/// clone shares this checkout's build, which `make test` itself made from a
/// clean clone in CI.
fn make_run_serves(clone: &Path) {
    let port = free_port();
    let mut child = Command::new("make")
        .args(["-o", "build", "run", &format!("ADDR=127.0.0.1:{port}")])
        .current_dir(clone)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let served = loop {
        if let Ok(r) = reqwest::blocking::get(format!("{base}/api/models")) {
            break r.text().unwrap_or_default();
        }
        if t0.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            break String::new();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let page = reqwest::blocking::get(&base).map(|r| r.status().as_u16());
    // Stop make and the server it started (their process group).
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    assert!(
        served.contains("zfnet-woofnette"),
        "make run did not serve the bundled model: {served:?}"
    );
    assert_eq!(page.ok(), Some(200), "the page at {base}");
}

#[test]
fn quick_start_and_own_model_run_as_pasted_in_a_fresh_clone() {
    let text = readme();
    let quick = blocks(&section(&text, "Quick start"), "sh");
    let own = blocks(&section(&text, "Your own model"), "sh");
    let methods = blocks(&section(&text, "The deconvnet beside its successors"), "sh");
    let wants = blocks(&section(&text, "What a unit wants to see"), "sh");
    assert!(
        quick.len() >= 2 && own.len() >= 2 && !methods.is_empty(),
        "{quick:?} {own:?}"
    );
    assert_eq!(
        quick[0].trim(),
        "make run",
        "the quick start begins with make run"
    );

    // A fresh clone of this checkout's HEAD, sharing its venv and build.
    let dir = tempdir("readme");
    let clone = dir.join("zfvis");
    let st = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(root())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(st.success(), "git clone");
    for shared in [".venv", "target"] {
        let from = root().join(shared).canonicalize().unwrap();
        std::os::unix::fs::symlink(from, clone.join(shared)).unwrap();
    }
    make_run_serves(&clone);

    // Every other block, in order, in one shell (the PATH export carries over).
    let script: Vec<String> = quick[1..]
        .iter()
        .chain(&own)
        .chain(&methods)
        .chain(&wants)
        .cloned()
        .collect();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(&clone)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // What each block promises is there.
    for f in [
        "proj.png",
        "figures/report.html",
        "figures/table1-correspondence.png",
        "resnet18.pth",
        "models/resnet18/manifest.json",
        "resnet18-layer3.1.png",
        "mynet.onnx",
        "models/mynet/manifest.json",
        "mynet-proj.png",
        "models/vit_b_32/manifest.json",
        "rollout.png",
        "deit.onnx",
        "models/deit/manifest.json",
        "deit-rollout.png",
        "guided.png",
        "cam.npy",
        "scorecam.png",
        "smooth.png",
        "sanity/5-ig.npy",
        "conv5-3.png",
        "conv3.png",
        "samoyed.png",
        "diverse.png",
    ] {
        assert!(
            clone.join(f).is_file(),
            "{f} was not written\n{stdout}\n{stderr}"
        );
    }
    let png = image::open(clone.join("mynet-proj.png")).unwrap();
    assert!(png.width() >= 100, "{}", png.width());
    // predict printed five classes for the bundled model and for ResNet-18,
    // and project named the block.
    assert!(stdout.contains("\nlayer3.1 map 0: activation"), "{stdout}");
    // The units by depth, the CAMs' default marked; a ViT's is the
    // next-to-last block.
    assert!(
        stdout.contains("conv5") && stdout.contains("(suggested"),
        "{stdout}"
    );
    assert!(
        stdout.contains("encoder_layer_10 768 maps of 7×7  (suggested"),
        "{stdout}"
    );
    // A DeiT through ONNX: its blocks by the exporter's scope names.
    assert!(
        stdout.contains("blocks.10                192 maps of 14×14  (suggested"),
        "{stdout}"
    );
    let top5 = stdout.lines().filter(|l| l.contains('%')).count();
    assert!(top5 >= 10, "{stdout}");
    let manifest = std::fs::read_to_string(clone.join("models/mynet/manifest.json")).unwrap();
    for c in ["\"cat\"", "\"dog\"", "\"rocket\""] {
        assert!(manifest.contains(c), "{manifest}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `zfvis <cmd>` lines of the README's command table, with the flags each names.
fn table(text: &str) -> Vec<(String, Vec<String>)> {
    let block = blocks(&section(text, "Command line"), "text").remove(0);
    let mut rows: Vec<(String, Vec<String>)> = vec![];
    for line in block.lines() {
        let mut words = line.split_whitespace();
        if line.starts_with("zfvis ") {
            words.next();
            rows.push((words.next().unwrap().to_string(), vec![]));
        }
        let row = rows.last_mut().expect("the table starts with a command");
        for w in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if w.starts_with("--") && w.len() > 2 {
                row.1.push(w.to_string());
            }
        }
    }
    rows
}

#[test]
fn every_flag_of_the_command_table_is_in_help() {
    let rows = table(&readme());
    assert!(rows.len() >= 15, "{rows:?}");
    let zfvis = env!("CARGO_BIN_EXE_zfvis");
    let top = Command::new(zfvis).arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout).to_string();
    for (cmd, flags) in &rows {
        assert!(
            top.lines()
                .any(|l| l.split_whitespace().next() == Some(cmd)),
            "README names `zfvis {cmd}`, which --help does not list"
        );
        let o = Command::new(zfvis).args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success(), "zfvis {cmd} --help");
        let help = String::from_utf8_lossy(&o.stdout);
        for f in flags {
            assert!(
                help.split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w == f),
                "README's `zfvis {cmd}` names {f}, which `zfvis {cmd} --help` does not have"
            );
        }
    }
    // And every command --help lists is in the table.
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for c in listed {
        assert!(
            rows.iter().any(|(r, _)| r == c),
            "README's table lacks `zfvis {c}`"
        );
    }
}

#[test]
fn nothing_a_user_runs_points_outside_the_repository() {
    let text = readme();
    // No command a user runs names the team's ../shared: the README's shell
    // blocks never; the Makefile only where `make test` looks for the test
    // datasets (and runs the tests that need them only where they are).
    for b in blocks(&text, "sh") {
        assert!(
            !b.contains("../shared"),
            "README block names ../shared: {b}"
        );
    }
    let make = std::fs::read_to_string(root().join("Makefile")).unwrap();
    for l in make.lines().filter(|l| l.contains("../shared")) {
        assert!(
            l.starts_with("SHARED := ") || l.starts_with('#'),
            "Makefile names ../shared: {l}"
        );
    }
    // The quick start's and Your own model's shell blocks hold commands, not synopses.
    for title in [
        "Quick start",
        "Your own model",
        "The deconvnet beside its successors",
    ] {
        for b in blocks(&section(&text, title), "sh") {
            assert!(!b.contains('[') || b.contains("python"), "{title}: {b}");
            assert!(!b.contains('…'), "{title}: {b}");
        }
    }
}

/// The README's "Reproduce the paper" table, re-run where the shared
/// datasets allow: each figure it states against what the command gives
/// now, within 10x of the figure's last digit.
mod needs_shared {
    use super::*;
    use common::{shared, zfvis_json};

    /// The numbers in `row` (the table row that starts with `| key`), in order.
    fn numbers(key: &str) -> Vec<f64> {
        let text = section(&readme(), "Reproduce the paper");
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| {key}")))
            .unwrap_or_else(|| panic!("no row {key:?}"));
        // The last column: how close, at this scale.
        let last = row.trim_end_matches('|').rsplit('|').next().unwrap();
        let mut out = vec![];
        let mut cur = String::new();
        for c in last.chars().chain([' ']) {
            if c.is_ascii_digit() || (c == '.' && !cur.is_empty()) {
                cur.push(c);
            } else if !cur.is_empty() {
                out.push(cur.trim_end_matches('.').parse().unwrap());
                cur.clear();
            }
        }
        out
    }

    fn near(what: &str, got: f64, stated: f64, tol: f64) {
        eprintln!("{what}: README {stated}, now {got}");
        assert!(
            (got - stated).abs() <= tol,
            "{what}: README says {stated}, the command gives {got}"
        );
    }

    #[test]
    fn reproduce_the_paper_figures_are_what_the_commands_give() {
        let models = root().join("models");
        let m = |n: &str| models.join(n).to_str().unwrap().to_string();
        let woof = shared("woofnette");
        // Fig. 4: the bundled model's snapshots.
        let n = numbers("Fig. 4");
        let manifest =
            zfvis_core::checkpoint::ModelDir::open(models.join("zfnet-woofnette")).unwrap();
        assert_eq!(
            n[0] as usize,
            manifest.manifest.snapshots.len(),
            "Fig. 4 row: {n:?}"
        );
        assert_eq!(n[1] as u32, manifest.manifest.last_epoch().unwrap());

        // Table 1: layer-5 distances of the parts against random squares'.
        let n = numbers("Table 1");
        let lm = shared("dog-faces/landmarks.json");
        let c = zfvis_json(&[
            "correspondence",
            "--model",
            &m("zfnet-woofnette"),
            "--landmarks",
            lm.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
        ]);
        let part = |p: &str| c["parts"][p]["layer5"]["mean"].as_f64().unwrap();
        let parts = [part("eye_left"), part("eye_right"), part("nose")];
        let lo = parts.iter().copied().fold(f64::MAX, f64::min);
        let hi = parts.iter().copied().fold(f64::MIN, f64::max);
        // "with 5 frontal dog photos, layer-5 distances … (lo–hi) … (random)"
        near("Table 1 lowest part", lo, n[2], 0.005);
        near("Table 1 highest part", hi, n[3], 0.005);
        near("Table 1 random", part("random"), n[4], 0.005);

        // Fig. 6: aliasing of AlexNet's and ZFNet's layer-2 projections.
        let n = numbers("Fig. 6");
        let val = woof.join("val");
        let v = zfvis_json(&[
            "compare",
            "--a",
            &m("alexnet-woofnette"),
            "--b",
            &m("zfnet-woofnette"),
            "--dataset",
            val.to_str().unwrap(),
            "--images",
            "64",
            "--device",
            "cpu",
            "--json",
        ]);
        near(
            "Fig. 6 AlexNet aliasing",
            v["a"]["aliasing"].as_f64().unwrap(),
            n[1],
            0.005,
        );
        near(
            "Fig. 6 ZFNet aliasing",
            v["b"]["aliasing"].as_f64().unwrap(),
            n[2],
            0.005,
        );
        assert_eq!(v["a"]["dead_count"], 0, "no dead filters at this scale");
        assert_eq!(v["b"]["dead_count"], 0, "no dead filters at this scale");

        // §5, Table 7: the probe's conv1 and fc7 on the breeds it was trained on.
        let n = numbers("§5, Table 7");
        let breeds = "n02086240,n02087394,n02088364,n02089973,n02093754,n02096294,n02099601,n02105641,n02111889,n02115641";
        let p = zfvis_json(&[
            "probe",
            "--model",
            &m("zfnet-woofnette"),
            "--data",
            woof.to_str().unwrap(),
            "--classes",
            breeds,
            "--train-per-class",
            "30",
            "--classifier",
            "softmax",
            "--device",
            "cpu",
            "--json",
        ]);
        let acc = |l: &str| {
            p["layers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["layer"] == l)
                .unwrap()["softmax"]
                .as_f64()
                .unwrap()
                * 100.0
        };
        // "(the 10 breeds) … (23% conv1 to 56% fc7 …"
        near("Table 7 conv1 %", acc("conv1"), n[1], 5.0);
        near("Table 7 fc7 %", acc("fc7"), n[3], 5.0);

        // §5, Fig. 9: the pretrained arm at 50 a class (the scratch arm, 15
        // trainings, is marked as measured once).
        let n = numbers("§5, Fig. 9");
        let t = zfvis_json(&[
            "transfer",
            "--model",
            &m("zfnet-imagenette"),
            "--data",
            woof.to_str().unwrap(),
            "--classes",
            breeds,
            "--per-class",
            "50",
            "--seeds",
            "3",
            "--scratch-epochs",
            "0",
            "--device",
            "cpu",
            "--json",
        ]);
        near(
            "Fig. 9 pretrained at 50 %",
            t["pretrained"][0]["mean"].as_f64().unwrap() * 100.0,
            n[0],
            1.0,
        );
        assert_eq!(n[2], 50.0);
    }
}

/// "about 2,000 lines in `core/src/import/onnx/`": within a quarter of it.
#[test]
fn the_onnx_readers_size_is_what_the_readme_says() {
    let text = readme();
    let at = text
        .find(" lines in `core/src/import/onnx/`")
        .expect("the sentence");
    let said: f64 = text[..at]
        .rsplit("about ")
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    let mut lines = 0;
    for e in std::fs::read_dir(root().join("core/src/import/onnx")).unwrap() {
        lines += std::fs::read_to_string(e.unwrap().path())
            .unwrap()
            .lines()
            .count();
    }
    assert!(
        (lines as f64 - said).abs() <= said / 4.0,
        "README: about {said}; now {lines}"
    );
}
