//! The engine behind the server: loaded snapshots and a bounded cache of
//! forward traces, so that clicking maps on one image never reruns the
//! forward pass. It lives on one worker thread (tensors are not Sync) and
//! answers with plain data and PNG bytes.

use crate::checkpoint::ModelDir;
use crate::deconv::{self, Keep, ProjectRequest};
use crate::net::{Net, Trace};
use crate::occlusion;
use crate::predict::{self, Prediction};
use crate::preprocess;
use crate::store::ImageStore;
use image::RgbImage;
use lru::LruCache;
use serde::Serialize;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::rc::Rc;
use tch::{Device, Kind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn bad(msg: impl Into<String>) -> Error {
    Error::BadInput(msg.into())
}

/// A model name as it appears in URLs: a folder directly under the models dir.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[derive(Serialize, Clone)]
pub struct LayerInfo {
    pub layer: usize,
    pub maps: i64,
    pub size: i64,
}

#[derive(Serialize, Clone)]
pub struct SnapshotInfo {
    pub epoch: u32,
    pub metrics: crate::checkpoint::Metrics,
}

#[derive(Serialize, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub width: f64,
    pub input_size: i64,
    pub classes: usize,
    /// Class names by index.
    pub class_names: Vec<String>,
    pub snapshots: Vec<SnapshotInfo>,
    pub layers: Vec<LayerInfo>,
}

pub struct Traced {
    pub crop: RgbImage,
    /// The normalised crop, [1, 3, S, S].
    pub input: tch::Tensor,
    pub trace: Trace,
}

#[derive(Serialize)]
pub struct LiveOcclusion {
    pub x: i64,
    pub y: i64,
    pub size: i64,
    pub class: i64,
    pub class_prob: f64,
    pub strongest_map: i64,
    pub map_activation: f64,
    pub top: Vec<Prediction>,
}

#[derive(Serialize)]
pub struct MapInfo {
    pub map: i64,
    pub peak: f64,
    pub y: i64,
    pub x: i64,
}

/// All feature maps of one layer: peaks and a sprite of tiles, `cols` per row.
#[derive(Serialize)]
pub struct MapsResult {
    pub layer: usize,
    pub size: i64,
    pub cols: i64,
    pub maps: Vec<MapInfo>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

#[derive(Serialize, Clone)]
pub struct Field {
    pub y0: i64,
    pub x0: i64,
    pub y1: i64,
    pub x1: i64,
}

#[derive(Serialize)]
pub struct ProjectionResult {
    pub layer: usize,
    pub map: i64,
    pub mode: &'static str,
    pub value: f64,
    pub y: i64,
    pub x: i64,
    pub field: Field,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// The 9 maps of a layer with the highest peaks, projected; sprite 3x3.
#[derive(Serialize)]
pub struct Top9Result {
    pub layer: usize,
    pub tile: i64,
    pub items: Vec<ProjectionResult>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

pub struct Engine {
    models_dir: PathBuf,
    pub store: ImageStore,
    device: Device,
    nets: LruCache<(String, u32), Rc<Net>>,
    traces: LruCache<(String, u32, String), Rc<Traced>>,
    occlusions: LruCache<String, Rc<occlusion::OcclusionResult>>,
    /// How many forward passes ran (for tests and stats).
    pub forwards: u64,
}

pub fn png(w: u32, h: u32, rgb: Vec<u8>) -> Vec<u8> {
    let img = RgbImage::from_raw(w, h, rgb).expect("buffer size");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png encoding to memory");
    out.into_inner()
}

impl Engine {
    pub fn new(models_dir: PathBuf, store: ImageStore, device: Device, traces: usize) -> Engine {
        Engine {
            models_dir,
            store,
            device,
            nets: LruCache::new(NonZeroUsize::new(6).unwrap()),
            traces: LruCache::new(NonZeroUsize::new(traces.max(1)).unwrap()),
            occlusions: LruCache::new(NonZeroUsize::new(16).unwrap()),
            forwards: 0,
        }
    }

    pub fn model(&self, name: &str) -> Result<ModelDir> {
        open_model(&self.models_dir, name)
    }

