//! Restart strategies: whether, and after how long, a failed job is restarted (from its latest
//! completed checkpoint, or from scratch without one).
//!
//! As Flink's (`restart-strategy.type`): `none`; `fixed-delay` (a number of attempts, a fixed
//! delay); `failure-rate` (at most N failures per interval, a fixed delay); `exponential-delay`
//! (a delay growing by a multiplier up to a maximum, with jitter, reset after a quiet period).
//! The default is `exponential-delay` when periodic checkpoints are on, `none` otherwise.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Config, RestartStrategyKind};

/// Decides what happens after each failure.
#[derive(Debug, Clone)]
pub enum RestartStrategy {
    /// Never restart.
    None,
    /// Restart up to `attempts` times, waiting `delay` each time.
    FixedDelay {
        /// Restarts allowed.
        attempts: usize,
        /// Wait before each.
        delay: Duration,
        /// Restarts so far.
        used: usize,
    },
    /// Restart unless more than `max_failures` failures happened within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: usize,
        /// The sliding interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
        /// Times of recent failures.
        failures: VecDeque<Instant>,
    },
    /// Restart with growing delays.
    ExponentialDelay {
        /// First delay.
        initial: Duration,
        /// Largest delay.
        max: Duration,
        /// Growth per failure.
        multiplier: f64,
        /// A failure this long after the previous one starts again from `initial`.
        reset_after: Duration,
        /// Random spread of each delay, as a fraction (0.1 = ±10%).
        jitter: f64,
        /// Attempts allowed before a reset (unlimited by default).
        attempts: usize,
        /// Current delay.
        current: Duration,
        /// Attempts since the last reset.
        used: usize,
        /// When the previous failure happened.
        last_failure: Option<Instant>,
    },
}

impl RestartStrategy {
    /// The strategy `config` describes.
    pub fn from_config(c: &Config) -> Self {
        let kind = match c.restart_strategy {
            RestartStrategyKind::Default if !c.checkpoint_interval.is_zero() => {
                RestartStrategyKind::ExponentialDelay
            }
            RestartStrategyKind::Default => RestartStrategyKind::None,
            k => k,
        };
        match kind {
            RestartStrategyKind::None | RestartStrategyKind::Default => RestartStrategy::None,
            RestartStrategyKind::FixedDelay => RestartStrategy::FixedDelay {
                attempts: c.restart_fixed_delay_attempts,
                delay: c.restart_fixed_delay,
                used: 0,
            },
            RestartStrategyKind::FailureRate => RestartStrategy::FailureRate {
                max_failures: c.restart_failure_rate_max_failures,
                interval: c.restart_failure_rate_interval,
                delay: c.restart_failure_rate_delay,
                failures: VecDeque::new(),
            },
            RestartStrategyKind::ExponentialDelay => RestartStrategy::ExponentialDelay {
                initial: c.restart_exponential_initial_backoff,
                max: c.restart_exponential_max_backoff,
                multiplier: c.restart_exponential_multiplier,
                reset_after: c.restart_exponential_reset_threshold,
                jitter: c.restart_exponential_jitter,
                attempts: c.restart_exponential_attempts,
                current: c.restart_exponential_initial_backoff,
                used: 0,
                last_failure: None,
            },
        }
    }

    /// A failure happened at `now`: the delay before restarting, or `None` to give up.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay {
                attempts,
                delay,
                used,
            } => {
                if *used >= *attempts {
                    return None;
                }
                *used += 1;
                Some(*delay)
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
                failures,
            } => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > *interval)
                {
                    failures.pop_front();
                }
                (failures.len() <= *max_failures).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_after,
                jitter,
                attempts,
                current,
                used,
                last_failure,
            } => {
                if last_failure.is_some_and(|t| now.duration_since(t) >= *reset_after) {
                    *current = *initial;
                    *used = 0;
                }
                *last_failure = Some(now);
                if *used >= *attempts {
                    return None;
                }
                *used += 1;
                let base = *current;
                *current = Duration::from_secs_f64(
                    (base.as_secs_f64() * *multiplier).min(max.as_secs_f64()),
                );
                // Deterministic spread in [-jitter, +jitter] from the attempt number.
                let spread = ((*used as f64 * 0.618_033_988_7).fract() * 2.0 - 1.0) * *jitter;
                Some(Duration::from_secs_f64(
                    (base.as_secs_f64() * (1.0 + spread)).max(0.0),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_gives_up_after_its_attempts() {
        let mut s = RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(5),
            used: 0,
        };
        let now = Instant::now();
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(s.on_failure(now), None);
    }

    #[test]
    fn failure_rate_counts_within_the_interval() {
        let mut s = RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: Duration::ZERO,
            failures: VecDeque::new(),
        };
        let t0 = Instant::now();
        assert!(s.on_failure(t0).is_some());
        assert!(s.on_failure(t0 + Duration::from_secs(1)).is_some());
        assert!(
            s.on_failure(t0 + Duration::from_secs(2)).is_none(),
            "3 in a minute"
        );
        let mut s = RestartStrategy::FailureRate {
            max_failures: 1,
            interval: Duration::from_secs(60),
            delay: Duration::ZERO,
            failures: VecDeque::new(),
        };
        assert!(s.on_failure(t0).is_some());
        assert!(
            s.on_failure(t0 + Duration::from_secs(61)).is_some(),
            "the first one left the interval"
        );
    }

    #[test]
    fn exponential_delay_grows_caps_and_resets() {
        let c = Config::default();
        let mut s = RestartStrategy::from_config(&Config {
            restart_strategy: RestartStrategyKind::ExponentialDelay,
            restart_exponential_jitter: 0.0,
            ..c
        });
        let t0 = Instant::now();
        let d: Vec<u64> = (0..12)
            .map(|i| {
                s.on_failure(t0 + Duration::from_secs(i))
                    .unwrap()
                    .as_millis() as u64
            })
            .collect();
        assert_eq!(&d[..4], &[1000, 1500, 2250, 3375]);
        assert_eq!(*d.last().unwrap(), 60_000, "capped at the max backoff");
        // An hour without failure resets the delay.
        assert_eq!(
            s.on_failure(t0 + Duration::from_secs(3 * 3600)).unwrap(),
            Duration::from_secs(1)
        );
        // Jitter stays within its bounds.
        let mut s = RestartStrategy::from_config(&Config {
            restart_strategy: RestartStrategyKind::ExponentialDelay,
            ..Config::default()
        });
        let first = s.on_failure(t0).unwrap().as_secs_f64();
        assert!((0.9..=1.1).contains(&first), "{first}");
    }

    #[test]
    fn default_depends_on_checkpointing() {
        let mut c = Config::default();
        assert!(matches!(
            RestartStrategy::from_config(&c),
            RestartStrategy::None
        ));
        c.checkpoint_interval = Duration::from_secs(1);
        assert!(matches!(
            RestartStrategy::from_config(&c),
            RestartStrategy::ExponentialDelay { .. }
        ));
    }
}
