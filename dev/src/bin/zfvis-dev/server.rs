//! The server under test: `zfvis serve` as a child process on loopback,
//! with its own upload folder, and what the harnesses ask it first.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use zfvis_dev::child::Server;

/// `zfvis serve` as a child process on a free loopback port, with its own
/// upload folder; killed on drop, its folder removed.
pub struct ServerProcess {
    server: Server,
    data: PathBuf,
}

impl ServerProcess {
    pub fn start(zfvis: &Path, models: &Path, extra: &[&str]) -> Result<ServerProcess> {
        let data = std::env::temp_dir().join(format!("zfvis-dev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let server = Server::start(zfvis, models, &data, extra, "error", |l| {
            if l.contains("panicked") || l.contains("error") {
                eprintln!("server: {l}");
            }
        })
        .context("cannot start zfvis serve")?;
        Ok(ServerProcess { server, data })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// Resident memory of the server, MB; an error where it cannot be read
    /// (a memory bound must not pass on a reading of 0).
    pub fn rss_mb(&self) -> Result<f64> {
        let path = format!("/proc/{}/status", self.server.child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// Still running? (An exit is a crash.)
    pub fn alive(&mut self) -> Result<()> {
        if let Some(st) = self.server.child.try_wait()? {
            bail!("the server died: {st}");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.server.stop(); // before its folder goes
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A model's epochs and its (layer, maps) list.
pub type ModelInfo = (Vec<u64>, Vec<(u64, u64)>);

/// The model's epochs and (layer, maps) list.
pub fn model_info(c: &reqwest::blocking::Client, base: &str, model: &str) -> Result<ModelInfo> {
    let info: Value = c
        .get(format!("{base}/api/models/{model}"))
        .send()?
        .error_for_status()
        .with_context(|| format!("model {model}"))?
        .json()?;
    let epochs: Vec<u64> = info["snapshots"]
        .as_array()
        .context("no snapshots")?
        .iter()
        .filter_map(|s| s["epoch"].as_u64())
        .collect();
    let layers = info["layers"]
        .as_array()
        .context("no layers")?
        .iter()
        .map(|l| {
            (
                l["layer"].as_u64().unwrap_or(1),
                l["maps"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    Ok((epochs, layers))
}

pub fn bar(n: u64, template: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(n);
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Server memory, MB: at the start, after the warm-up (or half way), the
/// peak after it, at the end.
pub struct Rss {
    pub start: f64,
    pub warm: f64,
    pub peak: f64,
    pub end: f64,
}

impl Rss {
    /// Every reading at `start` until there are others.
    pub fn at(start: f64) -> Rss {
        Rss {
            start,
            warm: start,
            peak: start,
            end: start,
        }
    }
}
