//! The checkpoint paths of the REST API, with Flink's field names: counts, latest, history and
//! summary; the configuration; one checkpoint per vertex and per subtask; and checkpoints and
//! savepoints triggered on request (asynchronous, as in Flink: the POST answers a
//! `request-id` whose status is read at `…/checkpoints/{request-id}`; one at a time per job,
//! each waited for on a thread of its own).
//!
//! weir writes a checkpoint's state after every task acknowledged it, off the task threads:
//! the asynchronous part is the checkpoint's, and each subtask's `async` is that figure.
//! Sizes are bytes, durations milliseconds (fractions kept), timestamps ms since the epoch.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::problem::ApiResult;
use super::server::AppState;
use super::ApiError;
use crate::checkpoint::{CheckpointStats, CheckpointStatus};
use crate::error::report;
use crate::job::{JobObserver, Vertex};

/// History entries shown (Flink's `web.checkpoints.history`).
pub(crate) const HISTORY: usize = 10;

/// Trigger requests remembered for their status.
const TRIGGERS: usize = 256;

fn checkpoint_type(s: &CheckpointStats) -> &'static str {
    match (s.kind, s.mode) {
        ("savepoint", _) => "SAVEPOINT",
        (_, "unaligned") => "UNALIGNED_CHECKPOINT",
        (_, "at-least-once") => "AT_LEAST_ONCE",
        _ => "CHECKPOINT",
    }
}

fn status(s: &CheckpointStats) -> &'static str {
    match s.status {
        CheckpointStatus::Completed => "COMPLETED",
        CheckpointStatus::Failed(_) => "FAILED",
    }
}

/// One checkpoint of the history.
pub(crate) fn entry(s: &CheckpointStats, num_subtasks: usize) -> Value {
    let latest_ack = s
        .tasks
        .iter()
        .map(|t| t.ack_timestamp_ms)
        .max()
        .unwrap_or(s.trigger_time_ms);
    json!({
        "id": s.id,
        "status": status(s),
        "is_savepoint": s.kind == "savepoint",
        "checkpoint_type": checkpoint_type(s),
        "mode": s.mode,
        "trigger_timestamp": s.trigger_time_ms,
        "latest_ack_timestamp": latest_ack,
        "end_to_end_duration": s.duration_ms,
        "async_duration": s.async_ms,
        "state_size": s.state_bytes,
        "checkpointed_size": s.state_bytes,
        "persisted_data": s.persisted_inflight_bytes,
        "processed_data": s.tasks.iter().map(|t| t.processed_bytes).sum::<u64>(),
        "alignment_buffered": 0,
        "num_subtasks": num_subtasks,
        "num_acknowledged_subtasks": s.tasks.len(),
        "failure_message": match &s.status {
            CheckpointStatus::Failed(m) => Some(m.clone()),
            CheckpointStatus::Completed => None,
        },
    })
}

fn in_progress(id: u64, age_ms: f64, num_subtasks: usize) -> Value {
    let now = crate::time::now_ms();
    json!({
        "id": id,
        "status": "IN_PROGRESS",
        "is_savepoint": false,
        "checkpoint_type": "CHECKPOINT",
        "trigger_timestamp": now - age_ms as i64,
        "latest_ack_timestamp": -1,
        "end_to_end_duration": age_ms,
        "state_size": 0,
        "persisted_data": 0,
        "processed_data": 0,
        "num_subtasks": num_subtasks,
        "num_acknowledged_subtasks": 0,
        "failure_message": null,
    })
}

/// min/max/avg/p50/p90/p95/p99/p999 of `values` (all 0 when empty).
fn summary(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let q = |p: f64| -> f64 {
        if values.is_empty() {
            0.0
        } else {
            let i = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
            values[i]
        }
    };
    let avg = if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    };
    json!({
        "min": values.first().copied().unwrap_or(0.0),
        "max": values.last().copied().unwrap_or(0.0),
        "avg": avg,
        "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "p999": q(0.999),
    })
}

fn num_subtasks(job: &JobObserver) -> usize {
    job.plan().vertices.iter().map(|v| v.parallelism).sum()
}

