//! The views over a dataset's index (`index`): Fig. 2's top 9 of a map
//! with projections beside their patches, Fig. 4's training timeline (one
//! row per map, one column per snapshot), and one image's projection of a
//! map at every snapshot.

use crate::analyses::projection::{Field, Frame};
use crate::analysis::Analysis;
use crate::checkpoint::ModelDir;
use crate::deconv::{self, Keep, ProjectRequest};
use crate::engine::{bad, bad_input, Context, Engine, Error, Picture, Result};
use crate::index::{self, Entry, SnapshotIndex};
use crate::net::check;
use crate::params::{ContentId, MapList, ModelName};
use crate::picture::png;
use crate::progress::{Progress, State};
use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Edge of one cell of the sprites, px.
pub const TILE: u32 = 96;

/// One dataset patch: an index entry with its receptive field.
#[derive(Serialize, Clone)]
pub struct Patch {
    pub image: String,
    pub y: i64,
    pub x: i64,
    pub value: f64,
    pub field: Field,
}

fn paste(dst: &mut RgbImage, src: &RgbImage, col: usize, row: usize) {
    imageops::replace(
        dst,
        src,
        (col as u32 * TILE) as i64,
        (row as u32 * TILE) as i64,
    );
}

/// Projection and image patch of one index entry, `TILE` px each: cut to
/// the receptive field (the projection with its own contrast), or the
/// whole frame.
fn entry_patches(
    eng: &mut Engine,
    (model, epoch): (&ModelName, u32),
    dataset: &Path,
    (layer, map): (usize, i64),
    e: &Entry,
    frame: Frame,
) -> Result<(Patch, RgbImage, RgbImage)> {
    let path = index::resolve(dataset, &e.image).map_err(bad_input)?;
    // One forward pass per image and snapshot, whichever maps ask for it.
    let (net, t) = eng.traced_file(model, epoch, &path, &e.image)?;
    let crop = &t.crop;
    let req = ProjectRequest {
        layer,
        map,
        keep: Keep::At(e.y, e.x),
    };
    let p = deconv::project(&net, &t.trace, &[req])
        .map_err(bad_input)?
        .remove(0);
    let (y0, x0, y1, x1) = p.field;
    let cut = |im: &RgbImage| {
        let (w, h) = ((x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32);
        let c = match frame {
            Frame::Field => imageops::crop_imm(im, x0 as u32, y0 as u32, w, h).to_image(),
            Frame::Full => im.clone(),
        };
        imageops::resize(&c, TILE, TILE, FilterType::Triangle)
    };
    let patch = Patch {
        image: e.image.clone(),
        y: e.y,
        x: e.x,
        value: e.value,
        field: Field { y0, x0, y1, x1 },
    };
    let proj = match frame {
        Frame::Field => crate::picture::field_image(&p.pixels, p.field, TILE)?,
        Frame::Full => imageops::resize(
            &crate::picture::to_image(&p.pixels)?,
            TILE,
            TILE,
            FilterType::Triangle,
        ),
    };
    Ok((patch, proj, cut(crop)))
}

/// The built index of one snapshot over the indexer's dataset (read once
/// per file version); NotFound while it is not built.
pub fn snapshot_index(
    ix: &crate::engine::indexer::Indexer,
    model: &ModelDir,
    epoch: u32,
) -> Result<Arc<SnapshotIndex>> {
    ix.load(model, epoch)?.ok_or_else(|| {
        Error::NotFound(format!(
            "the dataset index of epoch {epoch} is not built yet"
        ))
    })
}

/// One snapshot of a model (the dataset index's address).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub model: ModelName,
    pub epoch: u32,
}

/// Where the index of one snapshot stands; queues its build on first use.
pub fn index_status(ctx: &Context, r: &SnapshotRequest) -> Result<Progress> {
    ctx.snapshot(&r.model, Some(r.epoch))?;
    Ok(ctx.indexer()?.ensure(r.model.as_str(), r.epoch)?)
}

/// One map of one snapshot over the dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetMapRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub layer: usize,
    pub map: i64,
    #[serde(default)]
    pub frame: Frame,
}

/// Fig. 2 for one map: 9 projections (row 0 of the sprite) beside their
/// image patches (row 1), `tile` px each.
#[derive(Serialize)]
pub struct DatasetTop9Result {
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub layer: Option<usize>,
    /// The unit's name.
    pub unit: String,
    pub map: i64,
    pub epoch: u32,
    pub tile: u32,
    pub items: Vec<Patch>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

/// None when every index the request reads is built; a failed build is an error.
fn waiting(ps: Vec<Progress>) -> Result<Option<Progress>> {
    let (done, total) = ps.iter().fold((0, 0), |a, p| (a.0 + p.done, a.1 + p.total));
    if ps
        .iter()
        .any(|p| matches!(p.state, State::Queued | State::Running))
    {
        return Ok(Some(Progress::new(State::Running, done, total)));
    }
    Ok(None)
}

pub struct DatasetTop9;

impl Analysis for DatasetTop9 {
    type Request = DatasetMapRequest;
    type Result = DatasetTop9Result;

