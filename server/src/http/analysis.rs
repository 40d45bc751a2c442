//! Models, predictions, feature maps and deconvnet projections. Handlers
//! parse the URL, ask the worker for one analysis and cache its answer.

use super::{ApiError, AppState, Cached, Outputs};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::sync::Arc;
use zfvis_core::deconv::Keep;
use zfvis_core::engine::{self, Engine};

type Params = Path<HashMap<String, String>>;
type Q = Query<HashMap<String, String>>;

pub(super) fn param<'a>(p: &'a HashMap<String, String>, name: &str) -> &'a str {
    p.get(name).map(|s| s.as_str()).unwrap_or("")
}

pub(super) fn number<T: std::str::FromStr>(
    p: &HashMap<String, String>,
    name: &str,
) -> Result<T, ApiError> {
    let v = param(p, name);
    v.parse()
        .map_err(|_| ApiError::bad(format!("{name} must be a non-negative integer, got {v:?}")))
}

/// The parsed common prefix: model, snapshot epoch, image id.
struct Target {
    model: String,
    epoch: u32,
    image: String,
}

fn target(p: &HashMap<String, String>) -> Result<Target, ApiError> {
    let model = param(p, "model").to_string();
    if !engine::valid_model_name(&model) {
        return Err(ApiError::bad(format!("malformed model name {model:?}")));
    }
    let image = param(p, "image").to_string();
    if !zfvis_core::store::valid_id(&image) {
        return Err(ApiError::bad(format!(
            "malformed image id {image:?}: expected 64 hex digits"
        )));
    }
    Ok(Target {
        model,
        epoch: number(p, "epoch")?,
        image,
    })
}

fn keep(q: &HashMap<String, String>) -> Result<Keep, ApiError> {
    match q.get("mode").map(|s| s.as_str()) {
        None | Some("strongest") => Ok(Keep::Strongest),
        Some("all") => Ok(Keep::All),
        Some(m) => Err(ApiError::bad(format!(
            "mode must be \"strongest\" or \"all\", got {m:?}"
        ))),
    }
}

/// Compute once per key (concurrent identical requests share one computation).
pub(super) async fn cached(
    st: &AppState,
    key: String,
    f: impl FnOnce(&mut Engine) -> engine::Result<(serde_json::Value, Option<Vec<u8>>)> + Send + 'static,
) -> Result<Arc<Outputs>, ApiError> {
    cached_as(st, key, "image/png", f).await
}

/// As [`cached`], with the second representation's content type.
async fn cached_as(
    st: &AppState,
    key: String,
    alt_type: &'static str,
    f: impl FnOnce(&mut Engine) -> engine::Result<(serde_json::Value, Option<Vec<u8>>)> + Send + 'static,
) -> Result<Arc<Outputs>, ApiError> {
    let worker = st.worker.clone();
    st.cache
        .try_get_with(key, async move {
            let (json, png) = worker.run(f).await?;
            Ok::<_, ApiError>(Arc::new(Outputs {
                json: Cached::new(
                    serde_json::to_vec(&json).unwrap_or_default(),
                    "application/json",
                ),
                alt: png.map(|b| Cached::new(b, alt_type)),
            }))
        })
        .await
        .map_err(|e: Arc<ApiError>| ApiError::new(e.status, e.message.clone()))
}

pub(super) fn png_of(o: &Outputs, h: &HeaderMap) -> Result<Response, ApiError> {
    o.alt
        .as_ref()
        .map(|p| p.respond(h))
        .ok_or_else(|| ApiError::internal("no image for this result"))
}

pub async fn models(State(st): State<AppState>) -> Result<Response, ApiError> {
    let dir = st.models.clone();
    let list = tokio::task::spawn_blocking(move || engine::list_models(&dir))
        .await
        .map_err(|_| ApiError::internal("listing models failed"))?;
    Ok(Json(serde_json::json!({ "models": list })).into_response())
}

pub async fn model(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let dir = st.models.clone();
    let info = tokio::task::spawn_blocking(move || engine::model_info(&dir, &name))
        .await
        .map_err(|_| ApiError::internal("reading model failed"))??;
    Ok(Json(info).into_response())
}

pub async fn crop(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let (model, image) = (
        param(&p, "model").to_string(),
        param(&p, "image").to_string(),
    );
    let key = format!("crop/{model}/{image}");
    let o = cached(&st, key, move |e| {
        Ok((serde_json::Value::Null, Some(e.crop_png(&model, &image)?)))
    })
    .await?;
    png_of(&o, &h)
}

pub async fn predictions(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let t = target(&p)?;
    let key = format!("pred/{}/{}/{}", t.model, t.epoch, t.image);
    let o = cached(&st, key, move |e| {
        let top = e.predictions(&t.model, t.epoch, &t.image)?;
        Ok((serde_json::json!({ "top": top }), None))
    })
    .await?;
    Ok(o.json.respond(&h))
}