/// `GET /jobs/{jid}/checkpoints`.
pub(crate) fn view(job: &JobObserver) -> Value {
    let stats = job.checkpoint_stats();
    let n = num_subtasks(job);
    let pending = job.pending_checkpoints();
    let completed: Vec<&CheckpointStats> = stats
        .iter()
        .filter(|s| s.status == CheckpointStatus::Completed)
        .collect();
    let (completed_total, failed_total) = job.checkpoint_counts();
    let latest = |f: &dyn Fn(&&CheckpointStats) -> bool| {
        stats
            .iter()
            .rev()
            .find(|s| f(s))
            .map(|s| entry(s, n))
            .unwrap_or(Value::Null)
    };
    let restored = job.restored_from().map(|c| {
        json!({
            "id": c.metadata.checkpoint_id,
            "restore_timestamp": job.state_timestamps()
                .get(&crate::job::JobState::Running).copied().unwrap_or(0),
            "is_savepoint": c.metadata.kind == weir_state::checkpoint::CheckpointKind::Savepoint,
            "external_path": c.location,
        })
    });
    let mut history: Vec<Value> = pending
        .iter()
        .rev()
        .map(|(id, age)| in_progress(*id, age.as_secs_f64() * 1e3, n))
        .collect();
    history.extend(stats.iter().rev().map(|s| entry(s, n)));
    history.truncate(HISTORY);
    let of =
        |f: &dyn Fn(&CheckpointStats) -> f64| summary(completed.iter().map(|s| f(s)).collect());
    json!({
        "counts": {
            "restored": u8::from(restored.is_some()),
            "total": completed_total + failed_total + pending.len() as u64,
            "in_progress": pending.len(),
            "completed": completed_total,
            "failed": failed_total,
        },
        "summary": {
            "end_to_end_duration": of(&|s| s.duration_ms),
            "state_size": of(&|s| s.state_bytes as f64),
            "checkpointed_size": of(&|s| s.state_bytes as f64),
            "persisted_data": of(&|s| s.persisted_inflight_bytes as f64),
            "processed_data": of(&|s| s.tasks.iter().map(|t| t.processed_bytes).sum::<u64>() as f64),
            "alignment_buffered": of(&|_| 0.0),
        },
        "latest": {
            "completed": latest(&|s| s.status == CheckpointStatus::Completed && s.kind != "savepoint"),
            "savepoint": latest(&|s| s.status == CheckpointStatus::Completed && s.kind == "savepoint"),
            "failed": latest(&|s| s.status != CheckpointStatus::Completed),
            "restored": restored,
        },
        "history": history,
    })
}

fn job_of(state: &AppState, jid: &str) -> ApiResult<JobObserver> {
    state
        .directory
        .job(jid)
        .ok_or_else(|| ApiError::not_found(format!("no job with id '{jid}'")))
}

fn checkpoint_of(job: &JobObserver, cid: &str) -> ApiResult<CheckpointStats> {
    let id: u64 = cid
        .parse()
        .map_err(|_| ApiError::bad_request(format!("checkpoint id '{cid}' is not a number")))?;
    job.checkpoint_stats()
        .into_iter()
        .rev()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "job '{}' has no finished checkpoint {id}",
                job.id()
            ))
        })
}

fn vertex_of<'a>(job: &'a JobObserver, vid: &str) -> ApiResult<&'a Vertex> {
    job.plan()
        .vertex(vid)
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::not_found(format!("job '{}' has no vertex '{vid}'", job.id())))
}

/// The per-subtask figures of vertex `v` in checkpoint `s`.
fn subtask_figures(s: &CheckpointStats, v: &Vertex) -> Vec<Value> {
    (0..v.parallelism)
        .map(|i| {
            let task = v.first_task + i;
            match s.tasks.iter().find(|t| t.task == task) {
                Some(t) => json!({
                    "index": i,
                    "status": "completed",
                    "ack_timestamp": t.ack_timestamp_ms,
                    "end_to_end_duration": (t.ack_timestamp_ms - s.trigger_time_ms).max(0),
                    "state_size": t.state_bytes,
                    "checkpointed_size": t.state_bytes,
                    "checkpoint": { "sync": t.sync_ms, "async": s.async_ms },
                    "alignment": {
                        "buffered": 0,
                        "processed": t.processed_bytes,
                        "persisted": t.persisted_bytes,
                        "duration": t.alignment_ms,
                    },
                    "start_delay": t.start_delay_ms,
                    "unaligned_checkpoint": t.unaligned,
                    "aborted": false,
                }),
                None => json!({
                    "index": i,
                    "status": "pending_or_failed",
                    "aborted": s.status != CheckpointStatus::Completed,
                }),
            }
        })
        .collect()
}

