//! The paper's figures for one model as files: each figure is drawn from the
//! same analyses the views use (`DatasetTop9`, `Timeline`, `Invariance`,
//! `Filters`, `Occlusion`, `Correspondence`) and comes as a PNG, the plots
//! and tables also as SVG, and its numbers as JSON. `zfvis figures` writes
//! them all with a self-contained `report.html`; the web views' "download
//! figure" links serve the same PNG (`Figures`, one analysis).

use crate::analyses::compare::{Filters, FiltersRequest};
use crate::analyses::correspondence::{Correspondence, SetRequest};
use crate::analyses::invariance::{CurvesRequest, Invariance};
use crate::analyses::occlusion::{GridRequest, Occlusion};
use crate::analyses::timeline::{DatasetMapRequest, DatasetTop9, Timeline, TimelineRequest, TILE};
use crate::analysis::Analysis;
use crate::deconv::{self, Keep, ProjectRequest};
use crate::draw::{self, Anchor, Drawing, Series, Size};
use crate::engine::{bad, Context, Engine, Error, Result};
use crate::net::{Layer, Shape};
use crate::occlusion::{self};
use crate::params::{ContentId, ModelName};
use crate::progress::Progress;
use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The figures, named as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Name {
    Fig2,
    Fig3,
    Fig4,
    Fig5,
    Fig6,
    Fig7,
    Table1,
    /// What 9 maps of each layer want to see (feature visualisation).
    Vis,
}

impl Name {
    pub const ALL: [Name; 8] = [
        Name::Fig2,
        Name::Fig3,
        Name::Fig4,
        Name::Fig5,
        Name::Fig6,
        Name::Fig7,
        Name::Table1,
        Name::Vis,
    ];

    /// File name stem: `fig7-occlusion`.
    pub fn stem(self) -> &'static str {
        match self {
            Name::Fig2 => "fig2-top9",
            Name::Fig3 => "fig3-architecture",
            Name::Fig4 => "fig4-timeline",
            Name::Fig5 => "fig5-invariance",
            Name::Fig6 => "fig6-compare",
            Name::Fig7 => "fig7-occlusion",
            Name::Table1 => "table1-correspondence",
            Name::Vis => "vis-wants",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Name::Fig2 => "Fig. 2: top 9 activations over the dataset, projected",
            Name::Fig3 => "Fig. 3: the architecture",
            Name::Fig4 => "Fig. 4: evolution of features through training",
            Name::Fig5 => "Fig. 5: invariance to translation, scale and rotation",
            Name::Fig6 => "Fig. 6: layer-1 filters and layer-2 projections, two models",
            Name::Fig7 => "Fig. 7: occlusion sensitivity",
            Name::Table1 => "Table 1: correspondence of object parts",
            Name::Vis => "What each layer wants to see: 9 maps, optimised (Olah et al. 2017)",
        }
    }

    /// Whether the figure reads the dataset index.
    pub fn needs_dataset(self) -> bool {
        matches!(self, Name::Fig2 | Name::Fig4)
    }

    /// Plots and tables (text and lines) also come as SVG.
    pub fn has_svg(self) -> bool {
        matches!(self, Name::Fig3 | Name::Fig5 | Name::Table1)
    }
}

/// One figure of one snapshot (`?figure=fig7&image=ID&compare=M&set=ID`):
/// `image` for figures 5-7 (Fig. 6 draws only the filters without it), `set`
/// (a stored landmark set) for Table 1; `compare` is the other model of
/// Fig. 6 (default: a model of another architecture). The views' settings
/// carry over: `size`, `stride`, `class` (Fig. 7; `size`, `seed` Table 1;
/// `steps`, `class` Fig. 5); absent, each analysis's default.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigureRequest {
    pub model: ModelName,
    pub epoch: u32,
    pub figure: Name,
    pub image: Option<ContentId>,
    pub compare: Option<ModelName>,
    /// The compared model's snapshot (default: its last).
    pub compare_epoch: Option<u32>,
    pub set: Option<ContentId>,
    pub size: Option<i64>,
    pub stride: Option<i64>,
    pub class: Option<i64>,
    pub steps: Option<usize>,
    pub seed: Option<u64>,
    /// Steps of the feature visualisation figure (default 512).
    #[serde(default)]
    pub vis_steps: Option<usize>,
}

