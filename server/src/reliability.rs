//! `zfvis fuzz` and `zfvis soak`: the server, run as a child process on
//! loopback, under mutated uploads and under many concurrent clients; each
//! prints its figures and fails (exit 1) when a promise is broken: no 5xx,
//! no crash, 503 only with Retry-After, bounded memory.

use crate::child::Server;
use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zfvis_core::fuzz::{mutate, seeds};

/// `zfvis serve` as a child process on a free loopback port, with its own
/// upload folder; killed on drop, its folder removed.
pub struct ServerProcess {
    server: Server,
    data: PathBuf,
}

impl ServerProcess {
    pub fn start(models: &Path, extra: &[&str]) -> Result<ServerProcess> {
        let data = std::env::temp_dir().join(format!("zfvis-rel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let server = Server::start(
            &std::env::current_exe()?,
            models,
            &data,
            extra,
            "error",
            |l| {
                if l.contains("panicked") || l.contains("error") {
                    eprintln!("server: {l}");
                }
            },
        )
        .context("cannot start zfvis serve")?;
        Ok(ServerProcess { server, data })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// Resident memory of the server, MB.
    pub fn rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.server.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Still running? (An exit is a crash.)
    pub fn alive(&mut self) -> Result<()> {
        if let Some(st) = self.server.child.try_wait()? {
            bail!("the server died: {st}");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.server.stop(); // before its folder goes
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A model's epochs and its (layer, maps) list.
type ModelInfo = (Vec<u64>, Vec<(u64, u64)>);

/// The model's epochs and (layer, maps) list.
fn model_info(c: &reqwest::blocking::Client, base: &str, model: &str) -> Result<ModelInfo> {
    let info: Value = c
        .get(format!("{base}/api/models/{model}"))
        .send()?
        .error_for_status()
        .with_context(|| format!("model {model}"))?
        .json()?;
    let epochs: Vec<u64> = info["snapshots"]
        .as_array()
        .context("no snapshots")?
        .iter()
        .filter_map(|s| s["epoch"].as_u64())
        .collect();
    let layers = info["layers"]
        .as_array()
        .context("no layers")?
        .iter()
        .map(|l| {
            (
                l["layer"].as_u64().unwrap_or(1),
                l["maps"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    Ok((epochs, layers))
}

fn bar(n: u64, template: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(n);
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// `zfvis fuzz`: `cases` mutated uploads (JPEG, PNG, GIF, WebP, BMP, TIFF);
/// every accepted one is followed by predictions, a projection and the live
/// occluder.
pub fn fuzz(models: &Path, model: &str, cases: usize, seed: u64) -> Result<()> {
    let mut server = ServerProcess::start(models, &["--per-client", "0"])?;
    let base = server.base().to_string();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let (epochs, layers) = model_info(&c, &base, model)?;
    let epoch = *epochs.last().context("no snapshots")?;
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(seed);
    // upload status -> count, per format; follow-up status -> count
    let mut uploads: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut follow: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut server_errors: Vec<String> = vec![];
    let rss_start = server.rss_mb();
    let (mut rss_peak, mut rss_warm) = (rss_start, rss_start);
    let pb = bar(
        cases as u64,
        "fuzz {bar:40} {pos}/{len} {per_sec} ETA {eta} {msg}",
    );
    let t0 = Instant::now();
    for case in 0..cases {
        let s = &seeds[case % seeds.len()];
        let (kind, bytes) = mutate(&mut rng, &s.bytes);
        let req = if case % 4 == 3 {
            let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name("upload");
            c.post(format!("{base}/api/images"))
                .multipart(reqwest::blocking::multipart::Form::new().part("image", part))
        } else {
            c.post(format!("{base}/api/images")).body(bytes)
        };
        let r = req.send();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                server.alive()?;
                bail!("case {case} ({} {kind}): no answer: {e}", s.format);
            }
        };
        let st = r.status().as_u16();
        *uploads.entry((s.format, st)).or_default() += 1;
        let body: Value = r.json().unwrap_or(Value::Null);
        if st >= 500 {
            server_errors.push(format!(
                "case {case} {} {kind}: upload {st} {body}",
                s.format
            ));
        }
        if st == 201 {
            let id = body["id"].as_str().unwrap_or_default();
            let b = format!("{base}/api/models/{model}/snapshots/{epoch}/images/{id}");
            let (layer, maps) = layers[rng.random_range(0..layers.len())];
            let urls = [
                ("predictions", format!("{b}/predictions")),
                (
                    "projection",
                    format!(
                        "{b}/layers/{layer}/maps/{}/projection.png",
                        rng.random_range(0..maps)
                    ),
                ),
                (
                    "live occluder",
                    format!(
                        "{b}/occlusion/live?x={}&y={}&size=48",
                        rng.random_range(0..177),
                        rng.random_range(0..177)
                    ),
                ),
            ];
            for (name, url) in urls {
                let st = c.get(&url).send().map(|r| r.status().as_u16()).unwrap_or(0);
                *follow.entry((name, st)).or_default() += 1;
                if st >= 500 || st == 0 {
                    server_errors.push(format!(
                        "case {case} {} {kind}: {name} {st} {url}",
                        s.format
                    ));
                }
            }
        }
        if case % 50 == 0 {
            server.alive()?;
            let rss = server.rss_mb();
            rss_peak = rss_peak.max(rss);
            // Warm = half way: the result cache (64 MB of answers) and the
            // malloc heaps fill over the first thousands of cases (10,000
            // cases, 5 runs: ~620 MB at 10%, 740-850 MB half way, 810-1,004
            // MB at the end); a leak still shows as growth over the second half.
            if case <= cases / 2 {
                rss_warm = rss;
            }
            pb.set_message(format!("RSS {rss:.0} MB, {} 5xx", server_errors.len()));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    server.alive()?;
    let rss_end = server.rss_mb();
    rss_peak = rss_peak.max(rss_end);
    let secs = t0.elapsed().as_secs_f64();
    println!("{cases} mutated uploads in {secs:.0} s (seed {seed}), model {model} epoch {epoch}");
    println!("| format | uploads | 201 | 4xx | 5xx |");
    println!("|---|---|---|---|---|");
    for s in seeds
        .iter()
        .map(|s| s.format)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let n = |f: &dyn Fn(u16) -> bool| -> usize {
            uploads
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
    let accepted: usize = uploads
        .iter()
        .filter(|((_, st), _)| *st == 201)
        .map(|(_, n)| n)
        .sum();
    println!("follow-ups of the {accepted} accepted uploads (status: count):");
    for ((name, st), n) in &follow {
        println!("  {name} {st}: {n}");
    }
    let refused: BTreeMap<u16, usize> =
        uploads.iter().fold(BTreeMap::new(), |mut m, ((_, st), n)| {
            *m.entry(*st).or_default() += n;
            m
        });
    println!("upload answers: {refused:?}");
    println!(
        "server RSS: start {rss_start:.0} MB, half way {rss_warm:.0} MB, peak {rss_peak:.0} MB, end {rss_end:.0} MB; 0 crashes; {} answers 5xx",
        server_errors.len()
    );
    if !server_errors.is_empty() {
        for e in server_errors.iter().take(20) {
            eprintln!("{e}");
        }
        bail!("{} answers were 5xx", server_errors.len());
    }
    if rss_end > rss_warm * 1.25 + 64.0 {
        bail!("server memory grew from {rss_warm:.0} MB to {rss_end:.0} MB");
    }
    Ok(())
}

/// Distinct JPEGs cut from one photo: crops at different places and sizes,
/// each with its own pixel stamp.
fn soak_images(photo: &Path, n: usize) -> Result<Vec<Vec<u8>>> {
    let img = zfvis_core::preprocess::decode(&std::fs::read(photo)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", photo.display()))?;
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

#[derive(Default)]
struct Tally {
    ms: Vec<f64>,
    status: BTreeMap<u16, usize>,
    no_retry_after: usize,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub struct SoakArgs<'a> {
    pub models: &'a Path,
    pub model: &'a str,
    pub photo: &'a Path,
    pub dataset: Option<&'a Path>,
    pub clients: usize,
    /// Measured seconds, after `warmup` seconds of the same load.
    pub seconds: u64,
    pub warmup: u64,
    pub images: usize,
}

/// `zfvis soak`: `clients` concurrent clients (each from its own loopback
/// address) for `seconds`, mixing uploads, map clicks over every layer and
/// snapshot, the live occluder, full occlusion maps, invariance and dataset
/// top 9; per-endpoint latency and status counts, and the server's memory.
pub fn soak(a: &SoakArgs) -> Result<()> {
    let mut extra: Vec<String> = vec![];
    if let Some(d) = a.dataset {
        extra.extend(["--dataset".into(), d.display().to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    let mut server = ServerProcess::start(a.models, &extra)?;
    let base = server.base().to_string();
    let (epochs, layers) = model_info(&reqwest::blocking::Client::new(), &base, a.model)?;
    eprintln!("making {} distinct images", a.images);
    let images = Arc::new(soak_images(a.photo, a.images)?);
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let next_image = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tallies: Arc<Mutex<BTreeMap<&'static str, Tally>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new()?;
    let deadline = Instant::now() + Duration::from_secs(a.warmup + a.seconds);
    let rss_start = server.rss_mb();
    let mut handles = vec![];
    for k in 0..a.clients {
        let (base, images, ids, next_image, tallies, failures) = (
            base.clone(),
            images.clone(),
            ids.clone(),
            next_image.clone(),
            tallies.clone(),
            failures.clone(),
        );
        let (epochs, layers, model) = (epochs.clone(), layers.clone(), a.model.to_string());
        let has_dataset = a.dataset.is_some();
        handles.push(rt.spawn(async move {
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
                let known: Vec<String> = ids.lock().unwrap().clone();
                let roll = rng.random_range(0..100);
                let (name, req, url) = if roll >= 95 && !etags.is_empty() {
                    // Back to a view seen before: the browser revalidates.
                    let (url, tag) = etags.iter().nth(rng.random_range(0..etags.len())).expect("not empty");
                    let url = url.clone();
                    ("revisit (If-None-Match)", c.get(&url).header("if-none-match", tag.clone()), url)
                } else if known.is_empty() || roll < 20 {
                    let i = next_image.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % images.len();
                    ("upload", c.post(format!("{base}/api/images")).body(images[i].clone()), String::new())
                } else {
                    let id = &known[rng.random_range(0..known.len())];
                    let e = epochs[rng.random_range(0..epochs.len())];
                    let b = format!("{base}/api/models/{model}/snapshots/{e}/images/{id}");
                    let (l, maps) = layers[rng.random_range(0..layers.len())];
                    let m = rng.random_range(0..maps);
                    let (name, url) = match roll {
                        20..=44 => ("map click: projection.png", format!("{b}/layers/{l}/maps/{m}/projection.png")),
                        45..=54 => ("map click: projection", format!("{b}/layers/{l}/maps/{m}/projection")),
                        55..=64 => ("predictions", format!("{b}/predictions")),
                        65..=79 => (
                            "live occluder",
                            format!("{b}/occlusion/live?x={}&y={}&size=48", rng.random_range(0..177), rng.random_range(0..177)),
                        ),
                        80..=84 => ("occlusion map", format!("{b}/occlusion?size=48&stride={}", [8, 16, 24][rng.random_range(0..3)])),
                        85..=89 => ("invariance", format!("{b}/invariance")),
                        90..=94 if has_dataset => (
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
                };
                let t = Instant::now();
                let r = req.send().await;
                let (st, retry) = match r {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let retry = r.headers().contains_key("retry-after");
                        if let Some(tag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
                            etags.insert(url.clone(), tag.to_string());
                        }
                        let body = r.bytes().await.unwrap_or_default();
                        if st >= 500 && st != 503 {
                            failures.lock().unwrap().push(format!("{name} {url}: {st} {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
                        }
                        if name == "upload" && st == 201 {
                            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                                if let Some(id) = v["id"].as_str() {
                                    let mut ids = ids.lock().unwrap();
                                    if !ids.iter().any(|x| x == id) {
                                        ids.push(id.to_string());
                                    }
                                }
                            }
                        }
                        (st, retry)
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{name} {url}: no answer: {e:?}"));
                        (0, false)
                    }
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                {
                    let mut tl = tallies.lock().unwrap();
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
        }));
    }
    // Warm-up: the same load until the caches (results, traces, loaded
    // snapshots) have filled; then the measured period, counted afresh.
    let total = a.warmup + a.seconds;
    let pb = bar(total, "soak {bar:40} {pos}/{len} s {msg}");
    let (mut rss_peak, mut rss_warm) = (rss_start, rss_start);
    let mut trail = vec![];
    for s in 0..total {
        std::thread::sleep(Duration::from_secs(1));
        server.alive()?;
        let rss = server.rss_mb();
        if s + 1 == a.warmup {
            rss_warm = rss;
            tallies.lock().unwrap().clear();
            failures.lock().unwrap().clear();
        }
        if s + 1 > a.warmup {
            rss_peak = rss_peak.max(rss);
        }
        if (s + 1) % (total / 8).max(1) == 0 {
            trail.push(format!("{} s {rss:.0}", s + 1));
        }
        let n: usize = tallies.lock().unwrap().values().map(|t| t.ms.len()).sum();
        pb.set_message(format!("{n} requests, RSS {rss:.0} MB"));
        pb.inc(1);
    }
    for h in handles {
        rt.block_on(h)?;
    }
    pb.finish_and_clear();
    server.alive()?;
    let rss_end = server.rss_mb();
    rss_peak = rss_peak.max(rss_end);
    let distinct = ids.lock().unwrap().len();
    let mut tl = tallies.lock().unwrap();
    let total: usize = tl.values().map(|t| t.ms.len()).sum::<usize>();
    println!(
        "{} clients on loopback, model {}, {distinct} distinct images uploaded; {total} requests in the {} s measured after {} s of warm-up",
        a.clients, a.model, a.seconds, a.warmup
    );
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
        println!(
            "| {name} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
            t.ms.len(),
            pct(&mut t.ms, 0.5),
            pct(&mut t.ms, 0.99),
            count(&|s| (200..300).contains(&s)),
            count(&|s| s == 304),
            count(&|s| s == 503),
            count(&|s| (400..500).contains(&s)),
            s5
        );
    }
    let growth = (rss_end - rss_warm) / rss_warm.max(1.0) * 100.0;
    println!("server RSS over time (MB): {}", trail.join(", "));
    println!(
        "server RSS: start {rss_start:.0} MB, after warm-up ({} s) {rss_warm:.0} MB, peak after it {rss_peak:.0} MB, end {rss_end:.0} MB (growth after warm-up {growth:+.1}%)",
        a.warmup
    );
    if five > 0 {
        for f in failures.lock().unwrap().iter().take(10) {
            eprintln!("{f}");
        }
        bail!("{five} answers were 5xx (or no answer)");
    }
    if no_retry > 0 {
        bail!("{no_retry} answers 503 came without Retry-After");
    }
    if distinct < a.images.min(200) {
        bail!("only {distinct} distinct images were uploaded");
    }
    if growth > 10.0 {
        bail!("server memory grew {growth:.1}% after warm-up");
    }
    Ok(())
}
