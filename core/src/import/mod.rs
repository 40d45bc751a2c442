//! `zfvis import`: a network people already have (a PyTorch state dict, a
//! safetensors file or an ONNX graph) -> a model folder (manifest with the
//! layer list and preprocessing, one safetensors snapshot). Batch norm is
//! folded into the conv before it (eval statistics, paper.md §6).

mod batchnorm;
mod builder;
mod families;
mod graphs;
mod layout;
mod layouts;
mod onnx;
mod pth;
mod registry;
mod transformers;

pub use batchnorm::{bn_affine, fold_bn};
pub use registry::ARCHS;

use crate::checkpoint::{self, ClassInfo, Manifest, Metrics, ModelDir, Snapshot};
use crate::net::{Layer, Net, NetSpec, Node};
use crate::preprocess::{Filter, Fit};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How images become the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreprocessKind {
    /// Shorter side to the input size, centre crop, ImageNet mean/std (zfvis's own).
    Zfvis,
    /// Resize 256, centre crop 224, ImageNet mean/std (torchvision's eval transform).
    Torchvision,
    /// Resize 256, centre crop, BGR, 0–255 minus (104, 117, 123) (Caffe-trained nets).
    Caffe,
}

impl std::str::FromStr for PreprocessKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "zfvis" => PreprocessKind::Zfvis,
            "torchvision" => PreprocessKind::Torchvision,
            "caffe" => PreprocessKind::Caffe,
            o => bail!("unknown preprocessing {o:?}: expected zfvis, torchvision or caffe"),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub from: PathBuf,
    pub out: PathBuf,
    /// The state dict's layout (see [`ARCHS`]); ONNX files need none.
    pub arch: Option<String>,
    /// Or a layout of the user's: a JSON list of nodes (see [`layouts::from_file`]).
    pub layers: Option<PathBuf>,
    pub preprocess: Option<PreprocessKind>,
    pub mean: Option<[f64; 3]>,
    pub std: Option<[f64; 3]>,
    pub input_size: Option<i64>,
    pub resize: Option<i64>,
    /// Crop (shorter side) or squash (both sides) to `resize`.
    pub fit: Option<Fit>,
    /// PIL's resampling filter.
    pub filter: Option<Filter>,
    /// The order of the input's channels, or grey for 1-channel networks.
    pub channels: Option<Channels>,
    /// One class name a line, or zfvis's JSON (a list of names or of {index, id, name}).
    pub classes: Option<PathBuf>,
}

/// What a network's input channels hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Bgr,
    /// PIL's `convert("L")`: 1-channel networks.
    Grey,
}

impl std::str::FromStr for Channels {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Channels, String> {
        match s {
            "rgb" => Ok(Channels::Rgb),
            "bgr" => Ok(Channels::Bgr),
            "grey" | "gray" => Ok(Channels::Grey),
            _ => Err(format!("unknown channels {s:?}; choose rgb, bgr or grey")),
        }
    }
}

/// What a file holds once read: layers (from the graph or the layout) and
/// tensors under the layers' names.
struct Read {
    architecture: String,
    nodes: Vec<Node>,
    in_channels: i64,
    tensors: HashMap<String, Tensor>,
    preprocess: PreprocessKind,
    /// Why `preprocess` was chosen, when it was guessed from the file.
    preprocess_why: Option<String>,
    input_size: Option<i64>,
}

fn shape_str(s: &[i64]) -> String {
    format!("{s:?}")
}

/// A batch norm's weight, bias, running mean and variance under `prefix`.
fn bn_tensors(
    take: &mut impl FnMut(&str, &[i64]) -> Result<Tensor>,
    prefix: &str,
    n: i64,
) -> Result<[Tensor; 4]> {
    let mut p = |s: &str| take(&format!("{prefix}.{s}"), &[n]);
    Ok([
        p("weight")?,
        p("bias")?,
        p("running_mean")?,
        p("running_var")?,
    ])
}

