//! Argument groups that several commands share, flattened into their `Args`
//! (`#[command(flatten)]`), so a flag is described once.

use anyhow::Result;
use std::path::PathBuf;
use zfvis_core::tch::Device;

/// Where the work runs.
#[derive(clap::Args, Clone)]
pub struct DeviceArg {
    /// auto | cpu | cuda | cuda:N (auto: the first GPU when there is one)
    #[arg(long = "device", value_name = "DEVICE", default_value = "auto")]
    pub name: String,
}

impl DeviceArg {
    pub fn get(&self) -> Result<Device> {
        zfvis_core::parse_device(&self.name)
    }
}

/// One snapshot of one model, and the device it runs on.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model folder (manifest.json + snapshots)
    #[arg(long)]
    pub model: PathBuf,
    /// Snapshot epoch (default: the last)
    #[arg(long)]
    pub snapshot: Option<u32>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// One image file seen by one snapshot of a model.
#[derive(clap::Args, Clone)]
pub struct ImageArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The image: JPEG, PNG, GIF, WebP, BMP or TIFF
    #[arg(long)]
    pub image: PathBuf,
}

/// A labelled dataset and the classes to use of it.
#[derive(clap::Args, Clone)]
pub struct LabelledData {
    /// Dataset: train/<class>/*, val/<class>/* (val = the test images)
    #[arg(long)]
    pub data: PathBuf,
    /// Only these classes: WordNet ids or names, comma-separated, or a file
    /// listing them one a line
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
}

/// Text for people, or JSON for programs.
#[derive(clap::Args, Clone, Copy)]
pub struct Output {
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

impl Output {
    /// Print `value` as one line of JSON, or run `text`.
    pub fn print<T: serde::Serialize>(&self, value: &T, text: impl FnOnce()) -> Result<()> {
        self.print_as(serde_json::to_string(value)?, text);
        Ok(())
    }

    /// Print `value` as indented JSON, or run `text`.
    pub fn print_pretty<T: serde::Serialize>(&self, value: &T, text: impl FnOnce()) -> Result<()> {
        self.print_as(serde_json::to_string_pretty(value)?, text);
        Ok(())
    }

    fn print_as(&self, json: String, text: impl FnOnce()) {
        if self.json {
            println!("{json}");
        } else {
            text();
        }
    }
}
