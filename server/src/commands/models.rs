//! `zfvis models`: every model folder under a models folder, with its
//! architecture and snapshots, or the error that keeps it from loading (as
//! the server's model list and its page show them).

use super::args::Output;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Folder of model folders
    #[arg(long, default_value = "models")]
    models: PathBuf,
    #[command(flatten)]
    output: Output,
}

/// Lists them; exits 1 when a folder does not load.
pub fn run(a: ModelsArgs) -> Result<()> {
    zfvis_core::models::check_models_dir(&a.models)?;
    let list = zfvis_core::models::list_models(&a.models)?;
    a.output.print(&list, || {
        for m in &list.models {
            let epochs: Vec<String> = m.snapshots.iter().map(|s| s.epoch.to_string()).collect();
            println!(
                "{}  {}, {} classes, {} px ({}), epochs {}",
                m.name,
                m.architecture,
                m.classes,
                m.input_size,
                m.pipeline,
                epochs.join(", ")
            );
        }
        for b in &list.broken {
            println!("{}  does not load: {}", b.name, b.error);
        }
    })?;
    if !list.broken.is_empty() {
        bail!(
            "{} of {} model folders do not load",
            list.broken.len(),
            list.broken.len() + list.models.len()
        );
    }
    Ok(())
}
