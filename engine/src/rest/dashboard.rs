//! The web dashboard: its static files (embedded in the binary), `GET /config`, and its state
//! as one JSON document, either once (`GET /dashboard/state`) or as a live stream of
//! server-sent events (`GET /dashboard/events`, one `update` event per `web.refresh-interval`).
//!
//! An update carries the job list, and for the job asked for (`?job={jid}`) the job with its
//! vertices and subtasks, its checkpoints and exceptions, plus the owner's sections: one
//! document per interval instead of one request per panel.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::stream::Stream;
use serde_json::{json, Value};

use super::checkpoints;
use super::problem::ApiResult;
use super::server::AppState;
use super::{views, ApiError};

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");
const DAGRE: &str = include_str!("ui/dagre.min.js");
const DAGRE_LICENSE: &str = include_str!("ui/LICENSE-dagre");

/// `GET /`.
pub(crate) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// `GET /ui/{file}`.
pub(crate) async fn file(
    axum::extract::Path(name): axum::extract::Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (kind, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "dagre.min.js" => ("text/javascript; charset=utf-8", DAGRE),
        "LICENSE-dagre" => ("text/plain; charset=utf-8", DAGRE_LICENSE),
        other => return Err(ApiError::not_found(format!("no such file: /ui/{other}"))),
    };
    Ok(([(header::CONTENT_TYPE, kind)], body))
}

/// `GET /config`: what the dashboard needs to know of the server (Flink's shape).
pub(crate) async fn config(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "refresh-interval": state.options.refresh_interval.as_millis() as u64,
        "timezone-name": "UTC",
        "timezone-offset": 0,
        "flink-version": "",
        "weir-version": env!("CARGO_PKG_VERSION"),
        "features": { "web-submit": state.submit.is_some(), "web-cancel": true },
    }))
}

/// One dashboard update for job `jid` (or only the job list).
fn update(state: &AppState, jid: Option<&str>) -> ApiResult<Value> {
    let jobs: Vec<Value> = state.directory.jobs().iter().map(views::overview).collect();
    let mut out = json!({
        "now": crate::time::now_ms(),
        "overview": { "jobs": jobs },
        "job": null,
        "checkpoints": null,
        "exceptions": null,
    });
    if let Some(jid) = jid {
        let entry = state
            .directory
            .entry(jid)
            .ok_or_else(|| ApiError::not_found(format!("no job with id '{jid}'")))?;
        out["job"] = views::job(&entry);
        out["checkpoints"] = checkpoints::view(&entry.job);
        out["exceptions"] = views::exceptions(&entry.job);
    }
    for s in &state.sections {
        out[s.name.as_str()] = (s.view)();
    }
    Ok(out)
}

/// `GET /dashboard/state?job={jid}`.
pub(crate) async fn state(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let jid = q.get("job").cloned();
    tokio::task::spawn_blocking(move || update(&state, jid.as_deref()))
        .await
        .map_err(|_| ApiError::internal("building the dashboard state panicked"))?
        .map(Json)
}

/// `GET /dashboard/events?job={jid}`: an `update` event now and every refresh interval; an
/// `error` event (and the end of the stream) when the job is unknown.
pub(crate) async fn events(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let jid = q.get("job").cloned();
    let interval = state.options.refresh_interval;
    let stream = futures_util::stream::unfold(
        (state, jid, true, false),
        move |(state, jid, first, ended)| async move {
            if ended {
                return None;
            }
            if !first {
                tokio::time::sleep(interval).await;
            }
            let (s, j) = (state.clone(), jid.clone());
            let u = tokio::task::spawn_blocking(move || update(&s, j.as_deref())).await;
            let (event, ended) = match u {
                Ok(Ok(v)) => (Event::default().event("update").data(v.to_string()), false),
                Ok(Err(e)) => (
                    Event::default()
                        .event("error")
                        .data(json!({ "errors": e.errors }).to_string()),
                    true,
                ),
                Err(_) => (Event::default().event("error").data("{}"), true),
            };
            Some((Ok(event), (state, jid, false, ended)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