/// A request's JSON with the options that are set (the analyses' own
/// defaults fill in the rest).
fn with_options(mut v: Value, opts: &[(&str, Option<Value>)]) -> Value {
    for (k, o) in opts {
        if let Some(x) = o {
            v[*k] = x.clone();
        }
    }
    v
}

/// A drawn figure: the picture, its caption and its numbers.
#[derive(Serialize)]
pub struct Figure {
    pub figure: Name,
    pub file: String,
    pub title: String,
    /// What was measured and how.
    pub caption: String,
    pub data: Value,
    #[serde(skip)]
    pub png: Vec<u8>,
    #[serde(skip)]
    pub svg: Option<String>,
}

pub struct Figures;

impl Analysis for Figures {
    type Request = FigureRequest;
    type Result = Figure;

    fn pending(ctx: &Context, r: &FigureRequest) -> Result<Option<Progress>> {
        match r.figure {
            Name::Fig2 => DatasetTop9::pending(ctx, &top9_request(r, 1, 0)),
            Name::Fig4 => Timeline::pending(ctx, &timeline_request(r, 1, "0")?),
            _ => Ok(None),
        }
    }

    fn version(ctx: &Context, r: &FigureRequest) -> Result<Option<u64>> {
        match r.figure {
            Name::Fig2 => DatasetTop9::version(ctx, &top9_request(r, 1, 0)),
            Name::Fig4 => Timeline::version(ctx, &timeline_request(r, 1, "0")?),
            _ => Ok(None),
        }
    }

    fn run(e: &mut Engine, r: &FigureRequest) -> Result<Figure> {
        let (caption, data, d) = match r.figure {
            Name::Fig2 => fig2(e, r)?,
            Name::Fig3 => fig3(e, r)?,
            Name::Fig4 => fig4(e, r)?,
            Name::Fig5 => fig5(e, r)?,
            Name::Fig6 => fig6(e, r)?,
            Name::Fig7 => fig7(e, r)?,
            Name::Table1 => table1(e, r)?,
            Name::Vis => crate::analyses::visualize::figure(
                e,
                (&r.model, r.epoch),
                (r.vis_steps.unwrap_or(512), r.seed.unwrap_or(0)),
                &shown_layers,
                &title_text(r),
            )?,
        };
        Ok(Figure {
            figure: r.figure,
            file: format!("{}-{}-epoch{}", r.figure.stem(), r.model, r.epoch),
            title: r.figure.title().to_string(),
            caption,
            data,
            png: d.png(),
            svg: r.figure.has_svg().then(|| d.svg()),
        })
    }

    fn alt(_: &FigureRequest, f: &mut Figure) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut f.png))
    }
}

type Drawn = (String, Value, Drawing);

fn image_of(r: &FigureRequest) -> Result<&ContentId> {
    r.image
        .as_ref()
        .ok_or_else(|| bad(format!("{} needs an image (?image=ID)", r.figure.stem())))
}

fn top9_request(r: &FigureRequest, layer: usize, map: i64) -> DatasetMapRequest {
    DatasetMapRequest {
        model: r.model.clone(),
        epoch: r.epoch,
        layer,
        map,
        frame: Default::default(),
    }
}

fn timeline_request(r: &FigureRequest, layer: usize, maps: &str) -> Result<TimelineRequest> {
    serde_json::from_value(json!({ "model": r.model, "layer": layer, "maps": maps }))
        .map_err(|x| Error::Internal(x.into()))
}

/// Conv layers shown: all up to 5, else 5 spread over the network (VGG).
fn shown_layers(n: usize) -> Vec<usize> {
    if n <= 5 {
        return (1..=n).collect();
    }
    let mut v: Vec<usize> = (0..5).map(|i| 1 + i * (n - 1) / 4).collect();
    v.dedup();
    v
}

/// The `n` maps of a layer with the strongest activation over the dataset.
fn strongest_maps(idx: &crate::index::SnapshotIndex, layer: usize, n: usize) -> Vec<i64> {
    let mut maps: Vec<(i64, f64)> = idx.layers[layer - 1]
        .iter()
        .enumerate()
        .filter_map(|(m, es)| es.first().map(|e| (m as i64, e.value)))
        .collect();
    maps.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    maps.into_iter().take(n).map(|m| m.0).collect()
}

fn dataset_index(
    e: &Engine,
    r: &FigureRequest,
    epoch: u32,
) -> Result<std::sync::Arc<crate::index::SnapshotIndex>> {
    let m = e.model(&r.model)?;
    crate::analyses::timeline::snapshot_index(e.ctx.indexer()?, &m, epoch)
}