    fn pending(ctx: &Context, r: &DatasetMapRequest) -> Result<Option<Progress>> {
        let snap = SnapshotRequest {
            model: r.model.clone(),
            epoch: r.epoch,
        };
        let p = index_status(ctx, &snap)?;
        if p.state == State::Failed {
            let e = p.error.unwrap_or_else(|| "the index build failed".into());
            return Err(Error::Internal(anyhow::anyhow!(e)));
        }
        waiting(vec![p])
    }

    fn version(ctx: &Context, r: &DatasetMapRequest) -> Result<Option<u64>> {
        Ok(ctx.indexer()?.version(r.model.as_str(), &[r.epoch])?)
    }

    fn run(e: &mut Engine, r: &DatasetMapRequest) -> Result<DatasetTop9Result> {
        let net = e.net(&r.model, r.epoch)?;
        check::layer_map(&net.units, r.layer, r.map).map_err(bad_input)?;
        let m = e.model(&r.model)?;
        let ix = e.ctx.indexer()?.clone();
        let dataset = ix.dataset.clone();
        let idx = snapshot_index(&ix, &m, r.epoch)?;
        let entries = index::responding(index::top9(&idx, r.layer, r.map).map_err(bad_input)?);
        let mut sprite = RgbImage::from_pixel(TILE * 9, TILE * 2, [128; 3].into());
        let mut items = vec![];
        for en in entries {
            // An image removed since it was indexed (an evicted upload) is left out.
            let (patch, proj, img) = match entry_patches(
                e,
                (&r.model, r.epoch),
                &dataset,
                (r.layer, r.map),
                en,
                r.frame,
            ) {
                Err(Error::NotFound(_)) => continue,
                x => x?,
            };
            paste(&mut sprite, &proj, items.len(), 0);
            paste(&mut sprite, &img, items.len(), 1);
            items.push(patch);
        }
        let unit = &net.units[r.layer - 1];
        Ok(DatasetTop9Result {
            layer: unit.layer,
            unit: unit.name.clone(),
            map: r.map,
            epoch: r.epoch,
            tile: TILE,
            items,
            sprite_png: png(&sprite),
        })
    }

    fn alt(_: &DatasetMapRequest, r: &mut DatasetTop9Result) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.sprite_png))
    }
}

/// Which grid the timeline's picture shows (`?kind=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimelineKind {
    #[default]
    Projections,
    Patches,
}

fn first_layer() -> usize {
    1
}

/// Maps of one layer over every snapshot (`?layer=1&maps=0-7&kind=projections&frame=field`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineRequest {
    pub model: ModelName,
    #[serde(default = "first_layer")]
    pub layer: usize,
    #[serde(default)]
    pub maps: MapList,
    #[serde(default)]
    pub kind: TimelineKind,
    #[serde(default)]
    pub frame: Frame,
}

/// Fig. 4: rows = maps, columns = snapshots; each cell the projection of the
/// map's strongest activation over the dataset at that epoch.
#[derive(Serialize, Clone)]
pub struct TimelineResult {
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub layer: Option<usize>,
    /// The unit's name.
    pub unit: String,
    pub maps: Vec<i64>,
    pub epochs: Vec<u32>,
    pub tile: u32,
    /// Per column: null, or why it could not be drawn.
    pub errors: Vec<Option<String>>,
    /// cells[row][col]
    pub cells: Vec<Vec<Option<Patch>>>,
    #[serde(skip)]
    pub projections: RgbImage,
    #[serde(skip)]
    pub patches: RgbImage,
}

pub struct Timeline;

