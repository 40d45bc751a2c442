//! Fig. 1: one map's deconvnet projection (`Project`) and a layer's top 9 of one image (`Top9`).
//!
//! The science is one floor down, in `crate::deconv`.

use crate::analysis::Analysis;
use crate::deconv::{project, top_maps, Keep, ProjectRequest, Projection};
use crate::engine::{bad_input, Engine};
use crate::params::{ContentId, ModelName};
use crate::picture::png;
use crate::picture::{field_image, to_image};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Which activations of the map are projected (`?mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Strongest,
    All,
}

impl From<Mode> for Keep {
    fn from(m: Mode) -> Keep {
        match m {
            Mode::Strongest => Keep::Strongest,
            Mode::All => Keep::All,
        }
    }
}

/// One feature map of one stored image seen by one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    pub layer: usize,
    pub map: i64,
    #[serde(default)]
    pub mode: Mode,
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
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub layer: Option<usize>,
    /// The unit's name.
    pub unit: String,
    pub map: i64,
    pub mode: Mode,
    pub value: f64,
    pub y: i64,
    pub x: i64,
    pub field: Field,
    #[serde(skip)]
    pub png: Vec<u8>,
    /// The unscaled [3, S, S] projection.
    #[serde(skip)]
    pub pixels: Option<Tensor>,
}

impl ProjectionResult {
    /// A projection's description, its picture and its pixels.
    pub fn new(p: Projection, mode: Mode) -> anyhow::Result<ProjectionResult> {
        Ok(ProjectionResult {
            png: png(&to_image(&p.pixels)?),
            pixels: Some(p.pixels.shallow_clone()),
            ..Self::describe(&p, mode)
        })
    }

    /// A projection's description without a picture.
    pub fn describe(p: &Projection, mode: Mode) -> ProjectionResult {
        let (y0, x0, y1, x1) = p.field;
        ProjectionResult {
            layer: p.conv,
            unit: p.unit.clone(),
            map: p.map,
            mode,
            value: p.value,
            y: p.y,
            x: p.x,
            field: Field { y0, x0, y1, x1 },
            png: vec![],
            pixels: None,
        }
    }
}

/// The deconvnet projection of one map (paper Fig. 1).
pub struct Project;

impl Analysis for Project {
    type Request = MapRequest;
    type Result = ProjectionResult;

    fn run(e: &mut Engine, r: &MapRequest) -> crate::engine::Result<ProjectionResult> {
        crate::net::check::layer_map(&e.net(&r.model, r.epoch)?.units, r.layer, r.map)
            .map_err(bad_input)?;
        let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
        let req = ProjectRequest {
            layer: r.layer,
            map: r.map,
            keep: r.mode.into(),
        };
        let p = project(&net, &t.trace, &[req]).map_err(bad_input)?;
        Ok(ProjectionResult::new(
            p.into_iter().next().expect("one"),
            r.mode,
        )?)
    }

    fn alt(_: &MapRequest, r: &mut ProjectionResult) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.png))
    }
}

/// How a projection is drawn (`?frame=`): cut to the receptive field with
/// its own contrast, as the paper's figures, or the whole input frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frame {
    #[default]
    Field,
    Full,
}

/// One conv layer of one stored image (`?frame=field|full`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Top9Request {
    pub model: crate::params::ModelName,
    pub epoch: u32,
    pub image: crate::params::ContentId,
    pub layer: usize,
    #[serde(default)]
    pub frame: Frame,
}

/// Edge of a receptive-field tile of the top-9 sprite, px.
const FIELD_TILE: i64 = 112;

/// The 9 maps of a layer with the highest peaks, projected; sprite 3x3.
#[derive(Serialize)]
pub struct Top9Result {
    /// The conv number, or null for a named unit that is not a conv's maps.
    pub layer: Option<usize>,
    /// The unit's name.
    pub unit: String,
    pub tile: i64,
    pub items: Vec<ProjectionResult>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

/// The layer's 9 strongest maps of one image, each projected.
pub struct Top9;

impl Analysis for Top9 {
    type Request = Top9Request;
    type Result = Top9Result;

    fn run(e: &mut Engine, r: &Top9Request) -> crate::engine::Result<Top9Result> {
        crate::net::check::layer(r.layer, e.net(&r.model, r.epoch)?.units.len())
            .map_err(bad_input)?;
        let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
        let reqs: Vec<ProjectRequest> = top_maps(&t.trace, r.layer, 9)?
            .iter()
            .map(|&(map, _)| ProjectRequest {
                layer: r.layer,
                map,
                keep: Keep::Strongest,
            })
            .collect();
        let ps = project(&net, &t.trace, &reqs).map_err(bad_input)?;
        let tile = match r.frame {
            Frame::Full => net.spec.input_size,
            Frame::Field => FIELD_TILE,
        };
        let rows = ps.len().div_ceil(3) as i64;
        let mut sprite =
            image::RgbImage::from_pixel((3 * tile) as u32, (rows * tile) as u32, [128; 3].into());
        let items = ps
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (y, x) = ((i as i64 / 3) * tile, (i as i64 % 3) * tile);
                let pic = match r.frame {
                    Frame::Full => to_image(&p.pixels)?,
                    Frame::Field => field_image(&p.pixels, p.field, tile as u32)?,
                };
                image::imageops::replace(&mut sprite, &pic, x, y);
                Ok(ProjectionResult::describe(p, Mode::Strongest))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Top9Result {
            layer: net.units[r.layer - 1].layer,
            unit: net.units[r.layer - 1].name.clone(),
            tile,
            items,
            sprite_png: png(&sprite),
        })
    }

    fn alt(_: &Top9Request, r: &mut Top9Result) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.sprite_png))
    }
}

crate::names_models! {
    MapRequest: model;
    Top9Request: model;
}
