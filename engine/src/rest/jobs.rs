//! The job paths of the REST API: the list and overview, one job with its plan and vertices,
//! a vertex's subtasks and back pressure, exceptions, cancel, and submissions (when the owner
//! accepts them); and the answers to unknown paths and methods.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::directory::Entry;
use super::problem::ApiResult;
use super::server::AppState;
use super::{views, ApiError};

fn entry_of(state: &AppState, jid: &str) -> ApiResult<std::sync::Arc<Entry>> {
    state
        .directory
        .entry(jid)
        .ok_or_else(|| ApiError::not_found(format!("no job with id '{jid}'")))
}

/// `GET /jobs`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let jobs: Vec<Value> = state
        .directory
        .jobs()
        .iter()
        .map(|j| json!({ "id": j.id(), "status": j.state().name() }))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// `GET /jobs/overview`.
pub(crate) async fn overview(State(state): State<AppState>) -> Json<Value> {
    let jobs: Vec<Value> = state.directory.jobs().iter().map(views::overview).collect();
    Json(json!({ "jobs": jobs }))
}

/// `GET /jobs/{jid}`.
pub(crate) async fn job(
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::job(&*entry_of(&state, &jid)?)))
}

/// `PATCH /jobs/{jid}?mode=cancel`.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(jid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let entry = entry_of(&state, &jid)?;
    match q.get("mode").map(String::as_str) {
        Some("cancel") | None => {
            entry.job.cancel();
            Ok((StatusCode::ACCEPTED, Json(json!({}))))
        }
        Some(m) => Err(ApiError::bad_request(format!(
            "unknown mode '{m}': only 'cancel' is supported (PATCH /jobs/{{jid}}?mode=cancel)"
        ))),
    }
}

/// `POST /jobs/{jid}/stop`: stopping with a savepoint is not supported (yet): say so.
pub(crate) async fn not_stoppable(Path(jid): Path<String>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "stop-with-savepoint is not supported: trigger a savepoint (POST /jobs/{jid}/savepoints), \
             then cancel (PATCH /jobs/{jid}?mode=cancel)"
        ),
    )
}

/// The job `jid` and the index of its vertex `vid`.
fn vertex_of(state: &AppState, jid: &str, vid: &str) -> ApiResult<(std::sync::Arc<Entry>, usize)> {
    let entry = entry_of(state, jid)?;
    let (i, _) = entry
        .job
        .plan()
        .vertex(vid)
        .ok_or_else(|| ApiError::not_found(format!("job '{jid}' has no vertex '{vid}'")))?;
    Ok((entry, i))
}

/// `GET /jobs/{jid}/vertices/{vid}`.
pub(crate) async fn vertex(
    State(state): State<AppState>,
    Path((jid, vid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (entry, i) = vertex_of(&state, &jid, &vid)?;
    let (totals, interval) = views::read(&entry);
    let mut out = views::vertex(&entry.job.plan().vertices[i], &totals, &interval);
    out["now"] = json!(crate::time::now_ms());
    Ok(Json(out))
}

/// `GET /jobs/{jid}/vertices/{vid}/backpressure`.
pub(crate) async fn backpressure(
    State(state): State<AppState>,
    Path((jid, vid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (entry, i) = vertex_of(&state, &jid, &vid)?;
    let (_, interval) = views::read(&entry);
    Ok(Json(views::backpressure(
        &entry.job.plan().vertices[i],
        &interval,
    )))
}

/// `GET /jobs/{jid}/exceptions`.
pub(crate) async fn exceptions(
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::exceptions(&entry_of(&state, &jid)?.job)))
}

/// `POST /jobs`: a submission, when the server's owner accepts them (a session runtime). The
/// body is read within `rest.server.read-timeout` and `rest.server.max-content-length`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let Some(handler) = state.submit.clone() else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this server runs one embedded job and accepts no submissions (run `weir session`)",
        ));
    };
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a submission is JSON: send 'Content-Type: application/json'",
        ));
    }
    // A few submissions read at once: each may buffer up to the content limit.
    let _reading = state.submissions.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many submissions at once: try again",
        )
    })?;
    let limit = state.options.max_content_length;
    let body: Body = request.into_body();
    let bytes = tokio::time::timeout(
        state.options.read_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive within rest.server.read-timeout",
        )
    })?
    .map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than rest.server.max-content-length ({limit} bytes)"
            ),
        )
    })?;
    tokio::task::spawn_blocking(move || handler(&bytes))
        .await
        .map_err(|_| ApiError::internal("the submission handler panicked"))?
        .map(Json)
}

/// Any path the API does not have.
pub(crate) async fn no_such_path(request: Request) -> ApiError {
    ApiError::not_found(format!("no such path: {}", request.uri().path()))
}

/// A known path with a method it does not take.
pub(crate) async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}