    fn net(&mut self, model: &str, epoch: u32) -> Result<Rc<Net>> {
        let key = (model.to_string(), epoch);
        if let Some(n) = self.nets.get(&key) {
            return Ok(n.clone());
        }
        let m = self.model(model)?;
        m.manifest
            .snapshot(Some(epoch))
            .map_err(|e| Error::NotFound(e.to_string()))?;
        let net = Rc::new(m.load(Some(epoch), self.device)?);
        self.nets.put(key, net.clone());
        Ok(net)
    }

    /// The forward trace of a stored image (cached).
    pub fn traced(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
    ) -> Result<(Rc<Net>, Rc<Traced>)> {
        let net = self.net(model, epoch)?;
        let key = (model.to_string(), epoch, image.to_string());
        if let Some(t) = self.traces.get(&key) {
            return Ok((net, t.clone()));
        }
        let crop = self.crop(model, image)?;
        let m = self.model(model)?.manifest;
        let x = preprocess::to_tensor(&crop, &m.mean, &m.std).unsqueeze(0);
        let trace = net.trace(&x);
        self.forwards += 1;
        let t = Rc::new(Traced {
            crop,
            input: x,
            trace,
        });
        self.traces.put(key, t.clone());
        Ok((net, t))
    }

    /// The crop the model sees.
    pub fn crop(&self, model: &str, image: &str) -> Result<RgbImage> {
        let m = self.model(model)?;
        let bytes = self.image_bytes(image)?;
        let img = preprocess::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        Ok(preprocess::model_crop(&img, m.manifest.input_size as u32))
    }

    pub fn image_bytes(&self, image: &str) -> Result<Vec<u8>> {
        if !crate::store::valid_id(image) {
            return Err(bad(format!(
                "malformed image id {image:?}: expected 64 hex digits"
            )));
        }
        self.store
            .get(image)
            .ok_or_else(|| Error::NotFound(format!("unknown image {image}")))
    }

    pub fn crop_png(&self, model: &str, image: &str) -> Result<Vec<u8>> {
        let c = self.crop(model, image)?;
        let (w, h) = c.dimensions();
        Ok(png(w, h, c.into_raw()))
    }

    pub fn predictions(&mut self, model: &str, epoch: u32, image: &str) -> Result<Vec<Prediction>> {
        let m = self.model(model)?;
        let (_, t) = self.traced(model, epoch, image)?;
        Ok(predict::top_k(&m.manifest, &t.trace, 0, 5))
    }

    fn check_layer(layer: usize) -> Result<()> {
        if !(1..=5).contains(&layer) {
            return Err(bad(format!(
                "layer {layer} is out of range: expected 1..=5"
            )));
        }
        Ok(())
    }

    pub fn maps(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        layer: usize,
    ) -> Result<MapsResult> {
        Self::check_layer(layer)?;
        let (_, t) = self.traced(model, epoch, image)?;
        let maps = t.trace.maps[layer - 1].get(0).to_device(Device::Cpu);
        let (c, s) = (maps.size()[0], maps.size()[1]);
        let peaks = maps.reshape([c, -1]).max_dim(1, false);
        let vals: Vec<f32> =
            Vec::try_from(&peaks.0).map_err(|e: tch::TchError| Error::Internal(e.into()))?;
        let idx: Vec<i64> =
            Vec::try_from(&peaks.1).map_err(|e: tch::TchError| Error::Internal(e.into()))?;
        let cols = (c as f64).sqrt().ceil() as i64;
        let rows = (c + cols - 1) / cols;
        // Each tile scaled by its own peak; dead maps stay black.
        let norm = (&maps / peaks.0.clamp_min(1e-12).view([c, 1, 1]) * 255.0)
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        let tiles: Vec<u8> = Vec::try_from(&norm.reshape([-1]))
            .map_err(|e: tch::TchError| Error::Internal(e.into()))?;
        let (w, h) = ((cols * s) as u32, (rows * s) as u32);
        let mut rgb = vec![40u8; (w * h * 3) as usize];
        for k in 0..c {
            let (ty, tx) = ((k / cols) * s, (k % cols) * s);
            for y in 0..s {
                for x in 0..s {
                    let v = tiles[(k * s * s + y * s + x) as usize];
                    let o = (((ty + y) * w as i64 + tx + x) * 3) as usize;
                    rgb[o..o + 3].copy_from_slice(&[v, v, v]);
                }
            }
        }
        let infos = (0..c as usize)
            .map(|k| MapInfo {
                map: k as i64,
                peak: vals[k] as f64,
                y: idx[k] / s,
                x: idx[k] % s,
            })
            .collect();
        Ok(MapsResult {
            layer,
            size: s,
            cols,
            maps: infos,
            sprite_png: png(w, h, rgb),
        })
    }

