//! The paths between a coordinator and its subtasks, and how events stay on the right side of
//! checkpoint barriers.
//!
//! Coordinator → subtask: a [`SubtaskGateway`] posts the event into the task's mailbox; the
//! task hands it to the operator between records. Subtask → coordinator: the operator's
//! context sends into the coordinator's queue. Neither side ever blocks.
//!
//! Checkpoint consistency (Flink's FLINK-28606 rules):
//! - When the coordinator's checkpoint result for checkpoint `n` is produced, every gateway of
//!   the coordinator starts *holding* for `n`: events sent from then on wait until that
//!   subtask took checkpoint `n` (its acknowledgement) or `n` was aborted, and are then
//!   delivered in the order sent. They are therefore after barrier `n` at the subtask.
//! - Every event counts as in transit from its send until the operator handled it (or it was
//!   dropped with its task). The checkpoint coordinator triggers the sources of checkpoint `n`
//!   only after the coordinators' in-transit count reached zero, so every event sent before the
//!   coordinator's checkpoint result was handled before barrier `n` can reach the subtask.
//! - A gateway of a subtask that ended refuses events ([`EventError`]); if the task failed,
//!   its attempt fails over and the coordinator hears `attempt_failed` and the resets: nothing
//!   is lost silently.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::event::{EventInbox, OperatorEvent, RunnerMsg};
use crate::data::Data;
use crate::error::UserError;

/// An event could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The subtask's attempt is not running any more (it finished, failed, or a newer attempt
    /// replaced it): the event was not delivered.
    #[error("subtask {subtask} (attempt {attempt}) is not running ({why}): event not delivered")]
    SubtaskNotRunning {
        /// The subtask.
        subtask: usize,
        /// Its attempt.
        attempt: u32,
        /// Why.
        why: &'static str,
    },
    /// The coordinator is closed.
    #[error("the coordinator of operator '{operator}' is closed: event not delivered")]
    CoordinatorClosed {
        /// The operator.
        operator: String,
    },
}

#[derive(Default)]
struct InTransit {
    /// Events in task mailboxes, not handled yet.
    posted: usize,
    /// Held events, by the checkpoint they wait for.
    held: BTreeMap<u64, usize>,
}

/// Counts a coordinator's events in transit.
#[derive(Default)]
pub(crate) struct Deliveries {
    counts: Mutex<InTransit>,
    idle: Condvar,
}

impl Deliveries {
    fn posted(self: &Arc<Self>) -> Delivery {
        self.counts.lock().posted += 1;
        Delivery(self.clone())
    }

    fn held(&self, tag: u64) {
        *self.counts.lock().held.entry(tag).or_default() += 1;
    }

    fn unheld(&self, tag: u64) {
        let mut c = self.counts.lock();
        if let Some(n) = c.held.get_mut(&tag) {
            *n -= 1;
            if *n == 0 {
                c.held.remove(&tag);
            }
        }
        self.idle.notify_all();
    }

    /// Waits until every event sent before the coordinator's result of checkpoint `id` was
    /// handled (posted ones, and ones held for earlier checkpoints); false if `timeout` passed
    /// first. Events held for `id` itself were sent after the result: they do not count.
    pub(crate) fn wait_delivered(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.counts.lock();
        while c.posted > 0 || c.held.range(..id).next().is_some() {
            if self.idle.wait_until(&mut c, deadline).timed_out() {
                return c.posted == 0 && c.held.range(..id).next().is_none();
            }
        }
        true
    }
}

/// One event in a task's mailbox: handled (or lost with its task) when dropped.
pub(crate) struct Delivery(Arc<Deliveries>);

impl Drop for Delivery {
    fn drop(&mut self) {
        let mut c = self.0.counts.lock();
        c.posted = c.posted.saturating_sub(1);
        self.0.idle.notify_all();
    }
}

struct ChannelState {
    /// Why the subtask does not take events any more.
    ended: Option<&'static str>,
    /// Checkpoints whose coordinator result was produced and the subtask has not taken yet.
    holding: BTreeSet<u64>,
    /// Events waiting for the subtask to take the checkpoint they are tagged with.
    held: VecDeque<(u64, OperatorEvent)>,
}

