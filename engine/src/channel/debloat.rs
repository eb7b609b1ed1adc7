//! Buffer debloating (Flink's FLIP-183): the data in flight towards an input gate sized to the
//! rate at which its task consumes.
//!
//! Every `period` the receiving task hands its [`BufferDebloater`] a [`Sample`]: the bytes it
//! consumed, and how long it was idle (waiting for input) and backpressured (waiting for output
//! credit). From it the debloater derives how many bytes should be in flight towards the gate,
//! smooths that with a moving average over `samples` periods, and turns it into an
//! [`Announcement`]: the buffer size senders cut their buffers at, and the gate's credit.
//!
//! Two choices go beyond Flink, both aimed at checkpoints under backpressure:
//! - **Busy-time weighting.** Flink sizes every gate to `throughput × target`. A task that is
//!   itself backpressured cannot go faster whatever waits in front of it, and the data in front
//!   of it only delays barriers, so its gate holds `throughput × target × (1 − backpressured
//!   share of its active time)`. The bottleneck's gate holds the full target; the hops behind it
//!   hold almost nothing, and an aligned barrier crosses the whole pipeline in about `target`
//!   rather than `target` per exchange. Where the rate is high (no real backpressure) the
//!   weighting never brings the size below the largest buffer, so fast pipelines are unchanged.
//! - **Fewer credits below the smallest buffer.** When even buffers of `min-segment-size` on
//!   every credit would hold more than the target, the gate also lowers its credit (floating
//!   buffers first, then exclusive ones down to one per channel, which every channel keeps so
//!   nothing can starve).
//!
//! What counts as in flight towards a gate: the buffers its credit admits, at each channel's
//! sender a full buffer waiting for credit and a partial one, and the buffer in the task's
//! hands (the most that can be ahead of a barrier); the announced size spreads the desired
//! bytes over all of them.
//!
//! Invariants: the announced size lies in `[min, max]`; the announced credit lies in
//! `[channels, channels × exclusive + floating]`; an announcement differs from the previous one
//! (by at least the threshold in size, or in credit, or reaching a bound).

use std::time::Duration;

/// The options of buffer debloating, resolved for one gate's records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DebloatSettings {
    /// Processing time the data in flight should hold.
    pub target: Duration,
    /// How often the task measures.
    pub period: Duration,
    /// Number of measurements the moving average spans.
    pub samples: usize,
    /// Smallest change of the buffer size worth announcing, as a fraction.
    pub threshold: f64,
    /// Smallest buffer, bytes.
    pub min_bytes: usize,
    /// Largest buffer, bytes.
    pub max_bytes: usize,
}

/// One period's measurement of the task behind a gate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    /// Length of the period.
    pub elapsed: Duration,
    /// Bytes of records the task consumed in it.
    pub consumed_bytes: u64,
    /// Time the task waited for input.
    pub idle: Duration,
    /// Time the task waited for output credit.
    pub backpressured: Duration,
}

/// What a gate tells its senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// Senders cut buffers at this many bytes.
    pub buffer_bytes: usize,
    /// Buffers the gate admits at once (its credit).
    pub credits: usize,
}

/// The debloater of one input gate.
#[derive(Debug)]
pub(crate) struct BufferDebloater {
    settings: DebloatSettings,
    channels: usize,
    credits_total: usize,
    /// Moving average of the bytes that should be in flight.
    desired: Option<f64>,
    announced: Announcement,
}

impl BufferDebloater {
    /// The debloater of a gate of `channels` channels with `exclusive` buffers each and
    /// `floating` shared ones. It starts at the smallest buffer with full credit: a slow
    /// consumer's gate never fills with large buffers first, and the first measurement (after
    /// [`Self::first_period`]) lifts a fast one to large buffers.
    pub(crate) fn new(
        settings: DebloatSettings,
        channels: usize,
        exclusive: usize,
        floating: usize,
    ) -> Self {
        let channels = channels.max(1);
        let credits_total = channels * exclusive.max(1) + floating;
        BufferDebloater {
            settings,
            channels,
            credits_total,
            desired: None,
            announced: Announcement {
                buffer_bytes: settings.min_bytes.max(1),
                credits: credits_total,
            },
        }
    }

