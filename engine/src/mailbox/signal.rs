//! The one thing a task ever waits on.
//!
//! Every event that can unblock a task — data or an event arriving on its input, credit coming
//! back to its output, a mail (timer, cancel, later checkpoint triggers and coordinator events) —
//! notifies the task's signal. A task therefore waits in exactly one place and can never be
//! stuck waiting for input or credit while a mail is pending: this is the mailbox property.
//!
//! `notify` is an atomic swap plus, only when the task is parked, one wake-up; it is cheap enough
//! to call once per buffer. A wait first spins and yields briefly (a bounded
//! [`crossbeam_utils::Backoff`], a few microseconds) before it parks: a consumer that keeps up
//! with its producer finds the next buffer while spinning, so neither thread pays a futex
//! wake-up per buffer (parking per buffer made the producer spend its time in `unpark`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_utils::CachePadded;

struct Inner {
    notified: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A wake-up flag bound to one task thread.
#[derive(Clone)]
pub(crate) struct Signal(Arc<CachePadded<Inner>>);

impl Signal {
    pub(crate) fn new() -> Self {
        Signal(Arc::new(CachePadded::new(Inner {
            notified: AtomicBool::new(false),
            thread: OnceLock::new(),
        })))
    }

    /// Binds the signal to the calling thread (the task's thread), once.
    pub(crate) fn bind_current_thread(&self) {
        let _ = self.0.thread.set(std::thread::current());
    }

    /// Wakes the task if it waits, or makes its next wait return at once.
    pub(crate) fn notify(&self) {
        if !self.0.notified.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.0.thread.get() {
                t.unpark();
            }
        }
    }

    /// Waits until notified (or `timeout` passed). Spurious returns are allowed: callers loop.
    ///
    /// The flag is only ever cleared by the swap at the start of a wait, never after `park`:
    /// every notification is then either seen by that swap (which synchronises with the
    /// notifier's swap, so what it wrote before notifying is visible) or comes after it and
    /// unparks. A notification that arrives while the task runs leaves the flag set, and the next
    /// wait returns at once (one spare loop, never a lost wake-up).
    pub(crate) fn wait(&self, timeout: Option<Duration>) {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if self.0.notified.load(Ordering::Relaxed) {
                break;
            }
            backoff.snooze();
        }
        if self.0.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        match timeout {
            Some(t) => std::thread::park_timeout(t),
            None => std::thread::park(),
        }
    }
}
