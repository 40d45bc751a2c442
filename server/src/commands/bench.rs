//! `zfvis bench`: speed on this machine, each figure beside a peer measured
//! in the same run. Default: forward and projection of a full-width ZFNet
//! against the same forward in PyTorch-Python. `--arch vgg16`: an imported
//! torchvision network (random weights) against PyTorch on the same file:
//! forward, last-conv projection, and the full occlusion map against
//! Captum's `Occlusion`. `--decode DIR…`: JPEG decoding and preprocessing.
//! `--features DIR`: `zfvis probe`'s feature extraction.

use super::args::DeviceArg;
use super::bench_peer::{median, methods_model, peer};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use zfvis_core::deconv::{self, Keep, ProjectRequest};
use zfvis_core::explain::{Explainer, Options, Target};
use zfvis_core::net::{Arch, Init, Net, NetSpec};
use zfvis_core::tch::{self, Device, Kind, Tensor};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Python with torch, for the PyTorch peer (skipped if missing)
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Timed repetitions (the median is reported; at least 3)
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[command(flatten)]
    device: DeviceArg,
    /// Instead: a torchvision network (vgg16, alexnet, vgg11…) imported from
    /// the PyTorch peer's file, against PyTorch and Captum on it (CPU)
    #[arg(long)]
    arch: Option<String>,
    /// With --arch: skip the full occlusion map (Captum takes minutes)
    #[arg(long)]
    no_occlusion: bool,
    /// With --arch: the unit to project (a module path: layer4.2 for resnet50;
    /// default: the last conv layer)
    #[arg(long)]
    unit: Option<String>,
    /// Instead: JPEG decoding and preprocessing images/s against the
    /// image crate's decoder and PIL + torchvision, on these folders
    #[arg(long, num_args = 1.., value_name = "DIR")]
    decode: Option<Vec<PathBuf>>,
    /// Instead: `zfvis probe`'s feature extraction against raw forward
    /// passes, on the images of this folder (at most 320)
    #[arg(long, value_name = "DIR")]
    features: Option<PathBuf>,
    /// The model of --features and --methods
    #[arg(long, default_value = "models/zfnet-woofnette")]
    model: PathBuf,
    /// Instead: the maps of the methods the registry runs by default (all
    /// but occlusion) for one image and its top class against Captum's, on --model or with --arch an imported
    /// torchvision network; and a 5-step sanity check (on --model)
    #[arg(long)]
    methods: bool,
    /// The image of --methods and --cams
    #[arg(long, default_value = "examples/dog.jpg")]
    image: PathBuf,
    /// Instead: Ablation-CAM (ResNet-50 layer4.2) and Score-CAM (ResNet-18
    /// layer4.1) against the grad-cam package on the same files
    #[arg(long)]
    cams: bool,
    /// Instead: feature visualisation (512 steps of one map, bundled ZFNet
    /// conv5 and an imported GoogLeNet's inception4a) against torch-lucent's
    /// render_vis with the same recipe, then a whole layer of 64 maps
    #[arg(long)]
    visualize: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let iters = a.iters.max(3);
    if let Some(images) = &a.features {
        return bench_features(&a.model, images, iters);
    }
    if a.cams {
        return super::bench_cams::bench_cams(&a.python, &a.image, a.iters.max(1));
    }
    if a.visualize {
        return super::bench_visualize::bench_visualize(&a.python, &a.model, a.iters.max(1));
    }
    if a.methods {
        return bench_methods(
            &a.python,
            &a.model,
            a.arch.as_deref(),
            &a.image,
            a.iters.max(1),
        );
    }
    if let Some(sets) = &a.decode {
        tch::set_num_threads(1);
        return bench_decode(Some(&a.python), sets, iters);
    }
    if let Some(arch) = &a.arch {
        return bench_arch(&a.python, arch, a.unit.as_deref(), iters, !a.no_occlusion);
    }
    bench(Some(&a.python), iters, a.device.get()?)
}

fn time_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

