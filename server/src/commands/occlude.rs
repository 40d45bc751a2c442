//! `zfvis occlude`: occlusion sensitivity maps (paper Fig. 7).

use super::args::{ImageArgs, Output};
use super::local::Local;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use zfvis_core::analyses::occlusion::{GridRequest, Occlusion};
use zfvis_core::analysis::Analysis;
use zfvis_core::occlusion::{self, Method};

#[derive(clap::Args)]
pub struct OccludeArgs {
    #[command(flatten)]
    input: ImageArgs,
    /// Side of the grey square, px at the input size
    #[arg(long, default_value_t = zfvis_core::occlusion::DEFAULT_SIZE)]
    size: i64,
    /// Step between square positions, px at the input size
    #[arg(long, default_value_t = zfvis_core::occlusion::DEFAULT_STRIDE)]
    stride: i64,
    /// Class whose probability is mapped (default: the top class)
    #[arg(long)]
    class: Option<i64>,
    #[command(flatten)]
    output: Output,
    /// Write map_activation.png, class_prob.png, top_label.png here
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// incremental | batched | naive (same maps; incremental recomputes only
    /// what the square changes)
    #[arg(long, default_value = "incremental")]
    method: String,
    /// Positions per batch
    #[arg(long, default_value_t = 64)]
    batch: i64,
    /// Run N times and print the median compute time to stderr
    #[arg(long, default_value_t = 0)]
    repeat: usize,
}

fn method(name: &str) -> Result<Method> {
    Ok(match name {
        "incremental" => Method::Incremental,
        "batched" => Method::Batched,
        "naive" => Method::Naive,
        s => bail!("unknown --method {s:?}: expected incremental, batched or naive"),
    })
}

pub fn run(a: OccludeArgs) -> Result<()> {
    let mut l = Local::open(&a.input.model)?;
    let method = method(&a.method)?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = GridRequest {
        model,
        epoch,
        image,
        size: a.size,
        stride: a.stride,
        class: a.class,
        kind: Default::default(),
        method,
        batch: a.batch,
    };
    let r = Occlusion::run(&mut l.engine, &req)?.grid;
    let (net, t) = l.engine.traced(&req.model, req.epoch, &req.image)?;
    if a.repeat > 0 {
        let science = occlusion::OcclusionRequest {
            size: a.size,
            stride: a.stride,
            class: a.class,
            batch: a.batch,
            method,
        };
        eprintln!(
            "occlusion_seconds {:.4}",
            median_seconds(a.repeat, &|| {
                let _ = occlusion::occlude(&net, &t.input, &science);
            })
        );
    }
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, img) in occlusion::heatmaps(&t.crop, &r) {
            let p = dir.join(format!("{name}.png"));
            img.save(&p)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    let mut v = serde_json::to_value(&r)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("unoccluded");
    }
    let spec = l.dir.manifest.spec()?;
    let node = spec.last_maps_node();
    let last = spec
        .unit_list()
        .into_iter()
        .find(|u| u.node == node)
        .map_or("the last conv layer".to_string(), |u| match u.layer {
            Some(n) => format!("conv{n}"),
            None => u.name,
        });
    a.output.print(&v, || {
        let lo = r
            .class_prob
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        println!(
            "class {} ({}): p = {:.3} unoccluded, lowest {lo:.3} over {}x{} positions; strongest map {} of {last} (the last conv layer's maps)",
            r.class,
            l.class_name(r.class),
            r.unoccluded.class_prob,
            r.positions.y.len(),
            r.positions.x.len(),
            r.strongest_map,
        );
    })
}

/// The median of `n` timed runs of `f`, in seconds.
fn median_seconds(n: usize, f: &dyn Fn()) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t0 = std::time::Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}
