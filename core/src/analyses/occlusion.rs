//! Fig. 7: full occlusion maps (b, d, e: `Occlusion`), the live occluder (`Live`) and the occluded projection (c: `OccludedProjection`).
//!
//! The science is one floor down, in `crate::occlusion`.

use crate::analyses::projection::{Mode, ProjectionResult};
use crate::analysis::Analysis;
use crate::deconv::{self, ProjectRequest};
use crate::engine::{bad, bad_input, Engine};
use crate::net::Net;
use crate::occlusion::{
    default_size, default_stride, heatmaps, live, occlude, occluded, strongest_map, Method,
    OcclusionRequest, OcclusionResult,
};
use crate::params::{ContentId, ModelName};
use crate::picture::png;
use crate::predict::{self, Prediction};
use serde::Deserialize;
use serde::Serialize;

fn default_batch() -> i64 {
    64
}

/// Which heatmap the picture of a full occlusion shows (`?kind=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heatmap {
    MapActivation,
    #[default]
    ClassProb,
    TopLabel,
}

impl Heatmap {
    pub fn name(self) -> &'static str {
        match self {
            Heatmap::MapActivation => "map_activation",
            Heatmap::ClassProb => "class_prob",
            Heatmap::TopLabel => "top_label",
        }
    }
}

/// Full occlusion maps of a stored image (`?size=48&stride=8&class=K`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    #[serde(default = "default_size")]
    pub size: i64,
    #[serde(default = "default_stride")]
    pub stride: i64,
    pub class: Option<i64>,
    #[serde(default)]
    pub kind: Heatmap,
    #[serde(default)]
    pub method: Method,
    #[serde(default = "default_batch")]
    pub batch: i64,
}

fn check_square(net: &Net, size: i64) -> crate::engine::Result<()> {
    let s = net.spec.input_size;
    if size < 1 || size > s {
        return Err(bad(format!(
            "the occluder size must be 1..={s} px (the input size), got {size}"
        )));
    }
    Ok(())
}

fn check_position(net: &Net, x: i64, y: i64, size: i64) -> crate::engine::Result<()> {
    check_square(net, size)?;
    let s = net.spec.input_size;
    if x < 0 || y < 0 || x + size > s || y + size > s {
        return Err(bad(format!(
            "the square at x {x}, y {y} of size {size} does not fit the {s}x{s} input"
        )));
    }
    Ok(())
}

/// The grid, and the chosen heatmap over the crop.
#[derive(Serialize)]
pub struct Heatmaps {
    #[serde(flatten)]
    pub grid: OcclusionResult,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// Fig. 7 (b), (d), (e): every position of the grid.
pub struct Occlusion;

impl Analysis for Occlusion {
    type Request = GridRequest;
    type Result = Heatmaps;

    fn run(e: &mut Engine, r: &GridRequest) -> crate::engine::Result<Self::Result> {
        let net = e.net(&r.model, r.epoch)?;
        check_square(&net, r.size)?;
        if r.stride < 1 {
            return Err(bad(format!("stride must be at least 1, got {}", r.stride)));
        }
        if !(1..=1024).contains(&r.batch) {
            return Err(bad(format!("batch must be 1..=1024, got {}", r.batch)));
        }
        e.check_class(&r.model, r.class)?;
        // The grid does not depend on the heatmap shown: one computation for all three.
        let key = crate::analysis::key::<Self, _>(&GridRequest {
            kind: Heatmap::default(),
            ..r.clone()
        })? + &e.snapshot_id(&r.model, r.epoch)?;
        let grid = e.memo(key, |e| {
            let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
            let req = OcclusionRequest {
                size: r.size,
                stride: r.stride,
                class: r.class,
                batch: r.batch,
                method: r.method,
            };
            occlude(&net, &t.input, &req).map_err(bad_input)
        })?;
        let (_, t) = e.traced(&r.model, r.epoch, &r.image)?;
        let (_, map) = heatmaps(&t.crop, &grid)
            .into_iter()
            .find(|(n, _)| *n == r.kind.name())
            .expect("heatmaps draws every kind");
        Ok(Heatmaps {
            grid: (*grid).clone(),
            png: png(&map),
        })
    }

    fn alt(_: &GridRequest, r: &mut Heatmaps) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.png))
    }
}

/// One position of the square (`?x=&y=&size=48`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PositionRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub image: ContentId,
    pub x: i64,
    pub y: i64,
    #[serde(default = "default_size")]
    pub size: i64,
    pub class: Option<i64>,
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

/// The checked position, the unoccluded trace and its strongest conv5 map.
fn at_position(
    e: &mut Engine,
    r: &PositionRequest,
) -> crate::engine::Result<(std::rc::Rc<Net>, std::rc::Rc<crate::engine::Traced>, i64)> {
    check_position(&*e.net(&r.model, r.epoch)?, r.x, r.y, r.size)?;
    let (net, t) = e.traced(&r.model, r.epoch, &r.image)?;
    let map = strongest_map(&t.trace);
    Ok((net, t, map))
}

/// The live occluder: top-5, a class's probability and the unoccluded
/// strongest conv5 map's summed activation with the square at one position.
pub struct Live;

impl Analysis for Live {
    type Request = PositionRequest;
    type Result = LiveOcclusion;

    fn run(e: &mut Engine, r: &PositionRequest) -> crate::engine::Result<LiveOcclusion> {
        e.check_class(&r.model, r.class)?;
        let (net, t, map) = at_position(e, r)?;
        let m = e.model(&r.model)?;
        let class = r
            .class
            .unwrap_or_else(|| t.trace.logits.get(0).argmax(0, false).int64_value(&[]));
        let o = live(&net, &t.input, r.y, r.x, r.size, map)?;
        Ok(LiveOcclusion {
            x: r.x,
            y: r.y,
            size: r.size,
            class,
            class_prob: o.probs.double_value(&[class]),
            strongest_map: map,
            map_activation: o.map_activation,
            top: predict::top_k_of(&m.manifest, &o.probs, 5)?,
        })
    }
}

/// Fig. 7 (c): the unoccluded strongest conv5 map's projection with the
/// square at one position (the class is ignored).
pub struct OccludedProjection;

impl Analysis for OccludedProjection {
    type Request = PositionRequest;
    type Result = ProjectionResult;

    fn run(e: &mut Engine, r: &PositionRequest) -> crate::engine::Result<ProjectionResult> {
        let (net, t, map) = at_position(e, r)?;
        let trace = net.trace(&occluded(&t.input, r.y, r.x, r.size));
        let req = ProjectRequest {
            layer: net.last_unit(),
            map,
            keep: deconv::Keep::Strongest,
        };
        let p = deconv::project(&net, &trace, &[req]).map_err(bad_input)?;
        Ok(ProjectionResult::new(
            p.into_iter().next().expect("one"),
            Mode::Strongest,
        )?)
    }

    fn alt(_: &PositionRequest, r: &mut ProjectionResult) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.png))
    }
}

crate::names_models! {
    GridRequest: model;
    PositionRequest: model;
}