fn vertex_summary(s: &CheckpointStats, v: &Vertex) -> Value {
    let mine: Vec<_> = s
        .tasks
        .iter()
        .filter(|t| (v.first_task..v.first_task + v.parallelism).contains(&t.task))
        .collect();
    let latest = mine.iter().map(|t| t.ack_timestamp_ms).max();
    json!({
        "id": v.id,
        "name": v.name,
        "status": if mine.len() == v.parallelism { "COMPLETED" } else { status(s) },
        "latest_ack_timestamp": latest.unwrap_or(-1),
        "end_to_end_duration": latest.map_or(-1, |l| (l - s.trigger_time_ms).max(0)),
        "state_size": mine.iter().map(|t| t.state_bytes).sum::<u64>(),
        "checkpointed_size": mine.iter().map(|t| t.state_bytes).sum::<u64>(),
        "processed_data": mine.iter().map(|t| t.processed_bytes).sum::<u64>(),
        "persisted_data": mine.iter().map(|t| t.persisted_bytes).sum::<u64>(),
        "alignment_buffered": 0,
        "num_subtasks": v.parallelism,
        "num_acknowledged_subtasks": mine.len(),
    })
}

/// `GET /jobs/{jid}/checkpoints`.
pub(crate) async fn overview(
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&job_of(&state, &jid)?)))
}

/// `GET /jobs/{jid}/checkpoints/config`.
pub(crate) async fn config(
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = job_of(&state, &jid)?;
    let c = job.config();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Ok(Json(json!({
        "mode": match c.checkpointing_mode {
            crate::config::CheckpointingMode::ExactlyOnce => "exactly_once",
            crate::config::CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": ms(c.checkpoint_interval),
        "timeout": ms(c.checkpoint_timeout),
        "min_pause": ms(c.checkpoint_min_pause),
        "max_concurrent": c.max_concurrent_checkpoints,
        "unaligned_checkpoints": c.unaligned,
        "aligned_checkpoint_timeout": ms(c.aligned_checkpoint_timeout),
        "tolerable_failed_checkpoints": c.tolerable_failed_checkpoints,
        "checkpoint_storage": if c.checkpoint_dir.is_empty() { "JobManagerCheckpointStorage" } else { "FileSystemCheckpointStorage" },
        "checkpoints_dir": c.checkpoint_dir,
        "num_retained": c.retained_checkpoints,
        "externalization": { "enabled": !c.checkpoint_dir.is_empty(), "delete_on_cancellation": false },
    })))
}

/// `GET /jobs/{jid}/checkpoints/details/{cid}`.
pub(crate) async fn details(
    State(state): State<AppState>,
    Path((jid, cid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = job_of(&state, &jid)?;
    let s = checkpoint_of(&job, &cid)?;
    let mut v = entry(&s, num_subtasks(&job));
    let tasks: serde_json::Map<String, Value> = job
        .plan()
        .vertices
        .iter()
        .map(|vx| (vx.id.clone(), vertex_summary(&s, vx)))
        .collect();
    v["tasks"] = Value::Object(tasks);
    Ok(Json(v))
}

/// `GET /jobs/{jid}/checkpoints/details/{cid}/subtasks/{vid}`.
pub(crate) async fn subtasks(
    State(state): State<AppState>,
    Path((jid, cid, vid)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let job = job_of(&state, &jid)?;
    let s = checkpoint_of(&job, &cid)?;
    let v = vertex_of(&job, &vid)?;
    let mut out = vertex_summary(&s, v);
    out["trigger_timestamp"] = json!(s.trigger_time_ms);
    out["subtasks"] = Value::Array(subtask_figures(&s, v));
    Ok(Json(out))
}

/// What a trigger request became.
#[derive(Clone)]
enum TriggerState {
    InProgress,
    Completed { id: u64, location: String },
    Failed(String),
}

/// The trigger requests of a server, newest last.
#[derive(Default)]
pub(crate) struct Triggers {
    next: u64,
    states: BTreeMap<String, (String, TriggerState)>,
    /// Jobs with a trigger of the API in progress: one at a time per job.
    busy: std::collections::HashSet<String>,
}

/// The options of a savepoint request that weir does not support, refused rather than ignored.
fn refuse_unsupported(body: &[u8]) -> ApiResult<()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
    if v.get("cancel-job").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "cancel-job is not supported: cancel after the savepoint completed (PATCH /jobs/{jid}?mode=cancel)",
        ));
    }
    if v.get("target-directory").is_some_and(|d| !d.is_null()) {
        return Err(ApiError::bad_request(
            "target-directory is not supported: savepoints go to execution.checkpointing.dir",
        ));
    }
    Ok(())
}

