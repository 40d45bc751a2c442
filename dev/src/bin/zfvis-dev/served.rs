//! The server a harness drives: which `zfvis` binary, and the model it serves.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The server under test: which `zfvis` binary, and the model it serves.
#[derive(clap::Args)]
pub struct Served {
    /// Folder of model folders
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// The model to exercise (a folder name in --models)
    #[arg(long, default_value = "zfnet-woofnette")]
    pub model: String,
    /// The zfvis binary (default: `zfvis` beside this one)
    #[arg(long)]
    pub zfvis: Option<PathBuf>,
}

impl Served {
    pub fn zfvis(&self) -> Result<PathBuf> {
        if let Some(p) = &self.zfvis {
            return Ok(p.clone());
        }
        let me = std::env::current_exe().context("cannot locate zfvis-dev")?;
        let p = me.with_file_name("zfvis");
        anyhow::ensure!(
            p.is_file(),
            "{} not found: build it (cargo build --release) or pass --zfvis",
            p.display()
        );
        Ok(p)
    }
}
