//! Pages: one askama template; the view's state lives in the query string
//! (model, snapshot, image, layer, map, mode, view), read by static/app.js.

use super::AppState;
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
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

pub async fn index(State(st): State<AppState>) -> Response {
    let dir = st.models.clone();
    let models = tokio::task::spawn_blocking(move || engine::list_models(&dir))
        .await
        .unwrap_or_default();
    // Escape "</" so the JSON cannot close the script element.
    let json = serde_json::to_string(&models)
        .unwrap_or_else(|_| "[]".into())
        .replace("</", "<\\/");
    render(Index {
        models_json: json,
        has_models: !models.is_empty(),
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
