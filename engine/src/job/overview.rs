//! What a job looks like from outside: its identity, its plan as vertices (one per chain of
//! operators, each with one task per subtask) and edges, its state with the time it entered
//! each, and the exceptions that failed its attempts.
//!
//! Invariants: a vertex's tasks are the consecutive entries `first_task ..
//! first_task + parallelism` of [`JobMetrics::tasks`] and the `task` indexes of
//! [`TaskCheckpointStats`](crate::checkpoint::TaskCheckpointStats); vertex ids are derived from
//! the chain head's uid, so they are the same in every run of the same job. The state only
//! moves forward to a terminal state (`FINISHED`, `CANCELED`, `FAILED`), which is final.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::*;

/// The most exceptions a job keeps (oldest dropped first), as Flink's
/// `web.exception-history-size`.
pub const EXCEPTION_HISTORY: usize = 16;

/// A job's state, with Flink's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Built, not running yet.
    Created,
    /// Its tasks run.
    Running,
    /// An attempt failed; the next one waits for its restart delay.
    Restarting,
    /// Cancelling: its tasks are asked to stop.
    Cancelling,
    /// Every source ended and every record was processed.
    Finished,
    /// Cancelled.
    Canceled,
    /// Failed beyond its restart strategy.
    Failed,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Canceled | JobState::Failed
        )
    }

    /// Flink's name (`RUNNING`, …).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Cancelling => "CANCELLING",
            JobState::Finished => "FINISHED",
            JobState::Canceled => "CANCELED",
            JobState::Failed => "FAILED",
        }
    }
}

/// One vertex of a job's plan: a chain of operators run by one task per subtask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vertex {
    /// A stable id: 32 hex digits derived from the chain head's uid.
    pub id: String,
    /// The chained operators' names joined by ` -> ` (the tasks' name).
    pub name: String,
    /// The chained operators, head first.
    pub operators: Vec<String>,
    /// The number of subtasks.
    pub parallelism: usize,
    /// The index of its first task in the job's tasks.
    pub first_task: usize,
}

/// A network edge between two vertices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEdge {
    /// Index of the sending vertex.
    pub source: usize,
    /// Index of the receiving vertex.
    pub target: usize,
    /// How records are partitioned, with Flink's names: `FORWARD`, `REBALANCE`, `HASH`
    /// (by key group), `BROADCAST`.
    pub ship_strategy: &'static str,
}

/// A job's plan: vertices in task order, and the edges between them.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct JobPlan {
    /// The vertices, in the order of their tasks.
    pub vertices: Vec<Vertex>,
    /// The network edges.
    pub edges: Vec<PlanEdge>,
}

impl JobPlan {
    /// The vertex with id `id`.
    pub fn vertex(&self, id: &str) -> Option<(usize, &Vertex)> {
        self.vertices.iter().enumerate().find(|(_, v)| v.id == id)
    }

    /// The vertex that runs task `task`, and the task's subtask index in it.
    pub fn vertex_of_task(&self, task: usize) -> Option<(usize, usize)> {
        self.vertices
            .iter()
            .position(|v| (v.first_task..v.first_task + v.parallelism).contains(&task))
            .map(|i| (i, task - self.vertices[i].first_task))
    }
}

/// An exception that failed an attempt of the job (or the job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobException {
    /// When it happened (ms since the epoch).
    pub timestamp_ms: i64,
    /// The error, with its causes.
    pub message: String,
    /// The task it came from (`name (subtask/parallelism)`), if one.
    pub task: Option<String>,
    /// Whether the job restarted after it.
    pub restarted: bool,
}

/// The job's state and its history.
#[derive(Debug)]
pub(super) struct StateLog {
    pub(super) state: JobState,
    /// When the job entered each state (latest time, ms since the epoch).
    pub(super) timestamps: BTreeMap<JobState, i64>,
    pub(super) exceptions: VecDeque<JobException>,
}

impl StateLog {
    pub(super) fn new() -> Self {
        let mut timestamps = BTreeMap::new();
        timestamps.insert(JobState::Created, crate::time::now_ms());
        StateLog {
            state: JobState::Created,
            timestamps,
            exceptions: VecDeque::new(),
        }
    }

