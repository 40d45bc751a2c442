//! `zfvis-dev soak`: many concurrent clients (each from its own loopback
//! address) for a while, mixing uploads, map clicks over every layer and
//! snapshot, the live occluder, full occlusion maps, invariance and dataset
//! top 9; per-endpoint latency and status counts, and the server's memory.
//! Fails on a 5xx or missing answer, a 503 without Retry-After, too few
//! distinct images, or memory growth after the warm-up.

use crate::served::Served;
use crate::server::{bar, model_info, Rss, ServerProcess};
use anyhow::{bail, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{atomic::AtomicUsize, atomic::Ordering, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    served: Served,
    /// A photo the distinct uploads are cut from
    #[arg(long)]
    image: PathBuf,
    /// A dataset for the top-9 requests
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Concurrent clients
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds of the same load before (caches fill; not counted)
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Distinct images to upload
    #[arg(long, default_value_t = 200)]
    images: usize,
}

/// Latencies and status counts of one endpoint.
#[derive(Default)]
struct Tally {
    ms: Vec<f64>,
    status: BTreeMap<u16, usize>,
    no_retry_after: usize,
}

/// What every client shares: the server, the images to upload, the ids
/// uploaded so far, the tallies and the failures.
struct Shared {
    base: String,
    model: String,
    epochs: Vec<u64>,
    layers: Vec<(u64, u64)>,
    has_dataset: bool,
    images: Vec<Vec<u8>>,
    next_image: AtomicUsize,
    ids: Mutex<Vec<String>>,
    tallies: Mutex<BTreeMap<&'static str, Tally>>,
    failures: Mutex<Vec<String>>,
}

pub fn run(a: &SoakArgs) -> Result<()> {
    let (clients, seconds, warmup, n_images) = (
        a.clients.max(1),
        a.seconds.clamp(1, 3600),
        a.warmup.min(3600),
        a.images.max(1),
    );
    let mut extra: Vec<String> = vec![];
    if let Some(d) = &a.dataset {
        extra.extend(["--dataset".into(), d.display().to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    let mut server = ServerProcess::start(&a.served.zfvis()?, &a.served.models, &extra)?;
    let base = server.base().to_string();
    let (epochs, layers) = model_info(&reqwest::blocking::Client::new(), &base, &a.served.model)?;
    eprintln!("making {n_images} distinct images");
    let shared = Arc::new(Shared {
        base,
        model: a.served.model.clone(),
        epochs,
        layers,
        has_dataset: a.dataset.is_some(),
        images: soak_images(&a.image, n_images)?,
        next_image: AtomicUsize::new(0),
        ids: Mutex::default(),
        tallies: Mutex::default(),
        failures: Mutex::default(),
    });
    let rt = tokio::runtime::Runtime::new()?;
    let deadline = Instant::now() + Duration::from_secs(warmup + seconds);
    let handles: Vec<_> = (0..clients)
        .map(|k| rt.spawn(client(k, shared.clone(), deadline)))
        .collect();
    let (mut rss, trail) = watch(&mut server, &shared, warmup, seconds)?;
    for h in handles {
        rt.block_on(h)?;
    }
    server.alive()?;
    rss.end = server.rss_mb()?;
    rss.peak = rss.peak.max(rss.end);
    let distinct = shared.ids.lock().unwrap().len();
    let total: usize = shared
        .tallies
        .lock()
        .unwrap()
        .values()
        .map(|t| t.ms.len())
        .sum();
    println!(
        "{clients} clients on loopback, model {}, {distinct} distinct images uploaded; {total} requests in the {seconds} s measured after {warmup} s of warm-up",
        a.served.model
    );
    let (five, no_retry) = table(&mut shared.tallies.lock().unwrap());
    let growth = (rss.end - rss.warm) / rss.warm.max(1.0) * 100.0;
    println!("server RSS over time (MB): {}", trail.join(", "));
    println!(
        "server RSS: start {:.0} MB, after warm-up ({warmup} s) {:.0} MB, peak after it {:.0} MB, end {:.0} MB (growth after warm-up {growth:+.1}%)",
        rss.start, rss.warm, rss.peak, rss.end
    );
    if five > 0 {
        for f in shared.failures.lock().unwrap().iter().take(10) {
            eprintln!("{f}");
        }
        bail!("{five} answers were 5xx (or no answer)");
    }
    if no_retry > 0 {
        bail!("{no_retry} answers 503 came without Retry-After");
    }
    if distinct < n_images.min(200) {
        bail!("only {distinct} distinct images were uploaded");
    }
    if growth > 10.0 {
        bail!("server memory grew {growth:.1}% after warm-up");
    }
    Ok(())
}

/// Distinct JPEGs cut from one photo: crops at different places and sizes,
/// each with its own pixel stamp.
fn soak_images(photo: &Path, n: usize) -> Result<Vec<Vec<u8>>> {
    let img = image::load_from_memory(&std::fs::read(photo)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", photo.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut out = vec![];
    for i in 0..n {
        let side = (w.min(h) * (60 + (i % 40) as u32) / 100).max(32);
        let x = (i as u32 * 37) % (w - side + 1);
        let y = (i as u32 * 53) % (h - side + 1);
        let cut = image::imageops::crop_imm(&img, x, y, side, side).to_image();
        let mut crop =
            image::imageops::resize(&cut, 320, 320, image::imageops::FilterType::Triangle);
        crop.get_pixel_mut(0, 0).0 = [(i % 256) as u8, (i / 256) as u8, 99];
        let mut buf = std::io::Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90).encode_image(&crop)?;
        out.push(buf.into_inner());
    }
    Ok(out)
}

/// One client until the deadline: a request drawn from the mix, timed and
/// tallied; it backs off half a second after a 503 or 429.
async fn client(k: usize, s: Arc<Shared>, deadline: Instant) {
    // Each client from its own address, as separate people would be.
    let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + (k % 250) as u8);
    // Idle connections are dropped before the server's 10 s header
    // timeout would close them under a request (the keep-alive race).
    let c = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(ip))
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut rng = StdRng::seed_from_u64(k as u64);
    let mut etags: HashMap<String, String> = HashMap::new();
    while Instant::now() < deadline {
        let (name, req, url) = pick(&s, &c, &mut rng, &etags);
        let t = Instant::now();
        let (st, retry) = match req.send().await {
            Ok(r) => answered(&s, r, name, &url, &mut etags).await,
            Err(e) => {
                s.failures
                    .lock()
                    .unwrap()
                    .push(format!("{name} {url}: no answer: {e:?}"));
                (0, false)
            }
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        {
            let mut tl = s.tallies.lock().unwrap();
            let e = tl.entry(name).or_default();
            e.ms.push(ms);
            *e.status.entry(st).or_default() += 1;
            if st == 503 && !retry {
                e.no_retry_after += 1;
            }
        }
        if st == 503 || st == 429 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The next request of the mix: (endpoint name, request, URL).
fn pick(
    s: &Shared,
    c: &reqwest::Client,
    rng: &mut StdRng,
    etags: &HashMap<String, String>,
) -> (&'static str, reqwest::RequestBuilder, String) {
    let known: Vec<String> = s.ids.lock().unwrap().clone();
    let roll = rng.random_range(0..100);
    if roll >= 95 && !etags.is_empty() {
        // Back to a view seen before: the browser revalidates.
        let (url, tag) = etags
            .iter()
            .nth(rng.random_range(0..etags.len()))
            .expect("not empty");
        let req = c.get(url).header("if-none-match", tag.clone());
        return ("revisit (If-None-Match)", req, url.clone());
    }
    if known.is_empty() || roll < 20 {
        let i = s.next_image.fetch_add(1, Ordering::Relaxed) % s.images.len();
        let req = c
            .post(format!("{}/api/images", s.base))
            .body(s.images[i].clone());
        return ("upload", req, String::new());
    }
    let (base, model) = (&s.base, &s.model);
    let id = &known[rng.random_range(0..known.len())];
    let e = s.epochs[rng.random_range(0..s.epochs.len())];
    let b = format!("{base}/api/models/{model}/snapshots/{e}/images/{id}");
    let (l, maps) = s.layers[rng.random_range(0..s.layers.len())];
    let m = rng.random_range(0..maps);
    let (x, y) = (rng.random_range(0..177), rng.random_range(0..177));
    let stride = [8, 16, 24][rng.random_range(0..3)];
    let (name, url) = match roll {
        20..=44 => (
            "map click: projection.png",
            format!("{b}/layers/{l}/maps/{m}/projection.png"),
        ),
        45..=54 => (
            "map click: projection",
            format!("{b}/layers/{l}/maps/{m}/projection"),
        ),
        55..=64 => ("predictions", format!("{b}/predictions")),
        65..=79 => (
            "live occluder",
            format!("{b}/occlusion/live?x={x}&y={y}&size=48"),
        ),
        80..=84 => (
            "occlusion map",
            format!("{b}/occlusion?size=48&stride={stride}"),
        ),
        85..=89 => ("invariance", format!("{b}/invariance")),
        90..=94 if s.has_dataset => (
            "dataset top 9",
            format!("{base}/api/models/{model}/snapshots/{e}/dataset/layers/{l}/maps/{m}/top9"),
        ),
        _ => ("feature maps", format!("{b}/layers/{l}/maps.png")),
    };
    let mut req = c.get(&url);
    if let Some(t) = etags.get(&url) {
        req = req.header("if-none-match", t);
    }
    (name, req, url)
}

/// Read an answer: keep its ETag, note a 5xx, learn an uploaded id.
/// Returns (status, whether it carried Retry-After).
async fn answered(
    s: &Shared,
    r: reqwest::Response,
    name: &str,
    url: &str,
    etags: &mut HashMap<String, String>,
) -> (u16, bool) {
    let st = r.status().as_u16();
    let retry = r.headers().contains_key("retry-after");
    if let Some(tag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
        etags.insert(url.to_string(), tag.to_string());
    }
    let body = r.bytes().await.unwrap_or_default();
    if st >= 500 && st != 503 {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        s.failures
            .lock()
            .unwrap()
            .push(format!("{name} {url}: {st} {text}"));
    }
    if name == "upload" && st == 201 {
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string));
        if let Some(id) = id {
            let mut ids = s.ids.lock().unwrap();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    (st, retry)
}

/// Watch the server once a second through the warm-up (the same load until
/// the caches of results, traces and snapshots have filled; then the tallies
/// start afresh) and the measured period.
/// Returns the memory readings and a trail of them over time.
fn watch(
    server: &mut ServerProcess,
    s: &Shared,
    warmup: u64,
    seconds: u64,
) -> Result<(Rss, Vec<String>)> {
    let total = warmup + seconds;
    let mut rss = Rss::at(server.rss_mb()?);
    let mut trail = vec![];
    let pb = bar(total, "soak {bar:40} {pos}/{len} s {msg}");
    for sec in 1..=total {
        std::thread::sleep(Duration::from_secs(1));
        server.alive()?;
        let now = server.rss_mb()?;
        if sec == warmup {
            rss.warm = now;
            s.tallies.lock().unwrap().clear();
            s.failures.lock().unwrap().clear();
        }
        if sec > warmup {
            rss.peak = rss.peak.max(now);
        }
        if sec % (total / 8).max(1) == 0 {
            trail.push(format!("{sec} s {now:.0}"));
        }
        let n: usize = s.tallies.lock().unwrap().values().map(|t| t.ms.len()).sum();
        pb.set_message(format!("{n} requests, RSS {now:.0} MB"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((rss, trail))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The per-endpoint table; returns (5xx or unanswered, 503 without Retry-After).
fn table(tl: &mut BTreeMap<&'static str, Tally>) -> (usize, usize) {
    println!("| endpoint | n | p50 ms | p99 ms | 2xx | 304 | 503 | 4xx | 5xx |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut five, mut no_retry) = (0, 0);
    for (name, t) in tl.iter_mut() {
        let count = |f: &dyn Fn(u16) -> bool| -> usize {
            t.status
                .iter()
                .filter(|(s, _)| f(**s))
                .map(|(_, n)| n)
                .sum()
        };
        let s5 = count(&|s| s >= 500 && s != 503 || s == 0);
        five += s5;
        no_retry += t.no_retry_after;
        let (ok, not_modified, busy, client) = (
            count(&|s| (200..300).contains(&s)),
            count(&|s| s == 304),
            count(&|s| s == 503),
            count(&|s| (400..500).contains(&s)),
        );
        println!(
            "| {name} | {} | {:.1} | {:.1} | {ok} | {not_modified} | {busy} | {client} | {s5} |",
            t.ms.len(),
            pct(&mut t.ms, 0.5),
            pct(&mut t.ms, 0.99),
        );
    }
    (five, no_retry)
}
