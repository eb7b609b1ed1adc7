//! A task's mailbox: what the task must handle between records, and how it is woken.
//!
//! The hot loop checks one atomic flag per record ([`Mailbox::has_mail`]); everything else is
//! looked at only when it is set. Mails are: processing-time timers being due (coalesced into
//! one flag), async-I/O completions (coalesced into one flag too), cancellation, priority input
//! (an unaligned barrier waiting in the input gate), and control messages (checkpoint triggers
//! and notifications, coordinator events).
//!
//! This layer sits below the channels and the task loop: a task waits on its one [`Signal`]
//! ([`signal`]), which input, credit and mail all notify; [`env::TaskEnv`] is what the task's
//! operators, chain links and writers share while it runs; [`timer_service`] posts due
//! processing-time timers as mail.

pub(crate) mod env;
pub(crate) mod signal;
pub(crate) mod timer_service;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use signal::Signal;

use crate::coordination::event::{EventInbox, OperatorEvent};

/// A control message for a task.
#[derive(Debug)]
pub(crate) enum Control {
    /// Take checkpoint `barrier.id` now (sent to source tasks).
    TriggerCheckpoint(crate::checkpoint::Barrier),
    /// Checkpoint `id` completed.
    CheckpointComplete(u64),
    /// Checkpoint `id` was aborted.
    CheckpointAborted(u64),
    /// The aligned checkpoint of this barrier exceeded its alignment timeout: take it
    /// unaligned now if not taken yet.
    AlignmentTimeout(crate::checkpoint::Barrier),
    /// An event from the coordinator of the chain's operator `operator` (its index).
    OperatorEvent {
        operator: usize,
        event: OperatorEvent,
    },
}

/// What a task found in its mailbox.
pub(crate) struct Mail {
    /// A processing-time deadline passed.
    pub timer: bool,
    /// Async I/O requests completed.
    pub async_ready: bool,
    /// Control messages, oldest first.
    pub controls: Vec<Control>,
}

/// A task's mailbox.
pub(crate) struct Mailbox {
    has_mail: AtomicBool,
    timer_due: AtomicBool,
    async_ready: AtomicBool,
    cancelled: AtomicBool,
    queue: Mutex<VecDeque<Control>>,
    signal: Signal,
}

impl Mailbox {
    pub(crate) fn new(signal: Signal) -> Self {
        Mailbox {
            has_mail: AtomicBool::new(false),
            timer_due: AtomicBool::new(false),
            async_ready: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            signal,
        }
    }

    /// Whether anything waits: checked between records.
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        self.has_mail.load(Ordering::Acquire)
    }

    /// The task's signal.
    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }

    fn raise(&self) {
        self.has_mail.store(true, Ordering::Release);
        self.signal.notify();
    }

    /// A priority event (an unaligned barrier) waits in the task's input gate.
    pub(crate) fn raise_priority_input(&self) {
        self.raise();
    }

    /// A processing-time deadline of the task was reached.
    pub(crate) fn post_timer(&self) {
        self.timer_due.store(true, Ordering::Release);
        self.raise();
    }

    /// An async I/O request of the task completed.
    pub(crate) fn post_async(&self) {
        self.async_ready.store(true, Ordering::Release);
        self.raise();
    }

    /// Asks the task to stop.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.raise();
    }

    /// Posts a control message.
    pub(crate) fn post(&self, control: Control) {
        self.queue.lock().push_back(control);
        self.raise();
    }

    /// The task ended: drops the control messages left (coordinator events among them count
    /// as delivered-or-lost from now on).
    pub(crate) fn discard(&self) {
        self.queue.lock().clear();
    }

    /// Whether cancellation was requested.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Clears the summary flag and returns what waits.
    pub(crate) fn take(&self) -> Mail {
        self.has_mail.store(false, Ordering::Release);
        let timer = self.timer_due.swap(false, Ordering::AcqRel);
        let async_ready = self.async_ready.swap(false, Ordering::AcqRel);
        let mails: Vec<Control> = {
            let mut q = self.queue.lock();
            if q.is_empty() {
                Vec::new()
            } else {
                q.drain(..).collect()
            }
        };
        if self.is_cancelled() {
            // Keep the flag raised so every loop notices.
            self.has_mail.store(true, Ordering::Release);
        }
        Mail {
            timer,
            async_ready,
            controls: mails,
        }
    }
}

/// Coordinator events reach an operator through its task's mailbox, between two records.
impl EventInbox for Mailbox {
    fn deliver(&self, operator: usize, event: OperatorEvent) {
        self.post(Control::OperatorEvent { operator, event });
    }
}
