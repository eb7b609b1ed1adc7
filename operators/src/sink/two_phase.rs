//! Exactly-once sinks by two-phase commit, and a transactional file sink built on it.
//!
//! [`TwoPhaseCommit`] turns a [`TransactionalSink`] into a [`Sink`]: records go into the open
//! transaction; at a checkpoint's barrier the transaction is *pre-committed* (durable but not
//! visible) and remembered in the sink's checkpointed state under the checkpoint id; when the
//! checkpoint completes every pre-committed transaction up to it is *committed* (made visible).
//! After a restore the transactions in the restored state are committed again — commit must be
//! idempotent — and the sink discards whatever it had written beyond the restored checkpoint.
//! A transaction pre-committed for an aborted checkpoint stays pending and is committed with the
//! next completed one. At the end of (bounded) input the open transaction is committed directly.
//!
//! [`FileTransactions`] is such a sink for text files: one file per subtask and transaction,
//! written as `.part-<s>-<n>.inprogress`, renamed to `.part-<s>-<n>.pending` at pre-commit and to
//! `part-<s>-<n>` at commit (`n` is the checkpoint id, 20 digits). Renames are atomic, so a crash
//! at any moment leaves every transaction either uncommitted or committed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::{CommitFence, Data, OperatorInfo, Sink, UserError};

/// A sink with transactions: what [`TwoPhaseCommit`] drives.
pub trait TransactionalSink: Send + 'static {
    /// Record type.
    type In: Data;
    /// A transaction's handle, stored in checkpoints while pre-committed.
    type Txn: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Called once per subtask before anything else. `restored` is the id of the checkpoint the
    /// job was restored from (if any): everything this subtask wrote for later checkpoints (or
    /// never pre-committed) must be discarded now.
    ///
    /// # Errors
    ///
    /// An error fails the task before it writes anything: the job restarts (from its latest
    /// completed checkpoint, or from the start without one) as its restart strategy allows, or
    /// else ends with [`JobError::TaskFailed`](weir_engine::JobError::TaskFailed).
    fn open(&mut self, info: &OperatorInfo, restored: Option<u64>) -> Result<(), UserError>;
    /// Starts a transaction that will be pre-committed at checkpoint `next_checkpoint` (or
    /// committed at the end of input).
    ///
    /// # Errors
    ///
    /// An error for a record (the first after open or after a barrier) fails the task, as one
    /// from [`open`](Self::open) does; at a barrier with no open transaction it declines that
    /// checkpoint ([`CheckpointError::Declined`](weir_engine::CheckpointError::Declined)).
    fn begin(&mut self, next_checkpoint: u64) -> Result<Self::Txn, UserError>;
    /// Writes a record into the transaction.
    ///
    /// # Errors
    ///
    /// An error fails the task, as one from [`open`](Self::open) does.
    fn write(&mut self, txn: &mut Self::Txn, record: Self::In) -> Result<(), UserError>;
    /// Makes the transaction durable, not yet visible.
    ///
    /// # Errors
    ///
    /// At a barrier an error declines the checkpoint
    /// ([`CheckpointError::Declined`](weir_engine::CheckpointError::Declined)), and the task
    /// fails at its next write or at the end of input (the job restarts from its last completed
    /// checkpoint if its restart strategy allows); at the end of input it fails the task at once.
    fn pre_commit(&mut self, txn: &mut Self::Txn) -> Result<(), UserError>;
    /// Makes a pre-committed transaction visible. Must be idempotent (called again after a
    /// restore for transactions that may already be committed).
    ///
    /// # Errors
    ///
    /// An error fails the task (at a checkpoint's completion, at open after a restore, or at the
    /// end of input); a job restarted from the latest completed checkpoint calls `commit` again
    /// for every transaction that checkpoint holds.
    fn commit(&mut self, txn: Self::Txn) -> Result<(), UserError>;
}

/// The [`Sink`] that runs a [`TransactionalSink`] with two-phase commit on checkpoints.
pub struct TwoPhaseCommit<S: TransactionalSink> {
    inner: S,
    /// A pre-commit failed: its records are neither committed nor in any snapshot, so the task
    /// must fail (and restart from the last checkpoint) before it writes anything else.
    failed: Option<String>,
    current: Option<S::Txn>,
    /// Pre-committed transactions by checkpoint id, awaiting that checkpoint's completion.
    pending: BTreeMap<u64, S::Txn>,
    restored: Option<u64>,
    next_checkpoint: u64,
    /// The job's commit fence (from the operator's info at open), asked before every commit.
    fence: CommitFence,
}

