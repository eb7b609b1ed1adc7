//! A split-based source: a coordinator hands out splits, subtasks read them.
//!
//! The input is cut into splits (ranges of a sequence, files of a directory, ...). The
//! [`SplitEnumerator`] — the source's coordinator — keeps the splits not assigned yet and gives
//! one to a subtask when it asks; each [`SplitSource`] subtask reads its split record by record
//! with a [`SplitReader`], then asks for the next, and finishes once told there are no more.
//!
//! Exactly once, with the coordinator's checkpoint rules (see `weir_engine::coordination`):
//! the enumerator's state is the list of unassigned splits; a subtask's state is its current
//! split and how many records of it were emitted. An assignment sent before the enumerator's
//! checkpoint result is handled before the barrier, so it is in the subtask's state and not in
//! the enumerator's; one sent after reaches the subtask after the barrier, so after a restore
//! the enumerator still has it unassigned and hands it out again. Every split is therefore read
//! exactly once in what a checkpoint covers. An assignment that cannot be delivered (the
//! subtask ended) goes back to the front of the list.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::BufRead;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::coordination::{Coordinator, CoordinatorContext, OperatorEvent, SubtaskGateway};
use weir_engine::{Data, Source, SourceContext, SourceStatus, UserError};

/// Reads splits of one kind.
pub trait SplitReader: Send + 'static {
    /// A split: what one subtask reads whole.
    type Split: Data + Debug;
    /// The records.
    type Out: Data;
    /// Starts reading `split`, skipping its first `position` records (already emitted).
    ///
    /// # Errors
    ///
    /// An error (for example: the split cannot be opened, or has fewer than `position` records)
    /// fails the task: the job restarts (from its latest completed checkpoint, or from the
    /// start without one) as its restart strategy allows, or else ends with
    /// [`JobError::TaskFailed`](weir_engine::JobError::TaskFailed).
    fn start(&mut self, split: &Self::Split, position: u64) -> Result<(), UserError>;
    /// The next record of the split being read, `None` at its end.
    ///
    /// # Errors
    ///
    /// An error fails the task, as one from [`start`](Self::start) does; after a restart the
    /// split is read again from the position the restored checkpoint recorded (or from its start).
    fn next(&mut self) -> Result<Option<Self::Out>, UserError>;
}

/// What a subtask asks its enumerator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitRequest {
    /// Give me a split to read.
    Next,
}

/// What the enumerator answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitAssignment<S> {
    /// Read this split.
    Split(S),
    /// Every split is assigned: finish once done.
    NoMoreSplits,
}

/// The coordinator of a split source: assigns splits on request.
pub struct SplitEnumerator<S> {
    initial: Vec<S>,
    remaining: VecDeque<S>,
    gateways: Vec<Option<SubtaskGateway<SplitAssignment<S>>>>,
}

impl<S: Data + Debug> SplitEnumerator<S> {
    /// An enumerator over `splits`, handed out in this order.
    pub fn new(splits: Vec<S>) -> Self {
        SplitEnumerator {
            remaining: splits.iter().cloned().collect(),
            initial: splits,
            gateways: Vec::new(),
        }
    }
}

impl<S: Data + Debug> Coordinator for SplitEnumerator<S> {
    type ToSubtask = SplitAssignment<S>;
    type FromSubtask = SplitRequest;

