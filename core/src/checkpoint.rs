//! A model is a folder: `manifest.json` plus one safetensors file per
//! snapshot (the file name contains its epoch). Tensors use PyTorch names and
//! layouts, so `safetensors.torch.save_file(model.state_dict(), …)` loads here.

use crate::net::{Arch, Net, NetSpec, Node};
use crate::preprocess::{Filter, Fit, Preprocess};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassInfo {
    pub index: usize,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_top5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub epoch: u32,
    pub file: String,
    #[serde(default)]
    pub metrics: Metrics,
}

fn one() -> f64 {
    1.0
}
fn three() -> i64 {
    3
}
fn is_three(v: &i64) -> bool {
    *v == 3
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `zfnet` or `alexnet` (a preset with `width`), or where the layer list
    /// came from (`torchvision:vgg16`, `onnx`).
    pub architecture: String,
    #[serde(default = "one")]
    pub width: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc_width: Option<f64>,
    /// The network as an explicit layer list (imported networks); presets leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Node>>,
    /// Channels of the network's input: 3 (RGB, BGR) or 1 (grey).
    #[serde(default = "three", skip_serializing_if = "is_three")]
    pub in_channels: i64,
    pub input_size: i64,
    /// Shorter side before the centre crop (torchvision: 256); default: input_size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<i64>,
    /// How the image is brought to `resize` (crop: shorter side; squash:
    /// both sides, aspect ignored); manifests before this field: crop.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fit: Fit,
    /// PIL's resampling filter; manifests before this field: bilinear.
    #[serde(default, skip_serializing_if = "is_default")]
    pub filter: Filter,
    /// Normalisation (RGB, 0..1 pixels): (p - mean) / std.
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Channels fed in BGR order (Caffe-trained networks).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bgr: bool,
    /// Name of the preprocessing (zfvis, torchvision, caffe, custom), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<String>,
    pub classes: Vec<ClassInfo>,
    pub snapshots: Vec<Snapshot>,
    /// How the model was made (command, git revision, wall time…); free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

impl Manifest {
    pub fn spec(&self) -> Result<NetSpec> {
        let spec = match &self.layers {
            Some(nodes) => NetSpec::from_nodes(nodes, self.in_channels, self.input_size),
            None => {
                let arch: Arch = self
                    .architecture
                    .parse()
                    .context("manifest.json: architecture (or give \"layers\")")?;
                NetSpec::preset(
                    arch,
                    self.width,
                    self.fc_width.unwrap_or(self.width),
                    self.classes.len() as i64,
                )
                .with_input_size(self.input_size)
            }
        };
        spec.validate().context("manifest.json")?;
        if spec.num_classes() != self.classes.len() as i64 {
            bail!(
                "manifest.json: the network has {} outputs but {} classes are listed",
                spec.num_classes(),
                self.classes.len()
            );
        }
        Ok(spec)
    }

    /// The preprocessing's name for people (zfvis, torchvision, caffe, custom).
    pub fn preprocess_name(&self) -> &str {
        self.preprocess.as_deref().unwrap_or("zfvis")
    }

    /// How an image becomes this network's input.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_size: self.input_size as u32,
            resize: self.resize.unwrap_or(self.input_size).max(self.input_size) as u32,
            fit: self.fit,
            filter: self.filter,
            mean: self.mean,
            std: self.std,
            bgr: self.bgr,
            grey: self.in_channels == 1,
        }
    }

    /// The manifest of a network described by `spec` (preset or layer list).
    pub fn for_spec(spec: &NetSpec, classes: Vec<ClassInfo>) -> Manifest {
        let (architecture, width, fc_width, layers) = match spec.preset {
            Some(p) => (p.arch.to_string(), p.width, Some(p.fc_width), None),
            None => ("custom".to_string(), 1.0, None, Some(spec.nodes.clone())),
        };
        Manifest {
            architecture,
            width,
            fc_width,
            layers,
            in_channels: spec.in_channels,
            input_size: spec.input_size,
            resize: None,
            fit: Fit::Crop,
            filter: Filter::Bilinear,
            mean: crate::preprocess::MEAN,
            std: crate::preprocess::STD,
            bgr: false,
            preprocess: None,
            classes,
            snapshots: vec![],
            training: None,
        }
    }

    pub fn last_epoch(&self) -> Option<u32> {
        self.snapshots.iter().map(|s| s.epoch).max()
    }

    pub fn snapshot(&self, epoch: Option<u32>) -> Result<&Snapshot> {
        let epoch = match epoch {
            Some(e) => e,
            None => self
                .last_epoch()
                .ok_or_else(|| anyhow!("model has no snapshots"))?,
        };
        self.snapshots
            .iter()
            .find(|s| s.epoch == epoch)
            .ok_or_else(|| {
                let have: Vec<String> =
                    self.snapshots.iter().map(|s| s.epoch.to_string()).collect();
                anyhow!(
                    "no snapshot for epoch {epoch}; this model has epochs {}",
                    have.join(", ")
                )
            })
    }
}

