//! Fig. 6: one snapshot's layer-1 filters and layer-2 projections (`Filters`) and two snapshots' numbers (the `Numbers` job).
//!
//! The science is one floor down, in `crate::compare`.

use crate::analysis::{Analysis, Job};
use crate::compare::{
    compare_dirs, filter_list, filter_rms, filter_tiles, low_rms, CompareResult, FilterInfo,
    DEFAULT_IMAGES,
};
use crate::engine::{bad_input, Context, Engine, Error};
use crate::params::ModelName;
use crate::picture::png;
use serde::Deserialize;
use serde::Serialize;

/// How the filter tiles are scaled (`?norm=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// One scale for the layer: weak filters look grey.
    #[default]
    Layer,
    /// Each filter stretched to its own largest weight.
    Filter,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiltersRequest {
    pub model: ModelName,
    pub epoch: u32,
    #[serde(default)]
    pub norm: Norm,
}

/// Layer-1 filters of one snapshot (paper Fig. 6), highest RMS first.
#[derive(Serialize)]
pub struct FiltersResult {
    pub kernel: i64,
    pub stride: i64,
    /// Tile edge in px (the kernel enlarged by a whole factor).
    pub tile: u32,
    pub cols: u32,
    pub filters: Vec<FilterInfo>,
    #[serde(skip)]
    pub sprite_png: Vec<u8>,
}

pub struct Filters;

impl Analysis for Filters {
    type Request = FiltersRequest;
    type Result = FiltersResult;

    fn run(e: &mut Engine, r: &FiltersRequest) -> crate::engine::Result<FiltersResult> {
        const TILE: u32 = 56;
        const COLS: u32 = 8;
        let net = e.net(&r.model, r.epoch)?;
        let c = net.convs[0].window;
        let img = filter_tiles(&net, TILE, COLS, r.norm == Norm::Filter)?;
        let rms = filter_rms(net.conv_weight(0))?;
        let (low, _) = low_rms(&rms);
        Ok(FiltersResult {
            kernel: c.k,
            stride: c.stride,
            tile: (TILE / c.k as u32).max(1) * c.k as u32,
            cols: COLS,
            filters: filter_list(&rms, &low),
            sprite_png: png(&img),
        })
    }

    fn alt(_: &FiltersRequest, r: &mut FiltersResult) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut r.sprite_png))
    }
}

/// A comparison over the web measures at most this many images (each takes
/// about a second of CPU over both models; the CLI allows more).
pub const MAX_WEB_IMAGES: usize = 512;

fn default_images() -> usize {
    DEFAULT_IMAGES
}

fn web_images<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 || n > MAX_WEB_IMAGES {
        return Err(serde::de::Error::custom(format!(
            "must be 1..={MAX_WEB_IMAGES}, got {n} (the command line takes more)"
        )));
    }
    Ok(n)
}

/// Two snapshots (`?a=M&ea=E&b=M&eb=E&images=N`; epochs default to each model's last).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRequest {
    pub a: ModelName,
    pub ea: Option<u32>,
    pub b: ModelName,
    pub eb: Option<u32>,
    #[serde(default = "default_images", deserialize_with = "web_images")]
    pub images: usize,
}

/// Dead filters, band energy and aliasing of two snapshots side by side,
/// measured on the context's dataset (or 1/f noise without one).
pub struct Numbers;

impl Job for Numbers {
    type Request = PairRequest;
    type Result = CompareResult;

    fn check(ctx: &Context, r: &PairRequest) -> crate::engine::Result<()> {
        let (a, b) = (ctx.snapshot(&r.a, r.ea)?, ctx.snapshot(&r.b, r.eb)?);
        let (sa, sb) = (a.manifest.input_size, b.manifest.input_size);
        if sa != sb {
            return Err(crate::engine::bad(format!(
                "the models take different input sizes ({sa} and {sb} px)"
            )));
        }
        Ok(())
    }

    fn run(
        ctx: &Context,
        r: &PairRequest,
        progress: &mut crate::progress::Report<'_>,
    ) -> crate::engine::Result<CompareResult> {
        let ma = ctx.snapshot(&r.a, r.ea)?;
        let mb = ctx.snapshot(&r.b, r.eb)?;
        // Without --dataset, 1/f noise (said in the result's method).
        let dataset = ctx.indexer.as_ref().and_then(|i| i.given());
        compare_dirs(
            (&ma, r.ea),
            (&mb, r.eb),
            dataset,
            r.images,
            ctx.device,
            progress,
        )
        .map_err(|e| match e.downcast::<Error>() {
            Ok(e) => e,
            Err(e) => bad_input(e),
        })
    }
}

crate::names_models! {
    FiltersRequest: model;
    PairRequest: a b;
}
