//! Table changes: what new snapshots added, summed from their summaries (no manifest is read).
//!
//! Invariants: REPLACE snapshots (compactions, manifest rewrites — weir's own commits among
//! them) count as no change, so maintenance never triggers itself; the walk goes from the
//! current snapshot back along parents to the last snapshot seen, and never further back than
//! `max_read_back` snapshots (a fresh start, or a last-seen snapshot that was expired).

use iceberg::spec::{Operation, Snapshot};
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

/// What happened to a table since the last change record: the monitor's output, the trigger
/// manager's input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    /// Data files added.
    pub data_files: u64,
    /// Bytes of the data files added.
    pub data_bytes: u64,
    /// Position delete files added.
    pub pos_delete_files: u64,
    /// Position delete records added.
    pub pos_delete_records: u64,
    /// Equality delete files added.
    pub eq_delete_files: u64,
    /// Equality delete records added.
    pub eq_delete_records: u64,
    /// Commits (snapshots other than REPLACE).
    pub commits: u64,
    /// The newest snapshot covered (`None`: the table has none yet).
    pub last_snapshot_id: Option<i64>,
}

impl TableChange {
    /// Adds `other` (a later change) to this one.
    pub fn merge(&mut self, other: &TableChange) {
        self.data_files += other.data_files;
        self.data_bytes += other.data_bytes;
        self.pos_delete_files += other.pos_delete_files;
        self.pos_delete_records += other.pos_delete_records;
        self.eq_delete_files += other.eq_delete_files;
        self.eq_delete_records += other.eq_delete_records;
        self.commits += other.commits;
        if other.last_snapshot_id.is_some() {
            self.last_snapshot_id = other.last_snapshot_id;
        }
    }

    /// True when nothing was added or committed.
    pub fn is_empty(&self) -> bool {
        self.commits == 0
    }

    /// The change one snapshot made (nothing for a REPLACE).
    pub fn of_snapshot(snapshot: &Snapshot) -> TableChange {
        let summary = snapshot.summary();
        let mut change = TableChange {
            last_snapshot_id: Some(snapshot.snapshot_id()),
            ..TableChange::default()
        };
        if summary.operation == Operation::Replace {
            return change;
        }
        let get = |k: &str| {
            summary
                .additional_properties
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        change.commits = 1;
        change.data_files = get("added-data-files");
        change.data_bytes = get("added-files-size");
        change.pos_delete_files = get("added-position-delete-files");
        change.pos_delete_records = get("added-position-deletes");
        change.eq_delete_files = get("added-equality-delete-files");
        change.eq_delete_records = get("added-equality-deletes");
        change
    }
}

/// The change from the snapshot after `last_seen` up to the current one (at most
/// `max_read_back` snapshots back); its `last_snapshot_id` is the current snapshot.
pub fn changes_since(table: &Table, last_seen: Option<i64>, max_read_back: usize) -> TableChange {
    let meta = table.metadata();
    let mut newest_first = Vec::new();
    let mut next = meta.current_snapshot().cloned();
    while let Some(s) = next {
        if Some(s.snapshot_id()) == last_seen || newest_first.len() >= max_read_back {
            break;
        }
        next = s
            .parent_snapshot_id()
            .and_then(|p| meta.snapshot_by_id(p).cloned());
        newest_first.push(s);
    }
    let mut change = TableChange {
        last_snapshot_id: meta.current_snapshot_id().or(last_seen),
        ..TableChange::default()
    };
    for s in newest_first.iter().rev() {
        change.merge(&TableChange::of_snapshot(s));
    }
    change
}