    /// Moves to `state`, unless the job already ended.
    pub(super) fn enter(&mut self, state: JobState) {
        if self.state.is_terminal() || self.state == state {
            return;
        }
        self.state = state;
        self.timestamps.insert(state, crate::time::now_ms());
    }

    pub(super) fn exception(&mut self, e: &JobError, restarted: bool) {
        let task = match e {
            JobError::TaskFailed {
                operator,
                subtask,
                parallelism,
                ..
            } => Some(format!("{operator} ({}/{parallelism})", subtask + 1)),
            _ => None,
        };
        if self.exceptions.len() == EXCEPTION_HISTORY {
            self.exceptions.pop_front();
        }
        self.exceptions.push_back(JobException {
            timestamp_ms: crate::time::now_ms(),
            message: crate::error::report(e),
            task,
            restarted,
        });
    }
}

/// 32 hex digits from `seed` (two independent 64-bit hashes).
fn hex_id(seed: &str) -> String {
    let h = |salt: u64| {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut s);
        seed.hash(&mut s);
        s.finish()
    };
    format!("{:016x}{:016x}", h(0x7765_6972), h(0x7665_7274))
}

/// A fresh random job id of 32 hex digits (as Flink's `JobID`).
pub fn new_job_id() -> String {
    use std::hash::BuildHasher;
    let r = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", r(), r())
}

/// The plan's vertices and edges, from the graph and its resolved facts.
pub(super) fn job_plan(g: &Graph, plan: &Plan) -> JobPlan {
    let n = g.nodes.len();
    // Every node's vertex: a chained node belongs to its single input's vertex.
    let mut vertex_of = vec![usize::MAX; n];
    let mut vertices: Vec<Vertex> = Vec::new();
    let mut first_task = 0;
    for h in (0..n).filter(|&i| !plan.chained[i]) {
        vertex_of[h] = vertices.len();
        vertices.push(Vertex {
            id: hex_id(&plan.uids[h]),
            name: String::new(),
            operators: vec![g.nodes[h].name.clone()],
            parallelism: plan.parallelism[h],
            first_task,
        });
        first_task += plan.parallelism[h];
    }
    // Chains follow their heads' consumers (as the tasks are built).
    for (h, v) in (0..n)
        .filter(|&i| !plan.chained[i])
        .zip(0..vertices.len())
        .collect::<Vec<_>>()
    {
        let mut stack = vec![h];
        while let Some(x) = stack.pop() {
            for &(c, _) in &plan.consumers[x] {
                if plan.chained[c] {
                    vertex_of[c] = v;
                    vertices[v].operators.push(g.nodes[c].name.clone());
                    stack.push(c);
                }
            }
        }
    }
    for v in &mut vertices {
        v.name = v.operators.join(" -> ");
    }
    let mut edges = Vec::new();
    for (target_node, node) in g.nodes.iter().enumerate() {
        if plan.chained[target_node] {
            continue;
        }
        for e in &node.inputs {
            let ship_strategy = match e.kind {
                PartitionKind::Forward => "FORWARD",
                PartitionKind::Default
                    if plan.parallelism[e.from] == plan.parallelism[target_node] =>
                {
                    "FORWARD"
                }
                PartitionKind::Default | PartitionKind::Rebalance => "REBALANCE",
                PartitionKind::Broadcast => "BROADCAST",
                PartitionKind::KeyGroups => "HASH",
            };
            edges.push(PlanEdge {
                source: vertex_of[e.from],
                target: vertex_of[target_node],
                ship_strategy,
            });
        }
    }
    JobPlan { vertices, edges }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(hex_id("a"), hex_id("a"));
        assert_ne!(hex_id("a"), hex_id("b"));
        assert_eq!(hex_id("a").len(), 32);
        assert_ne!(new_job_id(), new_job_id());
    }

    #[test]
    fn states_end_once() {
        let mut log = StateLog::new();
        log.enter(JobState::Running);
        log.enter(JobState::Finished);
        log.enter(JobState::Running);
        assert_eq!(log.state, JobState::Finished);
        assert!(log.timestamps.contains_key(&JobState::Running));
    }
}