/// The path from a coordinator to one subtask of one attempt.
pub(crate) struct SubtaskChannel {
    pub subtask: usize,
    pub attempt: u32,
    /// The operator's index in its task's chain.
    pub operator: usize,
    inbox: Arc<dyn EventInbox>,
    deliveries: Arc<Deliveries>,
    state: Mutex<ChannelState>,
}

impl SubtaskChannel {
    pub(crate) fn new(
        subtask: usize,
        attempt: u32,
        operator: usize,
        inbox: Arc<dyn EventInbox>,
        deliveries: Arc<Deliveries>,
    ) -> Self {
        SubtaskChannel {
            subtask,
            attempt,
            operator,
            inbox,
            deliveries,
            state: Mutex::new(ChannelState {
                ended: None,
                holding: BTreeSet::new(),
                held: VecDeque::new(),
            }),
        }
    }

    fn send<E: Data>(&self, event: E) -> Result<(), EventError> {
        let mut st = self.state.lock();
        if let Some(why) = st.ended {
            return Err(EventError::SubtaskNotRunning {
                subtask: self.subtask,
                attempt: self.attempt,
                why,
            });
        }
        match st.holding.last() {
            Some(&tag) => {
                self.deliveries.held(tag);
                st.held.push_back((tag, OperatorEvent::new(event, None)));
            }
            None => self.inbox.deliver(
                self.operator,
                OperatorEvent::new(event, Some(self.deliveries.posted())),
            ),
        }
        Ok(())
    }

    /// The coordinator's result of checkpoint `id` was produced: hold later events.
    pub(crate) fn hold(&self, id: u64) {
        let mut st = self.state.lock();
        if st.ended.is_none() {
            st.holding.insert(id);
        }
    }

    /// The subtask took checkpoint `id` (or it was aborted): deliver what may go now. An
    /// event held for checkpoint `t` goes once no checkpoint up to `t` is held any more (an
    /// aborted later checkpoint does not release events an earlier one still holds).
    pub(crate) fn release(&self, id: u64) {
        let mut st = self.state.lock();
        st.holding.remove(&id);
        while let Some((tag, _)) = st.held.front() {
            if st.holding.range(..=*tag).next().is_some() {
                break;
            }
            if let Some((tag, mut event)) = st.held.pop_front() {
                event.delivery = Some(self.deliveries.posted());
                self.deliveries.unheld(tag);
                self.inbox.deliver(self.operator, event);
            }
        }
    }

    /// The subtask begins to finish (its input ended): refuse events from now on and return
    /// the held ones, which the task hands to its operator before finishing it. (No checkpoint
    /// completes once a task finished, so releasing them early is consistent.)
    pub(crate) fn finish(&self) -> Vec<OperatorEvent> {
        let mut st = self.state.lock();
        st.ended.get_or_insert("finished");
        st.holding.clear();
        let held: Vec<(u64, OperatorEvent)> = st.held.drain(..).collect();
        held.into_iter()
            .map(|(tag, mut event)| {
                event.delivery = Some(self.deliveries.posted());
                self.deliveries.unheld(tag);
                event
            })
            .collect()
    }

    /// The subtask's task ended: refuse events from now on, drop held ones.
    pub(crate) fn end(&self, why: &'static str) {
        let mut st = self.state.lock();
        st.ended.get_or_insert(why);
        st.holding.clear();
        for (tag, _) in st.held.drain(..) {
            self.deliveries.unheld(tag);
        }
    }
}

/// A coordinator's typed way to send events to one subtask (of one attempt).
pub struct SubtaskGateway<E> {
    channel: Arc<SubtaskChannel>,
    _e: PhantomData<fn(E)>,
}

impl<E> Clone for SubtaskGateway<E> {
    fn clone(&self) -> Self {
        SubtaskGateway {
            channel: self.channel.clone(),
            _e: PhantomData,
        }
    }
}