    pub fn projection(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        layer: usize,
        map: i64,
        keep: Keep,
    ) -> Result<ProjectionResult> {
        let net = self.net(model, epoch)?;
        deconv::check_layer_map(&net, layer, map).map_err(|e| bad(e.to_string()))?;
        let (net, t) = self.traced(model, epoch, image)?;
        let mut p = deconv::project(&net, &t.trace, &[ProjectRequest { layer, map, keep }])
            .map_err(|e| bad(e.to_string()))?;
        Ok(result(p.remove(0), keep))
    }

    pub fn top9(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        layer: usize,
    ) -> Result<Top9Result> {
        Self::check_layer(layer)?;
        let (net, t) = self.traced(model, epoch, image)?;
        let maps = deconv::top_maps(&t.trace, layer, 9);
        let reqs: Vec<ProjectRequest> = maps
            .iter()
            .map(|&(map, _)| ProjectRequest {
                layer,
                map,
                keep: Keep::Strongest,
            })
            .collect();
        let ps = deconv::project(&net, &t.trace, &reqs).map_err(|e| bad(e.to_string()))?;
        let tile = net.spec.input_size;
        let (w, h) = (
            (3 * tile) as u32,
            (tile * ps.len().div_ceil(3) as i64) as u32,
        );
        let mut rgb = vec![128u8; (w * h * 3) as usize];
        let items = ps
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let img = deconv::to_image(&p.pixels);
                let (ty, tx) = ((i as i64 / 3) * tile, (i as i64 % 3) * tile);
                for (x, y, px) in img.enumerate_pixels() {
                    let o = (((ty + y as i64) * w as i64 + tx + x as i64) * 3) as usize;
                    rgb[o..o + 3].copy_from_slice(&px.0);
                }
                describe(&p, Keep::Strongest)
            })
            .collect();
        Ok(Top9Result {
            layer,
            tile,
            items,
            sprite_png: png(w, h, rgb),
        })
    }
}

impl Engine {
    fn check_square(net: &Net, size: i64) -> Result<()> {
        let s = net.spec.input_size;
        if size < 1 || size > s {
            return Err(bad(format!(
                "the occluder size must be 1..={s} px (the input size), got {size}"
            )));
        }
        Ok(())
    }

    fn check_class(&self, model: &str, class: Option<i64>) -> Result<()> {
        let n = self.model(model)?.manifest.classes.len() as i64;
        match class {
            Some(c) if c < 0 || c >= n => Err(bad(format!(
                "class {c} is out of range: the model has classes 0..{}",
                n - 1
            ))),
            _ => Ok(()),
        }
    }

    /// Full occlusion maps (Fig. 7 b, d, e), cached per request.
    pub fn occlusion(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        size: i64,
        stride: i64,
        class: Option<i64>,
    ) -> Result<Rc<occlusion::OcclusionResult>> {
        let key = format!("{model}/{epoch}/{image}/{size}/{stride}/{class:?}");
        if let Some(r) = self.occlusions.get(&key) {
            return Ok(r.clone());
        }
        let net = self.net(model, epoch)?;
        Self::check_square(&net, size)?;
        if stride < 1 {
            return Err(bad(format!("stride must be at least 1, got {stride}")));
        }
        self.check_class(model, class)?;
        let (net, t) = self.traced(model, epoch, image)?;
        let req = occlusion::OcclusionRequest {
            size,
            stride,
            class,
            ..Default::default()
        };
        let r = Rc::new(occlusion::occlude(&net, &t.input, &req).map_err(|e| bad(e.to_string()))?);
        self.occlusions.put(key, r.clone());
        Ok(r)
    }

    /// One heatmap of a full occlusion result as PNG over the crop.
    pub fn occlusion_png(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        size: i64,
        stride: i64,
        class: Option<i64>,
        kind: &str,
    ) -> Result<Vec<u8>> {
        let r = self.occlusion(model, epoch, image, size, stride, class)?;
        let (_, t) = self.traced(model, epoch, image)?;
        let maps = occlusion::heatmaps(&t.crop, &r);
        let img = maps
            .into_iter()
            .find(|(n, _)| *n == kind)
            .map(|(_, i)| i)
            .ok_or_else(|| {
                bad(format!(
                    "kind must be map_activation, class_prob or top_label, got {kind:?}"
                ))
            })?;
        let (w, h) = img.dimensions();
        Ok(png(w, h, img.into_raw()))
    }

