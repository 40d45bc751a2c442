//! Pages: one askama template; the view's state lives in the query string
//! (model, snapshot, image, layer, map, mode, view), read by static/app.js.

use super::state::{blocking, AppState};
use crate::error::ApiError;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use zfvis_core::engine;
use zfvis_core::models::Broken;

#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    /// The model list as JSON, embedded so the first paint needs no request.
    models_json: String,
    has_models: bool,
    /// Model folders that do not load, with their error.
    broken: Vec<Broken>,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct Compare {
    models_json: String,
}

#[derive(Template)]
#[template(path = "features.html")]
struct Features {
    models_json: String,
}

#[derive(Template)]
#[template(path = "methods.html")]
struct MethodsPage {
    models_json: String,
    /// The method registry (names, labels, captions, colours, needs).
    methods_json: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

/// The model list as JSON for a script element, how many models it holds,
/// and the folders that do not load (shown with their error).
async fn models_json(st: &AppState) -> Result<(String, usize, Vec<Broken>), ApiError> {
    let dir = st.ctx.models.clone();
    let list = blocking(move || Ok(engine::list_models(&dir)?)).await?;
    // Escape "</" so the JSON cannot close the script element.
    let json = serde_json::to_string(&list.models)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .replace("</", "<\\/");
    Ok((json, list.models.len(), list.broken))
}

pub async fn index(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (models_json, n, broken) = models_json(&st).await?;
    Ok(render(Index {
        models_json,
        has_models: n > 0,
        broken,
    }))
}

/// Two models or snapshots side by side (paper Fig. 6); state in the query
/// string (a, ea, b, eb, images, norm), read by static/compare.js.
pub async fn compare(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(render(Compare {
        models_json: models_json(&st).await?.0,
    }))
}

/// Linear probes per layer and the transfer curve (paper Table 7, Fig. 9);
/// state in the query string (model, epoch, train_per_class, shots, seeds,
/// scratch_epochs, classes), read by static/features.js.
pub async fn features(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(render(Features {
        models_json: models_json(&st).await?.0,
    }))
}

/// The methods side by side, their deletion/insertion curves and the
/// sanity check; state in the query string (model, epoch, image, class,
/// layer, map, seed, steps), read by static/methods.js.
pub async fn methods(State(st): State<AppState>) -> Result<Response, ApiError> {
    let methods = serde_json::to_string(&zfvis_core::methods::list())
        .map_err(|e| ApiError::internal(e.to_string()))?
        .replace("</", "<\\/");
    Ok(render(MethodsPage {
        models_json: models_json(&st).await?.0,
        methods_json: methods,
    }))
}

pub async fn not_found() -> Response {
    let page = ErrorPage {
        status: 404,
        message: "There is no page here.".into(),
    };
    (StatusCode::NOT_FOUND, render(page)).into_response()
}

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {e}"),
        )
            .into_response(),
    }
}