pub fn bench(python: Option<&Path>, iters: usize, device: Device) -> Result<()> {
    let threads = tch::get_num_threads();
    tch::manual_seed(0);
    let mut net = Net::new(NetSpec::new(Arch::Zfnet, 1.0, 1000), device)?;
    net.init(Init::Kaiming);
    println!("full-width ZFNet (96/256/384/384/256, fc 4096, 1000 classes), {device:?}, {threads} threads, median of {iters}");
    let mut rust = vec![];
    for b in [1i64, 32] {
        let x = Tensor::randn([b, 3, 224, 224], (Kind::Float, device));
        let ms = time_ms(
            if b == 1 {
                iters
            } else {
                iters.div_ceil(4).max(3)
            },
            || {
                let _ = net.trace(&x);
            },
        ) / b as f64;
        rust.push((b, ms));
    }
    let x = Tensor::randn([1, 3, 224, 224], (Kind::Float, device));
    let trace = net.trace(&x);
    let proj = |layer: usize| {
        time_ms(iters, || {
            let _ = deconv::project(
                &net,
                &trace,
                &[ProjectRequest {
                    layer,
                    map: 0,
                    keep: Keep::Strongest,
                }],
            )
            .unwrap();
        })
    };
    let (p1, p5) = (proj(1), proj(5));
    let p9 = time_ms(iters, || {
        let reqs: Vec<ProjectRequest> = (0..9)
            .map(|m| ProjectRequest {
                layer: 5,
                map: m,
                keep: Keep::Strongest,
            })
            .collect();
        let _ = deconv::project(&net, &trace, &reqs).unwrap();
    });
    let py = match python {
        Some(py) if py.exists() => {
            let v = peer(
                py,
                "bench_torch.py",
                &[
                    threads.to_string(),
                    iters.to_string(),
                    "1".into(),
                    "32".into(),
                ],
            )?;
            Some(v["forward_ms_per_image"].clone())
        }
        _ => None,
    };
    println!("| measurement | zfvis (tch) | PyTorch (Python) | ratio zfvis/PyTorch |");
    println!("|---|---|---|---|");
    for (b, ms) in &rust {
        let (p, r) = match &py {
            Some(v) => {
                let p = v[b.to_string()].as_f64().unwrap_or(f64::NAN);
                (format!("{p:.2} ms"), format!("{:.2}", ms / p))
            }
            None => ("n/a".into(), "n/a".into()),
        };
        println!("| forward (maps + switches), batch {b}, per image | {ms:.2} ms | {p} | {r} |");
    }
    println!("| projection conv1 -> pixels, forward done | {p1:.2} ms | | |");
    println!("| projection conv5 -> pixels, forward done | {p5:.2} ms | | |");
    println!("| 9 projections conv5 in one batch | {p9:.2} ms | | |");
    Ok(())
}