fn decode_png(bytes: &[u8]) -> Result<RgbImage> {
    Ok(image::load_from_memory(bytes)
        .map_err(|x| Error::Internal(x.into()))?
        .to_rgb8())
}

fn tile(src: &RgbImage, col: u32, row: u32, side: u32) -> RgbImage {
    let t = imageops::crop_imm(src, col * TILE, row * TILE, TILE, TILE).to_image();
    imageops::resize(&t, side, side, FilterType::Triangle)
}

fn title_text(r: &FigureRequest) -> String {
    format!("{}  ({} epoch {})", r.figure.title(), r.model, r.epoch)
}

fn title_w(r: &FigureRequest) -> i32 {
    draw::text_w(&title_text(r), Size::Title) + 20
}

fn title(d: &mut Drawing, r: &FigureRequest) {
    d.text(10, 8, title_text(r), Size::Title, Anchor::Start);
}

/// A figure that is a table: title, one line under it, the table; the
/// picture sized to fit them (`below`: px besides the table's height).
fn table_figure(
    r: &FigureRequest,
    line: String,
    header: &[&str],
    rows: &[Vec<String>],
    below: i32,
) -> Drawing {
    let mut d = Drawing::new(0, 0);
    title(&mut d, r);
    d.text(10, 30, line, Size::Small, Anchor::Start);
    let (w, h) = draw::table(&mut d, 10, 50, header, rows);
    d.w = (w + 20).max(title_w(r)) as u32;
    d.h = (h + below) as u32;
    d
}

// ---- Fig. 2 ---------------------------------------------------------------------

fn fig2(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    const MAPS: usize = 3;
    const T: u32 = 48;
    let idx = dataset_index(e, r, r.epoch)?;
    let layers = shown_layers(idx.layers.len());
    let block = 6 * T + 16;
    let row_h = (3 * T + 24) as i32;
    let mut d = Drawing::new(
        (MAPS as u32 * (block + 12) + 90).max(700),
        36 + row_h as u32 * layers.len() as u32,
    );
    title(&mut d, r);
    let mut data = vec![];
    for (li, &layer) in layers.iter().enumerate() {
        let y = 36 + li as i32 * row_h;
        d.text(
            10,
            y + 70,
            format!("layer {layer}"),
            Size::Title,
            Anchor::Start,
        );
        for (k, map) in strongest_maps(&idx, layer, MAPS).into_iter().enumerate() {
            let res = DatasetTop9::run(e, &top9_request(r, layer, map))?;
            let sprite = decode_png(&res.sprite_png)?;
            let x = 90 + k as i32 * (block + 12) as i32;
            d.text(x, y, format!("map {map}"), Size::Small, Anchor::Start);
            for i in 0..res.items.len() as u32 {
                let (cx, cy) = ((i % 3 * T) as i32, (i / 3 * T) as i32 + y + 16);
                d.image(x + cx, cy, tile(&sprite, i, 0, T));
                d.image(x + (3 * T + 8) as i32 + cx, cy, tile(&sprite, i, 1, T));
            }
            data.push(json!({ "layer": layer, "map": map, "top9": res.items }));
        }
    }
    let images = idx.images.len();
    let caption = format!(
        "For each shown conv layer, the {MAPS} maps with the strongest single activation over the \
         dataset ({images} images indexed); for each map its 9 strongest activations (one per image), \
         each projected to pixels by the deconvnet (left 3x3) beside the image patch of its receptive \
         field (right 3x3), strongest first. Projections keep only the one activation, as in the paper."
    );
    Ok((caption, json!({ "images": images, "maps": data }), d))
}

// ---- Fig. 3 ---------------------------------------------------------------------

