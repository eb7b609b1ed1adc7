//! The session runtime's REST server: the engine's REST API, metrics and dashboard over every
//! job the runtime runs ([`weir_engine::rest`]), plus what only a session runtime does:
//! `POST /jobs` (a [`JobSubmission`] as JSON; answers `{"jobid": …}`) and
//! `GET /jobs/{jid}/status` (Flink's path; also for jobs that ended or wait for recovery, read
//! from the HA stores). Cancel is the API's `PATCH /jobs/{jid}?mode=cancel`.
//!
//! Only the leader accepts submissions: a standby answers 503 naming the leader's address.
//! The server's limits and authentication are the engine's (`rest.*` options).

use std::sync::{Arc, OnceLock, Weak};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use weir_engine::rest::{ApiError, JobDirectory, RestOptions, RestServer};

use super::{Inner, JobSubmission};
use crate::error::{report, Result, SessionError};

/// Where the handlers find the runtime (set once it exists; gone once it stopped).
pub(crate) type RuntimeSlot = Arc<OnceLock<Weak<Inner>>>;

fn runtime(slot: &RuntimeSlot) -> std::result::Result<Arc<Inner>, ApiError> {
    slot.get().and_then(Weak::upgrade).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session runtime is starting or shutting down",
        )
    })
}

/// The HTTP status of a session error.
fn api_error(e: &SessionError) -> ApiError {
    let status = match e {
        SessionError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::UnknownJob { .. }
        | SessionError::JobStart { .. }
        | SessionError::InvalidOption { .. } => StatusCode::BAD_REQUEST,
        SessionError::NoSuchJob(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, report(e))
}

/// Starts the server of a runtime.
pub(crate) fn start(
    options: RestOptions,
    directory: JobDirectory,
    slot: RuntimeSlot,
) -> Result<RestServer> {
    let s2 = slot.clone();
    let submit = Arc::new(move |body: &[u8]| {
        let sub: JobSubmission = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not a job submission ({{\"name\": …, \"parameters\": {{…}}, \"config\": {{…}}, \"artifacts\": {{…}}}}): {e}"
            ))
        })?;
        let inner = runtime(&s2)?;
        let job = inner.submit_remote(sub).map_err(|e| api_error(&e))?;
        Ok(json!({ "jobid": job.id() }))
    });
    let routes = Router::new().route(
        "/jobs/{jid}/status",
        get(move |Path(jid): Path<String>| {
            let slot = slot.clone();
            async move {
                let inner = runtime(&slot)?;
                let status = tokio::task::spawn_blocking(move || inner.status(&jid))
                    .await
                    .map_err(|_| ApiError::internal("reading the job's status panicked"))?
                    .map_err(|e| api_error(&e))?;
                Ok::<_, ApiError>(Json(json!({
                    "status": status.flink_name(),
                    "session": status,
                })))
            }
        }),
    );
    Ok(RestServer::builder(options, directory)
        .routes(routes)
        .submissions(submit)
        .start()?)
}
