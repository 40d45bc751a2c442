//! `zfvis-dev fuzz`: mutated uploads of every accepted format to a server
//! child process; each accepted one is followed by predictions, a projection
//! and the live occluder. Fails (exit 1) on any 5xx answer, a crash, or
//! memory that keeps growing over the second half of the run.

use crate::served::Served;
use crate::server::{bar, model_info, Rss, ServerProcess};
use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use zfvis_dev::mutations::{mutate, seeds};

#[derive(clap::Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    served: Served,
    /// Mutated uploads to send
    #[arg(long, default_value_t = 10_000)]
    cases: usize,
    /// Seed of the mutations (the same seed, the same files)
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What the server answered: upload status by format, follow-up status by
/// request, and every 5xx (or missing) answer.
#[derive(Default)]
struct Tally {
    uploads: BTreeMap<(&'static str, u16), usize>,
    follow: BTreeMap<(&'static str, u16), usize>,
    server_errors: Vec<String>,
}

/// The server and the model's first facts, shared by every case.
struct Target<'a> {
    c: reqwest::blocking::Client,
    base: String,
    model: &'a str,
    epoch: u64,
    layers: Vec<(u64, u64)>,
}

pub fn run(a: &FuzzArgs) -> Result<()> {
    let mut server =
        ServerProcess::start(&a.served.zfvis()?, &a.served.models, &["--per-client", "0"])?;
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = server.base().to_string();
    let (epochs, layers) = model_info(&c, &base, &a.served.model)?;
    let epoch = *epochs.last().context("no snapshots")?;
    let t = Target {
        c,
        base,
        model: &a.served.model,
        epoch,
        layers,
    };
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut tally = Tally::default();
    let mut rss = Rss::at(server.rss_mb()?);
    let pb = bar(
        a.cases as u64,
        "fuzz {bar:40} {pos}/{len} {per_sec} ETA {eta} {msg}",
    );
    let t0 = Instant::now();
    for case in 0..a.cases {
        let s = &seeds[case % seeds.len()];
        let (kind, bytes) = mutate(&mut rng, &s.bytes);
        let label = format!("case {case} {} {kind}", s.format);
        if let Err(e) = upload_case(&t, &mut rng, case, s.format, bytes, &label, &mut tally) {
            server.alive()?;
            return Err(e);
        }
        if case % 50 == 0 {
            server.alive()?;
            let now = server.rss_mb()?;
            rss.peak = rss.peak.max(now);
            // Warm = half way: the result cache (64 MB of answers) and the
            // malloc heaps fill over the first thousands of cases (10,000
            // cases, 5 runs: ~620 MB at 10%, 740-850 MB half way, 810-1,004
            // MB at the end); a leak still shows as growth over the second half.
            if case <= a.cases / 2 {
                rss.warm = now;
            }
            pb.set_message(format!(
                "RSS {now:.0} MB, {} 5xx",
                tally.server_errors.len()
            ));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    server.alive()?;
    rss.end = server.rss_mb()?;
    rss.peak = rss.peak.max(rss.end);
    println!(
        "{} mutated uploads in {:.0} s (seed {}), model {} epoch {epoch}",
        a.cases,
        t0.elapsed().as_secs_f64(),
        a.seed,
        a.served.model
    );
    report(&tally, &rss);
    verdict(&tally, &rss)
}

/// One mutated upload (raw body or multipart, as the page sends), and the
/// follow-ups of an accepted one. An error only when nothing answered.
fn upload_case(
    t: &Target,
    rng: &mut StdRng,
    case: usize,
    format: &'static str,
    bytes: Vec<u8>,
    label: &str,
    tally: &mut Tally,
) -> Result<()> {
    let url = format!("{}/api/images", t.base);
    let req = if case % 4 == 3 {
        let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name("upload");
        t.c.post(&url)
            .multipart(reqwest::blocking::multipart::Form::new().part("image", part))
    } else {
        t.c.post(&url).body(bytes)
    };
    let r = req
        .send()
        .map_err(|e| anyhow::anyhow!("{label}: no answer: {e}"))?;
    let st = r.status().as_u16();
    *tally.uploads.entry((format, st)).or_default() += 1;
    let body: Value = r.json().unwrap_or(Value::Null);
    if st >= 500 {
        tally
            .server_errors
            .push(format!("{label}: upload {st} {body}"));
    }
    if st != 201 {
        return Ok(());
    }
    let id = body["id"].as_str().unwrap_or_default();
    let b = format!(
        "{}/api/models/{}/snapshots/{}/images/{id}",
        t.base, t.model, t.epoch
    );
    let (layer, maps) = t.layers[rng.random_range(0..t.layers.len())];
    let map = rng.random_range(0..maps);
    let (x, y) = (rng.random_range(0..177), rng.random_range(0..177));
    let urls = [
        ("predictions", format!("{b}/predictions")),
        (
            "projection",
            format!("{b}/layers/{layer}/maps/{map}/projection.png"),
        ),
        (
            "live occluder",
            format!("{b}/occlusion/live?x={x}&y={y}&size=48"),
        ),
    ];
    for (name, url) in urls {
        let st =
            t.c.get(&url)
                .send()
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
        *tally.follow.entry((name, st)).or_default() += 1;
        if st >= 500 || st == 0 {
            tally
                .server_errors
                .push(format!("{label}: {name} {st} {url}"));
        }
    }
    Ok(())
}

fn report(tally: &Tally, rss: &Rss) {
    println!("| format | uploads | 201 | 4xx | 5xx |");
    println!("|---|---|---|---|---|");
    let formats: BTreeSet<&str> = tally.uploads.keys().map(|(f, _)| *f).collect();
    for s in formats {
        let n = |f: &dyn Fn(u16) -> bool| -> usize {
            tally
                .uploads
                .iter()
                .filter(|((g, st), _)| *g == s && f(*st))
                .map(|(_, n)| n)
                .sum()
        };
        println!(
            "| {s} | {} | {} | {} | {} |",
            n(&|_| true),
            n(&|st| st == 201),
            n(&|st| (400..500).contains(&st)),
            n(&|st| st >= 500)
        );
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for ((_, st), n) in &tally.uploads {
        *by_status.entry(*st).or_default() += n;
    }
    let accepted = by_status.get(&201).copied().unwrap_or(0);
    println!("follow-ups of the {accepted} accepted uploads (status: count):");
    for ((name, st), n) in &tally.follow {
        println!("  {name} {st}: {n}");
    }
    println!("upload answers: {by_status:?}");
    println!(
        "server RSS: start {:.0} MB, half way {:.0} MB, peak {:.0} MB, end {:.0} MB; 0 crashes; {} answers 5xx",
        rss.start,
        rss.warm,
        rss.peak,
        rss.end,
        tally.server_errors.len()
    );
}

fn verdict(tally: &Tally, rss: &Rss) -> Result<()> {
    if !tally.server_errors.is_empty() {
        for e in tally.server_errors.iter().take(20) {
            eprintln!("{e}");
        }
        bail!("{} answers were 5xx", tally.server_errors.len());
    }
    if rss.end > rss.warm * 1.25 + 64.0 {
        bail!(
            "server memory grew from {:.0} MB to {:.0} MB",
            rss.warm,
            rss.end
        );
    }
    Ok(())
}