/// Check every conv/linear (and batch-norm) tensor of the layout against the
/// file, naming the first that is missing or does not fit.
fn take_layout(
    arch: &str,
    custom: Option<(layout::Layout, i64)>,
    mut found: HashMap<String, Tensor>,
    input_size: Option<i64>,
) -> Result<Read> {
    let shapes: HashMap<String, Vec<i64>> =
        found.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    let (lay, in_channels) = match custom {
        Some(c) => c,
        None => (registry::layout(arch, &shapes, input_size)?, 3),
    };
    let mut tensors = HashMap::new();
    let mut take = |name: &str, expected: &[i64]| -> Result<Tensor> {
        let t = found.remove(name).ok_or_else(|| {
            anyhow!(
                "missing tensor {name} (expected shape {}); is --arch {arch} the file's layout?",
                shape_str(expected)
            )
        })?;
        // A linear layer on the channels read as a 1x1 conv (ConvNeXt).
        let t = match (t.size().as_slice(), expected) {
            ([o, i], [eo, ei, 1, 1]) if o == eo && i == ei => t.view([*o, *i, 1, 1]),
            // A per-channel scale stored for broadcasting ([C, 1, 1]).
            ([c, 1, 1], [ec]) if c == ec => t.view([*c]),
            _ => t,
        };
        if t.size() != expected {
            bail!(
                "tensor {name}: expected shape {}, found {} — is --arch {arch} the file's layout?",
                shape_str(expected),
                shape_str(&t.size())
            );
        }
        Ok(t)
    };
    for l in lay.nodes.iter().map(|n| &n.op) {
        let Some((w_shape, b_shape)) = l.param_shapes() else {
            continue;
        };
        let n_out = b_shape[0];
        let (wn, bn) = l.tensor_names().expect("conv, linear or affine");
        if let Some(src) = l.name().and_then(|n| lay.scales.get(n)) {
            tensors.insert(wn, take(src, &[n_out])?);
            tensors.insert(bn, Tensor::zeros([n_out], (Kind::Float, Device::Cpu)));
            continue;
        }
        if let Layer::WindowAttention {
            name,
            heads,
            window,
            cosine,
            ..
        } = l
        {
            let (table, scale) =
                transformers::window_tensors(&mut take, name, *heads, *window, *cosine)?;
            if *cosine {
                // Swin V2 has no key bias: torchvision zeroes that third of qkv's.
                if let Some(b) = tensors.get_mut(&format!("{name}.qkv.bias")) {
                    let n = b.size()[0] / 3;
                    *b = b.copy();
                    let _ = b.narrow(0, n, n).zero_();
                }
            }
            tensors.insert(wn, table);
            tensors.insert(bn, scale);
            continue;
        }
        if let Layer::Affine { name, .. } = l {
            let [g, be, m, v] = bn_tensors(&mut take, name, n_out)?;
            let (scale, shift) = bn_affine(&g, &be, &m, &v, lay.bn_eps);
            tensors.insert(wn, scale);
            tensors.insert(bn, shift);
            continue;
        }
        let folded = l.name().and_then(|n| lay.bn.get(n)).cloned();
        let no_bias =
            lay.convs_without_bias && matches!(l, Layer::Conv { .. }) && !shapes.contains_key(&bn);
        let mut w = take(&wn, &w_shape)?;
        let mut b = if no_bias {
            Tensor::zeros([n_out], (Kind::Float, Device::Cpu))
        } else {
            take(&bn, &b_shape)?
        };
        if let Some(prefix) = folded {
            let [g, be, m, v] = bn_tensors(&mut take, &prefix, n_out)?;
            (w, b) = fold_bn(&w, &b, &g, &be, &m, &v, lay.bn_eps);
        }
        tensors.insert(wn, w);
        tensors.insert(bn, b);
    }
    Ok(Read {
        architecture: arch.to_string(),
        nodes: lay.nodes,
        in_channels,
        tensors,
        preprocess: match lay.preprocess {
            "zfvis" => PreprocessKind::Zfvis,
            _ => PreprocessKind::Torchvision,
        },
        preprocess_why: None,
        input_size: lay.input_size,
    })
}