    fn check_position(net: &Net, x: i64, y: i64, size: i64) -> Result<()> {
        Self::check_square(net, size)?;
        let s = net.spec.input_size;
        if x < 0 || y < 0 || x + size > s || y + size > s {
            return Err(bad(format!(
                "the square at x {x}, y {y} of size {size} does not fit the {s}x{s} input"
            )));
        }
        Ok(())
    }

    /// One occluder position (the live view): top-5, a class's probability
    /// and the unoccluded strongest conv5 map's summed activation.
    #[allow(clippy::too_many_arguments)]
    pub fn live_occlusion(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        x: i64,
        y: i64,
        size: i64,
        class: Option<i64>,
    ) -> Result<LiveOcclusion> {
        let net = self.net(model, epoch)?;
        Self::check_position(&net, x, y, size)?;
        self.check_class(model, class)?;
        let m = self.model(model)?;
        let (net, t) = self.traced(model, epoch, image)?;
        let map = occlusion::strongest_map(&t.trace);
        let class =
            class.unwrap_or_else(|| t.trace.logits.get(0).argmax(0, false).int64_value(&[]));
        let r = occlusion::live(&net, &t.input, y, x, size, map);
        Ok(LiveOcclusion {
            x,
            y,
            size,
            class,
            class_prob: r.probs.double_value(&[class]),
            strongest_map: map,
            map_activation: r.map_activation,
            top: predict::top_k_of(&m.manifest, &r.probs, 5),
        })
    }

    /// (c) of Fig. 7: the unoccluded strongest conv5 map's projection with
    /// the occluder at (x, y).
    pub fn occluded_projection(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        x: i64,
        y: i64,
        size: i64,
    ) -> Result<ProjectionResult> {
        let net = self.net(model, epoch)?;
        Self::check_position(&net, x, y, size)?;
        let (net, t) = self.traced(model, epoch, image)?;
        let map = occlusion::strongest_map(&t.trace);
        let xo = occlusion::occluded(&t.input, y, x, size);
        let trace = net.trace(&xo);
        let mut p = deconv::project(
            &net,
            &trace,
            &[ProjectRequest {
                layer: 5,
                map,
                keep: Keep::Strongest,
            }],
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(result(p.remove(0), Keep::Strongest))
    }
}

impl Engine {
    pub fn invariance(
        &mut self,
        model: &str,
        epoch: u32,
        image: &str,
        steps: usize,
        class: Option<i64>,
    ) -> Result<crate::invariance::InvarianceResult> {
        self.net(model, epoch)?;
        self.check_class(model, class)?;
        let (net, t) = self.traced(model, epoch, image)?;
        crate::invariance::invariance(
            &net,
            &t.input,
            &crate::invariance::InvarianceRequest { steps, class },
        )
        .map_err(|e| bad(e.to_string()))
    }

    pub fn correspondence(
        &mut self,
        model: &str,
        epoch: u32,
        set: &str,
        size: i64,
        seed: u64,
    ) -> Result<crate::correspondence::CorrespondenceResult> {
        use crate::correspondence::{self as corr, CorrImage, CorrespondenceRequest};
        let net = self.net(model, epoch)?;
        let m = self.model(model)?.manifest;
        let set = self
            .store
            .get_set(set)
            .ok_or_else(|| Error::NotFound(format!("unknown set {set}")))?;
        let s = m.input_size as u32;
        let mut images = vec![];
        for im in &set.images {
            let bytes = self.image_bytes(&im.id)?;
            let img = preprocess::decode(&bytes).map_err(|e| bad(e.to_string()))?;
            let crop = preprocess::model_crop(&img, s);
            let parts = im
                .parts
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        preprocess::map_point(img.dimensions(), s, (p[0], p[1])),
                    )
                })
                .collect();
            images.push(CorrImage {
                label: im.id.clone(),
                input: preprocess::to_tensor(&crop, &m.mean, &m.std),
                parts,
            });
        }
        corr::correspondence(&net, &images, &CorrespondenceRequest { size, seed })
            .map_err(|e| bad(e.to_string()))
    }
}