fn fig3(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    let m = e.model(&r.model)?;
    let spec = m.manifest.spec()?;
    let shapes = spec.shapes()?;
    let mut rows = vec![];
    let mut total: i64 = 0;
    for (i, l) in spec.ops().enumerate() {
        let shape = match shapes.get(i) {
            Some(Shape::Maps { c, side }) => format!("{c} x {side} x {side}"),
            Some(Shape::Flat(n)) => format!("{n}"),
            Some(Shape::Tokens { c, side, prefix }) => {
                format!("{} tokens x {c}", prefix + side * side)
            }
            None => String::new(),
        };
        let (kind, what, params) = match l {
            Layer::Conv {
                name,
                out,
                k,
                stride,
                pad,
                groups,
                in_c,
                ..
            } => (
                format!("conv {name}"),
                format!(
                    "{out} filters {k}x{k}, stride {stride}, pad {pad}{}",
                    if *groups > 1 {
                        format!(", {groups} groups")
                    } else {
                        String::new()
                    }
                ),
                out * in_c / groups * k * k + out,
            ),
            Layer::Linear { name, out, .. } => {
                let n_in = match i.checked_sub(1).and_then(|p| shapes.get(p)) {
                    Some(Shape::Maps { c, side }) => c * side * side,
                    Some(Shape::Flat(n)) => *n,
                    Some(Shape::Tokens { c, .. }) => *c,
                    None => 3 * spec.input_size * spec.input_size,
                };
                (
                    format!("fc {name}"),
                    format!("{out} units"),
                    n_in * out + out,
                )
            }
            other => {
                let s = serde_json::to_value(other)?;
                let mut parts = vec![];
                if let Some(o) = s.as_object() {
                    for (k, v) in o {
                        if k != "op" {
                            parts.push(format!("{k} {v}"));
                        }
                    }
                }
                (other.op().replace('_', " "), parts.join(", "), 0)
            }
        };
        total += params;
        // A graph's wiring: the rows a node reads, and its unit's name.
        let mut what = what;
        if let Some(v) = &spec.nodes[i].inputs {
            let from: Vec<String> = v.iter().map(|j| (j + 1).to_string()).collect();
            let sep = if what.is_empty() { "" } else { "; " };
            what = format!("{what}{sep}reads {}", from.join(", "));
        }
        let kind = match &spec.nodes[i].name {
            Some(u) if !kind.contains(u.as_str()) => format!("{kind} = {u}"),
            _ => kind,
        };
        rows.push(vec![
            format!("{}", i + 1),
            kind,
            what,
            shape,
            if params > 0 {
                params.to_string()
            } else {
                String::new()
            },
        ]);
    }
    let header = ["#", "layer", "parameters", "output", "weights"];
    let d = table_figure(
        r,
        format!(
            "input 3 x {s} x {s}; {total} weights in all",
            s = spec.input_size
        ),
        &header,
        &rows,
        80,
    );
    let caption = format!(
        "The network as this model's manifest defines it: every layer in order with its output \
         shape (channels x height x width, computed from the {s}x{s} input) and its number of \
         weights (biases included); {total} in all.",
        s = spec.input_size
    );
    let data: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "index": r[0], "layer": r[1], "parameters": r[2], "output": r[3], "weights": r[4] }))
        .collect();
    Ok((
        caption,
        json!({ "input_size": spec.input_size, "weights": total, "layers": data }),
        d,
    ))
}

// ---- Fig. 4 ---------------------------------------------------------------------

fn fig4(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    const MAPS: usize = 4;
    const T: u32 = 48;
    let m = e.model(&r.model)?;
    let epochs: Vec<u32> = m.manifest.snapshots.iter().map(|s| s.epoch).collect();
    let last = *epochs
        .last()
        .ok_or_else(|| bad("the model has no snapshots"))?;
    let idx = dataset_index(e, r, last)?;
    let layers = shown_layers(idx.layers.len());
    let block_h = (MAPS as u32 * T + 26) as i32;
    let mut d = Drawing::new(
        (90 + epochs.len() as u32 * (T + 2)).max(700),
        60 + block_h as u32 * layers.len() as u32,
    );
    title(&mut d, r);
    for (c, ep) in epochs.iter().enumerate() {
        d.text(
            90 + c as i32 * (T + 2) as i32 + T as i32 / 2,
            34,
            ep.to_string(),
            Size::Small,
            Anchor::Middle,
        );
    }
    d.text(10, 34, "epoch", Size::Small, Anchor::Start);
    let mut data = vec![];
    for (li, &layer) in layers.iter().enumerate() {
        let maps = strongest_maps(&idx, layer, MAPS);
        let list: Vec<String> = maps.iter().map(|m| m.to_string()).collect();
        let t = Timeline::run(e, &timeline_request(r, layer, &list.join(","))?)?;
        let y = 54 + li as i32 * block_h;
        d.text(
            10,
            y + 4,
            format!("layer {layer}"),
            Size::Title,
            Anchor::Start,
        );
        for (row, map) in t.maps.iter().enumerate() {
            d.text(
                10,
                y + 22 + row as i32 * T as i32 + 16,
                format!("map {map}"),
                Size::Small,
                Anchor::Start,
            );
            for c in 0..t.epochs.len() as u32 {
                d.image(
                    90 + (c * (T + 2)) as i32,
                    y + 22 + (row as u32 * T) as i32,
                    tile(&t.projections, c, row as u32, T),
                );
            }
        }
        data.push(json!({ "layer": layer, "maps": t.maps, "epochs": t.epochs, "cells": t.cells, "errors": t.errors }));
    }
    let caption = format!(
        "Columns: the model's {} snapshots (epochs {}). Rows: for each shown layer, the {MAPS} maps \
         strongest over the dataset at the last epoch; each cell is the deconvnet projection of that \
         map's strongest activation over the whole dataset at that epoch, cut to its receptive field \
         ({} images indexed at the last epoch).",
        epochs.len(),
        epochs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
        idx.images.len()
    );
    Ok((caption, json!({ "layers": data }), d))
}