async fn trigger(state: AppState, jid: String, savepoint: bool) -> ApiResult<impl IntoResponse> {
    let job = job_of(&state, &jid)?;
    if job.is_finished() {
        return Err(ApiError::conflict(format!("job '{jid}' has ended")));
    }
    let request_id = {
        let mut t = state.triggers.lock();
        if !t.busy.insert(jid.clone()) {
            return Err(ApiError::conflict(format!(
                "a checkpoint or savepoint of job '{jid}' triggered through the API is in progress: read its status, then trigger again"
            )));
        }
        t.next += 1;
        let id = format!("{:016x}{:016x}", crate::time::now_ms(), t.next);
        t.states
            .insert(id.clone(), (jid.clone(), TriggerState::InProgress));
        while t.states.len() > TRIGGERS {
            let oldest = t.states.keys().next().cloned();
            if let Some(k) = oldest {
                t.states.remove(&k);
            }
        }
        id
    };
    let rid = request_id.clone();
    let st = state.clone();
    let jid_taken = jid.clone();
    // Its own thread (one per job at most, see `busy`): a checkpoint may take minutes, and the
    // server's few blocking threads serve the metrics and the dashboard meanwhile.
    let waiter = std::thread::Builder::new().name("weir-rest-trigger".into());
    let spawned = waiter.spawn(move || {
        let r = if savepoint {
            job.trigger_savepoint()
        } else {
            job.trigger_checkpoint()
        };
        let outcome = match r {
            Ok(c) => TriggerState::Completed {
                id: c.metadata.checkpoint_id,
                location: c.location,
            },
            Err(e) => TriggerState::Failed(report(&e)),
        };
        let mut t = st.triggers.lock();
        t.busy.remove(job.id());
        if let Some(entry) = t.states.get_mut(&rid) {
            entry.1 = outcome;
        }
    });
    if let Err(e) = spawned {
        let mut t = state.triggers.lock();
        t.busy.remove(&jid_taken);
        t.states.remove(&request_id);
        return Err(ApiError::internal(format!(
            "cannot start the trigger's thread: {e}"
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "request-id": request_id })),
    ))
}

/// `POST /jobs/{jid}/checkpoints`.
pub(crate) async fn trigger_checkpoint(
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<impl IntoResponse> {
    trigger(state, jid, false).await
}

/// `POST /jobs/{jid}/savepoints` (a body with `cancel-job: true` or a `target-directory` is
/// refused: weir does not support them).
pub(crate) async fn trigger_savepoint(
    State(state): State<AppState>,
    Path(jid): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    refuse_unsupported(&body)?;
    trigger(state, jid, true).await
}

/// `GET /jobs/{jid}/checkpoints/{request-id}` and `…/savepoints/{request-id}`.
pub(crate) async fn trigger_status(
    State(state): State<AppState>,
    Path((jid, rid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let found = state.triggers.lock().states.get(&rid).cloned();
    let (_, s) = found.filter(|(owner, _)| *owner == jid).ok_or_else(|| {
        ApiError::not_found(format!("job '{jid}' has no trigger request '{rid}'"))
    })?;
    Ok(Json(match s {
        TriggerState::InProgress => json!({ "status": { "id": "IN_PROGRESS" } }),
        TriggerState::Completed { id, location } => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "checkpointId": id, "location": location },
        }),
        TriggerState::Failed(m) => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "failure-cause": { "class": "CheckpointError", "stack-trace": m } },
        }),
    }))
}