impl<E> fmt::Debug for SubtaskGateway<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SubtaskGateway(subtask {}, attempt {})",
            self.channel.subtask, self.channel.attempt
        )
    }
}

impl<E: Data> SubtaskGateway<E> {
    pub(crate) fn new(channel: Arc<SubtaskChannel>) -> Self {
        SubtaskGateway {
            channel,
            _e: PhantomData,
        }
    }

    /// Sends an event to the subtask (never blocks). It is delivered into the task's mailbox,
    /// after the barrier of a checkpoint whose coordinator result was already produced.
    ///
    /// # Errors
    ///
    /// Returns [`EventError::SubtaskNotRunning`] when this attempt of the subtask has ended (it
    /// finished, failed or was cancelled) or was never started; the event is dropped. A new attempt
    /// comes with a new gateway in `attempt_ready`.
    pub fn send(&self, event: E) -> Result<(), EventError> {
        self.channel.send(event)
    }

    /// The subtask this gateway leads to.
    pub fn subtask(&self) -> usize {
        self.channel.subtask
    }

    /// The attempt of the subtask.
    pub fn attempt(&self) -> u32 {
        self.channel.attempt
    }
}

/// An operator subtask's way to its coordinator.
#[derive(Clone)]
pub(crate) struct ToCoordinator {
    pub operator: String,
    pub subtask: usize,
    pub attempt: u32,
    pub tx: Sender<RunnerMsg>,
}

impl ToCoordinator {
    pub(crate) fn send<E: Data>(&self, event: E) -> Result<(), UserError> {
        self.tx
            .send(RunnerMsg::Event {
                subtask: self.subtask,
                attempt: self.attempt,
                event: OperatorEvent::new(event, None),
            })
            .map_err(|_| {
                EventError::CoordinatorClosed {
                    operator: self.operator.clone(),
                }
                .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::signal::Signal;
    use crate::mailbox::{Control, Mailbox};

    fn channel() -> (SubtaskChannel, Arc<Mailbox>, Arc<Deliveries>) {
        let mailbox = Arc::new(Mailbox::new(Signal::new()));
        let deliveries = Arc::new(Deliveries::default());
        let ch = SubtaskChannel::new(0, 0, 1, mailbox.clone(), deliveries.clone());
        (ch, mailbox, deliveries)
    }

    fn events(mailbox: &Mailbox) -> Vec<u64> {
        mailbox
            .take()
            .controls
            .into_iter()
            .filter_map(|c| match c {
                Control::OperatorEvent { event, .. } => event.downcast::<u64>().ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn held_events_wait_for_every_earlier_checkpoint() {
        let (ch, mailbox, deliveries) = channel();
        ch.send(1u64).unwrap();
        ch.hold(1);
        ch.send(2u64).unwrap();
        ch.hold(2);
        ch.send(3u64).unwrap();
        assert_eq!(events(&mailbox), vec![1]);
        // Checkpoint 2 aborted while 1 is still held: nothing may pass barrier 1 early.
        ch.release(2);
        assert!(events(&mailbox).is_empty());
        // Events sent before checkpoint 2's result are in transit for it; those after are not.
        assert!(!deliveries.wait_delivered(2, Duration::from_millis(10)));
        ch.release(1);
        assert_eq!(events(&mailbox), vec![2, 3]);
        assert!(deliveries.wait_delivered(3, Duration::from_millis(10)));
    }

    #[test]
    fn a_finishing_subtask_gets_its_held_events_and_refuses_new_ones() {
        let (ch, _mailbox, deliveries) = channel();
        ch.hold(5);
        ch.send(7u64).unwrap();
        let held = ch.finish();
        assert_eq!(held.len(), 1);
        assert!(matches!(
            ch.send(8u64),
            Err(EventError::SubtaskNotRunning {
                why: "finished",
                ..
            })
        ));
        assert!(!deliveries.wait_delivered(6, Duration::from_millis(10)));
        drop(held);
        assert!(deliveries.wait_delivered(6, Duration::from_millis(10)));
    }
}
