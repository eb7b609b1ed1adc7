//! The JSON the REST API and the dashboard show of a job, with Flink's field names: the
//! overview, the job with its plan and vertices, a vertex's subtasks, back pressure, and
//! exceptions.
//!
//! A vertex's figures aggregate its subtasks: counts and rates are sums, ratios the worst
//! subtask's (as Flink's web UI colours a vertex by its worst subtask).

use serde_json::{json, Value};

use super::directory::Entry;
use super::rates::per_second;
use crate::job::{JobObserver, JobState, Vertex};
use crate::metrics::TaskMetrics;
use crate::time::now_ms;

/// Flink's back-pressure level of a ratio: ok ≤ 0.10 < low ≤ 0.5 < high.
pub(crate) fn level(ratio: f64) -> &'static str {
    if ratio <= 0.10 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

fn ratio(part: u64, t: &TaskMetrics) -> f64 {
    if t.elapsed_ns == 0 {
        0.0
    } else {
        (part as f64 / t.elapsed_ns as f64).clamp(0.0, 1.0)
    }
}

/// Start and end of a job (ms since the epoch; end −1 while it runs) and its duration.
pub(crate) fn times(job: &JobObserver) -> (i64, i64, i64) {
    let ts = job.state_timestamps();
    let start = ts.get(&JobState::Created).copied().unwrap_or(0);
    let end = if job.state().is_terminal() {
        ts.get(&job.state()).copied().unwrap_or(-1)
    } else {
        -1
    };
    let duration = if end >= 0 { end } else { now_ms() } - start;
    (start, end, duration.max(0))
}

/// One job of `GET /jobs/overview`.
pub(crate) fn overview(job: &JobObserver) -> Value {
    let (start, end, duration) = times(job);
    let tasks: usize = job.plan().vertices.iter().map(|v| v.parallelism).sum();
    json!({
        "jid": job.id(),
        "name": job.name(),
        "state": job.state().name(),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "last-modification": job.state_timestamps().values().max().copied().unwrap_or(start),
        "tasks": { "total": tasks },
    })
}

/// A subtask's figures over the current interval.
pub(crate) fn subtask(t: &TaskMetrics, total: &TaskMetrics) -> Value {
    json!({
        "subtask": t.subtask,
        "read-records": total.records_in,
        "write-records": total.records_out,
        "read-records-per-second": per_second(t.records_in, t),
        "write-records-per-second": per_second(t.records_out, t),
        "busyRatio": ratio(t.busy_ns, t),
        "backPressuredRatio": ratio(t.backpressured_ns, t),
        "idleRatio": ratio(t.idle_ns, t),
        "inPoolUsage": t.input_usage(),
        "outPoolUsage": t.output_usage(),
        "input-queued-buffers": t.input_queued_buffers,
        "input-capacity-buffers": t.input_capacity_buffers,
        "input-buffer-size-bytes": t.input_buffer_size_bytes,
        "input-inflight-bytes": t.input_inflight_bytes,
        "output-pending-buffers": t.output_pending_buffers,
        "output-pending-records": t.output_pending_records,
        "accumulated-busy-time": total.busy_ns / 1_000_000,
        "accumulated-idle-time": total.idle_ns / 1_000_000,
        "accumulated-backpressured-time": total.backpressured_ns / 1_000_000,
    })
}

/// A job's current metrics: (lifetime totals, current interval) per task.
pub(crate) fn read(entry: &Entry) -> (Vec<TaskMetrics>, Vec<TaskMetrics>) {
    let (now, interval) = entry
        .rates
        .read(entry.job.restarts(), || entry.job.metrics());
    (now.tasks, interval)
}

fn tasks_of<'a>(v: &Vertex, tasks: &'a [TaskMetrics]) -> &'a [TaskMetrics] {
    tasks
        .get(v.first_task..v.first_task + v.parallelism)
        .unwrap_or(&[])
}

/// A vertex with its aggregated metrics and its subtasks.
pub(crate) fn vertex(v: &Vertex, totals: &[TaskMetrics], interval: &[TaskMetrics]) -> Value {
    let total = tasks_of(v, totals);
    let now = tasks_of(v, interval);
    let max = |f: &dyn Fn(&TaskMetrics) -> f64| now.iter().map(f).fold(0.0, f64::max);
    let sum = |f: &dyn Fn(&TaskMetrics) -> f64| now.iter().map(f).sum::<f64>();
    let subtasks: Vec<Value> = now.iter().zip(total).map(|(t, a)| subtask(t, a)).collect();
    json!({
        "id": v.id,
        "name": v.name,
        "operators": v.operators,
        "parallelism": v.parallelism,
        "metrics": {
            "read-records": total.iter().map(|t| t.records_in).sum::<u64>(),
            "write-records": total.iter().map(|t| t.records_out).sum::<u64>(),
            "read-records-per-second": sum(&|t| per_second(t.records_in, t)),
            "write-records-per-second": sum(&|t| per_second(t.records_out, t)),
            "busy-ratio": max(&|t| ratio(t.busy_ns, t)),
            "backpressured-ratio": max(&|t| ratio(t.backpressured_ns, t)),
            "idle-ratio": max(&|t| ratio(t.idle_ns, t)),
            "in-pool-usage": max(&|t| t.input_usage()),
            "out-pool-usage": max(&|t| t.output_usage()),
            "accumulated-busy-time": total.iter().map(|t| t.busy_ns / 1_000_000).max().unwrap_or(0),
            "accumulated-idle-time": total.iter().map(|t| t.idle_ns / 1_000_000).max().unwrap_or(0),
            "accumulated-backpressured-time":
                total.iter().map(|t| t.backpressured_ns / 1_000_000).max().unwrap_or(0),
        },
        "subtasks": subtasks,
    })
}