impl<S: TransactionalSink> TwoPhaseCommit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        TwoPhaseCommit {
            inner,
            failed: None,
            current: None,
            pending: BTreeMap::new(),
            restored: None,
            next_checkpoint: 1,
            fence: CommitFence::always(),
        }
    }
}

impl<S: TransactionalSink> Sink for TwoPhaseCommit<S> {
    type In = S::In;

    fn open(&mut self, info: &OperatorInfo) -> Result<(), UserError> {
        self.fence = info.commit_fence.clone();
        self.inner.open(info, self.restored)?;
        // Transactions of the restored checkpoint: it completed, so they are committed (again).
        for (_, txn) in std::mem::take(&mut self.pending) {
            self.fence.may_commit()?;
            self.inner.commit(txn)?;
        }
        Ok(())
    }

    fn write(&mut self, record: S::In) -> Result<(), UserError> {
        if let Some(e) = &self.failed {
            return Err(format!("a transaction could not be pre-committed ({e}); restarting from the last checkpoint").into());
        }
        let TwoPhaseCommit {
            inner,
            current,
            next_checkpoint,
            ..
        } = self;
        if current.is_none() {
            *current = Some(inner.begin(*next_checkpoint)?);
        }
        match current {
            Some(txn) => inner.write(txn, record),
            None => Err("no open transaction".into()),
        }
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        self.next_checkpoint = checkpoint_id;
        let mut txn = match self.current.take() {
            Some(t) => t,
            None => self.inner.begin(checkpoint_id)?,
        };
        if let Err(e) = self.inner.pre_commit(&mut txn) {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.pending.insert(checkpoint_id, txn);
        self.next_checkpoint = checkpoint_id + 1;
        Ok(Some(encode_state(&(checkpoint_id, &self.pending))?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        let (id, pending): (u64, BTreeMap<u64, S::Txn>) = decode_state(state)?;
        self.restored = Some(id);
        self.pending = pending;
        self.next_checkpoint = id + 1;
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), UserError> {
        let later = self.pending.split_off(&(checkpoint_id + 1));
        for (_, txn) in std::mem::replace(&mut self.pending, later) {
            self.fence.may_commit()?;
            self.inner.commit(txn)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UserError> {
        if let Some(e) = &self.failed {
            return Err(format!("a transaction could not be pre-committed ({e})").into());
        }
        // End of input: what is pending and the open transaction become visible now.
        for (_, txn) in std::mem::take(&mut self.pending) {
            self.fence.may_commit()?;
            self.inner.commit(txn)?;
        }
        if let Some(mut txn) = self.current.take() {
            self.inner.pre_commit(&mut txn)?;
            self.fence.may_commit()?;
            self.inner.commit(txn)?;
        }
        Ok(())
    }
}

/// A transaction of [`FileTransactions`]: one file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileTxn {
    /// The checkpoint id the file belongs to.
    pub id: u64,
    #[serde(skip)]
    writer: Option<std::sync::Arc<std::sync::Mutex<BufWriter<fs::File>>>>,
}

/// Writes each record as a line of text into transactional files in a directory.
pub struct FileTransactions<T> {
    dir: PathBuf,
    subtask: usize,
    format: fn(&T) -> String,
}

impl<T> FileTransactions<T> {
    /// Files in `dir`, one line per record as `format` renders it.
    pub fn new(dir: impl Into<PathBuf>, format: fn(&T) -> String) -> Self {
        FileTransactions {
            dir: dir.into(),
            subtask: 0,
            format,
        }
    }

    fn name(&self, state: &str, id: u64) -> PathBuf {
        match state {
            "committed" => self.dir.join(format!("part-{}-{id:020}", self.subtask)),
            other => self
                .dir
                .join(format!(".part-{}-{id:020}.{other}", self.subtask)),
        }
    }

    /// The committed lines under `dir`, in file order (for readers and tests).
    ///
    /// # Errors
    ///
    /// Returns the [`std::io::Error`] of listing `dir` or of reading a committed file (of kind
    /// [`InvalidData`](std::io::ErrorKind::InvalidData) if a file is not UTF-8).
    pub fn committed_lines(dir: &Path) -> std::io::Result<Vec<String>> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-"))
            })
            .collect();
        files.sort();
        let mut lines = Vec::new();
        for f in files {
            lines.extend(fs::read_to_string(f)?.lines().map(str::to_string));
        }
        Ok(lines)
    }
}

fn io(path: &Path, e: std::io::Error) -> UserError {
    format!("{}: {e}", path.display()).into()
}

impl<T: Data> TransactionalSink for FileTransactions<T> {
    type In = T;
    type Txn = FileTxn;

