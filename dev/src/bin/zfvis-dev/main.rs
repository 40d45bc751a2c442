//! `zfvis-dev`: zfvis's development harnesses, apart from the product. Each
//! drives a `zfvis serve` child process over HTTP on loopback:
//! `fuzz` (mutated uploads), `soak` (many clients for a while) and
//! `bench-http` (latency of what a person clicks).

mod bench_http;
mod fuzz;
mod served;
mod server;
mod soak;

use clap::{Parser, Subcommand};
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