impl Timeline {
    fn grid(e: &mut Engine, r: &TimelineRequest) -> Result<TimelineResult> {
        let m = e.model(&r.model)?;
        let spec = m.manifest.spec()?;
        let maps = r.maps.maps();
        if maps.is_empty() || maps.len() > 32 {
            return Err(bad(format!("choose 1 to 32 maps, got {}", maps.len())));
        }
        let units = spec.unit_list();
        for &k in maps {
            check::layer_map(&units, r.layer, k).map_err(bad_input)?;
        }
        let ix = e.ctx.indexer()?.clone();
        let dataset = ix.dataset.clone();
        let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
        let (rows, cols) = (maps.len() as u32, epochs.len() as u32);
        let mut projs = RgbImage::from_pixel(TILE * cols.max(1), TILE * rows, [235; 3].into());
        let mut pats = projs.clone();
        let mut cells = vec![vec![None; epochs.len()]; maps.len()];
        let mut errors = vec![None; epochs.len()];
        for (c, &epoch) in epochs.iter().enumerate() {
            let mut column = || -> Result<()> {
                e.net(&r.model, epoch)?;
                let idx = snapshot_index(&ix, &m, epoch)?;
                for (row, &map) in maps.iter().enumerate() {
                    let top =
                        index::responding(index::top9(&idx, r.layer, map).map_err(bad_input)?);
                    let Some(en) = top.first() else { continue };
                    let (patch, proj, img) =
                        entry_patches(e, (&r.model, epoch), &dataset, (r.layer, map), en, r.frame)?;
                    paste(&mut projs, &proj, c, row);
                    paste(&mut pats, &img, c, row);
                    cells[row][c] = Some(patch);
                }
                Ok(())
            };
            if let Err(x) = column() {
                errors[c] = Some(x.to_string());
            }
        }
        let unit = &spec.unit_list()[r.layer - 1];
        Ok(TimelineResult {
            layer: unit.layer,
            unit: unit.name.clone(),
            maps: maps.to_vec(),
            epochs,
            tile: TILE,
            errors,
            cells,
            projections: projs,
            patches: pats,
        })
    }
}

impl Analysis for Timeline {
    type Request = TimelineRequest;
    type Result = TimelineResult;

    /// Every column's index must be built (or have failed: its column shows the error).
    fn pending(ctx: &Context, r: &TimelineRequest) -> Result<Option<Progress>> {
        let m = ctx.model(&r.model)?;
        let ix = ctx.indexer()?;
        waiting(
            m.manifest
                .snapshots
                .iter()
                .map(|s| ix.ensure(r.model.as_str(), s.epoch))
                .collect::<anyhow::Result<_>>()?,
        )
    }

    fn version(ctx: &Context, r: &TimelineRequest) -> Result<Option<u64>> {
        let m = ctx.model(&r.model)?;
        let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
        Ok(ctx.indexer()?.version(r.model.as_str(), &epochs)?)
    }

    fn run(e: &mut Engine, r: &TimelineRequest) -> Result<TimelineResult> {
        // Both pictures come from one grid (per state of the dataset).
        let key = crate::analysis::key::<Self, _>(&TimelineRequest {
            kind: TimelineKind::default(),
            ..r.clone()
        })? + &format!(
            "@{:?}#{}",
            Self::version(&e.ctx, r)?,
            e.ctx.model_id(&r.model)?
        );
        Ok((*e.memo(key, |e| Self::grid(e, r))?).clone())
    }

    fn alt(r: &TimelineRequest, t: &mut TimelineResult) -> Option<Vec<u8>> {
        Some(png(match r.kind {
            TimelineKind::Projections => &t.projections,
            TimelineKind::Patches => &t.patches,
        }))
    }
}

/// One map of one stored image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvolutionRequest {
    pub model: ModelName,
    pub image: ContentId,
    pub layer: usize,
    pub map: i64,
}

/// One image, one map, every snapshot: a row of projections (strongest
/// activation), `TILE` px each; a snapshot that fails stays grey.
pub struct Evolution;

impl Analysis for Evolution {
    type Request = EvolutionRequest;
    type Result = Picture;

    fn run(e: &mut Engine, r: &EvolutionRequest) -> Result<Picture> {
        let m = e.model(&r.model)?;
        check::layer_map(&m.manifest.spec()?.unit_list(), r.layer, r.map).map_err(bad_input)?;
        e.ctx.image_bytes(&r.image)?;
        let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
        let mut row =
            RgbImage::from_pixel(TILE * epochs.len().max(1) as u32, TILE, [200; 3].into());
        for (i, &epoch) in epochs.iter().enumerate() {
            let Ok((net, t)) = e.traced(&r.model, epoch, &r.image) else {
                continue;
            };
            let req = ProjectRequest {
                layer: r.layer,
                map: r.map,
                keep: Keep::Strongest,
            };
            let Ok(mut p) = deconv::project(&net, &t.trace, &[req]) else {
                continue;
            };
            let img = crate::picture::to_image(&p.remove(0).pixels)?;
            paste(
                &mut row,
                &imageops::resize(&img, TILE, TILE, FilterType::Triangle),
                i,
                0,
            );
        }
        Ok(Picture(png(&row)))
    }

    fn alt(_: &EvolutionRequest, r: &mut Picture) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.0))
    }
}

crate::names_models! {
    DatasetMapRequest: model;
    EvolutionRequest: model;
    TimelineRequest: model;
    SnapshotRequest: model;
}