async fn maps(st: &AppState, p: &HashMap<String, String>) -> Result<Arc<Outputs>, ApiError> {
    let t = target(p)?;
    let layer: usize = number(p, "layer")?;
    let key = format!("maps/{}/{}/{}/{layer}", t.model, t.epoch, t.image);
    cached(st, key, move |e| {
        let mut r = e.maps(&t.model, t.epoch, &t.image, layer)?;
        let png = std::mem::take(&mut r.sprite_png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await
}

pub async fn maps_json(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(maps(&st, &p).await?.json.respond(&h))
}

pub async fn maps_png(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    png_of(&*maps(&st, &p).await?, &h)
}

async fn projection(
    st: &AppState,
    p: &HashMap<String, String>,
    q: &HashMap<String, String>,
) -> Result<Arc<Outputs>, ApiError> {
    let t = target(p)?;
    let layer: usize = number(p, "layer")?;
    let map: i64 = number(p, "map")?;
    let keep = keep(q)?;
    let key = format!(
        "proj/{}/{}/{}/{layer}/{map}/{keep:?}",
        t.model, t.epoch, t.image
    );
    cached(st, key, move |e| {
        let mut r = e.projection(&t.model, t.epoch, &t.image, layer, map, keep)?;
        let png = std::mem::take(&mut r.png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await
}

pub async fn projection_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(projection(&st, &p, &q).await?.json.respond(&h))
}

pub async fn projection_png(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    png_of(&*projection(&st, &p, &q).await?, &h)
}

async fn top9(st: &AppState, p: &HashMap<String, String>) -> Result<Arc<Outputs>, ApiError> {
    let t = target(p)?;
    let layer: usize = number(p, "layer")?;
    let key = format!("top9/{}/{}/{}/{layer}", t.model, t.epoch, t.image);
    cached(st, key, move |e| {
        let mut r = e.top9(&t.model, t.epoch, &t.image, layer)?;
        let png = std::mem::take(&mut r.sprite_png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await
}

pub async fn top9_json(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(top9(&st, &p).await?.json.respond(&h))
}

pub async fn top9_png(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    png_of(&*top9(&st, &p).await?, &h)
}

/// Counters for tests and operators: forward passes run so far.
pub async fn stats(State(st): State<AppState>) -> Result<Response, ApiError> {
    let forwards = st.worker.run(|e| Ok(e.forwards)).await?;
    Ok(
        Json(serde_json::json!({ "forwards": forwards, "cached_results": st.cache.entry_count() }))
            .into_response(),
    )
}

pub(super) fn qnum(
    q: &HashMap<String, String>,
    name: &str,
    default: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    match q.get(name).map(|s| s.as_str()) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("{name} must be an integer, got {v:?}"))),
    }
}

pub(super) fn need(
    q: &HashMap<String, String>,
    name: &str,
    default: Option<i64>,
) -> Result<i64, ApiError> {
    qnum(q, name, default)?.ok_or_else(|| ApiError::bad(format!("missing query parameter {name}")))
}

/// Occlusion maps (Fig. 7): `?size=48&stride=8&class=K`.
pub async fn occlusion_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let t = target(&p)?;
    let (size, stride, class) = (
        need(&q, "size", Some(48))?,
        need(&q, "stride", Some(8))?,
        qnum(&q, "class", None)?,
    );
    let key = format!(
        "occ/{}/{}/{}/{size}/{stride}/{class:?}",
        t.model, t.epoch, t.image
    );
    let o = cached(&st, key, move |e| {
        let r = e.occlusion(&t.model, t.epoch, &t.image, size, stride, class)?;
        Ok((
            serde_json::to_value(&*r).map_err(|e| engine::Error::Internal(e.into()))?,
            None,
        ))
    })
    .await?;
    Ok(o.json.respond(&h))
}

/// One occlusion heatmap over the crop: `?kind=class_prob|map_activation|top_label`.
pub async fn occlusion_png(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let t = target(&p)?;
    let (size, stride, class) = (
        need(&q, "size", Some(48))?,
        need(&q, "stride", Some(8))?,
        qnum(&q, "class", None)?,
    );
    let kind = q
        .get("kind")
        .cloned()
        .unwrap_or_else(|| "class_prob".into());
    let key = format!(
        "occpng/{}/{}/{}/{size}/{stride}/{class:?}/{kind}",
        t.model, t.epoch, t.image
    );
    let o = cached(&st, key, move |e| {
        let png = e.occlusion_png(&t.model, t.epoch, &t.image, size, stride, class, &kind)?;
        Ok((serde_json::Value::Null, Some(png)))
    })
    .await?;
    png_of(&o, &h)
}

/// The live occluder: one position, `?x=&y=&size=&class=`.
pub async fn occlusion_live(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let t = target(&p)?;
    let (x, y, size, class) = (
        need(&q, "x", None)?,
        need(&q, "y", None)?,
        need(&q, "size", Some(48))?,
        qnum(&q, "class", None)?,
    );
    let key = format!(
        "live/{}/{}/{}/{x}/{y}/{size}/{class:?}",
        t.model, t.epoch, t.image
    );
    let o = cached(&st, key, move |e| {
        let r = e.live_occlusion(&t.model, t.epoch, &t.image, x, y, size, class)?;
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            None,
        ))
    })
    .await?;
    Ok(o.json.respond(&h))
}

async fn occluded_projection(
    st: &AppState,
    p: &HashMap<String, String>,
    q: &HashMap<String, String>,
) -> Result<Arc<Outputs>, ApiError> {
    let t = target(p)?;
    let (x, y, size) = (
        need(q, "x", None)?,
        need(q, "y", None)?,
        need(q, "size", Some(48))?,
    );
    let key = format!("occproj/{}/{}/{}/{x}/{y}/{size}", t.model, t.epoch, t.image);
    cached(st, key, move |e| {
        let mut r = e.occluded_projection(&t.model, t.epoch, &t.image, x, y, size)?;
        let png = std::mem::take(&mut r.png);
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(png),
        ))
    })
    .await
}