/// One dataset patch: an index entry with its receptive field.
#[derive(Serialize, Clone)]
pub struct Patch {
    pub image: String,
    pub y: i64,
    pub x: i64,
    pub value: f64,
    pub field: Field,
}

/// Fig. 2 for one map: 9 projections (row 0 of the sprite) beside their
/// image patches (row 1), `tile` px each.
#[derive(Serialize)]
pub struct DatasetTop9 {
    pub layer: usize,
    pub map: i64,
    pub epoch: u32,
    pub tile: u32,
    pub items: Vec<Patch>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

/// Fig. 4: rows = maps, columns = snapshots; each cell the projection of the
/// map's strongest activation over the dataset at that epoch.
#[derive(Serialize)]
pub struct Timeline {
    pub layer: usize,
    pub maps: Vec<i64>,
    pub epochs: Vec<u32>,
    pub tile: u32,
    /// Per column: null, or why it could not be drawn.
    pub errors: Vec<Option<String>>,
    /// cells[row][col]
    pub cells: Vec<Vec<Option<Patch>>>,
    #[serde(skip)]
    pub projections_png: Vec<u8>,
    #[serde(skip)]
    pub patches_png: Vec<u8>,
}

pub const TILE: u32 = 96;

fn paste(dst: &mut RgbImage, src: &RgbImage, x: u32, y: u32) {
    image::imageops::replace(dst, src, x as i64, y as i64);
}

impl Engine {
    /// Projection and image patch of one index entry, `TILE` px each.
    fn entry_patches(
        &self,
        net: &Net,
        model: &ModelDir,
        dataset: &std::path::Path,
        layer: usize,
        map: i64,
        e: &crate::index::Entry,
    ) -> Result<(Patch, RgbImage, RgbImage)> {
        let path = crate::index::resolve(dataset, &e.image).map_err(|x| bad(x.to_string()))?;
        let bytes =
            std::fs::read(&path).map_err(|x| Error::NotFound(format!("{}: {x}", e.image)))?;
        let img = preprocess::decode(&bytes).map_err(|x| bad(format!("{}: {x}", e.image)))?;
        let crop = preprocess::model_crop(&img, model.manifest.input_size as u32);
        let x =
            preprocess::to_tensor(&crop, &model.manifest.mean, &model.manifest.std).unsqueeze(0);
        let trace = net.trace(&x);
        let p = deconv::project(
            net,
            &trace,
            &[ProjectRequest {
                layer,
                map,
                keep: Keep::At(e.y, e.x),
            }],
        )
        .map_err(|x| bad(x.to_string()))?
        .remove(0);
        let (y0, x0, y1, x1) = p.field;
        let proj = deconv::to_image(&p.pixels);
        let cut = |im: &RgbImage| {
            let c = image::imageops::crop_imm(
                im,
                x0 as u32,
                y0 as u32,
                (x1 - x0 + 1) as u32,
                (y1 - y0 + 1) as u32,
            )
            .to_image();
            image::imageops::resize(&c, TILE, TILE, image::imageops::FilterType::Triangle)
        };
        let patch = Patch {
            image: e.image.clone(),
            y: e.y,
            x: e.x,
            value: e.value,
            field: Field { y0, x0, y1, x1 },
        };
        Ok((patch, cut(&proj), cut(&crop)))
    }

    fn snapshot_index(
        &self,
        model: &ModelDir,
        dataset: &std::path::Path,
        epoch: u32,
    ) -> Result<crate::index::SnapshotIndex> {
        let path = crate::index::index_path(model, dataset, epoch)?;
        if !path.exists() {
            return Err(Error::NotFound(format!(
                "the dataset index of epoch {epoch} is not built yet"
            )));
        }
        Ok(crate::index::load(&path)?)
    }

