//! `zfvis-dev bench-http`: what a person waits for in the app, over HTTP on
//! loopback against `zfvis serve` (its own accept loop, worker and caches):
//! "new image" (upload, forward, top 5, conv1 grid), "click a map"
//! (projection JSON + PNG, forward cached) and the live occluder.

use crate::served::Served;
use crate::server::{model_info, ServerProcess};
use anyhow::{Context, Result};
use reqwest::blocking::Client;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchHttpArgs {
    #[command(flatten)]
    served: Served,
    /// The photo uploaded (each time with one pixel changed)
    #[arg(long)]
    image: PathBuf,
    /// Requests of each kind (new images: at most 40)
    #[arg(long, default_value_t = 200)]
    n: usize,
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// GET a URL and read its body; an error on a status other than 2xx.
fn fetch(c: &Client, url: &str) -> Result<()> {
    c.get(url).send()?.error_for_status()?.bytes()?;
    Ok(())
}

pub fn run(a: &BenchHttpArgs) -> Result<()> {
    let n = a.n.max(1);
    let model = &a.served.model;
    let server = ServerProcess::start(&a.served.zfvis()?, &a.served.models, &["--queue", "256"])?;
    let base = server.base().to_string();
    let c = Client::new();
    let (epochs, layers) = model_info(&c, &base, model)?;
    let epoch = *epochs.last().context("model has no snapshots")?;
    let bytes =
        std::fs::read(&a.image).with_context(|| format!("cannot read {}", a.image.display()))?;
    let decoded = image::load_from_memory(&bytes)?.to_rgb8();

    // "New image": upload (distinct bytes each time), predictions, conv1 grid.
    let mut new_image = vec![];
    let mut last_id = String::new();
    for i in 0..n.min(40) {
        let mut img = decoded.clone();
        img.get_pixel_mut(0, 0).0 = [(i % 256) as u8, (i / 256) as u8, 7];
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)?;
        let t = Instant::now();
        let v: serde_json::Value = c
            .post(format!("{base}/api/images"))
            .body(png.into_inner())
            .send()?
            .error_for_status()?
            .json()?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let b = format!("{base}/api/models/{model}/snapshots/{epoch}/images/{id}");
        fetch(&c, &format!("{b}/predictions"))?;
        fetch(&c, &format!("{b}/layers/1/maps"))?;
        fetch(&c, &format!("{b}/layers/1/maps.png"))?;
        new_image.push(t.elapsed().as_secs_f64() * 1000.0);
        last_id = id;
    }
    // "Click a map": projection JSON + PNG of a map not asked before.
    let b = format!("{base}/api/models/{model}/snapshots/{epoch}/images/{last_id}");
    let mut clicks = vec![];
    let maps = ["strongest", "all"].into_iter().flat_map(|mode| {
        layers
            .iter()
            .flat_map(move |&(layer, maps)| (0..maps).map(move |map| (mode, layer, map)))
    });
    for (mode, layer, map) in maps.take(n) {
        let t = Instant::now();
        let p = format!("{b}/layers/{layer}/maps/{map}/projection");
        fetch(&c, &format!("{p}?mode={mode}"))?;
        fetch(&c, &format!("{p}.png?mode={mode}"))?;
        clicks.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Live occluder: one new position per request (forward of the crop cached).
    let mut live = vec![];
    for i in 0..n {
        let (x, y) = ((i * 7) % 177, (i * 13) % 177);
        let t = Instant::now();
        fetch(&c, &format!("{b}/occlusion/live?x={x}&y={y}&size=48"))?;
        live.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "HTTP on loopback, model {model} epoch {epoch}, image {}",
        a.image.display()
    );
    println!("| action | n | p50 | p99 |");
    println!("|---|---|---|---|");
    for (action, v) in [
        (
            "click a map (projection JSON + PNG, forward cached)",
            &clicks,
        ),
        (
            "live occluder, one position (top-5, class p, map activation)",
            &live,
        ),
        (
            "new image (upload, forward, top-5, conv1 grid JSON + PNG)",
            &new_image,
        ),
    ] {
        println!(
            "| {action} | {} | {:.1} ms | {:.1} ms |",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
    Ok(())
}