/// Fig. 7 (c): the strongest conv5 map's projection with the square at (x, y).
pub async fn occluded_projection_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(occluded_projection(&st, &p, &q).await?.json.respond(&h))
}

pub async fn occluded_projection_png(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    png_of(&*occluded_projection(&st, &p, &q).await?, &h)
}

async fn invariance(
    st: &AppState,
    p: &HashMap<String, String>,
    q: &HashMap<String, String>,
) -> Result<Arc<Outputs>, ApiError> {
    let t = target(p)?;
    let steps = need(q, "steps", Some(13))?;
    let class = qnum(q, "class", None)?;
    if !(2..=361).contains(&steps) {
        return Err(ApiError::bad(format!("steps must be 2..=361, got {steps}")));
    }
    let key = format!("inv/{}/{}/{}/{steps}/{class:?}", t.model, t.epoch, t.image);
    cached_as(st, key, "text/csv", move |e| {
        let r = e.invariance(&t.model, t.epoch, &t.image, steps as usize, class)?;
        let csv = r.to_csv().into_bytes();
        Ok((
            serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?,
            Some(csv),
        ))
    })
    .await
}

/// Invariance curves (Fig. 5): `?steps=13&class=K`.
pub async fn invariance_json(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(invariance(&st, &p, &q).await?.json.respond(&h))
}

pub async fn invariance_csv(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let o = invariance(&st, &p, &q).await?;
    o.alt
        .as_ref()
        .map(|c| c.respond(&h))
        .ok_or_else(|| ApiError::internal("no CSV for this result"))
}

/// The correspondence test (Table 1) over a stored set: `?set=ID&size=24&seed=0`.
pub async fn correspondence(
    State(st): State<AppState>,
    Path(p): Params,
    Query(q): Q,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let model = param(&p, "model").to_string();
    if !engine::valid_model_name(&model) {
        return Err(ApiError::bad(format!("malformed model name {model:?}")));
    }
    let epoch: u32 = number(&p, "epoch")?;
    let set = q.get("set").cloned().unwrap_or_default();
    if !zfvis_core::store::valid_id(&set) {
        return Err(ApiError::bad(format!(
            "malformed set id {set:?}: expected 64 hex digits"
        )));
    }
    let size = need(&q, "size", Some(24))?;
    let seed = need(&q, "seed", Some(0))?;
    if seed < 0 {
        return Err(ApiError::bad("seed must be a non-negative integer"));
    }
    let key = format!("corr/{model}/{epoch}/{set}/{size}/{seed}");
    let o = cached(&st, key, move |e| {
        let r = e.correspondence(&model, epoch, &set, size, seed as u64)?;
        let paper: Vec<serde_json::Value> = zfvis_core::correspondence::PAPER
            .iter()
            .map(|(p, l5, l7)| serde_json::json!({"part": p, "layer5": l5, "layer7": l7}))
            .collect();
        let mut v = serde_json::to_value(&r).map_err(|e| engine::Error::Internal(e.into()))?;
        v["paper"] = serde_json::Value::Array(paper);
        Ok((v, None))
    })
    .await?;
    Ok(o.json.respond(&h))
}

/// The image's projection of a map's strongest activation at every snapshot, as one row.
pub async fn evolution_png(
    State(st): State<AppState>,
    Path(p): Params,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let model = param(&p, "model").to_string();
    let image = param(&p, "image").to_string();
    if !zfvis_core::store::valid_id(&image) {
        return Err(ApiError::bad(format!(
            "malformed image id {image:?}: expected 64 hex digits"
        )));
    }
    let layer: usize = number(&p, "layer")?;
    let map: i64 = number(&p, "map")?;
    let key = format!("evo/{model}/{image}/{layer}/{map}");
    let o = cached(&st, key, move |e| {
        Ok((
            serde_json::Value::Null,
            Some(e.evolution_png(&model, &image, layer, map)?),
        ))
    })
    .await?;
    png_of(&o, &h)
}
