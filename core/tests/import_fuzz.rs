//! Fuzzing the importer: mutated ONNX graphs and PyTorch state dicts (bit
//! flips, truncations, insertions, deletions, header and length-field
//! changes of small valid files) given to `import`. Every case must end in a
//! model folder that loads, or in an error of one line that is not an
//! internal one — never a panic — and the process's peak memory must stay
//! near its baseline (a declared length is never trusted for an
//! allocation). ZFVIS_FUZZ_CASES sets the number of cases (1,000 here;
//! `make fuzz` runs 10,000); failing cases are kept under the temp folder.

use rand::{rngs::StdRng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::import::{import, ImportOptions};
use zfvis_core::tch::Device;
use zfvis_dev::mutations::mutate;
use zfvis_dev::testing::root;

fn cases() -> usize {
    std::env::var("ZFVIS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Peak resident memory of this process so far, MB (VmHWM).
fn peak_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .expect("VmHWM in /proc/self/status")
}

fn reference(args: &[&str]) {
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/import_ref.py"))
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A valid file to mutate and how to import it.
struct Seed {
    name: &'static str,
    ext: &'static str,
    bytes: Vec<u8>,
    layers: Option<PathBuf>,
    input_size: Option<i64>,
}

fn seeds(dir: &Path) -> Vec<Seed> {
    let grey = dir.join("grey");
    std::fs::create_dir_all(&grey).unwrap();
    reference(&["grey", grey.to_str().unwrap()]);
    let ops = dir.join("ops.onnx");
    reference(&["ops", ops.to_str().unwrap()]);
    let tf = dir.join("tf.onnx");
    reference(&["tf2onnx", tf.to_str().unwrap()]);
    let read = |p: &Path| std::fs::read(p).unwrap();
    vec![
        Seed {
            name: "digits.pth",
            ext: "pth",
            bytes: read(&grey.join("model.pth")),
            layers: Some(grey.join("layers.json")),
            input_size: Some(28),
        },
        Seed {
            name: "digits.onnx",
            ext: "onnx",
            bytes: read(&grey.join("model.onnx")),
            layers: None,
            input_size: None,
        },
        Seed {
            name: "ops.onnx",
            ext: "onnx",
            bytes: read(&ops),
            layers: None,
            input_size: None,
        },
        Seed {
            name: "tf2onnx.onnx",
            ext: "onnx",
            bytes: read(&tf),
            layers: None,
            input_size: None,
        },
    ]
}

enum Outcome {
    Loaded,
    Refused(String),
}

/// Import `from` into a fresh folder and, if that works, load it.
fn attempt(s: &Seed, from: &Path, out: &Path) -> anyhow::Result<Outcome> {
    let r = import(&ImportOptions {
        from: from.to_path_buf(),
        out: out.to_path_buf(),
        layers: s.layers.clone(),
        input_size: s.input_size,
        ..Default::default()
    });
    match r {
        Ok(m) => {
            let m = ModelDir::open(&m.dir)?;
            m.load(None, Device::Cpu)?;
            Ok(Outcome::Loaded)
        }
        Err(e) => Ok(Outcome::Refused(format!("{e:#}"))),
    }
}

#[test]
fn mutated_imports_load_or_are_refused_in_one_line() {
    let dir = std::env::temp_dir().join(format!("zfvis-import-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds(&dir);
    for s in &seeds {
        let from = dir.join(format!("seed.{}", s.ext));
        std::fs::write(&from, &s.bytes).unwrap();
        match attempt(s, &from, &dir.join(format!("seed-{}", s.name))) {
            Ok(Outcome::Loaded) => {}
            Ok(Outcome::Refused(e)) => panic!("seed {} is refused: {e}", s.name),
            Err(e) => panic!("seed {} does not load: {e:#}", s.name),
        }
    }
    let largest = seeds.iter().map(|s| s.bytes.len()).max().unwrap() as f64 / 1e6;
    let fails = dir.join("failures");
    std::fs::create_dir_all(&fails).unwrap();
    let base = peak_mb();
    let mut rng = StdRng::seed_from_u64(20261206);
    // (seed, kind) -> (loaded, refused)
    let mut table: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    let mut bad = vec![];
    let n = cases();
    for case in 0..n {
        let s = &seeds[case % seeds.len()];
        let (kind, bytes) = mutate(&mut rng, &s.bytes);
        let from = dir.join(format!("case.{}", s.ext));
        std::fs::write(&from, &bytes).unwrap();
        let out = dir.join("out");
        let _ = std::fs::remove_dir_all(&out);
        let r = std::panic::catch_unwind(|| attempt(s, &from, &out));
        let e = table.entry((s.name, kind)).or_default();
        let problem = match r {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("panicked: {}", msg.lines().next().unwrap_or("")))
            }
            Ok(Err(x)) => Some(format!("imported but does not load: {x:#}")),
            Ok(Ok(Outcome::Loaded)) => {
                e.0 += 1;
                None
            }
            Ok(Ok(Outcome::Refused(msg))) => {
                e.1 += 1;
                if msg.contains('\n') || msg.to_lowercase().contains("internal") || msg.is_empty() {
                    Some(format!("refused with {msg:?}"))
                } else if out.join("manifest.json").exists() {
                    Some(format!("refused ({msg}) but left a model folder"))
                } else {
                    None
                }
            }
        };
        if let Some(p) = problem {
            let keep = fails.join(format!("{case:05}-{kind}.{}", s.ext));
            std::fs::write(&keep, &bytes).unwrap();
            bad.push(format!(
                "case {case} ({} {kind}, {}): {p}",
                s.name,
                keep.display()
            ));
        }
    }
    let grew = peak_mb() - base;
    eprintln!("| seed | mutation | loaded | refused |\n|---|---|---|---|");
    for ((s, k), (a, r)) in &table {
        eprintln!("| {s} | {k} | {a} | {r} |");
    }
    eprintln!(
        "{n} cases, {} bad; peak memory grew {grew:.0} MB (largest seed {largest:.2} MB)",
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {n} cases:\n{}",
        bad.len(),
        bad.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // Nothing sized by a declared length: the peak stays within twice the
    // largest file above the baseline, plus what libtorch keeps (64 MB).
    assert!(grew < 2.0 * largest + 64.0, "peak memory grew {grew:.0} MB");
    let _ = std::fs::remove_dir_all(&dir);
}
