//! `zfvis-dev`: zfvis's development harnesses, apart from the product. Each
//! drives a `zfvis serve` child process over HTTP on loopback:
//! `fuzz` (mutated uploads), `soak` (many clients for a while) and
//! `bench-http` (latency of what a person clicks).

mod bench_http;
mod fuzz;
mod server;
mod soak;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "zfvis-dev", version, about = "zfvis's development harnesses")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fuzz the HTTP API: mutated uploads of every format, each accepted one
    /// followed by predictions, a projection and the live occluder
    Fuzz(fuzz::FuzzArgs),
    /// Load and soak: many concurrent clients on loopback for a while
    Soak(soak::SoakArgs),
    /// Benchmark the server over HTTP on loopback (click a map, new image)
    BenchHttp(bench_http::BenchHttpArgs),
}

/// The server under test: which `zfvis` binary, and the model it serves.
#[derive(clap::Args)]
pub struct Served {
    /// Folder of model folders
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// The model to exercise (a folder name in --models)
    #[arg(long, default_value = "zfnet-woofnette")]
    model: String,
    /// The zfvis binary (default: `zfvis` beside this one)
    #[arg(long)]
    zfvis: Option<PathBuf>,
}

impl Served {
    fn zfvis(&self) -> Result<PathBuf> {
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

fn main() -> ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Fuzz(a) => fuzz::run(&a),
        Cmd::Soak(a) => soak::run(&a),
        Cmd::BenchHttp(a) => bench_http::run(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
