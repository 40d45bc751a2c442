//! `zfvis figures`: the paper's figures for one model as files (PNG, SVG for
//! plots and tables, JSON numbers) and one self-contained `report.html`.
//! Each figure is `zfvis_core::analyses::figures::Figures`, the analysis behind the web
//! views' "download figure" links; one failing figure is reported and the
//! others are still written.

use super::args::ModelArgs;
use super::local::{advance, resource_dir, stage_bar, Scratch};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use zfvis_core::analyses::figures::{Entry, FigureRequest, Figures, Name};
use zfvis_core::analysis::Analysis;
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::engine::{self, Engine};
use zfvis_core::params::{ContentId, ModelName};
use zfvis_core::store::ImageStore;
use zfvis_core::tch::Device;
use zfvis_core::{correspondence, index};

#[derive(clap::Args)]
pub struct FiguresArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image of Figs. 5, 6 and 7
    #[arg(long)]
    image: PathBuf,
    /// Folder of images for Figs. 2 and 4 (default: the bundled examples and the image)
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Landmarks for Table 1: {"image file": {"part": [x, y]}}
    #[arg(long)]
    landmarks: Option<PathBuf>,
    /// The other model of Fig. 6 (default: one of another architecture in --models)
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Where to look for the default --compare model
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Example photos (the default dataset) [default: examples/ in the
    /// working directory, else beside the binary]
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Only these figures, e.g. fig5,fig7 (default: all)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Draw the feature visualisation figure too (vis: 9 maps of each
    /// layer, optimised), with this many steps (with --only vis: 512)
    #[arg(long)]
    vis_steps: Option<usize>,
    /// Folder to write the figures and report.html into
    #[arg(long)]
    out: PathBuf,
}

/// Link a model folder into the engine's models as `name`: the folder
/// itself (its dataset indexes are kept beside it, as `zfvis index` does),
/// or file by file (indexes stay in the scratch folder).
fn link_model(src: &Path, dst: &Path, whole: bool) -> Result<()> {
    let src = std::fs::canonicalize(src)
        .with_context(|| format!("model folder {} not found", src.display()))?;
    if whole {
        std::os::unix::fs::symlink(&src, dst)?;
        return Ok(());
    }
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(&src)?.flatten() {
        if e.path().is_file() {
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn name_of(dir: &ModelDir, fallback: &str) -> ModelName {
    ModelName::try_from(dir.name())
        .or_else(|_| ModelName::try_from(fallback.to_string()))
        .expect("a valid fallback name")
}

/// The figures asked for: --only's, or all of them but the feature
/// visualisation (minutes on a CPU), which --vis-steps adds.
fn wanted(only: &[String], vis: bool) -> Result<Vec<Name>> {
    if only.is_empty() {
        return Ok(Name::ALL
            .into_iter()
            .filter(|&n| n != Name::Vis || vis)
            .collect());
    }
    only.iter()
        .map(|s| {
            Name::ALL
                .into_iter()
                .find(|n| n.stem().split('-').next() == Some(s.trim()) || n.stem() == s.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--only {s:?}: expected fig2, fig3, fig4, fig5, fig6, fig7, table1 or vis"
                    )
                })
        })
        .collect()
}

pub fn run(a: FiguresArgs) -> Result<()> {
    let names = wanted(&a.only, a.vis_steps.is_some())?;
    let dir = ModelDir::open(&a.model.model)?;
    let epoch = dir.manifest.snapshot(a.model.snapshot)?.epoch;
    let device = a.model.device.get()?;
    let photo =
        std::fs::read(&a.image).with_context(|| format!("cannot read {}", a.image.display()))?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let tmp = Scratch::new("figures")?;
    let models = tmp.0.join("models");
    let (model, compare) = link_models(&a, &dir, &models)?;
    let store = ImageStore::open(&tmp.0)?;
    let image = store
        .put(&photo)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.image.display()))?;
    let (dataset, what) = dataset_of(&a, &store)?;
    let set = match &a.landmarks {
        Some(l) => Some(ContentId::try_from(
            correspondence::store_landmarks(&store, l)?.0,
        )?),
        None => None,
    };
    let jobs = zfvis_core::progress::Jobs::default();
    let ctx = engine::Context {
        models: models.clone(),
        store,
        device,
        indexer: Some(zfvis_core::engine::indexer::Indexer::spawn(
            models.clone(),
            dataset.clone(),
            device,
            jobs.clone(),
        )),
        jobs,
    };
    let mut engine = Engine::new(ctx, 4);
    let mdir = zfvis_core::models::open_model(&models, model.as_str())?;
    let index_failed = build_indexes(&names, &mdir, epoch, &dataset, device);
    let template = FigureRequest {
        model: model.clone(),
        epoch,
        figure: Name::Fig2,
        image: Some(ContentId::try_from(image.id.clone())?),
        compare,
        compare_epoch: None,
        set,
        size: None,
        stride: None,
        class: None,
        steps: None,
        seed: None,
        vis_steps: a.vis_steps,
    };
    let (entries, failed) = draw_all(&mut engine, &template, &names, index_failed, &a.out);
    let report = a.out.join("report.html");
    let command: Vec<String> = std::env::args().collect();
    let what = format!("{what} Made with: {}", command.join(" "));
    std::fs::write(
        &report,
        zfvis_core::analyses::figures::report(model.as_str(), epoch, &what, &entries),
    )
    .with_context(|| format!("cannot write {}", report.display()))?;
    for en in &entries {
        match en {
            Entry::Drawn(f) => println!("{}", a.out.join(format!("{}.png", f.file)).display()),
            Entry::Missing { figure, why } => println!("{}: not drawn: {why}", figure.stem()),
        }
    }
    println!("{}", report.display());
    if !failed.is_empty() {
        bail!(
            "{} of {} figures failed: {}",
            failed.len(),
            names.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// Link the model (and the Fig. 6 comparison: `--compare`, else every model
/// beside in `--models` for the default pick) into the scratch `models`.
fn link_models(
    a: &FiguresArgs,
    dir: &ModelDir,
    models: &Path,
) -> Result<(ModelName, Option<ModelName>)> {
    let model = name_of(dir, "model");
    link_model(
        &a.model.model,
        &models.join(model.as_str()),
        a.dataset.is_some(),
    )?;
    let Some(p) = &a.compare else {
        for e in std::fs::read_dir(&a.models).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n != model.as_str()
                && ModelName::try_from(n.clone()).is_ok()
                && e.path().join("manifest.json").is_file()
            {
                link_model(&e.path(), &models.join(&n), false)?;
            }
        }
        return Ok((model, None));
    };
    let c = name_of(&ModelDir::open(p)?, "compare");
    let c = if c == model {
        ModelName::try_from("compare".to_string())?
    } else {
        c
    };
    link_model(p, &models.join(c.as_str()), false)?;
    Ok((model, Some(c)))
}

/// The dataset of Figs. 2 and 4 (`--dataset`, else the image store with the
/// examples in it) and the sentence the report says of it.
fn dataset_of(a: &FiguresArgs, store: &ImageStore) -> Result<(PathBuf, String)> {
    if let Some(d) = &a.dataset {
        if !d.is_dir() {
            bail!("--dataset {}: not a folder", d.display());
        }
        return Ok((d.clone(), format!("Dataset: {}.", d.display())));
    }
    let examples = a
        .examples
        .clone()
        .unwrap_or_else(|| resource_dir("examples/examples.json"));
    let ex = zfvis_core::examples::load(&examples, store)
        .with_context(|| format!("the example photos ({})", examples.display()))?;
    Ok((
        store.dir().to_path_buf(),
        format!(
            "Dataset (Figs. 2 and 4): only the images given here (--image, --landmarks) and {} \
             bundled example photos (no --dataset given); pass --dataset DIR (any folder of images, e.g. ImageNet val) for the paper's figures.",
            ex.len()
        ),
    ))
}

/// The dataset indexes Figs. 2 and 4 read, built here with a progress bar;
/// why they could not be, if so.
fn build_indexes(
    names: &[Name],
    mdir: &ModelDir,
    epoch: u32,
    dataset: &Path,
    device: Device,
) -> Option<String> {
    let epochs: Vec<u32> = if names.contains(&Name::Fig4) {
        mdir.manifest.snapshots.iter().map(|s| s.epoch).collect()
    } else if names.contains(&Name::Fig2) {
        vec![epoch]
    } else {
        vec![]
    };
    for ep in epochs {
        let r = (|| -> Result<()> {
            let net = mdir.load(Some(ep), device)?;
            let pb = stage_bar();
            pb.set_message(format!("index epoch {ep}"));
            index::build(&net, mdir, ep, dataset, 32, &|done, total| {
                advance(&pb, done, total)
            })?;
            pb.finish_and_clear();
            Ok(())
        })();
        if let Err(e) = r {
            return Some(format!("indexing the dataset at epoch {ep} failed: {e:#}"));
        }
    }
    None
}

/// Draw each figure (one failing, or panicking, is reported and the others
/// still drawn) and write its files; the report's entries and the failures.
fn draw_all(
    engine: &mut Engine,
    template: &FigureRequest,
    names: &[Name],
    index_failed: Option<String>,
    out: &Path,
) -> (Vec<Entry>, Vec<String>) {
    let pb = stage_bar();
    pb.set_length(names.len() as u64);
    let mut entries = vec![];
    let mut failed = vec![];
    for &name in names {
        pb.set_message(name.stem());
        let missing = match name {
            Name::Table1 if template.set.is_none() => {
                Some("needs --landmarks FILE (image files with named points)".to_string())
            }
            n if n.needs_dataset() => index_failed.clone(),
            _ => None,
        };
        if let Some(why) = missing {
            entries.push(Entry::Missing { figure: name, why });
            pb.inc(1);
            continue;
        }
        let req = FigureRequest {
            figure: name,
            ..template.clone()
        };
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Figures::run(engine, &req)));
        let why = match r {
            Ok(Ok(mut f)) => match write(out, name, &mut f) {
                Ok(()) => {
                    entries.push(Entry::Drawn(f));
                    None
                }
                Err(e) => Some(format!("{e:#}")),
            },
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("internal error".to_string()),
        };
        if let Some(why) = why {
            failed.push(format!("{}: {why}", name.stem()));
            entries.push(Entry::Missing { figure: name, why });
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    (entries, failed)
}

/// `<stem>.png`, `.svg` for plots and tables, `.json` (title, caption, numbers).
fn write(out: &Path, name: Name, f: &mut zfvis_core::analyses::figures::Figure) -> Result<()> {
    f.file = name.stem().to_string();
    let p = |ext: &str| out.join(format!("{}.{ext}", f.file));
    std::fs::write(p("png"), &f.png)
        .with_context(|| format!("cannot write {}", p("png").display()))?;
    if let Some(svg) = &f.svg {
        std::fs::write(p("svg"), svg)?;
    }
    std::fs::write(p("json"), serde_json::to_vec_pretty(&*f)?)?;
    Ok(())
}
