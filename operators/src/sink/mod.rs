//! Built-in sinks: collect (results returned to the caller), discard, print, and exactly-once
//! sinks by two-phase commit ([`two_phase`]).

pub mod two_phase;

use std::fmt::Debug;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;
use weir_engine::{Data, OperatorInfo, Sink, UserError};

/// Drops every record.
pub struct DiscardSink<T>(PhantomData<fn(T)>);

impl<T> Default for DiscardSink<T> {
    fn default() -> Self {
        DiscardSink(PhantomData)
    }
}

impl<T: Data> Sink for DiscardSink<T> {
    type In = T;
    #[inline]
    fn write(&mut self, _record: T) -> Result<(), UserError> {
        Ok(())
    }
}

/// Prints every record to standard output, prefixed with `subtask> ` when parallel (as Flink).
pub struct PrintSink<T> {
    prefix: String,
    _t: PhantomData<fn(T)>,
}

impl<T> Default for PrintSink<T> {
    fn default() -> Self {
        PrintSink {
            prefix: String::new(),
            _t: PhantomData,
        }
    }
}

impl<T: Data + Debug> Sink for PrintSink<T> {
    type In = T;
    fn open(&mut self, info: &OperatorInfo) -> Result<(), UserError> {
        if info.parallelism > 1 {
            self.prefix = format!("{}> ", info.subtask + 1);
        }
        Ok(())
    }
    fn write(&mut self, record: T) -> Result<(), UserError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}{:?}", self.prefix, record)?;
        Ok(())
    }
}

/// The results of a `collect` sink, readable once the job ended (or while it runs).
pub struct CollectHandle<T> {
    parts: Arc<Mutex<Vec<Vec<T>>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        CollectHandle {
            parts: self.parts.clone(),
        }
    }
}

impl<T> Default for CollectHandle<T> {
    fn default() -> Self {
        CollectHandle {
            parts: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Data> CollectHandle<T> {
    /// Every record collected so far, subtask by subtask, each in arrival order; empties the
    /// handle.
    pub fn take(&self) -> Vec<T> {
        let mut parts = self.parts.lock();
        parts.iter_mut().flat_map(std::mem::take).collect()
    }
    /// The records collected by each subtask, in arrival order; empties the handle.
    pub fn take_by_subtask(&self) -> Vec<Vec<T>> {
        let mut parts = self.parts.lock();
        parts.iter_mut().map(std::mem::take).collect()
    }
    /// Number of records collected so far.
    pub fn len(&self) -> usize {
        self.parts.lock().iter().map(Vec::len).sum()
    }
    /// Whether nothing was collected yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sink of one subtask.
    pub fn sink(&self, info: &OperatorInfo) -> CollectSink<T> {
        let mut parts = self.parts.lock();
        if parts.len() < info.parallelism {
            parts.resize_with(info.parallelism, Vec::new);
        }
        CollectSink {
            parts: self.parts.clone(),
            subtask: info.subtask,
            buffer: Vec::new(),
        }
    }
}

/// One subtask of a collect sink: buffers locally, publishes every 1024 records and at the end.
pub struct CollectSink<T> {
    parts: Arc<Mutex<Vec<Vec<T>>>>,
    subtask: usize,
    buffer: Vec<T>,
}

impl<T: Data> CollectSink<T> {
    fn publish(&mut self) {
        if !self.buffer.is_empty() {
            let mut parts = self.parts.lock();
            parts[self.subtask].append(&mut self.buffer);
        }
    }
}

impl<T: Data> Sink for CollectSink<T> {
    type In = T;
    fn write(&mut self, record: T) -> Result<(), UserError> {
        self.buffer.push(record);
        if self.buffer.len() >= 1024 {
            self.publish();
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), UserError> {
        self.publish();
        Ok(())
    }
    fn close(&mut self) -> Result<(), UserError> {
        self.publish();
        Ok(())
    }
}