/// `zfvis bench --arch A`: A (a torchvision layout) saved by the PyTorch
/// peer, imported with `zfvis import`, and timed beside PyTorch.
pub fn bench_arch(
    python: &Path,
    arch: &str,
    unit: Option<&str>,
    iters: usize,
    occlusion: bool,
) -> Result<()> {
    let threads = tch::get_num_threads();
    let dir = std::env::temp_dir().join(format!("zfvis-bench-{arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pth = dir.join(format!("{arch}.pth"));
    eprintln!(
        "PyTorch peer: {arch}, {threads} threads{}",
        if occlusion {
            ", with Captum's Occlusion (minutes)"
        } else {
            ""
        }
    );
    let py = peer(
        python,
        "bench_arch.py",
        &[
            arch.to_string(),
            pth.display().to_string(),
            threads.to_string(),
            iters.to_string(),
            (occlusion as u8).to_string(),
            unit.unwrap_or("").to_string(),
        ],
    )?;
    let m = zfvis_core::import::import(&zfvis_core::import::ImportOptions {
        from: pth,
        out: dir.join("model"),
        arch: Some(format!("torchvision:{arch}")),
        ..Default::default()
    })?;
    let net = m.load(None, Device::Cpu)?;
    let last = match unit {
        Some(u) => net.spec.find_unit(u)?,
        None => net.convs.len(),
    };
    let name = net.units[last - 1].name.clone();
    tch::manual_seed(0);
    let x = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let x32 = Tensor::randn([32, 3, 224, 224], (Kind::Float, Device::Cpu));
    let fwd = time_ms(iters, || {
        let _ = tch::no_grad(|| net.forward_t(&x, false));
    });
    let fwd32 = time_ms(iters.div_ceil(4).max(3), || {
        let _ = tch::no_grad(|| net.forward_t(&x32, false));
    });
    let traced = time_ms(iters, || {
        let _ = net.trace(&x);
    });
    let trace = net.trace(&x);
    let proj = time_ms(iters, || {
        let _ = deconv::project(
            &net,
            &trace,
            &[ProjectRequest {
                layer: last,
                map: 0,
                keep: Keep::Strongest,
            }],
        )
        .unwrap();
    });
    let occ = occlusion
        .then(|| {
            let t = Instant::now();
            let r = zfvis_core::occlusion::occlude(
                &net,
                &x.get(0),
                &zfvis_core::occlusion::OcclusionRequest::default(),
            );
            r.map(|_| t.elapsed().as_secs_f64())
        })
        .transpose()?;
    let attention = attention_rows(&net, &x, iters, fwd)?;
    let _ = std::fs::remove_dir_all(&dir);
    let p = |k: &str| py[k].as_f64();
    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".to_string(), |b| format!("{:.2}", a / b));
    let show =
        |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.1} {unit}"));
    println!(
        "torchvision {arch} (random weights, imported), CPU, {threads} threads, median of {iters}"
    );
    println!("| measurement | zfvis (tch) | PyTorch (Python) | ratio zfvis/PyTorch |");
    println!("|---|---|---|---|");
    println!(
        "| forward, batch 1 | {fwd:.1} ms | {} | {} |",
        show(p("forward_ms"), "ms"),
        ratio(fwd, p("forward_ms"))
    );
    println!(
        "| forward, batch 32 | {fwd32:.1} ms | {} | {} |",
        show(p("forward32_ms"), "ms"),
        ratio(fwd32, p("forward32_ms"))
    );
    println!("| forward, batch 1, keeping maps + switches (zfvis's trace) | {traced:.1} ms | | |");
    println!("| {name} projection (zfvis: forward cached; PyTorch: forward + modified backward) | {proj:.1} ms | {} | {} |", show(p("projection_ms"), "ms"), ratio(proj, p("projection_ms")));
    println!(
        "| {name} projection / zfvis forward | {:.2} | | |",
        proj / fwd
    );
    if let Some(o) = occ {
        let c = p("occlusion_s");
        let how = if zfvis_core::incremental::applies(&net) {
            "incremental"
        } else {
            "batched full passes"
        };
        let ppe = py["occlusion_ppe"]
            .as_i64()
            .map_or(String::new(), |v| format!(", perturbations_per_eval {v}"));
        println!("| full occlusion map, 48 px square, stride 8 (23x23), zfvis {how} vs Captum Occlusion{ppe} | {o:.1} s | {} | {} (speed-up {}) |",
            show(c, "s"), ratio(o, c), c.map_or("n/a".into(), |c| format!("{:.1}x", c / o)));
    }
    for row in attention {
        println!("{row}");
    }
    Ok(())
}

/// A transformer's maps beside its forward (batch 1): attention rollout,
/// gradient rollout and Grad-CAM at the suggested block, each from the
/// image (its forward included), as table rows; none without attention.
fn attention_rows(net: &Net, x: &Tensor, iters: usize, fwd: f64) -> Result<Vec<String>> {
    let rollout = zfvis_core::methods::ROLLOUT;
    if !rollout.applies(net) {
        return Ok(vec![]);
    }
    let o = Options::new(net);
    let mut rows = vec![];
    for m in [
        rollout,
        zfvis_core::methods::GRAD_ROLLOUT,
        zfvis_core::methods::GRADCAM,
    ] {
        let mut err = None;
        let ms = time_ms(iters, || {
            let e = Explainer::new(net, x);
            if let Err(er) = m.map(&e, Target::Class(e.top_class()), &o) {
                err = Some(er);
            }
        });
        if let Some(er) = err {
            return Err(er);
        }
        rows.push(format!(
            "| {} from the image (its forward included) | {ms:.1} ms | | {:.2} × zfvis's forward |",
            m.label(),
            ms / fwd
        ));
    }
    Ok(rows)
}

/// `zfvis bench --methods`: the six maps of one image beside Captum's, and
/// (on a bundled model) a 5-step sanity check with the default methods.
fn bench_methods(
    python: &Path,
    model: &Path,
    arch: Option<&str>,
    image: &Path,
    iters: usize,
) -> Result<()> {
    use zfvis_core::explain::{Explainer, Options, Target};
    use zfvis_core::methods::Method;
    let threads = tch::get_num_threads();
    let dir = std::env::temp_dir().join(format!("zfvis-bench-methods-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (model_dir, peer_args) = methods_model(python, model, arch, &dir)?;
    let m = zfvis_core::checkpoint::ModelDir::open(&model_dir)?;
    let net = m.load(None, Device::Cpu)?;
    let bytes = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let img = zfvis_core::preprocess::decode(&bytes)?;
    let pre = m.manifest.preprocess();
    let x = pre.tensor(&pre.crop(&img)).unsqueeze(0);
    let xp = dir.join("x.npy");
    x.write_npy(&xp)?;
    let last = net.last_unit();
    let captum_layer = match net.units[last - 1].layer {
        Some(c) if net.spec.is_chain() => c.to_string(),
        _ => net.units[last - 1].name.clone(),
    };
    eprintln!("Captum peer: 6 methods, {iters} runs each");
    let mut args = peer_args;
    args.extend([
        xp.display().to_string(),
        iters.to_string(),
        threads.to_string(),
        captum_layer,
    ]);
    let py = peer(python, "bench_methods.py", &args);
    // The methods Captum has (the CAM family beyond Grad-CAM is timed
    // against the grad-cam package by `--cams`).
    let methods: Vec<Method> = Method::defaults()
        .into_iter()
        .filter(|m| m.applies(&net))
        .filter(|m| py.as_ref().map_or(true, |v| v.get(m.name()).is_some()))
        .collect();
    let o = Options::new(&net);
    let mut ours = vec![];
    for &method in &methods {
        let run = || {
            let e = Explainer::new(&net, &x);
            let c = e.top_class();
            let _ = method.map(&e, Target::Class(c), &o).unwrap();
        };
        run();
        ours.push(time_ms(iters, run) / 1000.0);
    }
    // All of them from one forward trace, as the methods view computes them.
    let shared = time_ms(iters, || {
        let e = Explainer::new(&net, &x);
        let c = e.top_class();
        for &method in &methods {
            let _ = method.map(&e, Target::Class(c), &o).unwrap();
        }
    }) / 1000.0;
    let name = arch.map_or_else(
        || model.display().to_string(),
        |a| format!("torchvision {a} (random weights, imported)"),
    );
    println!("{name}, CPU, {threads} threads, one image and its top class, median of {iters}");
    println!("| method | zfvis | Captum | ratio zfvis/Captum |");
    println!("|---|---|---|---|");
    let py = match py {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("Captum peer skipped: {e}");
            None
        }
    };
    let theirs = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());
    let cell = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} s"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".to_string(), |b| format!("{:.2}", a / b));
    for (m, t) in methods.iter().zip(&ours) {
        println!(
            "| {} | {t:.3} s | {} | {} |",
            m.name(),
            cell(theirs(m.name())),
            ratio(*t, theirs(m.name()))
        );
    }
    let sum: f64 = ours.iter().sum();
    println!(
        "| all {}, one request each | {sum:.3} s | {} | {} |",
        methods.len(),
        cell(theirs("total")),
        ratio(sum, theirs("total"))
    );
    println!(
        "| all {} from one forward trace (the methods view) | {shared:.3} s | {} | {} |",
        methods.len(),
        cell(theirs("total")),
        ratio(shared, theirs("total"))
    );
    if arch.is_none() {
        let mut n = m.load(None, Device::Cpu)?;
        let t = Instant::now();
        let defaults: Vec<Method> = Method::defaults()
            .into_iter()
            .filter(|m| m.applies(&n))
            .collect();
        zfvis_core::sanity::cascade(&mut n, &x, &defaults, 5, 0, &mut |_, _| Ok(()))?;
        println!(
            "| sanity check, 5 steps, the {} default methods | {:.2} s | | |",
            defaults.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Start a server in-process on a free port and time real HTTP requests.
/// `zfvis bench --decode`: images/s of zfvis's decoding (libjpeg-turbo) and
/// preprocessing (Pillow's resize, torchvision's crop) on each set of JPEGs,
/// against the decoder zfvis used before (the image crate's, with its
/// triangle resize) and PIL + torchvision, one thread, same run.
pub fn bench_decode(python: Option<&Path>, sets: &[PathBuf], iters: usize) -> Result<()> {
    use zfvis_core::preprocess;
    println!("JPEG decoding and preprocessing (Resize(256) + CenterCrop(224)), 1 thread, median of {iters} passes over each set");
    println!();
    println!("| files | step | zfvis (libjpeg-turbo, Pillow resize) | before (image crate) | PIL + torchvision | zfvis / before | zfvis / PIL |");
    println!("|---|---|---|---|---|---|---|");
    for set in sets {
        let files: Vec<PathBuf> = zfvis_core::data::list_images(set)?
            .into_iter()
            .filter(|p| {
                let e = p.extension().map(|e| e.to_string_lossy().to_lowercase());
                matches!(e.as_deref(), Some("jpg" | "jpeg"))
            })
            .collect();
        if files.is_empty() {
            bail!("{}: no JPEG files", set.display());
        }
        let set_blobs: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
        // Each timed pass covers at least 200 images (small sets repeated).
        let reps = 200usize.div_ceil(set_blobs.len());
        let blobs: Vec<&Vec<u8>> = (0..reps).flat_map(|_| set_blobs.iter()).collect();
        let per_s = |ms: f64| blobs.len() as f64 * 1000.0 / ms;
        let ours_decode = per_s(time_ms(iters, || {
            for b in &blobs {
                std::hint::black_box(preprocess::decode(b).ok());
            }
        }));
        let old_decode = per_s(time_ms(iters, || {
            for b in &blobs {
                std::hint::black_box(image::load_from_memory(b).ok().map(|i| i.to_rgb8()));
            }
        }));
        let ours_pipe = per_s(time_ms(iters, || {
            for b in &blobs {
                let img = preprocess::decode(b).unwrap();
                std::hint::black_box(preprocess::resize_crop(&img, 256, 224));
            }
        }));
        let old_pipe = per_s(time_ms(iters, || {
            for b in &blobs {
                std::hint::black_box(old_resize_crop(
                    &image::load_from_memory(b).unwrap().to_rgb8(),
                ));
            }
        }));
        let pil = match python {
            Some(py) => {
                let mut args = vec![iters.to_string()];
                for _ in 0..reps {
                    args.extend(files.iter().map(|p| p.display().to_string()));
                }
                match peer(py, "bench_decode.py", &args) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!("PIL peer skipped: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let pil_at = |k: &str| pil.as_ref().and_then(|v| v[k].as_f64());
        let name = format!("{} ({} JPEGs)", set.display(), set_blobs.len());
        for (step, ours, old, p) in [
            ("decode", ours_decode, old_decode, pil_at("decode_per_s")),
            (
                "decode + resize + crop",
                ours_pipe,
                old_pipe,
                pil_at("pipeline_per_s"),
            ),
        ] {
            println!(
                "| {name} | {step} | {ours:.0}/s | {old:.0}/s | {} | {:.2} | {} |",
                p.map_or("-".into(), |p| format!("{p:.0}/s")),
                ours / old,
                p.map_or("-".into(), |p| format!("{:.2}", ours / p)),
            );
        }
    }
    bench_filters(python, &sets[0], iters)
}

/// Decode + resize (each of PIL's six filters) + crop + normalise of one
/// 12-Mpixel JPEG (4000x3000, made from the set's first photo), against PIL
/// + torchvision doing the same, one thread, same run.
fn bench_filters(python: Option<&Path>, set: &Path, iters: usize) -> Result<()> {
    use zfvis_core::preprocess::{self, Filter, Preprocess};
    let first = zfvis_core::data::list_images(set)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: no images", set.display()))?;
    let photo = preprocess::decode(&std::fs::read(&first)?)?;
    let big = image::imageops::resize(&photo, 4000, 3000, image::imageops::FilterType::Triangle);
    let mut blob = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut blob, 90).encode_image(&big)?;
    let path = std::env::temp_dir().join(format!("zfvis-bench-12mp-{}.jpg", std::process::id()));
    std::fs::write(&path, &blob)?;
    let pil = python.and_then(|py| {
        peer(
            py,
            "bench_decode.py",
            &[
                "filters".into(),
                iters.to_string(),
                path.display().to_string(),
            ],
        )
        .map_err(|e| eprintln!("PIL peer skipped: {e}"))
        .ok()
    });
    let _ = std::fs::remove_file(&path);
    println!();
    println!("One 12-Mpixel JPEG (4000x3000, {} KB): decode + Resize(256, filter) + CenterCrop(224) + normalise, 1 thread, median of {iters}", blob.len() / 1024);
    println!();
    println!("| filter | zfvis | PIL + torchvision | zfvis / PIL |");
    println!("|---|---|---|---|");
    for filter in Filter::ALL {
        let pre = Preprocess {
            filter,
            resize: 256,
            ..Preprocess::imagenet(224)
        };
        let ms = time_ms(iters, || {
            let img = preprocess::decode(&blob).unwrap();
            let _ = std::hint::black_box(pre.tensor(&pre.crop(&img)));
        });
        let p = pil.as_ref().and_then(|v| v[filter.name()].as_f64());
        println!(
            "| {filter} | {ms:.1} ms | {} | {} |",
            p.map_or("-".into(), |p| format!("{p:.1} ms")),
            p.map_or("-".into(), |p| format!("{:.2}", ms / p)),
        );
    }
    Ok(())
}

/// The preprocessing zfvis had before: shorter side to 256 rounded, the
/// image crate's triangle filter, centre crop with the offset floored.
fn old_resize_crop(img: &image::RgbImage) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let s = 256.0 / w.min(h) as f64;
    let (nw, nh) = ((w as f64 * s).round() as u32, (h as f64 * s).round() as u32);
    let r = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
    image::imageops::crop_imm(&r, (nw - 224) / 2, (nh - 224) / 2, 224, 224).to_image()
}

/// `zfvis bench --features DIR`: feature extraction of `zfvis probe` (decode,
/// preprocess, forward to the last hidden layer, pool) in images/s against
/// raw batched forward passes of the same network on the same images already
/// decoded, same run, batches of 32.
pub fn bench_features(model: &Path, images: &Path, iters: usize) -> Result<()> {
    use zfvis_core::checkpoint::ModelDir;
    use zfvis_core::{preprocess, probe};
    let m = ModelDir::open(model)?;
    let net = m.load(None, Device::Cpu)?;
    let pre = m.manifest.preprocess();
    let files: Vec<PathBuf> = zfvis_core::data::list_images(images)?
        .into_iter()
        .take(320)
        .collect();
    if files.is_empty() {
        bail!("{}: no images", images.display());
    }
    let layers = probe::feature_layers(&net.spec);
    let xs: Vec<Tensor> = files
        .iter()
        .map(|p| -> Result<Tensor> {
            let img = preprocess::decode(&std::fs::read(p)?)?;
            Ok(pre.tensor(&pre.crop(&img)))
        })
        .collect::<Result<_>>()?;
    let per_s = |ms: f64| files.len() as f64 * 1000.0 / ms;
    let extract = per_s(time_ms(iters, || {
        std::hint::black_box(probe::extract(&net, &pre, &files, &layers, &|_| Ok(())).unwrap());
    }));
    let forward = per_s(time_ms(iters, || {
        tch::no_grad(|| {
            for c in xs.chunks(32) {
                let _ = std::hint::black_box(net.forward_t(&Tensor::stack(c, 0), false));
            }
        })
    }));
    println!(
        "{} on {} images of {}, {} threads, median of {iters}",
        m.name(),
        files.len(),
        images.display(),
        tch::get_num_threads()
    );
    println!();
    println!("| measurement | images/s |");
    println!("|---|---|");
    println!("| `zfvis probe` feature extraction (decode + preprocess + conv1–fc7 features) | {extract:.0} |");
    println!("| raw batched forward passes to logits (images decoded beforehand) | {forward:.0} |");
    println!("| ratio extraction / forward | {:.2} |", extract / forward);
    Ok(())
}
