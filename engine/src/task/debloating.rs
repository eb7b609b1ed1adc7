//! The task side of buffer debloating: measuring an input task every period and announcing what
//! its gate's [`BufferDebloater`] decides.
//!
//! The task counts what it already counts (records taken from the gate, time idle and time
//! backpressured); this clock turns the differences over one period into a [`Sample`]. Records
//! taken from the gate but still in the task's hands are not consumed yet. It costs one clock
//! read per buffer taken from the gate, and nothing when debloating is off.

use std::time::{Duration, Instant};

use crate::channel::debloat::{BufferDebloater, Sample};
use crate::channel::gate::InputGate;

/// The task's cumulative counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    /// Records the task has consumed (taken from its gate and processed).
    pub consumed: u64,
    /// Time waited for input so far.
    pub idle: Duration,
    /// Time waited for output credit so far.
    pub backpressured: Duration,
}

/// Buffer debloating of one input task.
pub(crate) struct DebloatClock {
    debloater: BufferDebloater,
    record_size: u64,
    next_at: Instant,
    last_at: Instant,
    last: Counters,
}

impl DebloatClock {
    /// Starts measuring now and announces the debloater's starting point to the gate's senders.
    pub(crate) fn start<T>(debloater: BufferDebloater, gate: &InputGate<T>) -> Self {
        let now = Instant::now();
        gate.announce(debloater.announced());
        DebloatClock {
            next_at: now + debloater.first_period(),
            last_at: now,
            debloater,
            record_size: std::mem::size_of::<T>().max(1) as u64,
            last: Counters::default(),
        }
    }

    /// Takes a measurement if a period has passed, and announces a changed buffer size.
    pub(crate) fn tick<T>(&mut self, counters: Counters, gate: &InputGate<T>) {
        let now = Instant::now();
        if now < self.next_at {
            return;
        }
        let sample = Sample {
            elapsed: now - self.last_at,
            consumed_bytes: counters.consumed.saturating_sub(self.last.consumed) * self.record_size,
            idle: counters.idle.saturating_sub(self.last.idle),
            backpressured: counters
                .backpressured
                .saturating_sub(self.last.backpressured),
        };
        self.last = counters;
        self.last_at = now;
        self.next_at = now + self.debloater.settings().period;
        if let Some(a) = self.debloater.update(sample) {
            gate.announce(a);
        }
    }
}
