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
    /// Instead: the units of this model, ordered by depth, the one the CAM
    /// methods take by default (the last with maps before global pooling)
    /// marked; `--layer` takes a unit's number or name
    #[arg(long, value_name = "MODEL")]
    units: Option<String>,
    #[command(flatten)]
    output: Output,
}

/// Lists them; exits 1 when a folder does not load.
pub fn run(a: ModelsArgs) -> Result<()> {
    if let Some(name) = &a.units {
        return units(&a, name);
    }
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

/// `--units MODEL`: its units by depth, the suggested CAM unit marked.
fn units(a: &ModelsArgs, name: &str) -> Result<()> {
    let info = zfvis_core::models::model_info(&a.models, name)?;
    let mut units = info.layers.clone();
    units.sort_by_key(|u| u.depth);
    let v = serde_json::json!({ "suggested": info.last_unit, "units": units });
    // The deepest maps (a pooled 1x1 output is not a place to look).
    let deepest = units
        .iter()
        .filter(|u| u.spatial && u.size > 1)
        .map(|u| u.depth)
        .max();
    a.output.print(&v, || {
        for u in &units {
            let shape = if u.spatial {
                format!("{} maps of {}×{}", u.maps, u.size, u.size)
            } else {
                format!("{} values", u.maps)
            };
            let mark = if u.layer == info.last_unit && Some(u.depth) < deepest {
                "  (suggested: the last block's patch tokens do not reach the class token)"
            } else if u.layer == info.last_unit {
                "  (suggested: the last maps before the classifier)"
            } else {
                ""
            };
            println!("{:>4}  {:<24} {shape}{mark}", u.layer, u.short);
        }
    })
}