/// A model folder with its parsed manifest.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

pub fn read_json_field_error(path: &Path, e: serde_json::Error) -> anyhow::Error {
    anyhow!("{}: {e}", path.display())
}

impl ModelDir {
    pub fn open(dir: impl AsRef<Path>) -> Result<ModelDir> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| read_json_field_error(&path, e))?;
        manifest
            .spec()
            .with_context(|| format!("{}", path.display()))?;
        for s in &manifest.snapshots {
            if !s.file.contains(&s.epoch.to_string()) {
                bail!(
                    "{}: snapshot file {:?} does not contain its epoch {}",
                    path.display(),
                    s.file,
                    s.epoch
                );
            }
            if s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                bail!(
                    "{}: snapshot file {:?} must be a plain file name",
                    path.display(),
                    s.file
                );
            }
        }
        Ok(ModelDir { dir, manifest })
    }

    pub fn name(&self) -> String {
        crate::files::name_of(&self.dir)
    }

    pub fn snapshot_path(&self, epoch: Option<u32>) -> Result<PathBuf> {
        Ok(self.dir.join(&self.manifest.snapshot(epoch)?.file))
    }

    /// Build the network and load a snapshot's weights (default: the last).
    pub fn load(&self, epoch: Option<u32>, device: Device) -> Result<Net> {
        let spec = self.manifest.spec()?;
        let mut net = Net::new(spec, device)?;
        let path = self.snapshot_path(epoch)?;
        load_weights(&mut net, &path)?;
        net.for_inference();
        net.bgr = self.manifest.bgr;
        Ok(net)
    }

    /// Write the manifest atomically.
    pub fn save_manifest(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.manifest)?;
        write_atomic(&self.dir.join("manifest.json"), text.as_bytes())
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = crate::files::name_of(path);
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Load weights into `net`, checking every tensor's presence and shape.
/// fp16/bf16/fp64 files are converted to the network's fp32.
pub fn load_weights(net: &mut Net, path: &Path) -> Result<()> {
    if !path.exists() {
        bail!("snapshot file {} does not exist", path.display());
    }
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| anyhow!("{}: not a readable safetensors file ({e})", path.display()))?;
    let found: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut vars = net.named_tensors();
    for (name, var) in &vars {
        let t = found.get(name).ok_or_else(|| {
            anyhow!(
                "{}: missing tensor {name} (expected shape {:?})",
                path.display(),
                var.size()
            )
        })?;
        if t.size() != var.size() {
            bail!(
                "{}: tensor {name}: expected shape {:?}, found {:?}",
                path.display(),
                var.size(),
                t.size()
            );
        }
        if !matches!(
            t.kind(),
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            bail!(
                "{}: tensor {name}: expected a float dtype, found {:?}",
                path.display(),
                t.kind()
            );
        }
    }
    tch::no_grad(|| {
        for (name, var) in &mut vars {
            let src = found[name.as_str()]
                .to_kind(Kind::Float)
                .to_device(var.device());
            var.copy_(&src);
        }
    });
    Ok(())
}

/// Save the network's weights atomically, as fp32 or fp16.
pub fn save_weights(net: &Net, path: &Path, half: bool) -> Result<()> {
    let vars = net.named_tensors();
    let kind = if half { Kind::Half } else { Kind::Float };
    let vars: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.detach().to_device(Device::Cpu).to_kind(kind).contiguous(),
            )
        })
        .collect();
    let tmp = tmp_path(path);
    Tensor::write_safetensors(&vars, &tmp)
        .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

pub fn snapshot_file_name(epoch: u32) -> String {
    format!("epoch-{epoch:03}.safetensors")
}

/// Create a model folder with randomly initialised snapshots (for tests and
/// for trying the tool before a model is trained).
pub fn create_random(
    dir: &Path,
    spec: &NetSpec,
    classes: Vec<ClassInfo>,
    epochs: &[u32],
    seed: i64,
) -> Result<ModelDir> {
    if classes.len() as i64 != spec.num_classes() {
        bail!(
            "classes: expected {} entries, found {}",
            spec.num_classes(),
            classes.len()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut snapshots = vec![];
    for (i, &epoch) in epochs.iter().enumerate() {
        tch::manual_seed(seed + i as i64);
        let mut net = Net::new(spec.clone(), Device::Cpu)?;
        net.init(crate::net::Init::Kaiming);
        let file = snapshot_file_name(epoch);
        save_weights(&net, &dir.join(&file), false)?;
        snapshots.push(Snapshot {
            epoch,
            file,
            metrics: Metrics::default(),
        });
    }
    let mut manifest = Manifest::for_spec(spec, classes);
    manifest.snapshots = snapshots;
    manifest.training = Some(serde_json::json!({"random_init": true, "seed": seed}));
    let m = ModelDir {
        dir: dir.to_path_buf(),
        manifest,
    };
    m.save_manifest()?;
    Ok(m)
}
