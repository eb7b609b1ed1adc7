//! `weir bench coordinator`: round trip of coordinator events (subtask → coordinator →
//! subtask), for several parallelisms.
//!
//! Job: a source of parallelism P whose coordinator echoes every event to the subtask that
//! sent it. Each subtask sends a ping, waits for the echo (its task serves its mailbox
//! meanwhile, as it would between records), records the round trip and sends the next one,
//! `round_trips` times. All subtasks ping at once, so the coordinator serves P of them; the
//! report gives the median and 99th percentile round trip per P.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use weir_engine::coordination::{Coordinator, CoordinatorContext, OperatorEvent, SubtaskGateway};
use weir_engine::{JobError, Source, SourceContext, SourceStatus, StreamEnv, UserError};
use weir_operators::DataStreamExt;

use super::backpressure::percentile;

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Subtasks pinging at once.
    pub subtasks: usize,
    /// Round trips measured (over all subtasks).
    pub round_trips: usize,
    /// Median round trip (µs).
    pub median_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// Events the coordinator answered per second.
    pub events_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping(u64);

struct Echo {
    gateways: Vec<Option<SubtaskGateway<Ping>>>,
}

impl Coordinator for Echo {
    type ToSubtask = Ping;
    type FromSubtask = Ping;
    fn handle_event(
        &mut self,
        subtask: usize,
        _attempt: u32,
        event: Ping,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if let Some(Some(g)) = self.gateways.get(subtask) {
            let _ = g.send(event);
        }
        Ok(())
    }
    fn checkpoint(&mut self, _: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        Ok(Vec::new())
    }
    fn reset_to_checkpoint(
        &mut self,
        _: Option<u64>,
        _: Option<&[u8]>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    fn attempt_ready(
        &mut self,
        subtask: usize,
        _attempt: u32,
        gateway: SubtaskGateway<Ping>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if self.gateways.len() <= subtask {
            self.gateways.resize(subtask + 1, None);
        }
        self.gateways[subtask] = Some(gateway);
        Ok(())
    }
}

struct Pinger {
    left: usize,
    sent: Option<(u64, Instant)>,
    next: u64,
    rtts: Vec<f64>,
    out: Arc<Mutex<Vec<f64>>>,
}

impl Source for Pinger {
    type Out = u64;
    fn poll_next(&mut self, ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
        if self.sent.is_none() {
            if self.left == 0 {
                self.out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(&mut self.rtts);
                return Ok(SourceStatus::Finished);
            }
            self.left -= 1;
            self.next += 1;
            self.sent = Some((self.next, Instant::now()));
            ctx.send_to_coordinator(Ping(self.next))?;
        }
        Ok(SourceStatus::Pending(Duration::from_secs(1)))
    }
    fn handle_operator_event(&mut self, event: OperatorEvent) -> Result<(), UserError> {
        let Ping(n) = event.downcast()?;
        match self.sent.take() {
            Some((sent, at)) if sent == n => {
                self.rtts.push(at.elapsed().as_secs_f64() * 1e6);
                Ok(())
            }
            other => Err(format!("echo {n} does not match the ping {other:?}").into()),
        }
    }
}

/// Measures `round_trips` round trips per subtask at each parallelism.
///
/// # Errors
///
/// Returns the [`JobError`] of the first job that fails, such as [`JobError::Validation`] for
/// a parallelism of 0, or [`JobError::TaskFailed`] when an echo does not match its ping (the
/// jobs run without checkpoints, so nothing restarts).
pub fn run(parallelisms: &[usize], round_trips: usize) -> Result<Vec<Row>, JobError> {
    let mut rows = Vec::new();
    for &p in parallelisms {
        let rtts = Arc::new(Mutex::new(Vec::new()));
        let r = rtts.clone();
        let env = StreamEnv::new();
        env.add_source("Pinger", move |_| Pinger {
            left: round_trips,
            sent: None,
            next: 0,
            rtts: Vec::with_capacity(round_trips),
            out: r.clone(),
        })
        .set_parallelism(p)
        .coordinated_by(|_| Echo {
            gateways: Vec::new(),
        })
        .discard();
        let start = Instant::now();
        env.execute()?;
        let secs = start.elapsed().as_secs_f64();
        let mut v = std::mem::take(&mut *rtts.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by(|a, b| a.total_cmp(b));
        rows.push(Row {
            subtasks: p,
            round_trips: v.len(),
            median_us: percentile(&v, 50.0).unwrap_or(f64::NAN),
            p99_us: percentile(&v, 99.0).unwrap_or(f64::NAN),
            events_per_sec: v.len() as f64 / secs,
        });
    }
    Ok(rows)
}

/// A human-readable table of the rows.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:>8} {:>11} {:>12} {:>10} {:>12}\n",
        "subtasks", "round trips", "median µs", "p99 µs", "events/s"
    );
    for r in rows {
        s.push_str(&format!(
            "{:>8} {:>11} {:>12.1} {:>10.1} {:>12.0}\n",
            r.subtasks, r.round_trips, r.median_us, r.p99_us, r.events_per_sec
        ));
    }
    s
}
