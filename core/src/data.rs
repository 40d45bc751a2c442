//! Image folders (ImageFolder layout: `<split>/<class id>/<images>`), decoded
//! in parallel off the training thread. A dataset that fits the memory budget
//! is decoded once and cached as u8; a larger one is streamed per batch.

use crate::checkpoint::ClassInfo;
use crate::preprocess;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const EXTS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// An image file by its extension, or an image of zfvis's store (named by
/// its content hash, no extension), so `data/images` is a dataset too.
pub fn is_image(p: &Path) -> bool {
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) => EXTS.contains(&e.to_ascii_lowercase().as_str()),
        None => p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(crate::store::valid_id),
    }
}

/// Every image file under `dir`, recursively, sorted.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in
            std::fs::read_dir(&d).with_context(|| format!("cannot read folder {}", d.display()))?
        {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Deserialize)]
struct ClassJson {
    wnid: String,
    name: String,
}

/// Classes of a dataset: folder names of `root/train` (or `root`), sorted;
/// names from `root/classes.json` (`[{index, wnid, name}]`) when present.
pub fn classes(root: &Path) -> Result<Vec<ClassInfo>> {
    let train = if root.join("train").is_dir() {
        root.join("train")
    } else {
        root.to_path_buf()
    };
    let mut ids: Vec<String> = std::fs::read_dir(&train)
        .with_context(|| format!("cannot read folder {}", train.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    if ids.is_empty() {
        bail!("{}: no class folders", train.display());
    }
    let names: Vec<ClassJson> = match std::fs::read_to_string(root.join("classes.json")) {
        Ok(t) => {
            serde_json::from_str(&t).with_context(|| format!("{}/classes.json", root.display()))?
        }
        Err(_) => vec![],
    };
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(index, id)| {
            let name = names
                .iter()
                .find(|c| c.wnid == id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| id.clone());
            ClassInfo { index, id, name }
        })
        .collect())
}

/// The classes named in `wanted` (WordNet ids or names, case-insensitive; or
/// one path to a file listing them, one a line), re-indexed 0.. in the
/// dataset's sorted order. An empty `wanted` keeps every class.
pub fn select_classes(all: Vec<ClassInfo>, wanted: &[String]) -> Result<Vec<ClassInfo>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    let listed: Vec<String> = match wanted {
        [one] if Path::new(one).is_file() => std::fs::read_to_string(one)
            .with_context(|| format!("cannot read class list {one}"))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect(),
        _ => wanted.iter().map(|w| w.trim().to_string()).collect(),
    };
    let mut keep = vec![false; all.len()];
    for w in &listed {
        let hit = all
            .iter()
            .position(|c| c.id.eq_ignore_ascii_case(w) || c.name.eq_ignore_ascii_case(w));
        match hit {
            Some(i) => keep[i] = true,
            None => bail!(
                "unknown class {w:?}: the dataset's classes are {}",
                all.iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(all
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .enumerate()
        .map(|(index, (c, _))| ClassInfo { index, ..c })
        .collect())
}

/// (path, class index) of every image in `split_dir/<class id>/`, for the
/// given classes. Folders of unknown classes are returned separately.
pub type Labelled = (Vec<(PathBuf, i64)>, Vec<String>);

pub fn labelled(split_dir: &Path, classes: &[ClassInfo]) -> Result<Labelled> {
    let mut items = vec![];
    let mut unknown = vec![];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(split_dir)
        .with_context(|| format!("cannot read folder {}", split_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let id = d.file_name().unwrap().to_string_lossy().into_owned();
        match classes.iter().find(|c| c.id == id) {
            Some(c) => {
                for p in list_images(&d)? {
                    items.push((p, c.index as i64));
                }
            }
            None => unknown.push(id),
        }
    }
    Ok((items, unknown))
}

/// Images decoded to `side`x`side` RGB8 (shorter side resized to `resize`,
/// centre crop `side`), HWC, back to back.
pub struct Decoded {
    pub side: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
    pub skipped: usize,
}

/// Decode in parallel; unreadable images are skipped with a warning and counted.
pub fn decode_all(
    items: &[(PathBuf, i64)],
    crop: &Crop<'_>,
    side: u32,
    progress: &indicatif::ProgressBar,
) -> Decoded {
    let n = side as usize * side as usize * 3;
    let skipped = AtomicUsize::new(0);
    let out: Vec<Option<(Vec<u8>, i64)>> = items
        .par_iter()
        .map(|(p, y)| {
            let r = decode_one(p, crop);
            progress.inc(1);
            match r {
                Ok(img) => Some((img, *y)),
                Err(e) => {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    progress.suspend(|| eprintln!("warning: skipping {}: {e}", p.display()));
                    None
                }
            }
        })
        .collect();
    let mut pixels = Vec::with_capacity(out.len() * n);
    let mut labels = Vec::with_capacity(out.len());
    for (img, y) in out.into_iter().flatten() {
        pixels.extend_from_slice(&img);
        labels.push(y);
    }
    Decoded {
        side: side as usize,
        pixels,
        labels,
        skipped: skipped.into_inner(),
    }
}

/// How a decoded image becomes the `side`x`side` crop kept.
pub type Crop<'a> = dyn Fn(&image::RgbImage) -> image::RgbImage + Sync + 'a;

/// The shorter side to `side`, centre crop (the training pipeline).
pub fn square(side: u32) -> impl Fn(&image::RgbImage) -> image::RgbImage + Sync {
    move |img| preprocess::model_crop(img, side)
}

pub fn decode_one(p: &Path, crop: &Crop<'_>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(p)?;
    let img = preprocess::decode(&bytes)?;
    Ok(crop(&img).into_raw())
}

impl Decoded {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.side * self.side * 3;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Write a `crop`x`crop` window at (oy, ox) of an HWC u8 image into a CHW f32
/// buffer, normalised, optionally mirrored left-right.
#[allow(clippy::too_many_arguments)]
pub fn write_crop(
    src: &[u8],
    side: usize,
    oy: usize,
    ox: usize,
    crop: usize,
    flip: bool,
    mean: &[f64; 3],
    std: &[f64; 3],
    dst: &mut [f32],
) {
    let plane = crop * crop;
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c] as f32));
    let shift: [f32; 3] = std::array::from_fn(|c| (mean[c] / std[c]) as f32);
    for y in 0..crop {
        let row = &src[((oy + y) * side + ox) * 3..];
        for x in 0..crop {
            let sx = if flip { crop - 1 - x } else { x };
            for c in 0..3 {
                dst[c * plane + y * crop + x] = row[sx * 3 + c] as f32 * scale[c] - shift[c];
            }
        }
    }
}
