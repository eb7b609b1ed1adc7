//! Writing custom operators: the same traits the built-in operators use.
//!
//! Two operators, each using every hook of its trait:
//!
//! 1. `Batcher` ([`Operator`]): groups records into batches of `size`, and emits a partial batch
//!    when a processing-time timer fires (so a trickle of records is not held forever), before
//!    forwarding a watermark (so no record falls behind a watermark), and at the end of input.
//! 2. `TumblingCount` ([`KeyedOperator`]): counts each key's records per event-time window of
//!    `width` ms with keyed value state, and emits `(key, window_end, count)` when the watermark
//!    passes the window's end (an event-time timer).
//!
//! Run it: `cargo run --example custom_operator`.

use std::time::Duration;

use weir::prelude::*;

/// Groups records into batches.
struct Batcher {
    size: usize,
    linger: Duration,
    batch: Vec<u64>,
    timer: Option<i64>,
}

impl Batcher {
    fn flush(&mut self, ctx: &mut Context<'_, Vec<u64>>) {
        if !self.batch.is_empty() {
            ctx.emit(std::mem::take(&mut self.batch));
        }
        if let Some(t) = self.timer.take() {
            ctx.delete_processing_time_timer(t);
        }
    }
}

impl Operator for Batcher {
    type In = u64;
    type Out = Vec<u64>;

    fn open(&mut self, ctx: &mut Context<'_, Vec<u64>>) -> Result<(), UserError> {
        // Runs once per subtask before the first record.
        println!(
            "batcher {} of {} opened",
            ctx.info().subtask + 1,
            ctx.info().parallelism
        );
        Ok(())
    }

    fn process_element(
        &mut self,
        element: u64,
        ctx: &mut Context<'_, Vec<u64>>,
    ) -> Result<(), UserError> {
        if self.batch.is_empty() {
            // The first record of a batch starts its linger timer.
            let at = ctx.current_processing_time() + self.linger.as_millis() as i64;
            ctx.register_processing_time_timer(at);
            self.timer = Some(at);
        }
        self.batch.push(element);
        if self.batch.len() >= self.size {
            self.flush(ctx);
        }
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark: Watermark,
        ctx: &mut Context<'_, Vec<u64>>,
    ) -> Result<(), UserError> {
        // Records before a watermark must leave before it.
        self.flush(ctx);
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: Timer,
        ctx: &mut Context<'_, Vec<u64>>,
    ) -> Result<(), UserError> {
        self.timer = None;
        self.flush(ctx);
        Ok(())
    }

    fn finish(&mut self, ctx: &mut Context<'_, Vec<u64>>) -> Result<(), UserError> {
        // End of input: nothing may stay buffered.
        self.flush(ctx);
        Ok(())
    }

    fn close(&mut self) -> Result<(), UserError> {
        // Release resources; also called when the job fails or is cancelled.
        Ok(())
    }
}

/// Counts each key's records per tumbling event-time window.
struct TumblingCount {
    width: i64,
    counts: Option<MapStateHandle<i64, u64>>,
}

impl KeyedOperator for TumblingCount {
    type Key = u64;
    type In = (u64, i64);
    type Out = (u64, i64, u64);

    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<(), UserError> {
        self.counts = Some(ctx.map_state("window-counts")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, ts): (u64, i64),
        ctx: &mut KeyedContext<'_, u64, (u64, i64, u64)>,
    ) -> Result<(), UserError> {
        let h = self.counts.ok_or("not opened")?;
        let end = ts - ts.rem_euclid(self.width) + self.width;
        if end <= ctx.current_watermark().0 {
            return Ok(()); // late: its window already fired
        }
        let n = ctx.map_get(&h, &end).copied().unwrap_or(0);
        ctx.map_put(&h, end, n + 1);
        ctx.register_event_time_timer(end - 1);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64, (u64, i64, u64)>,
    ) -> Result<(), UserError> {
        let h = self.counts.ok_or("not opened")?;
        let end = timer.timestamp + 1;
        if let Some(n) = ctx.map_remove(&h, &end) {
            let key = *ctx.current_key();
            ctx.emit((key, end, n));
        }
        Ok(())
    }
}

fn main() -> Result<(), JobError> {
    let env = StreamEnv::new();
    env.set_parallelism(2);

    // 1. Batches of 100 out of 10,050 numbers: 100 full batches and one partial per subtask.
    let batches = env
        .generate_sequence(0..10_050)
        .transform("Batcher", |_| Batcher {
            size: 100,
            linger: Duration::from_millis(50),
            batch: Vec::new(),
            timer: None,
        })
        .collect();

    // 2. Events (key, timestamp) for 3 keys over 10 seconds of event time; 1 s windows.
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(
        Duration::from_millis(100),
        |e: &(u64, i64)| e.1,
    );
    let windows = env
        .from_iter(
            (0..3_000i64)
                .map(|i| (i as u64 % 3, i * 10 / 3))
                .collect::<Vec<_>>(),
        )
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|e| e.0)
        .transform("Tumbling Count", |_| TumblingCount {
            width: 1_000,
            counts: None,
        })
        .collect();

    let result = env.execute()?;
    print!("{}", result.metrics.table());

    let batches = batches.take();
    let records: usize = batches.iter().map(Vec::len).sum();
    println!("{} batches, {records} records", batches.len());
    assert_eq!(records, 10_050);

    let mut windows = windows.take();
    windows.sort();
    for (key, end, count) in &windows {
        println!("key {key}: window ending {end} ms holds {count} events");
    }
    assert_eq!(windows.len(), 30, "3 keys x 10 windows");
    assert!(windows
        .iter()
        .all(|w| w.2 == 100 || w.2 == 99 || w.2 == 101));
    assert_eq!(windows.iter().map(|w| w.2).sum::<u64>(), 3_000);
    Ok(())
}
