//! What the method tests share: the maps' distances, a model's network
//! with the dog photo, the bundled ZFNet and imported torchvision networks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::import::{import, ImportOptions};
use zfvis_core::net::Net;
use zfvis_core::tch::{Device, Kind, Tensor};
use zfvis_dev::testing::{python, root, tempdir, TempDir};

/// ||a - b|| / ||b||: a map's raw values against the reference's (its
/// scale too, which `--out-raw` writes; cosine sees only the direction).
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    ((&a - &b).norm() / (b.norm() + 1e-30)).double_value(&[])
}

pub fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_kind(Kind::Double).reshape([-1]),
        b.to_kind(Kind::Double).reshape([-1]),
    );
    (a.dot(&b) / (a.norm() * b.norm() + 1e-30)).double_value(&[])
}

/// The model's network and the dog photo through its pipeline, [1, 3, S, S].
pub fn open(dir: &Path) -> (Net, Tensor) {
    let m = ModelDir::open(dir).unwrap();
    let net = m.load(None, Device::Cpu).unwrap();
    let bytes = std::fs::read(root().join("examples/dog.jpg")).unwrap();
    let img = zfvis_core::preprocess::decode(&bytes).unwrap();
    let pre = m.manifest.preprocess();
    (net, pre.tensor(&pre.crop(&img)).unsqueeze(0))
}

pub fn bundled_zfnet() -> (PathBuf, PathBuf) {
    let dir = root().join("models/zfnet-woofnette");
    let m = ModelDir::open(&dir).unwrap();
    let snap = m.snapshot_path(None).unwrap();
    (dir, snap)
}

/// A torchvision network with random weights, saved by PyTorch and imported.
pub fn imported(arch: &str) -> (Imported, PathBuf) {
    imported_at(arch, None)
}

/// An imported network's folder, removed (with the saved `.pth` beside it)
/// when dropped.
pub struct Imported {
    out: PathBuf,
    _tmp: TempDir,
}

impl std::ops::Deref for Imported {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.out
    }
}

impl AsRef<Path> for Imported {
    fn as_ref(&self) -> &Path {
        &self.out
    }
}

/// [`imported`] at another input size (the network's own pipeline otherwise).
pub fn imported_at(arch: &str, input_size: Option<i64>) -> (Imported, PathBuf) {
    let dir = tempdir(arch);
    let pth = dir.join("model.pth");
    python("import_ref.py", &["save", arch, pth.to_str().unwrap()]);
    let out = dir.join("imported");
    import(&ImportOptions {
        from: pth.clone(),
        out: out.clone(),
        arch: Some(format!("torchvision:{arch}")),
        input_size,
        ..Default::default()
    })
    .unwrap();
    (Imported { out, _tmp: dir }, pth)
}