    fn open(&mut self, info: &OperatorInfo, restored: Option<u64>) -> Result<(), UserError> {
        self.subtask = info.subtask;
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mine = format!("part-{}-", info.subtask);
        let hidden = format!(".part-{}-", info.subtask);
        for entry in fs::read_dir(&self.dir)
            .map_err(|e| io(&self.dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            let id = |rest: &str| rest.get(..20).and_then(|d| d.parse::<u64>().ok());
            let discard = if let Some(rest) = name.strip_prefix(&hidden) {
                // In progress: never pre-committed. Pending: kept only if the restored
                // checkpoint covers it (its commit follows in `TwoPhaseCommit::open`).
                name.ends_with(".inprogress")
                    || id(rest).is_none_or(|i| restored.is_none_or(|r| i > r))
            } else if let Some(rest) = name.strip_prefix(&mine) {
                // Committed beyond the restored checkpoint: the tail of an earlier run that
                // will be produced again.
                id(rest).is_some_and(|i| restored.is_some_and(|r| i > r))
            } else {
                false
            };
            if discard {
                fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn begin(&mut self, next_checkpoint: u64) -> Result<FileTxn, UserError> {
        let path = self.name("inprogress", next_checkpoint);
        let f = fs::File::create(&path).map_err(|e| io(&path, e))?;
        Ok(FileTxn {
            id: next_checkpoint,
            writer: Some(std::sync::Arc::new(std::sync::Mutex::new(BufWriter::new(
                f,
            )))),
        })
    }

    fn write(&mut self, txn: &mut FileTxn, record: T) -> Result<(), UserError> {
        let w = txn
            .writer
            .as_ref()
            .ok_or("transaction is not open for writing")?;
        let mut w = w.lock().map_err(|_| "poisoned writer")?;
        writeln!(w, "{}", (self.format)(&record))?;
        Ok(())
    }

    fn pre_commit(&mut self, txn: &mut FileTxn) -> Result<(), UserError> {
        if let Some(w) = txn.writer.take() {
            let mut w = w.lock().map_err(|_| "poisoned writer")?;
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        let (from, to) = (
            self.name("inprogress", txn.id),
            self.name("pending", txn.id),
        );
        if from.exists() {
            fs::rename(&from, &to).map_err(|e| io(&to, e))?;
        } else if !to.exists() {
            // An empty transaction (begun for the id, nothing written) still commits an empty file.
            fs::File::create(&to).map_err(|e| io(&to, e))?.sync_all()?;
        }
        Ok(())
    }

    fn commit(&mut self, txn: FileTxn) -> Result<(), UserError> {
        let (from, to) = (self.name("pending", txn.id), self.name("committed", txn.id));
        if from.exists() {
            fs::rename(&from, &to).map_err(|e| io(&to, e))?;
        } else if !to.exists() {
            return Err(format!(
                "transaction {} of subtask {} is neither pending nor committed",
                txn.id, self.subtask
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(subtask: usize) -> OperatorInfo {
        OperatorInfo {
            name: "files".into(),
            uid: "files".into(),
            subtask,
            parallelism: 1,
            max_parallelism: 128,
            commit_fence: Default::default(),
        }
    }

    fn sink(dir: &Path) -> TwoPhaseCommit<FileTransactions<u64>> {
        TwoPhaseCommit::new(FileTransactions::new(dir, |x: &u64| x.to_string()))
    }

    fn lines(dir: &Path) -> Vec<String> {
        let mut l = FileTransactions::<u64>::committed_lines(dir).unwrap();
        l.sort();
        l
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-2pc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// Crash after checkpoint 1's state was taken (and the checkpoint completed) but before the
    /// sink heard of the completion: the restore commits the transaction.
    #[test]
    fn a_crash_between_completion_and_notification_still_commits() {
        let dir = tempdir("window");
        let mut a = sink(&dir);
        a.open(&info(0)).unwrap();
        for x in 0..10 {
            a.write(x).unwrap();
        }
        let state = a.snapshot_state(1).unwrap().unwrap();
        for x in 10..15 {
            a.write(x).unwrap(); // after the barrier: lost with the crash, replayed later
        }
        drop(a); // crash: no notification, no commit
        assert!(
            lines(&dir).is_empty(),
            "nothing is visible before the commit"
        );

        let mut b = sink(&dir);
        b.restore_state(&state).unwrap();
        b.open(&info(0)).unwrap();
        assert_eq!(
            lines(&dir),
            (0..10).map(|x| x.to_string()).collect::<Vec<_>>()
        );
        for x in 10..15 {
            b.write(x).unwrap();
        }
        b.finish().unwrap();
        let mut want: Vec<String> = (0..15).map(|x| x.to_string()).collect();
        want.sort();
        assert_eq!(lines(&dir), want);
        fs::remove_dir_all(&dir).ok();
    }

    /// Crash after the final commit of a run that went past the restored checkpoint: the next
    /// run produces that tail again and must not duplicate it.
    #[test]
    fn output_beyond_the_restored_checkpoint_is_discarded() {
        let dir = tempdir("tail");
        let mut a = sink(&dir);
        a.open(&info(0)).unwrap();
        for x in 0..5 {
            a.write(x).unwrap();
        }
        let state = a.snapshot_state(1).unwrap().unwrap();
        a.notify_checkpoint_complete(1).unwrap();
        for x in 5..9 {
            a.write(x).unwrap();
        }
        a.snapshot_state(2).unwrap(); // pre-committed, checkpoint 2 never completes
        a.write(9).unwrap();
        a.finish().unwrap(); // everything committed: 0..10
        assert_eq!(lines(&dir).len(), 10);

        // Restart from checkpoint 1: records 5..10 come again.
        let mut b = sink(&dir);
        b.restore_state(&state).unwrap();
        b.open(&info(0)).unwrap();
        assert_eq!(
            lines(&dir).len(),
            5,
            "the tail beyond checkpoint 1 was discarded"
        );
        for x in 5..10 {
            b.write(x).unwrap();
        }
        b.finish().unwrap();
        let mut want: Vec<String> = (0..10).map(|x| x.to_string()).collect();
        want.sort();
        assert_eq!(lines(&dir), want);
        // Subtasks do not touch each other's files.
        let mut other = sink(&dir);
        other.open(&info(1)).unwrap();
        assert_eq!(lines(&dir), want);
        fs::remove_dir_all(&dir).ok();
    }

    /// A failed pre-commit does not lose records silently: the checkpoint is declined and the
    /// next write fails the task (which restarts from the last checkpoint).
    #[test]
    fn a_failed_pre_commit_fails_the_next_write() {
        let dir = tempdir("precommit");
        let mut a = sink(&dir);
        a.open(&info(0)).unwrap();
        a.write(1).unwrap();
        fs::remove_dir_all(&dir).unwrap(); // the in-progress file vanishes: the rename fails
        assert!(a.snapshot_state(1).is_err());
        let e = a.write(2).unwrap_err();
        assert!(e.to_string().contains("could not be pre-committed"), "{e}");
        assert!(a.finish().is_err());
        fs::remove_dir_all(&dir).ok();
    }

    /// A transaction pre-committed for an aborted checkpoint is committed with the next one.
    #[test]
    fn aborted_checkpoints_commit_later() {
        let dir = tempdir("aborted");
        let mut a = sink(&dir);
        a.open(&info(0)).unwrap();
        a.write(1).unwrap();
        a.snapshot_state(1).unwrap();
        a.notify_checkpoint_aborted(1).unwrap();
        a.write(2).unwrap();
        a.snapshot_state(2).unwrap();
        assert!(lines(&dir).is_empty());
        a.notify_checkpoint_complete(2).unwrap();
        assert_eq!(lines(&dir), vec!["1".to_string(), "2".to_string()]);
        fs::remove_dir_all(&dir).ok();
    }
}
