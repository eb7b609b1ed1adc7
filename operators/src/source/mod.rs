//! Built-in sources: from an iterator (non-parallel) and a generator (parallel, bounded or
//! unbounded, optionally rate-limited).
//!
//! Both emit at most [`SOURCE_BATCH`](weir_engine::SOURCE_BATCH) records per poll and stop early
//! when the task asks them to yield, so their task serves its mailbox between batches.

pub mod split;

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::{Data, OperatorInfo, Source, SourceContext, SourceStatus, UserError};

/// Emits the items of an iterator, in order, from one subtask. Its checkpointed state is the
/// number of items emitted; on restore the (re-created) iterator skips that many.
pub struct IterSource<I: Iterator> {
    iter: I,
    emitted: u64,
}

impl<I: Iterator> IterSource<I> {
    /// A source over `iter`.
    pub fn new(iter: I) -> Self {
        IterSource { iter, emitted: 0 }
    }
}

impl<I> Source for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Data,
{
    type Out = I::Item;
    fn poll_next(
        &mut self,
        ctx: &mut SourceContext<'_, I::Item>,
    ) -> Result<SourceStatus, UserError> {
        while !ctx.should_yield() {
            match self.iter.next() {
                Some(x) => {
                    self.emitted += 1;
                    ctx.emit(x)
                }
                None => return Ok(SourceStatus::Finished),
            }
        }
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.emitted)?))
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        let n: u64 = decode_state(state)?;
        for _ in 0..n {
            if self.iter.next().is_none() {
                return Err(
                    format!("restored position {n} is past the end of the collection").into(),
                );
            }
        }
        self.emitted = n;
        Ok(())
    }
}

/// Describes generated records: `f(index)` for every index of a (possibly unbounded) sequence,
/// optionally at a bounded rate. Subtask `i` of `p` generates the indexes `i, i + p, i + 2p, ...`.
pub struct Generator<T> {
    f: Arc<dyn Fn(u64) -> T + Send + Sync>,
    count: Option<u64>,
    records_per_second: Option<f64>,
}

impl<T> Clone for Generator<T> {
    fn clone(&self) -> Self {
        Generator {
            f: self.f.clone(),
            count: self.count,
            records_per_second: self.records_per_second,
        }
    }
}

impl<T: Data> Generator<T> {
    /// An unbounded generator of `f(0), f(1), ...`.
    pub fn new(f: impl Fn(u64) -> T + Send + Sync + 'static) -> Self {
        Generator {
            f: Arc::new(f),
            count: None,
            records_per_second: None,
        }
    }
    /// Ends after `count` records in total.
    pub fn bounded(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }
    /// Emits at most `rate` records per second in total (spread over the subtasks).
    pub fn rate_limited(mut self, records_per_second: f64) -> Self {
        self.records_per_second = Some(records_per_second);
        self
    }
    /// The source of one subtask.
    pub fn instance(&self, info: &OperatorInfo) -> GeneratorSource<T> {
        let p = info.parallelism as u64;
        GeneratorSource {
            f: self.f.clone(),
            next: info.subtask as u64,
            stride: p,
            end: self.count.unwrap_or(u64::MAX),
            rate: self.records_per_second.map(|r| r / p as f64),
            started: None,
            emitted: 0,
        }
    }
}

/// One subtask of a [`Generator`].
pub struct GeneratorSource<T> {
    f: Arc<dyn Fn(u64) -> T + Send + Sync>,
    next: u64,
    stride: u64,
    end: u64,
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl<T: Data> Source for GeneratorSource<T> {
    type Out = T;

    fn poll_next(&mut self, ctx: &mut SourceContext<'_, T>) -> Result<SourceStatus, UserError> {
        let budget = match self.rate {
            None => u64::MAX,
            Some(rate) => {
                let started = *self.started.get_or_insert_with(Instant::now);
                let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
                if self.emitted >= allowed {
                    let due = (self.emitted as f64 / rate).max(0.0);
                    let wait = Duration::from_secs_f64(due).saturating_sub(started.elapsed());
                    return Ok(SourceStatus::Pending(wait.max(Duration::from_micros(100))));
                }
                allowed - self.emitted
            }
        };
        let mut n = 0;
        while n < budget && !ctx.should_yield() {
            if self.next >= self.end {
                return Ok(SourceStatus::Finished);
            }
            ctx.emit((self.f)(self.next));
            self.next = self.next.saturating_add(self.stride);
            n += 1;
        }
        self.emitted += n;
        if self.next >= self.end {
            return Ok(SourceStatus::Finished);
        }
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.next)?))
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        // The rate limit starts afresh from the restored position.
        self.next = decode_state(state)?;
        Ok(())
    }
}

/// The parallel sequence `start..end`, strided over subtasks (subtask `i` emits
/// `start + i, start + i + p, ...`).
pub struct SequenceSource {
    next: u64,
    stride: u64,
    end: u64,
}

impl SequenceSource {
    /// The sequence source of one subtask.
    pub fn new(range: std::ops::Range<u64>, info: &OperatorInfo) -> Self {
        SequenceSource {
            next: range.start.saturating_add(info.subtask as u64),
            stride: info.parallelism as u64,
            end: range.end,
        }
    }
}

impl Source for SequenceSource {
    type Out = u64;

    #[inline]
    fn poll_next(&mut self, ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
        while !ctx.should_yield() {
            if self.next >= self.end {
                return Ok(SourceStatus::Finished);
            }
            ctx.emit(self.next);
            self.next = self.next.saturating_add(self.stride);
        }
        if self.next >= self.end {
            return Ok(SourceStatus::Finished);
        }
        Ok(SourceStatus::MoreAvailable)
    }
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.next)?))
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.next = decode_state(state)?;
        Ok(())
    }
}