/// `GET /jobs/{jid}`: state, times, vertices with metrics, and the plan.
pub(crate) fn job(entry: &Entry) -> Value {
    let job = &entry.job;
    let (start, end, duration) = times(job);
    let (totals, interval) = read(entry);
    let plan = job.plan();
    let vertices: Vec<Value> = plan
        .vertices
        .iter()
        .map(|v| vertex(v, &totals, &interval))
        .collect();
    let out_rate = |i: usize| {
        vertices[i]["metrics"]["write-records-per-second"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let in_rate = |i: usize| {
        vertices[i]["metrics"]["read-records-per-second"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let outgoing = |i: usize| plan.edges.iter().filter(|e| e.source == i).count();
    let incoming = |i: usize| plan.edges.iter().filter(|e| e.target == i).count();
    let edges: Vec<Value> = plan
        .edges
        .iter()
        .map(|e| {
            // A vertex's counts cover all its edges: attribute them where only one edge is.
            let rate = if outgoing(e.source) == 1 {
                out_rate(e.source)
            } else if incoming(e.target) == 1 {
                in_rate(e.target)
            } else {
                out_rate(e.source) / outgoing(e.source) as f64
            };
            json!({
                "source": plan.vertices[e.source].id,
                "target": plan.vertices[e.target].id,
                "ship_strategy": e.ship_strategy,
                "records-per-second": rate,
            })
        })
        .collect();
    let nodes: Vec<Value> = plan
        .vertices
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let inputs: Vec<Value> = plan
                .edges
                .iter()
                .filter(|e| e.target == i)
                .enumerate()
                .map(|(num, e)| {
                    json!({
                        "num": num,
                        "id": plan.vertices[e.source].id,
                        "ship_strategy": e.ship_strategy,
                        "exchange": "pipelined_bounded",
                    })
                })
                .collect();
            json!({
                "id": v.id,
                "parallelism": v.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "inputs": inputs,
            })
        })
        .collect();
    let timestamps: serde_json::Map<String, Value> = job
        .state_timestamps()
        .into_iter()
        .map(|(s, t)| (s.name().to_string(), json!(t)))
        .collect();
    json!({
        "jid": job.id(),
        "name": job.name(),
        "isStoppable": false,
        "state": job.state().name(),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "now": now_ms(),
        "timestamps": timestamps,
        "restarts": job.restarts(),
        "vertices": vertices,
        "plan": { "jid": job.id(), "name": job.name(), "type": "STREAMING", "nodes": nodes, "edges": edges },
    })
}

/// `GET /jobs/{jid}/vertices/{vid}/backpressure`.
pub(crate) fn backpressure(v: &Vertex, interval: &[TaskMetrics]) -> Value {
    let now = tasks_of(v, interval);
    let subtasks: Vec<Value> = now
        .iter()
        .map(|t| {
            let r = ratio(t.backpressured_ns, t);
            json!({
                "subtask": t.subtask,
                "attempt-number": 0,
                "backpressureLevel": level(r),
                "ratio": r,
                "busyRatio": ratio(t.busy_ns, t),
                "idleRatio": ratio(t.idle_ns, t),
            })
        })
        .collect();
    let worst = now
        .iter()
        .map(|t| ratio(t.backpressured_ns, t))
        .fold(0.0, f64::max);
    json!({
        "status": "ok",
        "backpressureLevel": level(worst),
        "end-timestamp": now_ms(),
        "subtasks": subtasks,
    })
}

/// `GET /jobs/{jid}/exceptions`: Flink's exception history, newest first.
pub(crate) fn exceptions(job: &JobObserver) -> Value {
    let all = job.exceptions();
    let entries: Vec<Value> = all
        .iter()
        .rev()
        .map(|e| {
            let name = e.message.split(':').next().unwrap_or("").trim().to_string();
            json!({
                "exceptionName": name,
                "stacktrace": e.message,
                "timestamp": e.timestamp_ms,
                "taskName": e.task,
                "restarted": e.restarted,
            })
        })
        .collect();
    let root = all.last();
    json!({
        "root-exception": root.map(|e| e.message.clone()),
        "timestamp": root.map(|e| e.timestamp_ms),
        "all-exceptions": [],
        "truncated": false,
        "exceptionHistory": { "entries": entries, "truncated": false },
    })
}