// ---- Fig. 5 ---------------------------------------------------------------------

fn fig5(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    let image = image_of(r)?.clone();
    let req = CurvesRequest {
        model: r.model.clone(),
        epoch: r.epoch,
        image,
        steps: r.steps.unwrap_or(13),
        class: r.class,
    };
    let res = Invariance::run(e, &req)?;
    let names = e.model(&r.model)?.manifest.classes;
    let class = names
        .get(res.class as usize)
        .map_or(res.class.to_string(), |c| c.name.clone());
    let (pw, ph) = (300, 190);
    let mut d = Drawing::new(3 * pw as u32 + 20, 3 * ph as u32 + 50);
    title(&mut d, r);
    let cols = [
        ("translation", "vertical shift (px)", &res.translate),
        ("scale", "scale factor", &res.scale),
        ("rotation", "rotation (degrees)", &res.rotate),
    ];
    for (c, (name, xlabel, curve)) in cols.iter().enumerate() {
        type Row<'a> = (String, &'a Vec<f64>, Option<(f64, f64)>);
        let rows: [Row; 3] = [
            (
                format!("{name}: distance, {}", res.layer_names.layer1),
                &curve.dist_layer1,
                None,
            ),
            (
                format!("{name}: distance, {}", res.layer_names.layer7),
                &curve.dist_layer7,
                None,
            ),
            (format!("{name}: P({class})"), &curve.prob, Some((0.0, 1.0))),
        ];
        for (k, (t, ys, range)) in rows.iter().enumerate() {
            draw::plot(
                &mut d,
                (10 + c as i32 * pw, 34 + k as i32 * ph, pw, ph),
                t,
                xlabel,
                &curve.values,
                &[Series { name: "", ys }],
                *range,
            );
        }
    }
    let caption = format!(
        "The image transformed by translation, scaling and rotation ({} points each, the identity \
         included). Rows 1-2: Euclidean distance between the feature vectors of the original and the \
         transformed image at {} (the paper's layer 1) and {} (its layer 7); row 3: the probability \
         of the image's top class ({class}) for each transform.",
        res.translate.values.len(),
        res.layer_names.layer1,
        res.layer_names.layer7
    );
    Ok((caption, serde_json::to_value(&res)?, d))
}

// ---- Fig. 6 ---------------------------------------------------------------------

/// The other model of Fig. 6: the request's, else the first model (by name)
/// of another architecture.
fn other_model(e: &Engine, r: &FigureRequest) -> Result<(ModelName, u32)> {
    let name = match &r.compare {
        Some(c) => c.clone(),
        None => {
            let mine = e.model(&r.model)?.manifest.architecture;
            let other = crate::models::list_models(&e.ctx.models)?
                .models
                .into_iter()
                .find(|m| m.architecture != mine && m.name != r.model.as_str())
                .ok_or_else(|| {
                    bad("no model of another architecture to compare with (?compare=M)")
                })?;
            ModelName::try_from(other.name).map_err(|x| bad(x.to_string()))?
        }
    };
    let epoch = e
        .model(&name)?
        .manifest
        .snapshot(r.compare_epoch)
        .map_err(|x| Error::NotFound(x.to_string()))?
        .epoch;
    Ok((name, epoch))
}

