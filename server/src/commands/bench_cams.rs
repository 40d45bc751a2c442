//! `zfvis bench --cams`: the costly CAMs beside the grad-cam package's
//! (pytorch-grad-cam 1.5.7, tests/bench_cams.py) on the same file, in one
//! run: Ablation-CAM on ResNet-50 `layer4.2` (2,048 maps; zfvis runs only
//! what follows the unit) and Score-CAM on ResNet-18 `layer4.1` (512 masked
//! forwards), 224 px, random weights, the dog photo's top class. Each
//! speed-up is checked against its goal, and each map against the
//! package's (cosine), so the time is that of the same map.

use super::bench_peer::{median, methods_model, peer};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use zfvis_core::explain::{Explainer, Options, Target};
use zfvis_core::methods::{self, Method};
use zfvis_core::tch::{self, Device, Kind, Tensor};

/// (network, unit, method, goal: times faster than the package).
const CASES: [(&str, &str, Method, f64); 2] = [
    ("resnet50", "layer4.2", methods::ABLATIONCAM, 5.0),
    ("resnet18", "layer4.1", methods::SCORECAM, 1.5),
];

pub fn bench_cams(python: &Path, image: &Path, iters: usize) -> Result<()> {
    let threads = tch::get_num_threads();
    let dir = std::env::temp_dir().join(format!("zfvis-bench-cams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bytes = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let img = zfvis_core::preprocess::decode(&bytes)?;
    let mut rows = vec![];
    for (arch, unit, method, goal) in CASES {
        let sub = dir.join(arch);
        std::fs::create_dir_all(&sub)?;
        let (model_dir, peer_args) = methods_model(python, Path::new(""), Some(arch), &sub)?;
        let m = zfvis_core::checkpoint::ModelDir::open(&model_dir)?;
        let net = m.load(None, Device::Cpu)?;
        let pre = m.manifest.preprocess();
        let x = pre.tensor(&pre.crop(&img)).unsqueeze(0);
        let xp = sub.join("x.npy");
        x.write_npy(&xp)?;
        let layer = net.spec.find_unit(unit)?;
        let mut o = Options::new(&net);
        o.cam_layer = layer;
        eprintln!("{method} on {arch} {unit}: zfvis, {iters} runs");
        let mut ours = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let ts: Vec<f64> = (0..iters)
            .map(|_| -> Result<f64> {
                let t = Instant::now();
                let e = Explainer::new(&net, &x);
                ours = method.map(&e, Target::Class(e.top_class()), &o)?;
                Ok(t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        let t_ours = median(ts);
        eprintln!("{method} on {arch} {unit}: the grad-cam package, 1 run");
        let out = sub.join("theirs.npy");
        let mut args = peer_args.clone();
        args.extend([
            xp.display().to_string(),
            unit.to_string(),
            method.name().to_string(),
            "1".into(),
            threads.to_string(),
            out.display().to_string(),
        ]);
        let py = peer(python, "bench_cams.py", &args)?;
        let t_theirs = py["seconds"].as_f64().context("the peer gave no time")?;
        let theirs = Tensor::read_npy(&out)?;
        let cos = cosine(&ours, &theirs);
        if cos < 0.999 {
            bail!(
                "{method} on {arch}: the maps differ (cosine {cos:.5}): not the same computation"
            );
        }
        let speedup = t_theirs / t_ours;
        rows.push(format!(
            "| {} | {arch} `{unit}` ({} maps) | {t_ours:.2} s | {t_theirs:.2} s | {speedup:.1}× | ≥ {goal}× {} | {cos:.6} |",
            method.label(),
            net.units[layer - 1].c,
            if speedup >= goal { "(met)" } else { "(NOT met)" }
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "CAMs on {} ({threads} threads): zfvis median of {iters}, the package 1 run",
        image.display()
    );
    println!("| method | network, unit | zfvis | grad-cam 1.5.7 | speed-up | goal | cosine of the maps |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_kind(Kind::Double).reshape([-1]),
        b.to_kind(Kind::Double).reshape([-1]),
    );
    (a.dot(&b) / (a.norm() * b.norm() + 1e-30)).double_value(&[])
}