fn read_file(o: &ImportOptions) -> Result<Read> {
    let path = &o.from;
    if !path.is_file() {
        bail!("cannot read {}: no such file", path.display());
    }
    let ext = path
        .extension()
        .map_or(String::new(), |e| e.to_string_lossy().to_lowercase());
    if ext == "onnx" {
        if o.arch.is_some() {
            bail!("--arch is for state dicts; an ONNX file carries its own layers");
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let g = onnx::read(&bytes, path.parent().unwrap_or(Path::new(".")))?;
        let caffe = g.input_name.contains("data_0") || g.input_name == "data";
        let stem = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        return Ok(Read {
            architecture: format!("onnx:{stem}"),
            nodes: g.nodes,
            in_channels: g.in_channels,
            tensors: g.tensors,
            preprocess: if caffe {
                PreprocessKind::Caffe
            } else {
                PreprocessKind::Torchvision
            },
            preprocess_why: caffe.then(|| {
                format!(
                    "caffe preprocessing (BGR, the mean subtracted on 0..255 pixels), \
                     since the ONNX input is named {:?} as in the Caffe model zoo's \
                     exports; give --preprocess torchvision (or --mean/--std) if the \
                     network was not trained so",
                    g.input_name
                )
            }),
            input_size: g.input_size,
        });
    }
    let custom = o.layers.as_deref().map(layouts::from_file).transpose()?;
    let arch = match (&o.arch, &custom) {
        (Some(_), Some(_)) => bail!("give --arch or --layers, not both"),
        (Some(a), None) => a.as_str(),
        (None, Some(_)) => "custom",
        (None, None) => bail!(
            "--arch (or --layers) is needed for a state dict: one of {}",
            ARCHS.join(", ")
        ),
    };
    let found: HashMap<String, Tensor> = if ext == "safetensors" {
        Tensor::read_safetensors(path)
            .map_err(|e| anyhow!("not a readable safetensors file ({e})"))?
            .into_iter()
            .map(|(k, v)| (k, v.to_kind(Kind::Float)))
            .collect()
    } else {
        pth::read(path)?
    };
    take_layout(arch, custom, found, o.input_size)
}

/// Class names from `--classes`, or ImageNet-1k's for a 1000-output network.
fn classes(o: &ImportOptions, n: i64) -> Result<Vec<ClassInfo>> {
    let list: Vec<ClassInfo> = match &o.classes {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            if let Ok(v) = serde_json::from_str::<Vec<ClassInfo>>(&text) {
                v
            } else if let Ok(v) = serde_json::from_str::<Vec<String>>(&text) {
                v.into_iter()
                    .enumerate()
                    .map(|(i, s)| ClassInfo {
                        index: i,
                        id: format!("class{i}"),
                        name: s,
                    })
                    .collect()
            } else {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .enumerate()
                    .map(|(i, s)| ClassInfo {
                        index: i,
                        id: format!("class{i}"),
                        name: s.trim().to_string(),
                    })
                    .collect()
            }
        }
        None if n == 1000 => include_str!("../../data/imagenet1k.tsv")
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let (id, name) = l.split_once('\t').unwrap_or((l, l));
                ClassInfo {
                    index: i,
                    id: id.to_string(),
                    name: name.to_string(),
                }
            })
            .collect(),
        None => (0..n as usize)
            .map(|i| ClassInfo {
                index: i,
                id: format!("class{i}"),
                name: format!("class {i}"),
            })
            .collect(),
    };
    if list.len() as i64 != n {
        bail!(
            "--classes: the network has {n} outputs, the file lists {} classes",
            list.len()
        );
    }
    Ok(list)
}

