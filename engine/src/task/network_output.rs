//! The end of a chain at a network edge: an [`Output`] that hands records, events and barriers
//! to the edge's [`RecordWriter`] (the channel core: routing, buffering, credit).
//!
//! This link adds what belongs to the task, not to the channels: which calls of the chain mean
//! what on the wire (end of input, barriers), and the channel state of unaligned checkpoints
//! (encoding what an unaligned barrier overtook, and sending it again after a restore, before
//! anything new).

use crate::channel::writer::{Partitioner, RecordWriter};
use crate::channel::Event;
use crate::checkpoint::{Barrier, Captured, OperatorSubtaskState};
use crate::data::Data;
use crate::error::TaskError;
use crate::mailbox::env::TaskEnv;
use crate::operator::output::Output;
use crate::time::{StreamStatus, Watermark};

/// A chain's output into one network edge.
pub(crate) struct NetworkOutput<T, P> {
    writer: RecordWriter<T, P>,
}

impl<T, P> NetworkOutput<T, P> {
    /// The output that writes into `writer`.
    pub(crate) fn new(writer: RecordWriter<T, P>) -> Self {
        NetworkOutput { writer }
    }
}

impl<T: Data, P: Partitioner<T>> Output<T> for NetworkOutput<T, P> {
    #[inline]
    fn element(&mut self, record: T, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.writer.emit(record, env)
    }

    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.writer.broadcast_event(Event::Watermark(wm), env)
    }

    fn status(&mut self, status: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.writer.broadcast_event(Event::Status(status), env)
    }

    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.writer.broadcast_event(Event::EndOfInput, env)
    }

    fn snapshot(
        &mut self,
        _: u64,
        _: &mut TaskEnv,
        _: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        Ok(())
    }

    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError> {
        let in_flight = if barrier.unaligned {
            self.writer.overtake(barrier, env)?
        } else {
            self.writer.aligned_barrier(barrier, env)?
        };
        if !in_flight.is_empty() {
            let bytes = weir_state::checkpoint::format::encode(&in_flight)
                .map_err(|e| TaskError::user(env.current_operator, e.into()))?;
            captured.push((self.writer.key().to_string(), bytes));
        }
        Ok(())
    }

    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        if let Some(bytes) = self.writer.take_replay() {
            let per_channel: Vec<(usize, Vec<T>)> =
                weir_state::checkpoint::format::decode("output channel state", &bytes)
                    .map_err(|e| TaskError::user(env.current_operator, e.into()))?;
            self.writer.resend(per_channel, env)?;
        }
        Ok(())
    }

    fn notify_checkpoint(&mut self, _: u64, _: bool, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }

    fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.writer.flush(partial, env)
    }
}
