//! Retry strategies of the async I/O operator (Flink's FLIP-232 `AsyncRetryStrategy`).
//!
//! A strategy says how long to wait before each retry (a fixed delay, or an exponential backoff
//! with a cap) and how many retries an element gets, and carries the predicates that decide
//! whether an outcome is retried at all: on an error (every error, or those a predicate
//! accepts) and on a result (an empty one, or those a predicate accepts). A strategy without
//! predicates never retries.
//!
//! Invariants: the `n`-th retry (1-based) waits `delay(n)`; a retry is only issued if it would
//! start before the element's total timeout, so nothing is retried after the timeout.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::UserError;

/// A predicate over an error of the user's future.
pub type ErrorPredicate = Arc<dyn Fn(&UserError) -> bool + Send + Sync>;
/// A predicate over the results of the user's future.
pub type ResultPredicate<Out> = Arc<dyn Fn(&[Out]) -> bool + Send + Sync>;

/// The delays between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay before every retry.
    FixedDelay(Duration),
    /// `initial`, then multiplied by `multiplier` per retry, never above `max`.
    Exponential {
        /// Delay before the first retry.
        initial: Duration,
        /// Longest delay.
        max: Duration,
        /// Growth per retry (at least 1).
        multiplier: f64,
    },
}

/// When and how often a request of the async I/O operator is issued again.
pub struct RetryStrategy<Out> {
    backoff: Backoff,
    max_retries: u32,
    on_error: Option<ErrorPredicate>,
    on_result: Option<ResultPredicate<Out>>,
}

impl<Out> Clone for RetryStrategy<Out> {
    fn clone(&self) -> Self {
        RetryStrategy {
            backoff: self.backoff,
            max_retries: self.max_retries,
            on_error: self.on_error.clone(),
            on_result: self.on_result.clone(),
        }
    }
}

impl<Out> fmt::Debug for RetryStrategy<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStrategy")
            .field("backoff", &self.backoff)
            .field("max_retries", &self.max_retries)
            .field("on_error", &self.on_error.is_some())
            .field("on_result", &self.on_result.is_some())
            .finish()
    }
}

impl<Out> RetryStrategy<Out> {
    /// At most `max_retries` retries (Flink's `maxAttempts`), each after `delay`.
    pub fn fixed_delay(max_retries: u32, delay: Duration) -> Self {
        RetryStrategy {
            backoff: Backoff::FixedDelay(delay),
            max_retries,
            on_error: None,
            on_result: None,
        }
    }

    /// At most `max_retries` retries; the first after `initial`, each next one `multiplier`
    /// times longer, never longer than `max`. A multiplier below 1 is taken as 1.
    pub fn exponential_backoff(
        max_retries: u32,
        initial: Duration,
        max: Duration,
        multiplier: f64,
    ) -> Self {
        RetryStrategy {
            backoff: Backoff::Exponential {
                initial,
                max: max.max(initial),
                multiplier: if multiplier.is_finite() {
                    multiplier.max(1.0)
                } else {
                    1.0
                },
            },
            max_retries,
            on_error: None,
            on_result: None,
        }
    }

    /// Retries when the future fails, whatever the error (Flink's `HAS_EXCEPTION_PREDICATE`).
    pub fn retry_on_error(self) -> Self {
        self.retry_on_error_if(|_| true)
    }

    /// Retries when the future fails with an error `predicate` accepts.
    pub fn retry_on_error_if(
        mut self,
        predicate: impl Fn(&UserError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(predicate));
        self
    }

    /// Retries when the future completes with no results (Flink's `EMPTY_RESULT_PREDICATE`).
    pub fn retry_on_empty(self) -> Self {
        self.retry_on_result_if(|r| r.is_empty())
    }

    /// Retries when the future completes with results `predicate` accepts.
    pub fn retry_on_result_if(
        mut self,
        predicate: impl Fn(&[Out]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.on_result = Some(Arc::new(predicate));
        self
    }

    /// The delays between attempts.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Retries an element gets at most.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        match self.backoff {
            Backoff::FixedDelay(d) => d,
            Backoff::Exponential {
                initial,
                max,
                multiplier,
            } => {
                let factor = multiplier.powi(retry.saturating_sub(1).min(1024) as i32);
                let secs = initial.as_secs_f64() * factor;
                if secs.is_finite() && secs < max.as_secs_f64() {
                    Duration::from_secs_f64(secs)
                } else {
                    max
                }
            }
        }
    }

    /// Whether an error is to be retried (the retry budget aside).
    pub(crate) fn retries_error(&self, e: &UserError) -> bool {
        self.on_error.as_ref().is_some_and(|p| p(e))
    }

    /// Whether results are to be retried (the retry budget aside).
    pub(crate) fn retries_result(&self, results: &[Out]) -> bool {
        self.on_result.as_ref().is_some_and(|p| p(results))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_is_constant() {
        let s = RetryStrategy::<u8>::fixed_delay(3, Duration::from_millis(40));
        assert_eq!(s.delay(1), Duration::from_millis(40));
        assert_eq!(s.delay(3), Duration::from_millis(40));
        assert_eq!(s.max_retries(), 3);
    }

    #[test]
    fn exponential_backoff_grows_and_caps() {
        let s = RetryStrategy::<u8>::exponential_backoff(
            10,
            Duration::from_millis(10),
            Duration::from_millis(100),
            2.0,
        );
        let d: Vec<u128> = (1..=6).map(|n| s.delay(n).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 80, 100, 100]);
        // Huge retry numbers neither overflow nor exceed the cap.
        assert_eq!(s.delay(u32::MAX), Duration::from_millis(100));
    }

    #[test]
    fn predicates_decide_what_is_retried() {
        let none = RetryStrategy::<u8>::fixed_delay(1, Duration::ZERO);
        let err: UserError = "boom".into();
        assert!(!none.retries_error(&err));
        assert!(!none.retries_result(&[]));
        let s = none.clone().retry_on_error().retry_on_empty();
        assert!(s.retries_error(&err));
        assert!(s.retries_result(&[]));
        assert!(!s.retries_result(&[1]));
        let picky = none
            .retry_on_error_if(|e| e.to_string().contains("transient"))
            .retry_on_result_if(|r| r.contains(&0));
        assert!(!picky.retries_error(&err));
        assert!(picky.retries_error(&"transient failure".into()));
        assert!(picky.retries_result(&[3, 0]));
        assert!(!picky.retries_result(&[]));
    }
}