/// Import `o.from` into the model folder `o.out`; returns it, loaded once to check.
pub fn import(o: &ImportOptions) -> Result<ModelDir> {
    let out = &o.out;
    if out.join("manifest.json").exists() {
        bail!(
            "{} already holds a model; choose a new --out folder",
            out.display()
        );
    }
    let r = read_file(o).with_context(|| format!("{}", o.from.display()))?;
    let kind = o.preprocess.unwrap_or(r.preprocess);
    let input_size = o.input_size.or(r.input_size).unwrap_or(224);
    let spec = NetSpec::from_nodes(&r.nodes, r.in_channels, input_size);
    spec.validate()
        .with_context(|| format!("{}: the network as read", o.from.display()))?;
    let (mean, std, bgr, name) = match kind {
        PreprocessKind::Caffe => (
            [123.0 / 255.0, 117.0 / 255.0, 104.0 / 255.0],
            [1.0 / 255.0; 3],
            true,
            "caffe",
        ),
        PreprocessKind::Torchvision => (
            crate::preprocess::MEAN,
            crate::preprocess::STD,
            false,
            "torchvision",
        ),
        PreprocessKind::Zfvis => (
            crate::preprocess::MEAN,
            crate::preprocess::STD,
            false,
            "zfvis",
        ),
    };
    // Squashing (Keras, PIL's img.resize((n, n))) goes to the input size
    // itself unless --resize says otherwise; only torchvision's crop
    // pipeline resizes to 256/224 of it first.
    let resize = o.resize.unwrap_or(match (kind, o.fit) {
        (PreprocessKind::Zfvis, _) | (_, Some(Fit::Squash)) => input_size,
        _ => (input_size as f64 * 256.0 / 224.0).round() as i64,
    });
    if resize < input_size {
        bail!("--resize {resize} is smaller than the input size {input_size}");
    }
    let bgr = match (o.channels, spec.in_channels) {
        (None, _) => bgr && spec.in_channels == 3,
        (Some(Channels::Grey), 1) => false,
        (Some(Channels::Grey), c) => bail!(
            "--channels grey is for 1-channel networks; this one reads {c} channels (rgb or bgr)"
        ),
        (Some(c), 1) => bail!(
            "--channels {}: this network reads 1 channel; use --channels grey",
            if c == Channels::Bgr { "bgr" } else { "rgb" }
        ),
        (Some(c), _) => c == Channels::Bgr,
    };
    let custom = o.mean.is_some()
        || o.std.is_some()
        || o.fit.is_some()
        || o.filter.is_some()
        || o.channels.is_some_and(|c| {
            c != Channels::Grey && (c == Channels::Bgr) != (kind == PreprocessKind::Caffe)
        });
    if o.std.is_some_and(|s| s.iter().any(|v| *v <= 0.0)) {
        bail!("--std: every value must be positive");
    }
    let classes = classes(o, spec.num_classes())?;
    let mut manifest = Manifest::for_spec(&spec, classes);
    manifest.architecture = r.architecture;
    manifest.resize = Some(resize);
    manifest.fit = o.fit.unwrap_or_default();
    manifest.filter = o.filter.unwrap_or_default();
    manifest.mean = o.mean.unwrap_or(mean);
    manifest.std = o.std.unwrap_or(std);
    manifest.bgr = bgr;
    manifest.preprocess = Some(if custom { "custom" } else { name }.to_string());
    let mut training = serde_json::json!({
        "imported_from": o.from.file_name().map(|f| f.to_string_lossy().into_owned()),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    if let (None, Some(why)) = (o.preprocess, &r.preprocess_why) {
        training["preprocess_note"] = why.clone().into();
    }
    manifest.training = Some(training);

    // The weights under the layer list's names, through a Net so that the
    // file written is exactly what the app loads.
    let net = Net::new(spec, Device::Cpu)?;
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in net.named_tensors() {
            let t = r
                .tensors
                .get(&name)
                .ok_or_else(|| anyhow!("internal: tensor {name} was not read"))?;
            if t.size() != var.size() {
                bail!(
                    "tensor {name}: expected shape {:?}, found {:?}",
                    var.size(),
                    t.size()
                );
            }
            var.copy_(t);
        }
        Ok(())
    })?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = checkpoint::snapshot_file_name(0);
    checkpoint::save_weights(&net, &out.join(&file), false)?;
    manifest.snapshots = vec![Snapshot {
        epoch: 0,
        file,
        metrics: Metrics::default(),
    }];
    let m = ModelDir {
        dir: out.to_path_buf(),
        manifest,
    };
    m.save_manifest()?;
    let m = ModelDir::open(out)?;
    m.load(None, Device::Cpu)?;
    Ok(m)
}
