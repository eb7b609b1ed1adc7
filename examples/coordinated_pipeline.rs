//! Two operators whose coordinators cooperate through the coordinator store: a planner that
//! must not start a new plan until the downstream committer reports the previous one done —
//! the shape of Iceberg table maintenance (a trigger/planner upstream, a committer downstream),
//! which Flink's internal coordinators could not express.
//!
//! Table changes arrive as ticks. On each tick the planner subtask asks its coordinator whether
//! it may plan; the planner coordinator starts plan n+1 only once the store says plan n is
//! committed, and answers with the plan id. The planner then emits the plan's work items; the
//! committer collects them and, once a plan is complete, commits it and tells its own
//! coordinator, which records the commit in the store.
//!
//! Run: `cargo run --example coordinated_pipeline`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::engine::checkpoint::{decode_state, encode_state};
use weir::engine::coordination::{Coordinator, CoordinatorContext, OperatorEvent, SubtaskGateway};
use weir::prelude::*;

/// Items per plan.
const ITEMS: u64 = 5;
/// The store key the committer writes and the planner reads.
const COMMITTED: &str = "maintenance/committed-plan";

type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, line: String) {
    println!("{line}");
    l.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MayPlan;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StartPlan(u64);

/// Starts plan n+1 only once plan n is committed.
struct PlannerCoordinator {
    planned: u64,
    gateway: Option<SubtaskGateway<StartPlan>>,
    log: Log,
}

impl Coordinator for PlannerCoordinator {
    type ToSubtask = StartPlan;
    type FromSubtask = MayPlan;
    fn handle_event(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        _ask: MayPlan,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        let committed = ctx.store().get::<u64>(COMMITTED)?.unwrap_or(0);
        if committed < self.planned {
            return Ok(()); // plan `planned` still running: this change waits for the next tick
        }
        let plan = self.planned + 1;
        let line = format!("planner: start plan {plan} (plan {committed} committed)");
        // Logged before sending: the plan may be committed as soon as it is sent.
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        match self.gateway.as_ref().map(|g| g.send(StartPlan(plan))) {
            Some(Ok(())) => {
                self.planned = plan;
                println!("{line}");
            }
            // The planner finished (its input ended): no plan starts.
            _ => {
                self.log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|l| *l != line);
            }
        }
        Ok(())
    }
    fn checkpoint(&mut self, _id: u64, _ctx: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        encode_state(&self.planned)
    }
    fn reset_to_checkpoint(
        &mut self,
        _id: Option<u64>,
        state: Option<&[u8]>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.planned = state.map(decode_state).transpose()?.unwrap_or(0);
        Ok(())
    }
    fn attempt_ready(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        gateway: SubtaskGateway<StartPlan>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.gateway = Some(gateway);
        Ok(())
    }
}

/// Asks on every table change; emits the work items of each plan it is told to start.
struct Planner;

impl Operator for Planner {
    type In = u64;
    type Out = (u64, u64);
    fn process_element(
        &mut self,
        _change: u64,
        ctx: &mut Context<'_, (u64, u64)>,
    ) -> Result<(), UserError> {
        ctx.send_to_coordinator(MayPlan)
    }
    fn handle_operator_event(
        &mut self,
        event: OperatorEvent,
        ctx: &mut Context<'_, (u64, u64)>,
    ) -> Result<(), UserError> {
        let StartPlan(plan) = event.downcast()?;
        for item in 0..ITEMS {
            ctx.emit((plan, item));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Committed(u64);

/// Records commits in the store, where the planner coordinator reads them.
struct CommitterCoordinator {
    log: Log,
}

impl Coordinator for CommitterCoordinator {
    type ToSubtask = ();
    type FromSubtask = Committed;
    fn handle_event(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        Committed(plan): Committed,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        log(&self.log, format!("committer: plan {plan} committed"));
        ctx.store()
            .compute::<u64>(COMMITTED, |c| Some(c.unwrap_or(0).max(plan)))?;
        Ok(())
    }
    fn checkpoint(&mut self, _id: u64, _ctx: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        Ok(Vec::new())
    }
    fn reset_to_checkpoint(
        &mut self,
        _id: Option<u64>,
        _state: Option<&[u8]>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    fn attempt_ready(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        _gateway: SubtaskGateway<()>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

/// Collects work items; commits a plan once all its items arrived.
#[derive(Default)]
struct Committer {
    items: BTreeMap<u64, u64>,
}

impl Operator for Committer {
    type In = (u64, u64);
    type Out = u64;
    fn process_element(
        &mut self,
        (plan, _item): (u64, u64),
        ctx: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        let n = self.items.entry(plan).or_default();
        *n += 1;
        if *n == ITEMS {
            self.items.remove(&plan);
            // (A real committer would commit a table snapshot here.)
            ctx.send_to_coordinator(Committed(plan))?;
            ctx.emit(plan);
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: Log = Arc::default();
    let (l1, l2) = (events.clone(), events.clone());
    let env = StreamEnv::new();
    env.configure(|c| c.buffer_timeout = Duration::from_millis(5));
    let commits = env
        .generate(Generator::new(|i| i).bounded(60).rate_limited(100.0))
        .name("Table Changes")
        .transform("Planner", |_| Planner)
        .coordinated_by(move |_| PlannerCoordinator {
            planned: 0,
            gateway: None,
            log: l1,
        })
        .rebalance()
        .transform("Committer", |_| Committer::default())
        .coordinated_by(move |_| CommitterCoordinator { log: l2 })
        .collect();
    env.execute()?;

    // Plans alternate: start 1, commit 1, start 2, commit 2, ...
    let events = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut expected_start = 1;
    let mut running = false;
    for e in &events {
        if e.starts_with("planner: start plan") {
            assert!(
                !running,
                "a plan started before the previous one was committed: {e}"
            );
            assert!(e.contains(&format!("start plan {expected_start} ")), "{e}");
            running = true;
        } else {
            assert!(
                e.contains(&format!("plan {expected_start} committed")),
                "{e}"
            );
            running = false;
            expected_start += 1;
        }
    }
    let committed = commits.take();
    println!(
        "{} plans committed one after another from 60 table changes; never two at once",
        committed.len()
    );
    assert!(!committed.is_empty());
    Ok(())
}