    pub fn dataset_top9(
        &mut self,
        model: &str,
        epoch: u32,
        dataset: &std::path::Path,
        layer: usize,
        map: i64,
    ) -> Result<DatasetTop9> {
        let net = self.net(model, epoch)?;
        deconv::check_layer_map(&net, layer, map).map_err(|e| bad(e.to_string()))?;
        let m = self.model(model)?;
        let idx = self.snapshot_index(&m, dataset, epoch)?;
        let entries = crate::index::top9(&idx, layer, map)
            .map_err(|e| bad(e.to_string()))?
            .to_vec();
        let mut sprite = RgbImage::from_pixel(TILE * 9, TILE * 2, image::Rgb([128, 128, 128]));
        let mut items = vec![];
        for (i, e) in entries.iter().enumerate() {
            let (patch, proj, img) = self.entry_patches(&net, &m, dataset, layer, map, e)?;
            paste(&mut sprite, &proj, i as u32 * TILE, 0);
            paste(&mut sprite, &img, i as u32 * TILE, TILE);
            items.push(patch);
        }
        let (w, h) = sprite.dimensions();
        Ok(DatasetTop9 {
            layer,
            map,
            epoch,
            tile: TILE,
            items,
            sprite_png: png(w, h, sprite.into_raw()),
        })
    }

    /// One image, one map, every snapshot: a row of projections (strongest
    /// activation), `TILE` px each; a snapshot that fails stays grey.
    pub fn evolution_png(
        &mut self,
        model: &str,
        image: &str,
        layer: usize,
        map: i64,
    ) -> Result<Vec<u8>> {
        let m = self.model(model)?;
        let net = Net::new(m.manifest.spec()?, Device::Cpu)?;
        deconv::check_layer_map(&net, layer, map).map_err(|e| bad(e.to_string()))?;
        self.image_bytes(image)?;
        let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
        let mut row = RgbImage::from_pixel(
            TILE * epochs.len().max(1) as u32,
            TILE,
            image::Rgb([200, 200, 200]),
        );
        for (i, &epoch) in epochs.iter().enumerate() {
            let Ok((net, t)) = self.traced(model, epoch, image) else {
                continue;
            };
            let req = ProjectRequest {
                layer,
                map,
                keep: Keep::Strongest,
            };
            let Ok(mut p) = deconv::project(&net, &t.trace, &[req]) else {
                continue;
            };
            let img = deconv::to_image(&p.remove(0).pixels);
            let small =
                image::imageops::resize(&img, TILE, TILE, image::imageops::FilterType::Triangle);
            paste(&mut row, &small, i as u32 * TILE, 0);
        }
        let (w, h) = row.dimensions();
        Ok(png(w, h, row.into_raw()))
    }

