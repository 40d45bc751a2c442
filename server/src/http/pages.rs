//! Pages: one askama template; the view's state lives in the query string
//! (model, snapshot, image, layer, map, mode, view), read by static/app.js.

use super::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use zfvis_core::engine;

#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    /// The model list as JSON, embedded so the first paint needs no request.
    models_json: String,
    has_models: bool,
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

/// The model list as JSON for a script element, and whether it is empty.
async fn models_json(st: &AppState) -> (String, bool) {
    let dir = st.ctx.models.clone();
    let models = tokio::task::spawn_blocking(move || engine::list_models(&dir))
        .await
        .unwrap_or_default();
    // Escape "</" so the JSON cannot close the script element.
    let json = serde_json::to_string(&models)
        .unwrap_or_else(|_| "[]".into())
        .replace("</", "<\\/");
    (json, !models.is_empty())
}

pub async fn index(State(st): State<AppState>) -> Response {
    let (models_json, has_models) = models_json(&st).await;
    render(Index {
        models_json,
        has_models,
    })
}

/// Two models or snapshots side by side (paper Fig. 6); state in the query
/// string (a, ea, b, eb, images, norm), read by static/compare.js.
pub async fn compare(State(st): State<AppState>) -> Response {
    render(Compare {
        models_json: models_json(&st).await.0,
    })
}

/// Linear probes per layer and the transfer curve (paper Table 7, Fig. 9);
/// state in the query string (model, epoch, train_per_class, shots, seeds,
/// scratch_epochs, classes), read by static/features.js.
pub async fn features(State(st): State<AppState>) -> Response {
    render(Features {
        models_json: models_json(&st).await.0,
    })
}

/// The methods side by side, their deletion/insertion curves and the
/// sanity check; state in the query string (model, epoch, image, class,
/// layer, map, seed, steps), read by static/methods.js.
pub async fn methods(State(st): State<AppState>) -> Response {
    let methods = serde_json::to_string(&zfvis_core::methods::list())
        .unwrap_or_else(|_| "[]".into())
        .replace("</", "<\\/");
    render(MethodsPage {
        models_json: models_json(&st).await.0,
        methods_json: methods,
    })
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
