//! The feature maps of one conv layer for one image (after ReLU, from the
//! cached forward trace): each map's peak and where it is, and all maps as
//! one sprite of tiles, each scaled by its own peak.

use crate::analysis::Analysis;
use crate::engine::{Engine, Error, Result};
use crate::params::{ContentId, ModelName};
use crate::picture::png;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

/// One conv layer of one stored image seen by one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    /// Conv layer, 1-based.
    pub layer: usize,
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
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub layer: Option<usize>,
    /// The unit's name.
    pub unit: String,
    pub size: i64,
    pub cols: i64,
    pub maps: Vec<MapInfo>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

pub struct Maps;

impl Analysis for Maps {
    type Request = LayerRequest;
    type Result = MapsResult;

    fn run(e: &mut Engine, r: &LayerRequest) -> Result<MapsResult> {
        crate::net::check::layer(r.layer, e.net(&r.model, r.epoch)?.units.len())
            .map_err(crate::error::bad_input)?;
        let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
        let internal = |e: tch::TchError| Error::Internal(e.into());
        let maps = t.trace.maps[r.layer - 1].get(0).to_device(Device::Cpu);
        let (c, s) = (maps.size()[0], maps.size()[1]);
        let (peaks, idx) = maps.reshape([c, -1]).max_dim(1, false);
        let vals: Vec<f32> = Vec::try_from(&peaks).map_err(internal)?;
        let idx: Vec<i64> = Vec::try_from(&idx).map_err(internal)?;
        let cols = (c as f64).sqrt().ceil() as i64;
        let rows = (c + cols - 1) / cols;
        // Each tile scaled by its own peak; dead maps stay black.
        let norm = (&maps / peaks.clamp_min(1e-12).view([c, 1, 1]) * 255.0)
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        let tiles: Vec<u8> = Vec::try_from(&norm.reshape([-1])).map_err(internal)?;
        let mut sprite = RgbImage::from_pixel((cols * s) as u32, (rows * s) as u32, [40; 3].into());
        for k in 0..c {
            let (ty, tx) = ((k / cols) * s, (k % cols) * s);
            for y in 0..s {
                for x in 0..s {
                    let v = tiles[(k * s * s + y * s + x) as usize];
                    sprite.put_pixel((tx + x) as u32, (ty + y) as u32, [v; 3].into());
                }
            }
        }
        let maps = (0..c as usize)
            .map(|k| MapInfo {
                map: k as i64,
                peak: vals[k] as f64,
                y: idx[k] / s,
                x: idx[k] % s,
            })
            .collect();
        Ok(MapsResult {
            layer: net.units[r.layer - 1].layer,
            unit: net.units[r.layer - 1].name.clone(),
            size: s,
            cols,
            maps,
            sprite_png: png(&sprite),
        })
    }

    fn alt(_: &LayerRequest, r: &mut MapsResult) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.sprite_png))
    }
}

crate::names_models! {
    LayerRequest: model;
}