fn fig6(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    const MAPS: usize = 8;
    const T: u32 = 80;
    let (other, oe) = other_model(e, r)?;
    let mut panels = vec![];
    let mut data = vec![];
    for (model, epoch) in [(r.model.clone(), r.epoch), (other, oe)] {
        let f = Filters::run(
            e,
            &FiltersRequest {
                model: model.clone(),
                epoch,
                norm: Default::default(),
            },
        )?;
        let filters = decode_png(&f.sprite_png)?;
        let (top, tiles) = match &r.image {
            Some(image) => {
                let (net, t) = e.traced(&model, epoch, image)?;
                let layer = 2.min(net.convs.len());
                let top = deconv::top_maps(&t.trace, layer, MAPS)?;
                let reqs: Vec<ProjectRequest> = top
                    .iter()
                    .map(|&(map, _)| ProjectRequest {
                        layer,
                        map,
                        keep: Keep::Strongest,
                    })
                    .collect();
                let projs =
                    deconv::project(&net, &t.trace, &reqs).map_err(crate::engine::bad_input)?;
                (
                    top,
                    projs
                        .iter()
                        .map(|p| crate::picture::field_image(&p.pixels, p.field, T))
                        .collect::<anyhow::Result<Vec<RgbImage>>>()?,
                )
            }
            None => (vec![], vec![]),
        };
        let arch = e.model(&model)?.manifest.architecture;
        data.push(json!({
            "model": model, "epoch": epoch, "architecture": arch,
            "kernel": f.kernel, "stride": f.stride, "filters": f.filters,
            "layer2_maps": top.iter().map(|m| json!({ "map": m.0, "activation": m.1 })).collect::<Vec<_>>(),
        }));
        panels.push((format!("{model} ({arch}) epoch {epoch}"), f, filters, tiles));
    }
    let fw = panels
        .iter()
        .map(|p| p.2.width())
        .max()
        .unwrap_or(0)
        .max(4 * (T + 4));
    let fh = panels.iter().map(|p| p.2.height()).max().unwrap_or(0);
    let mut d = Drawing::new(2 * (fw + 30) + 10, 60 + fh + 40 + 2 * (T + 4) + 30);
    title(&mut d, r);
    for (i, (label, f, filters, tiles)) in panels.into_iter().enumerate() {
        let x = 10 + i as i32 * (fw + 30) as i32;
        d.text(x, 32, label, Size::Small, Anchor::Start);
        d.text(
            x,
            48,
            format!("layer-1 filters {k}x{k}, stride {}", f.stride, k = f.kernel),
            Size::Small,
            Anchor::Start,
        );
        d.image(x, 64, filters);
        let y = 64 + fh as i32 + 12;
        if !tiles.is_empty() {
            d.text(
                x,
                y,
                format!("layer-2 projections, {MAPS} strongest maps"),
                Size::Small,
                Anchor::Start,
            );
        }
        for (k, t) in tiles.into_iter().enumerate() {
            d.image(
                x + (k as u32 % 4 * (T + 4)) as i32,
                y + 18 + (k as u32 / 4 * (T + 4)) as i32,
                t,
            );
        }
    }
    let caption = format!(
        "Left: this model; right: the compared one. Top: every layer-1 filter (one grey-centred \
         scale per layer, strongest RMS first). {}The paper compares its 7x7 stride-2 layer 1 with \
         AlexNet's 11x11 stride 4: the larger stride leaves dead filters and aliasing in layer 2.",
        if r.image.is_some() {
            "Bottom: deconvnet projections of the image's 8 strongest layer-2 maps (strongest \
             activation kept), cut to the receptive field with their own contrast. "
        } else {
            ""
        }
    );
    Ok((caption, json!({ "models": data }), d))
}

// ---- Fig. 7 ---------------------------------------------------------------------

