//! Watermark strategies: how a source's records get timestamps and its stream watermarks.
//!
//! A strategy is applied by an operator chained right after the source
//! ([`DataStream::assign_timestamps_and_watermarks`](crate::DataStream::assign_timestamps_and_watermarks)).
//! Every `pipeline.auto-watermark-interval` it emits `max_timestamp - out_of_orderness - 1` if
//! that advanced (bounded out-of-orderness, Flink's `BoundedOutOfOrdernessWatermarks`). With
//! idleness configured, a subtask that saw no record for that long marks its output idle and
//! becomes active again with its next record. Upstream watermarks are swallowed, except the
//! final `Watermark::MAX` at the end of input.

use std::sync::Arc;
use std::time::Duration;

use super::{Context, Operator};
use crate::data::Data;
use crate::error::UserError;
use crate::time::{StreamStatus, Timer, Watermark};

type TimestampFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// How to derive event time and watermarks from records.
pub struct WatermarkStrategy<T> {
    timestamp: TimestampFn<T>,
    out_of_orderness: Duration,
    idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamp: self.timestamp.clone(),
            out_of_orderness: self.out_of_orderness,
            idleness: self.idleness,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Records arrive at most `max` late relative to the largest timestamp seen.
    pub fn for_bounded_out_of_orderness(
        max: Duration,
        timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> Self {
        WatermarkStrategy {
            timestamp: Arc::new(timestamp),
            out_of_orderness: max,
            idleness: None,
        }
    }

    /// Timestamps never decrease.
    pub fn for_monotonous_timestamps(
        timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO, timestamp)
    }

    /// Marks a subtask idle after `timeout` without records.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// The timestamp of a record.
    pub fn timestamp_of(&self, record: &T) -> i64 {
        (self.timestamp)(record)
    }
}

/// The operator applying a [`WatermarkStrategy`].
pub(crate) struct TimestampsAndWatermarks<T> {
    strategy: WatermarkStrategy<T>,
    interval: Duration,
    max_timestamp: i64,
    last_emitted: i64,
    records_since_tick: u64,
    last_active_ms: i64,
    idle: bool,
}

impl<T> TimestampsAndWatermarks<T> {
    pub(crate) fn new(strategy: WatermarkStrategy<T>, interval: Duration) -> Self {
        TimestampsAndWatermarks {
            strategy,
            interval,
            max_timestamp: i64::MIN,
            last_emitted: i64::MIN,
            records_since_tick: 0,
            last_active_ms: 0,
            idle: false,
        }
    }

    fn schedule(&self, ctx: &mut Context<'_, T>)
    where
        T: Data,
    {
        if !self.interval.is_zero() {
            let now = ctx.current_processing_time();
            ctx.register_processing_time_timer(now + self.interval.as_millis().max(1) as i64);
        }
    }
}

impl<T: Data> Operator for TimestampsAndWatermarks<T> {
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        self.last_active_ms = ctx.current_processing_time();
        self.schedule(ctx);
        Ok(())
    }

    #[inline]
    fn process_element(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        let ts = self.strategy.timestamp_of(&element);
        if ts > self.max_timestamp {
            self.max_timestamp = ts;
        }
        self.records_since_tick += 1;
        if self.idle {
            self.idle = false;
            ctx.emit_status(StreamStatus::Active);
        }
        ctx.emit(element);
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark: Watermark,
        ctx: &mut Context<'_, T>,
    ) -> Result<(), UserError> {
        if watermark == Watermark::MAX {
            // The end: nothing may follow it, not even a periodic watermark.
            self.last_emitted = i64::MAX;
            ctx.emit_watermark(watermark);
        }
        Ok(())
    }

    fn on_timer(&mut self, _timer: Timer, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        let now = ctx.current_processing_time();
        if self.max_timestamp != i64::MIN {
            let ooo = self.strategy.out_of_orderness.as_millis() as i64;
            let wm = self.max_timestamp.saturating_sub(ooo).saturating_sub(1);
            if wm > self.last_emitted {
                self.last_emitted = wm;
                ctx.emit_watermark(Watermark(wm));
            }
        }
        if self.records_since_tick > 0 {
            self.records_since_tick = 0;
            self.last_active_ms = now;
        } else if let Some(timeout) = self.strategy.idleness {
            if !self.idle && now - self.last_active_ms >= timeout.as_millis() as i64 {
                self.idle = true;
                ctx.emit_status(StreamStatus::Idle);
            }
        }
        self.schedule(ctx);
        Ok(())
    }
}