    pub fn timeline(
        &mut self,
        model: &str,
        dataset: &std::path::Path,
        layer: usize,
        maps: &[i64],
    ) -> Result<Timeline> {
        let m = self.model(model)?;
        if !(1..=5).contains(&layer) {
            return Err(bad(format!(
                "layer {layer} is out of range: expected 1..=5"
            )));
        }
        if maps.is_empty() || maps.len() > 32 {
            return Err(bad(format!("choose 1 to 32 maps, got {}", maps.len())));
        }
        let n_maps = m.manifest.spec()?.blocks()[layer - 1].out_c;
        if let Some(&bad_map) = maps.iter().find(|&&k| k < 0 || k >= n_maps) {
            return Err(bad(format!(
                "map {bad_map} is out of range: layer {layer} has maps 0..{}",
                n_maps - 1
            )));
        }
        let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
        let (rows, cols) = (maps.len() as u32, epochs.len() as u32);
        let mut projs =
            RgbImage::from_pixel(TILE * cols.max(1), TILE * rows, image::Rgb([235, 235, 235]));
        let mut pats = projs.clone();
        let mut cells = vec![vec![None; epochs.len()]; maps.len()];
        let mut errors = vec![None; epochs.len()];
        for (c, &epoch) in epochs.iter().enumerate() {
            let col = (|| -> Result<()> {
                let net = self.net(model, epoch)?;
                let idx = self.snapshot_index(&m, dataset, epoch)?;
                for (r, &map) in maps.iter().enumerate() {
                    let Some(e) = crate::index::top9(&idx, layer, map)
                        .map_err(|e| bad(e.to_string()))?
                        .first()
                    else {
                        continue;
                    };
                    let (patch, proj, img) =
                        self.entry_patches(&net, &m, dataset, layer, map, e)?;
                    paste(&mut projs, &proj, c as u32 * TILE, r as u32 * TILE);
                    paste(&mut pats, &img, c as u32 * TILE, r as u32 * TILE);
                    cells[r][c] = Some(patch);
                }
                Ok(())
            })();
            if let Err(e) = col {
                errors[c] = Some(e.to_string());
            }
        }
        let (w, h) = projs.dimensions();
        Ok(Timeline {
            layer,
            maps: maps.to_vec(),
            epochs,
            tile: TILE,
            errors,
            cells,
            projections_png: png(w, h, projs.into_raw()),
            patches_png: png(w, h, pats.into_raw()),
        })
    }
}

/// A projection's description and its PNG.
fn result(p: deconv::Projection, keep: Keep) -> ProjectionResult {
    let (w, h, rgb) = deconv::to_rgb8(&p.pixels);
    ProjectionResult {
        png: png(w, h, rgb),
        ..describe(&p, keep)
    }
}

/// A projection's description without an image.
fn describe(p: &deconv::Projection, keep: Keep) -> ProjectionResult {
    ProjectionResult {
        layer: p.layer,
        map: p.map,
        mode: if keep == Keep::All {
            "all"
        } else {
            "strongest"
        },
        value: p.value,
        y: p.y,
        x: p.x,
        field: Field {
            y0: p.field.0,
            x0: p.field.1,
            y1: p.field.2,
            x1: p.field.3,
        },
        png: vec![],
    }
}

/// Open the model folder `name` directly under `models_dir`.
pub fn open_model(models_dir: &std::path::Path, name: &str) -> Result<ModelDir> {
    if !valid_model_name(name) {
        return Err(bad(format!("malformed model name {name:?}")));
    }
    let dir = models_dir.join(name);
    if !dir.join("manifest.json").is_file() {
        return Err(Error::NotFound(format!("unknown model {name:?}")));
    }
    Ok(ModelDir::open(&dir)?)
}

/// Every loadable model under `models_dir`, by name.
pub fn list_models(models_dir: &std::path::Path) -> Vec<ModelInfo> {
    let mut names: Vec<String> = std::fs::read_dir(models_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|n| open_model(models_dir, n).ok())
        .filter_map(|m| info(&m).ok())
        .collect()
}

pub fn model_info(models_dir: &std::path::Path, name: &str) -> Result<ModelInfo> {
    info(&open_model(models_dir, name)?)
}

fn info(m: &ModelDir) -> Result<ModelInfo> {
    let spec = m.manifest.spec()?;
    let sizes = spec.sizes();
    Ok(ModelInfo {
        name: m.name(),
        architecture: m.manifest.architecture.clone(),
        width: m.manifest.width,
        input_size: m.manifest.input_size,
        classes: m.manifest.classes.len(),
        class_names: m.manifest.classes.iter().map(|c| c.name.clone()).collect(),
        snapshots: m
            .manifest
            .snapshots
            .iter()
            .map(|s| SnapshotInfo {
                epoch: s.epoch,
                metrics: s.metrics.clone(),
            })
            .collect(),
        layers: spec
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| LayerInfo {
                layer: i + 1,
                maps: b.out_c,
                size: sizes[i].1,
            })
            .collect(),
    })
}

/// Layer-1 filters of one snapshot (paper Fig. 6), highest RMS first.
#[derive(Serialize)]
pub struct FiltersResult {
    pub kernel: i64,
    pub stride: i64,
    /// Tile edge in px (the kernel enlarged by a whole factor).
    pub tile: u32,
    pub cols: u32,
    pub filters: Vec<crate::compare::FilterInfo>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

impl Engine {
    pub fn filters(&mut self, model: &str, epoch: u32, per_filter: bool) -> Result<FiltersResult> {
        let net = self.net(model, epoch)?;
        let c = &net.blocks[0];
        const TILE: u32 = 56;
        let cols = 8;
        let img = crate::compare::filter_tiles(&net, TILE, cols, per_filter);
        let (w, h) = img.dimensions();
        let rms = crate::compare::filter_rms(net.conv_weight(0));
        let (low, _) = crate::compare::low_rms(&rms);
        let filters = crate::compare::filter_list(&rms, &low);
        Ok(FiltersResult {
            kernel: c.conv.k,
            stride: c.conv.stride,
            tile: (TILE / c.conv.k as u32).max(1) * c.conv.k as u32,
            cols,
            filters,
            sprite_png: png(w, h, img.into_raw()),
        })
    }
}
