//! What the benchmarks share: the median, the Python peers
//! (`tests/*.py` in the venv) and the models they time.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Run a PyTorch peer script of tests/ and read the JSON it prints.
pub(super) fn peer(python: &Path, script: &str, args: &[String]) -> Result<serde_json::Value> {
    let script = super::local::resource(&format!("tests/{script}"));
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .context("running the PyTorch peer")?;
    if !out.status.success() {
        bail!(
            "PyTorch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The model folder `zfvis bench --methods` times and how its Captum peer
/// loads the same network: the bundled `model`, or torchvision `arch` saved
/// by PyTorch into `dir` and imported.
pub(super) fn methods_model(
    python: &Path,
    model: &Path,
    arch: Option<&str>,
    dir: &Path,
) -> Result<(PathBuf, Vec<String>)> {
    Ok(match arch {
        Some(arch) => {
            let pth = dir.join(format!("{arch}.pth"));
            let script = super::local::resource("tests/import_ref.py");
            let ok = std::process::Command::new(python)
                .arg(&script)
                .args(["save", arch])
                .arg(&pth)
                .status()
                .context("running the PyTorch peer")?;
            if !ok.success() {
                bail!("PyTorch could not save torchvision {arch}");
            }
            zfvis_core::import::import(&zfvis_core::import::ImportOptions {
                from: pth.clone(),
                out: dir.join("model"),
                arch: Some(format!("torchvision:{arch}")),
                ..Default::default()
            })?;
            (
                dir.join("model"),
                vec![format!("torchvision:{arch}"), pth.display().to_string()],
            )
        }
        None => {
            let m = zfvis_core::checkpoint::ModelDir::open(model)?;
            let snap = m.snapshot_path(None)?;
            (
                model.to_path_buf(),
                vec![
                    "zfnet".into(),
                    model.display().to_string(),
                    snap.display().to_string(),
                ],
            )
        }
    })
}
