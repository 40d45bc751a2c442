//! `zfvis`: the command line (`commands/`, one module per command) and the
//! web server (`http/`) over zfvis-core.

mod commands;
mod error;
mod http;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // libtorch reports bad input by panicking inside tch; turn any panic into
    // one line instead of a trace (the server catches them per request).
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(|s| s.as_str())
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        let line = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or(msg);
        eprintln!("error: internal: {line}");
    }));
    let cli = commands::Cli::parse();
    match std::panic::catch_unwind(|| commands::exec(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(2),
    }
}