    /// The announcement in force.
    pub(crate) fn announced(&self) -> Announcement {
        self.announced
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &DebloatSettings {
        &self.settings
    }

    /// When the first measurement is due: sooner than a full period, so that a fast pipeline
    /// leaves the smallest buffers within milliseconds.
    pub(crate) fn first_period(&self) -> Duration {
        self.settings.period.min(Duration::from_millis(20))
    }

    /// Takes one period's measurement; returns a new announcement when it differs enough from
    /// the one in force.
    pub(crate) fn update(&mut self, s: Sample) -> Option<Announcement> {
        let active = s
            .elapsed
            .saturating_sub(s.idle)
            .max(Duration::from_micros(100));
        let active_secs = active.as_secs_f64();
        let throughput = s.consumed_bytes as f64 / active_secs;
        let busy = 1.0 - (s.backpressured.as_secs_f64() / active_secs).min(1.0);
        let wanted = throughput * self.settings.target.as_secs_f64() * busy;
        let alpha = 2.0 / (self.settings.samples as f64 + 1.0);
        let desired = match self.desired {
            None => wanted,
            Some(d) => d + alpha * (wanted - d),
        };
        self.desired = Some(desired);
        let next = self.announcement_for(desired);
        let old = self.announced;
        let at_bound = next.buffer_bytes != old.buffer_bytes
            && (next.buffer_bytes == self.settings.min_bytes.max(1)
                || next.buffer_bytes == self.settings.max_bytes);
        let size_moved = (next.buffer_bytes as f64 - old.buffer_bytes as f64).abs()
            >= self.settings.threshold * old.buffer_bytes as f64
            && next.buffer_bytes != old.buffer_bytes;
        let credits_moved = next.credits != old.credits
            && ((next.credits as f64 - old.credits as f64).abs()
                >= self.settings.threshold * old.credits as f64
                || next.credits == self.channels
                || next.credits == self.credits_total);
        if at_bound || size_moved || credits_moved {
            self.announced = next;
            Some(next)
        } else {
            None
        }
    }

    /// The buffer size and credit that hold `desired` bytes in flight.
    fn announcement_for(&self, desired: f64) -> Announcement {
        let min = self.settings.min_bytes.max(1);
        let max = self.settings.max_bytes.max(min);
        // Credit, a waiting and a partial buffer per channel at the senders, the buffer in hand.
        let slots = (self.credits_total + 2 * self.channels + 1) as f64;
        let size = (desired / slots).clamp(min as f64, max as f64) as usize;
        let credits = if desired >= min as f64 * slots {
            self.credits_total
        } else {
            let buffers = (desired / min as f64).ceil() as usize;
            buffers
                .saturating_sub(2 * self.channels + 1)
                .clamp(self.channels, self.credits_total)
        };
        Announcement {
            buffer_bytes: size,
            credits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DebloatSettings {
        DebloatSettings {
            target: Duration::from_secs(1),
            period: Duration::from_millis(200),
            samples: 20,
            threshold: 0.25,
            min_bytes: 256,
            max_bytes: 32 * 1024,
        }
    }

    fn sample(bytes_per_sec: f64, backpressured_share: f64) -> Sample {
        let elapsed = Duration::from_millis(200);
        Sample {
            elapsed,
            consumed_bytes: (bytes_per_sec * 0.2) as u64,
            idle: Duration::ZERO,
            backpressured: elapsed.mul_f64(backpressured_share),
        }
    }

    #[test]
    fn a_fast_consumer_gets_the_largest_buffers_at_once() {
        let mut d = BufferDebloater::new(settings(), 2, 2, 8);
        assert_eq!(d.announced().buffer_bytes, 256);
        let a = d.update(sample(500e6, 0.0)).expect("announced");
        assert_eq!(
            a,
            Announcement {
                buffer_bytes: 32 * 1024,
                credits: 12
            }
        );
        // Steady: nothing new to say.
        assert_eq!(d.update(sample(500e6, 0.0)), None);
    }

    #[test]
    fn a_slow_consumer_holds_about_the_target_in_flight() {
        let mut d = BufferDebloater::new(settings(), 2, 2, 8);
        // 8 KB/s: 8 KB in flight over 12 credits + 2 × 2 at the senders + 1 in hand.
        let a = d.update(sample(8192.0, 0.0)).expect("announced");
        assert_eq!(a.credits, 12);
        assert_eq!(a.buffer_bytes, 8192 / 17);
        assert!((a.buffer_bytes * 17) as f64 <= 8192.0);
    }

    #[test]
    fn a_backpressured_consumer_falls_to_the_minimum_and_fewer_credits() {
        let mut d = BufferDebloater::new(settings(), 2, 2, 8);
        let a = d.update(sample(8192.0, 0.999)).expect("announced");
        assert_eq!(
            a,
            Announcement {
                buffer_bytes: 256,
                credits: 2
            },
            "one credit per channel stays"
        );
    }

    #[test]
    fn the_size_moves_with_the_average_and_the_threshold() {
        let mut d = BufferDebloater::new(settings(), 2, 2, 8);
        d.update(sample(8192.0 * 17.0, 0.0)).expect("first");
        assert!((8191..=8192).contains(&d.announced().buffer_bytes));
        // A 10% change is under the 25% threshold: no announcement.
        assert_eq!(d.update(sample(8192.0 * 17.0 * 1.1, 0.0)), None);
        // A lasting doubling crosses it within a few periods, not at once.
        let mut periods = 0;
        while d.update(sample(8192.0 * 34.0, 0.0)).is_none() {
            periods += 1;
            assert!(periods < 20, "never announced");
        }
        assert!(periods >= 1, "announced without averaging");
        assert!(d.announced().buffer_bytes > 8192 + 8192 / 4);
    }

    #[test]
    fn idle_time_does_not_lower_the_throughput() {
        let mut a = BufferDebloater::new(settings(), 1, 2, 0);
        let mut b = BufferDebloater::new(settings(), 1, 2, 0);
        let busy = sample(4000.0, 0.0);
        let half_idle = Sample {
            consumed_bytes: busy.consumed_bytes / 2,
            idle: Duration::from_millis(100),
            ..busy
        };
        assert_eq!(a.update(busy), b.update(half_idle));
    }
}