fn fig7(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    const P: u32 = 224;
    let image = image_of(r)?.clone();
    let req: GridRequest = serde_json::from_value(with_options(
        json!({ "model": r.model, "epoch": r.epoch, "image": image }),
        &[
            ("size", r.size.map(Value::from)),
            ("stride", r.stride.map(Value::from)),
            ("class", r.class.map(Value::from)),
        ],
    ))
    .map_err(|x| bad(x.to_string()))?;
    let grid = Occlusion::run(e, &req)?.grid;
    let (net, t) = e.traced(&r.model, r.epoch, &image)?;
    let last = net.last_unit();
    let proj = deconv::project(
        &net,
        &t.trace,
        &[ProjectRequest {
            layer: last,
            map: grid.strongest_map,
            keep: Keep::Strongest,
        }],
    )
    .map_err(crate::engine::bad_input)?
    .remove(0);
    let names: Vec<String> = e
        .model(&r.model)?
        .manifest
        .classes
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let name = |l: i64| {
        names
            .get(l as usize)
            .cloned()
            .unwrap_or_else(|| l.to_string())
    };
    let [(_, b), (_, dd), (_, ee)] = occlusion::heatmaps(&t.crop, &grid);
    let fit = |g: &Vec<Vec<f64>>| {
        let v: Vec<f64> = g.iter().flatten().copied().collect();
        (
            v.iter().cloned().fold(f64::INFINITY, f64::min),
            v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let (blo, bhi) = fit(&grid.map_activation);
    let (dlo, dhi) = fit(&grid.class_prob);
    let order = occlusion::label_order(&grid.top_label);
    let fitted = |im: RgbImage| imageops::resize(&im, P, P, FilterType::Triangle);
    let panels: [(String, RgbImage); 5] = [
        ("(a) input".into(), fitted(t.crop.clone())),
        (
            format!(
                "(b) {} map {}",
                net.units[last - 1].name,
                grid.strongest_map
            ),
            fitted(b),
        ),
        (
            "(c) its projection".into(),
            fitted(crate::picture::to_image(&proj.pixels)?),
        ),
        (format!("(d) P({})", name(grid.class)), fitted(dd)),
        ("(e) top label".into(), fitted(ee)),
    ];
    let legend_rows = order.len().div_ceil(3) as u32;
    let mut d = Drawing::new(5 * (P + 10) + 10, 40 + P + 60 + 16 * legend_rows + 10);
    title(&mut d, r);
    for (i, (label, img)) in panels.into_iter().enumerate() {
        let x = 10 + i as i32 * (P + 10) as i32;
        d.text(x, 32, label, Size::Small, Anchor::Start);
        d.image(x, 50, img);
    }
    let bar = |d: &mut Drawing, x: i32, lo: f64, hi: f64| {
        let y = 50 + P as i32 + 6;
        for k in 0..P as i32 {
            let c = crate::picture::viridis(k as f64 / (P - 1) as f64);
            d.rect(x + k, y, 1, 8, Some(c), None);
        }
        d.text(x, y + 10, draw::num(lo), Size::Small, Anchor::Start);
        d.text(
            x + P as i32,
            y + 10,
            draw::num(hi),
            Size::Small,
            Anchor::End,
        );
    };
    bar(&mut d, 10 + (P + 10) as i32, blo, bhi);
    bar(&mut d, 10 + 3 * (P + 10) as i32, dlo, dhi);
    let ly = 50 + P as i32 + 32;
    for (k, &l) in order.iter().enumerate() {
        let col = (2 * P as i32 + 10) / 3;
        let (x, y) = (
            10 + 3 * (P + 10) as i32 + (k as i32 % 3) * col,
            ly + (k as i32 / 3) * 16,
        );
        d.rect(
            x,
            y + 2,
            10,
            10,
            Some(occlusion::rank_colour(k)),
            Some(draw::GREY),
        );
        d.text(x + 14, y, name(l), Size::Small, Anchor::Start);
    }
    let caption = format!(
        "A grey square of {s}x{s} px slid over the input with stride {st} ({n} positions). (b) the \
         total activation of {layer} map {map} (the strongest map of the unoccluded image: {ua:.3}) for \
         each position of the square; (c) that map's deconvnet projection on the unoccluded image; \
         (d) the probability of the class {cls} (the top class unless one was chosen; unoccluded {up:.3}), colour scale fitted to \
         {dlo:.3}-{dhi:.3}; (e) the most probable class for each position, {k} labels, coloured by \
         how many positions each wins. Each value is drawn at the centre of the square.",
        s = grid.size,
        st = grid.stride,
        n = grid.positions.x.len() * grid.positions.y.len(),
        layer = net.units[last - 1].name,
        map = grid.strongest_map,
        ua = grid.unoccluded.map_activation,
        cls = name(grid.class),
        up = grid.unoccluded.class_prob,
        k = order.len(),
    );
    Ok((caption, serde_json::to_value(&grid)?, d))
}

// ---- Table 1 ----------------------------------------------------------------------

fn table1(e: &mut Engine, r: &FigureRequest) -> Result<Drawn> {
    let set = r.set.clone().ok_or_else(|| {
        bad("table1 needs a landmark set (?set=ID; zfvis figures --landmarks FILE)")
    })?;
    let req: SetRequest = serde_json::from_value(with_options(
        json!({ "model": r.model, "epoch": r.epoch, "set": set }),
        &[
            ("size", r.size.map(Value::from)),
            ("seed", r.seed.map(Value::from)),
        ],
    ))
    .map_err(|x| bad(x.to_string()))?;
    let res = Correspondence::run(e, &req)?;
    let paper = |part: &str| res.paper.iter().find(|p| p.part == part);
    let rows: Vec<Vec<String>> = res
        .parts
        .iter()
        .map(|(part, p)| {
            vec![
                part.clone(),
                format!("{:.3} +- {:.3}", p.layer5.mean, p.layer5.std),
                format!("{:.3} +- {:.3}", p.layer7.mean, p.layer7.std),
                paper(part).map_or("-".into(), |q| format!("{:.3}", q.layer5)),
                paper(part).map_or("-".into(), |q| format!("{:.3}", q.layer7)),
            ]
        })
        .collect();
    let h5 = format!("layer 5 ({})", res.layer_names.layer5);
    let h7 = format!("layer 7 ({})", res.layer_names.layer7);
    let header = [
        "occluded part",
        h5.as_str(),
        h7.as_str(),
        "paper layer 5",
        "paper layer 7",
    ];
    let d = table_figure(
        r,
        format!(
            "{} images, {} pairs, square {} px, seed {}",
            res.images.len(),
            res.pairs,
            res.size,
            res.seed
        ),
        &header,
        &rows,
        70,
    );
    let caption = format!(
        "For each part, a {s}x{s} px square occludes it in each of the {n} images; the sign of the \
         change of the features (original minus occluded) is compared over all {p} image pairs by \
         Hamming distance, mean +- std (lower: the part is handled more consistently). \"random\" \
         occludes a random position with the same seed. The paper's values for its dogs are beside ours.",
        s = res.size,
        n = res.images.len(),
        p = res.pairs
    );
    Ok((caption, serde_json::to_value(&res)?, d))
}

// ---- the report -------------------------------------------------------------------

/// One entry of the report: a drawn figure or why it is missing.
pub enum Entry {
    Drawn(Figure),
    Missing { figure: Name, why: String },
}

/// A self-contained HTML page (the PNGs inline) with every figure and caption.
pub fn report(model: &str, epoch: u32, what: &str, entries: &[Entry]) -> String {
    use base64::Engine as _;
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>zfvis figures: {m} epoch {epoch}</title>\n<style>\
         body{{font:15px/1.45 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}\
         figure{{margin:2.5em 0}} img{{max-width:100%;border:1px solid #ddd}}\
         figcaption{{margin-top:.5em;color:#444}} .missing{{color:#a33}} code{{background:#f3f3f3}}\
         </style></head><body>\n<h1>The paper's figures for {m}, epoch {epoch}</h1>\n<p>{w}</p>\n",
        m = draw::escape(model),
        w = draw::escape(what)
    );
    for en in entries {
        match en {
            Entry::Drawn(f) => {
                s += &format!(
                    "<figure id=\"{stem}\"><h2>{t}</h2>\n<img src=\"data:image/png;base64,{b}\" alt=\"{t}\">\n\
                     <figcaption>{c} Files: <code>{file}.png</code>{svg}, <code>{file}.json</code>.</figcaption></figure>\n",
                    stem = f.figure.stem(),
                    t = draw::escape(&f.title),
                    b = base64::engine::general_purpose::STANDARD.encode(&f.png),
                    c = draw::escape(&f.caption),
                    file = draw::escape(&f.file),
                    svg = if f.svg.is_some() {
                        format!(", <code>{}.svg</code>", draw::escape(&f.file))
                    } else {
                        String::new()
                    },
                );
            }
            Entry::Missing { figure, why } => {
                s += &format!(
                    "<figure id=\"{}\"><h2>{}</h2><p class=\"missing\">Not drawn: {}</p></figure>\n",
                    figure.stem(),
                    draw::escape(figure.title()),
                    draw::escape(why)
                );
            }
        }
    }
    s + "<p>Made by zfvis (Zeiler &amp; Fergus, Visualizing and Understanding Convolutional Networks, 2013).</p>\n</body></html>\n"
}

crate::names_models! {
    FigureRequest: model compare;
}