    fn handle_event(
        &mut self,
        subtask: usize,
        _attempt: u32,
        event: SplitRequest,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        let SplitRequest::Next = event;
        let Some(Some(gateway)) = self.gateways.get(subtask) else {
            return Ok(()); // its attempt ended; the next one asks again
        };
        match self.remaining.pop_front() {
            Some(split) => {
                if gateway.send(SplitAssignment::Split(split.clone())).is_err() {
                    // Not delivered: the split stays unassigned.
                    self.remaining.push_front(split);
                }
            }
            None => {
                let _ = gateway.send(SplitAssignment::NoMoreSplits);
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, _id: u64, _ctx: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        encode_state(&self.remaining.iter().cloned().collect::<Vec<S>>())
    }

    fn reset_to_checkpoint(
        &mut self,
        id: Option<u64>,
        state: Option<&[u8]>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.remaining = match (state, id) {
            (Some(bytes), _) => decode_state::<Vec<S>>(bytes)?.into(),
            (None, None) => self.initial.iter().cloned().collect(),
            // Its subtasks restore the splits they were reading: starting over would read
            // every split again.
            (None, Some(id)) => {
                return Err(format!(
                    "checkpoint {id} has no state of this split enumerator (a checkpoint of another job, or the uid changed): refusing to read every split again"
                )
                .into())
            }
        };
        Ok(())
    }

    fn attempt_failed(
        &mut self,
        subtask: usize,
        _attempt: u32,
        _reason: &str,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if let Some(g) = self.gateways.get_mut(subtask) {
            *g = None;
        }
        Ok(())
    }

    fn attempt_ready(
        &mut self,
        subtask: usize,
        _attempt: u32,
        gateway: SubtaskGateway<SplitAssignment<S>>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if self.gateways.len() <= subtask {
            self.gateways.resize(subtask + 1, None);
        }
        self.gateways[subtask] = Some(gateway);
        Ok(())
    }
}

/// A subtask of a split source: reads the splits its enumerator assigns.
pub struct SplitSource<R: SplitReader> {
    reader: R,
    /// The split being read and the records of it emitted.
    current: Option<(R::Split, u64)>,
    /// `current` was restored and the reader not started on it yet.
    must_start: bool,
    requested: bool,
    no_more: bool,
}

impl<R: SplitReader> SplitSource<R> {
    /// A subtask reading with `reader`.
    pub fn new(reader: R) -> Self {
        SplitSource {
            reader,
            current: None,
            must_start: false,
            requested: false,
            no_more: false,
        }
    }
}

impl<R: SplitReader> Source for SplitSource<R> {
    type Out = R::Out;

    fn poll_next(
        &mut self,
        ctx: &mut SourceContext<'_, R::Out>,
    ) -> Result<SourceStatus, UserError> {
        loop {
            let Some((split, position)) = self.current.as_mut() else {
                if self.no_more {
                    return Ok(SourceStatus::Finished);
                }
                if !self.requested {
                    ctx.send_to_coordinator(SplitRequest::Next)?;
                    self.requested = true;
                }
                // The assignment arrives as an event, which polls again at once.
                return Ok(SourceStatus::Pending(Duration::from_millis(100)));
            };
            if self.must_start {
                self.reader.start(split, *position)?;
                self.must_start = false;
            }
            while !ctx.should_yield() {
                match self.reader.next()? {
                    Some(record) => {
                        *position += 1;
                        ctx.emit(record);
                    }
                    None => {
                        self.current = None;
                        break;
                    }
                }
            }
            if self.current.is_some() {
                return Ok(SourceStatus::MoreAvailable);
            }
        }
    }

    fn handle_operator_event(&mut self, event: OperatorEvent) -> Result<(), UserError> {
        match event.downcast::<SplitAssignment<R::Split>>()? {
            SplitAssignment::Split(split) => {
                if let Some((current, _)) = &self.current {
                    return Err(format!(
                        "assigned split {split:?} while still reading {current:?}"
                    )
                    .into());
                }
                self.current = Some((split, 0));
                self.must_start = true;
                self.requested = false;
            }
            SplitAssignment::NoMoreSplits => {
                self.no_more = true;
                self.requested = false;
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.current)?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.current = decode_state(state)?;
        self.must_start = self.current.is_some();
        Ok(())
    }
}

/// Reads ranges `[start, end)` of a sequence of numbers.
#[derive(Debug, Default, Clone)]
pub struct RangeReader {
    next: u64,
    end: u64,
}

/// Cuts `0..total` into ranges of `size` numbers (the last may be shorter).
pub fn sequence_splits(total: u64, size: u64) -> Vec<(u64, u64)> {
    let size = size.max(1);
    (0..total.div_ceil(size))
        .map(|i| {
            (
                i.saturating_mul(size),
                (i + 1).saturating_mul(size).min(total),
            )
        })
        .collect()
}

impl SplitReader for RangeReader {
    type Split = (u64, u64);
    type Out = u64;
    fn start(&mut self, split: &(u64, u64), position: u64) -> Result<(), UserError> {
        let (start, end) = *split;
        if start > end || position > end - start {
            return Err(format!("position {position} is outside split {split:?}").into());
        }
        self.next = start + position;
        self.end = end;
        Ok(())
    }
    fn next(&mut self) -> Result<Option<u64>, UserError> {
        if self.next >= self.end {
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(self.next - 1))
    }
}

/// Reads the lines of text files (a split is a file's path).
#[derive(Default)]
pub struct LinesReader {
    lines: Option<std::io::Lines<std::io::BufReader<std::fs::File>>>,
    path: String,
}

/// The files of `dir` (not its subdirectories), sorted by name: one split each.
///
/// # Errors
///
/// Returns the [`std::io::Error`] of listing `dir` (it does not exist, is not a directory, or
/// is not readable) or of reading an entry's file type.
pub fn directory_splits(dir: impl AsRef<std::path::Path>) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path().display().to_string());
        }
    }
    files.sort();
    Ok(files)
}

impl SplitReader for LinesReader {
    type Split = String;
    type Out = String;
    fn start(&mut self, split: &String, position: u64) -> Result<(), UserError> {
        let file = std::fs::File::open(split)
            .map_err(|e| format!("cannot open split file {split}: {e}"))?;
        let mut lines = std::io::BufReader::new(file).lines();
        for i in 0..position {
            match lines.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("cannot read {split}: {e}").into()),
                None => {
                    return Err(format!(
                        "{split} has {i} lines, fewer than the restored position {position}"
                    )
                    .into())
                }
            }
        }
        self.lines = Some(lines);
        self.path = split.clone();
        Ok(())
    }
    fn next(&mut self) -> Result<Option<String>, UserError> {
        match self.lines.as_mut().and_then(|l| l.next()) {
            Some(Ok(line)) => Ok(Some(line)),
            Some(Err(e)) => Err(format!("cannot read {}: {e}", self.path).into()),
            None => {
                self.lines = None;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_splits_cover_the_range() {
        assert_eq!(sequence_splits(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert!(sequence_splits(0, 4).is_empty());
        let mut r = RangeReader::default();
        r.start(&(4, 8), 2).unwrap();
        assert_eq!(r.next().unwrap(), Some(6));
        assert_eq!(r.next().unwrap(), Some(7));
        assert_eq!(r.next().unwrap(), None);
        assert!(r.start(&(4, 8), 5).is_err());
    }

    #[test]
    fn lines_reader_resumes_at_a_position() {
        let dir = std::env::temp_dir().join(format!("weir-split-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.txt"), "3\n4\n").unwrap();
        std::fs::write(dir.join("a.txt"), "1\n2\n").unwrap();
        let splits = directory_splits(&dir).unwrap();
        assert!(splits[0].ends_with("a.txt") && splits[1].ends_with("b.txt"));
        let mut r = LinesReader::default();
        r.start(&splits[0], 1).unwrap();
        assert_eq!(r.next().unwrap(), Some("2".to_string()));
        assert_eq!(r.next().unwrap(), None);
        let e = r.start(&splits[1], 3).unwrap_err().to_string();
        assert!(e.contains("fewer than the restored position 3"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
