//! `zfvis bench --visualize`: feature visualisation beside torch-lucent
//! 0.1.8's `render_vis` (tests/visualize_ref.py) with the same recipe
//! (Lucid's transforms, Fourier parameterisation, decorrelated colour, Adam
//! 0.05, 512 steps, 224 px), one map: the bundled ZFNet's conv5 and an
//! imported GoogLeNet's inception4a (random weights). The objective each
//! reaches is printed beside the time, so the time is that of the same
//! work. Then a whole layer of 64 maps (ZFNet conv5) in one job, with its
//! progress bar and estimate.

use super::bench_peer::{median, methods_model, peer};
use super::local::{advance, bar};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use zfvis_core::analyses::visualize::{render, render_quietly, VisualizeRequest};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::tch::{self, Device};
use zfvis_core::visualize::Input;

/// (network: None the bundled model, unit, map, goal: times faster than Lucent).
const CASES: [(Option<&str>, &str, i64, f64); 2] = [
    (None, "conv5", 0, 1.5),
    (Some("googlenet"), "inception4a", 0, 1.5),
];
const STEPS: usize = 512;

fn request(
    net: &zfvis_core::net::Net,
    unit: &str,
    maps: (Option<i64>, Option<&str>),
) -> Result<VisualizeRequest> {
    let layer = net.spec.find_unit(unit)?;
    Ok(serde_json::from_value(serde_json::json!({
        "model": "model", "epoch": 0, "layer": layer, "map": maps.0, "maps": maps.1, "steps": STEPS,
    }))?)
}

pub fn bench_visualize(python: &Path, model: &Path, iters: usize) -> Result<()> {
    let threads = tch::get_num_threads();
    let dir = std::env::temp_dir().join(format!("zfvis-bench-vis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut rows = vec![];
    for (arch, unit, map, goal) in CASES {
        let sub = dir.join(arch.unwrap_or("bundled"));
        std::fs::create_dir_all(&sub)?;
        let (model_dir, peer_args) = methods_model(python, model, arch, &sub)?;
        let m = ModelDir::open(&model_dir)?;
        let mut net = m.load(None, Device::Cpu)?;
        net.vs.freeze();
        let input = Input::of(&m.manifest.preprocess());
        let req = request(&net, unit, (Some(map), None))?;
        let name = arch.unwrap_or("bundled ZFNet");
        eprintln!("{name} {unit} map {map}, {STEPS} steps: zfvis, {iters} runs");
        let mut objective = 0.0;
        let ts: Vec<f64> = (0..iters)
            .map(|_| -> Result<f64> {
                let t = Instant::now();
                let r = render_quietly(&net, input.clone(), &req)?;
                objective = r.images[0].objective;
                Ok(t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        let ours = median(ts);
        eprintln!("{name} {unit} map {map}: torch-lucent's render_vis, 1 run");
        let reference_unit = if arch.is_none() {
            unit.trim_start_matches("conv").to_string()
        } else {
            unit.to_string()
        };
        let mut args = peer_args.clone();
        args.extend([
            reference_unit,
            map.to_string(),
            STEPS.to_string(),
            net.spec.input_size.to_string(),
        ]);
        let mut args_all = vec!["bench".to_string()];
        args_all.extend(args);
        let py = peer(python, "visualize_ref.py", &args_all)?;
        let theirs = py["seconds"].as_f64().context("the peer gave no time")?;
        let their_obj = py["objective"]
            .as_f64()
            .context("the peer gave no objective")?;
        let speedup = theirs / ours;
        rows.push(format!(
            "| {name} `{unit}` map {map} | {ours:.2} s | {theirs:.2} s | {speedup:.2}× | ≥ {goal}× {} | {objective:.3} / {their_obj:.3} |",
            if speedup >= goal { "(met)" } else { "(NOT met)" }
        ));
    }
    // A whole layer: ZFNet conv5's 64 maps, 16 a batch, in one job.
    let m = ModelDir::open(model)?;
    let mut net = m.load(None, Device::Cpu)?;
    net.vs.freeze();
    let req = request(&net, "conv5", (None, None))?;
    let maps = net.units[req.layer.unwrap_or(1) - 1].c;
    let pb = bar("whole layer {bar:40} {pos}/{len} steps ETA {eta}");
    let t = Instant::now();
    let r = render(
        &net,
        Input::of(&m.manifest.preprocess()),
        &[],
        &req,
        &mut |done, total| {
            advance(&pb, done, total);
            Ok(())
        },
        &mut |_| {},
    )?;
    pb.finish_and_clear();
    let whole = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!("Feature visualisation, {STEPS} steps, 224 px ({threads} threads): zfvis median of {iters}, torch-lucent 0.1.8 1 run, the same recipe");
    println!("| network, unit, map | zfvis | Lucent render_vis | speed-up | goal | objective reached, zfvis / Lucent |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "Whole layer: bundled ZFNet conv5, {maps} maps ({} images) in one job, 16 a batch: {whole:.1} s ({:.2} s a map)",
        r.images.len(),
        whole / maps as f64
    );
    Ok(())
}
