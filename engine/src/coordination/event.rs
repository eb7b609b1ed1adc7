//! What travels between a coordinator, its runner and its subtasks: the operator events, the
//! calls to a coordinator ([`RunnerMsg`]), and the inbox a subtask's events are delivered to.
//!
//! These are the protocol of coordination; the task machinery that carries them (mailboxes,
//! the task loop) sits above this module and implements [`EventInbox`].

use std::any::Any;
use std::fmt;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::gateway::{Delivery, SubtaskChannel};
use crate::data::Data;
use crate::error::UserError;

/// Where the events of one subtask go: its task's mailbox, which hands each to the operator
/// between two records. (Implemented by the mailbox layer.)
pub(crate) trait EventInbox: Send + Sync {
    /// Delivers `event` to the chain's operator `operator` (its index in the chain).
    fn deliver(&self, operator: usize, event: OperatorEvent);
}

/// An event from a coordinator, as an operator receives it: take its value with
/// [`OperatorEvent::downcast`]. Until it is dropped (downcasting consumes it) the event counts
/// as in transit, and the next checkpoint's trigger waits for it: handle it, do not keep it.
pub struct OperatorEvent {
    payload: Box<dyn Any + Send>,
    type_name: &'static str,
    pub(super) delivery: Option<Delivery>,
}

impl fmt::Debug for OperatorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorEvent({})", self.type_name)
    }
}

impl OperatorEvent {
    pub(crate) fn new<E: Data>(event: E, delivery: Option<Delivery>) -> Self {
        OperatorEvent {
            payload: Box::new(event),
            type_name: std::any::type_name::<E>(),
            delivery,
        }
    }

    /// The event's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The event as a `T`; an error naming both types if it is not one.
    ///
    /// # Errors
    ///
    /// Returns an error naming both types, as a [`UserError`], when the event is not a `T`. The
    /// event is consumed either way, so it no longer counts as in transit.
    pub fn downcast<T: 'static>(self) -> Result<T, UserError> {
        let type_name = self.type_name;
        self.payload.downcast::<T>().map(|b| *b).map_err(|_| {
            format!(
                "coordinator event is a {type_name}, expected a {}",
                std::any::type_name::<T>()
            )
            .into()
        })
    }
}

/// A call to a coordinator.
pub(crate) enum RunnerMsg {
    /// `start`; its result goes to `reply` (and only there: the job waits for it before any
    /// task runs, so a failure cannot race the tasks' end).
    Start {
        reply: Sender<Result<(), String>>,
    },
    Event {
        subtask: usize,
        attempt: u32,
        event: OperatorEvent,
    },
    Checkpoint {
        id: u64,
        reply: Sender<Result<Vec<u8>, String>>,
    },
    Complete(u64),
    Aborted(u64),
    Reset {
        id: Option<u64>,
        state: Option<Vec<u8>>,
        reply: Sender<Result<(), String>>,
    },
    SubtaskReset {
        subtask: usize,
        id: Option<u64>,
    },
    AttemptFailed {
        subtask: usize,
        attempt: u32,
        reason: String,
    },
    AttemptReady(Arc<SubtaskChannel>),
    /// Answered once every call queued before it was made (and its failure, if any, was
    /// reported): the job's end waits for it, so no failure of a queued call is lost.
    Flush(Sender<()>),
    Close,
}
