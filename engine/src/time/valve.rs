//! The watermark valve of a task's input: combines per-channel watermarks and stream status.
//!
//! Invariants (as Flink's `StatusWatermarkValve`):
//! - the output watermark is the minimum over channels that are active and not finished, and it
//!   never goes backwards;
//! - an idle channel does not hold the watermark back; when every channel is idle the task is
//!   idle and emits the maximum watermark seen across channels;
//! - a channel that becomes active again does not lower the output watermark: it counts again
//!   only once its own watermark has caught up (it is "aligned" again);
//! - a finished channel counts as `Watermark::MAX`.

use super::{StreamStatus, Watermark};

#[derive(Debug, Clone)]
struct Channel {
    watermark: i64,
    idle: bool,
    aligned: bool,
}

/// What the valve wants forwarded after an input event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ValveOutput {
    /// A new, larger watermark to forward.
    pub watermark: Option<Watermark>,
    /// A changed stream status to forward.
    pub status: Option<StreamStatus>,
}

/// Combines the watermarks of `n` input channels.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    channels: Vec<Channel>,
    last_output: i64,
    idle: bool,
}

impl WatermarkValve {
    /// A valve over `n` channels, all active, none with a watermark yet.
    pub fn new(n: usize) -> Self {
        WatermarkValve {
            channels: vec![
                Channel {
                    watermark: i64::MIN,
                    idle: false,
                    aligned: true
                };
                n
            ],
            last_output: i64::MIN,
            idle: false,
        }
    }

    /// The watermark last emitted.
    pub fn current(&self) -> Watermark {
        Watermark(self.last_output)
    }

    /// A watermark arrived on `channel`.
    pub fn input_watermark(&mut self, channel: usize, wm: Watermark) -> ValveOutput {
        let mut out = ValveOutput::default();
        let c = &mut self.channels[channel];
        if c.idle {
            // A watermark implies activity (Flink drops it; we take it as a status change).
            out = self.input_status(channel, StreamStatus::Active);
        }
        let c = &mut self.channels[channel];
        if wm.0 > c.watermark {
            c.watermark = wm.0;
            if !c.aligned && c.watermark >= self.last_output {
                c.aligned = true;
            }
            out.watermark = self.advance_to_min();
        }
        out
    }

    /// A stream status arrived on `channel`.
    pub fn input_status(&mut self, channel: usize, status: StreamStatus) -> ValveOutput {
        let mut out = ValveOutput::default();
        let now_idle = status == StreamStatus::Idle;
        if self.channels[channel].idle == now_idle {
            return out;
        }
        self.channels[channel].idle = now_idle;
        if now_idle {
            self.channels[channel].aligned = false;
            if self.channels.iter().all(|c| c.idle) {
                // Every input idle: flush the largest watermark seen, then become idle.
                let max = self
                    .channels
                    .iter()
                    .map(|c| c.watermark)
                    .max()
                    .unwrap_or(i64::MIN);
                if max > self.last_output {
                    self.last_output = max;
                    out.watermark = Some(Watermark(max));
                }
                self.idle = true;
                out.status = Some(StreamStatus::Idle);
            } else {
                out.watermark = self.advance_to_min();
            }
        } else {
            let c = &mut self.channels[channel];
            c.aligned = c.watermark >= self.last_output;
            if self.idle {
                self.idle = false;
                out.status = Some(StreamStatus::Active);
            }
        }
        out
    }

    /// `channel` reached its end of input.
    pub fn input_finished(&mut self, channel: usize) -> ValveOutput {
        let c = &mut self.channels[channel];
        c.idle = false;
        c.aligned = true;
        let mut out = self.input_watermark(channel, Watermark::MAX);
        if self.idle {
            // The finished channel delivers the final watermark: the task is active again.
            self.idle = false;
            out.status = Some(StreamStatus::Active);
        }
        out
    }

    fn advance_to_min(&mut self) -> Option<Watermark> {
        let min = self
            .channels
            .iter()
            .filter(|c| !c.idle && c.aligned)
            .map(|c| c.watermark)
            .min()?;
        if min > self.last_output {
            self.last_output = min;
            Some(Watermark(min))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(v: &ValveOutput) -> Option<i64> {
        v.watermark.map(|w| w.0)
    }

    #[test]
    fn minimum_across_channels() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(wm(&v.input_watermark(0, Watermark(10))), None);
        assert_eq!(wm(&v.input_watermark(1, Watermark(5))), Some(5));
        assert_eq!(wm(&v.input_watermark(1, Watermark(20))), Some(10));
        assert_eq!(
            wm(&v.input_watermark(0, Watermark(7))),
            None,
            "never backwards"
        );
        assert_eq!(wm(&v.input_watermark(0, Watermark(30))), Some(20));
    }

    #[test]
    fn idle_channel_does_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(100));
        let o = v.input_status(1, StreamStatus::Idle);
        assert_eq!(wm(&o), Some(100));
        assert_eq!(o.status, None);
        // The idle channel comes back behind: it must not lower the output.
        let o = v.input_status(1, StreamStatus::Active);
        assert_eq!(o, ValveOutput::default());
        assert_eq!(wm(&v.input_watermark(1, Watermark(50))), None);
        // Channel 1 is not aligned yet (50 < 100), so channel 0 alone moves the output.
        assert_eq!(wm(&v.input_watermark(0, Watermark(200))), Some(200));
        assert_eq!(wm(&v.input_watermark(1, Watermark(150))), None);
        // Once caught up it counts again.
        assert_eq!(wm(&v.input_watermark(1, Watermark(250))), None);
        assert_eq!(wm(&v.input_watermark(0, Watermark(300))), Some(250));
    }

    #[test]
    fn all_idle_emits_max_and_idle() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(9));
        assert_eq!(wm(&v.input_watermark(1, Watermark(3))), Some(3));
        // Channel 0 goes idle: channel 1 alone holds the minimum.
        assert_eq!(
            v.input_status(0, StreamStatus::Idle),
            ValveOutput::default()
        );
        // Both idle: the largest watermark seen is flushed and the task becomes idle.
        let o = v.input_status(1, StreamStatus::Idle);
        assert_eq!(wm(&o), Some(9));
        assert_eq!(o.status, Some(StreamStatus::Idle));
        let o = v.input_watermark(0, Watermark(12));
        assert_eq!(o.status, Some(StreamStatus::Active));
        assert_eq!(wm(&o), Some(12));
    }

    #[test]
    fn a_channel_finishing_while_all_idle_reactivates() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(5));
        v.input_status(0, StreamStatus::Idle);
        assert_eq!(
            v.input_status(1, StreamStatus::Idle).status,
            Some(StreamStatus::Idle)
        );
        let o = v.input_finished(1);
        assert_eq!(o.status, Some(StreamStatus::Active));
        assert_eq!(
            wm(&o),
            Some(i64::MAX),
            "idle siblings do not hold the final watermark back"
        );
    }

    #[test]
    fn finished_channel_counts_as_max() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(4));
        assert_eq!(wm(&v.input_finished(1)), Some(4));
        assert_eq!(wm(&v.input_finished(0)), Some(i64::MAX));
    }
}
