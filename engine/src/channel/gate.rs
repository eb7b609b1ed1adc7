//! The input gate: the channels ending at one subtask, their credits and queues.
//!
//! All channels of a gate share one lock: a sender takes it once per *buffer* (not per record),
//! the receiver once per buffer it takes out. The receiver serves channels round-robin through
//! the `available` queue (each channel at most once in it), so one busy channel cannot starve
//! the others; priority events are served before everything else.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::debloat::Announcement;
use super::{ChannelError, ChannelSend, Event, Message, SendOutcome};
use crate::mailbox::signal::Signal;
use crate::mailbox::Mailbox;
use crate::metrics::{GateUsage, UsageProbe};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credit {
    None,
    Exclusive,
    Floating,
    /// A buffer forced ahead of a barrier beyond the channel's credit: a loan, repaid when the
    /// receiver takes it.
    Overdraft,
}

struct ChannelState<T> {
    queue: VecDeque<(Message<T>, Credit)>,
    /// Priority events, each with copies of the records it overtook (queued when it was sent).
    priority: VecDeque<(Event, Vec<T>)>,
    exclusive_used: usize,
    /// Buffers forced in beyond credit and not taken yet. While any is outstanding, the channel
    /// forces nothing more: a barrier then waits for credit like a buffer (or its sender takes
    /// it unaligned), so a gate never holds more than its credit plus one barrier's overdraft
    /// per channel, however often barriers come.
    overdrawn: usize,
    /// The receiver took checkpoint `id` unaligned before this channel's barrier came: when it
    /// comes in-band, it overtakes the queue at once (as a priority event with the records it
    /// overtook) instead of waiting behind them.
    overtake: Option<u64>,
    in_available: bool,
    /// Blocked by barrier alignment: not served until unblocked.
    blocked: bool,
    sender: Option<Signal>,
    sender_waiting: bool,
}

struct GateState<T> {
    channels: Vec<ChannelState<T>>,
    available: VecDeque<usize>,
    priority_available: VecDeque<usize>,
    /// Floating buffers holding credit now, and how many may (buffer debloating lowers it).
    floating_used: usize,
    floating_limit: usize,
    /// Exclusive buffers each channel may hold now (buffer debloating lowers it, never below 1).
    exclusive_limit: usize,
    /// The buffer size announced to the senders (buffer debloating), bytes.
    announced_bytes: Option<usize>,
    free_buffers: Vec<VecDeque<T>>,
    queued_buffers: usize,
    queued_records: usize,
    receiver_gone: bool,
}

/// The shared part of a gate: what senders and the receiver both touch.
pub(crate) struct GateShared<T> {
    state: CachePadded<Mutex<GateState<T>>>,
    receiver: Signal,
    /// The receiving task's mailbox: a priority event raises its flag, so the task looks at it
    /// between two records instead of after the buffer in hand.
    receiver_mailbox: Option<Arc<Mailbox>>,
    exclusive: usize,
    floating: usize,
    capacity: usize,
}

impl<T: Send> UsageProbe for GateShared<T> {
    fn usage(&self) -> GateUsage {
        let s = self.state.lock();
        GateUsage {
            queued_buffers: s.queued_buffers,
            queued_records: s.queued_records,
            capacity_buffers: self.capacity,
            announced_buffer_bytes: s.announced_bytes,
            queued_bytes: s.queued_records * std::mem::size_of::<T>(),
        }
    }
}

impl<T> GateShared<T> {
    /// A gate of `channels` channels whose receiving task wakes through `receiver`.
    #[cfg(test)]
    pub(crate) fn new(
        channels: usize,
        exclusive: usize,
        floating: usize,
        receiver: Signal,
    ) -> Arc<Self> {
        Self::with_mailbox(channels, exclusive, floating, receiver, None)
    }

    /// A gate whose priority events also raise the receiving task's mailbox flag.
    pub(crate) fn with_mailbox(
        channels: usize,
        exclusive: usize,
        floating: usize,
        receiver: Signal,
        receiver_mailbox: Option<Arc<Mailbox>>,
    ) -> Arc<Self> {
        let state = GateState {
            channels: (0..channels)
                .map(|_| ChannelState {
                    queue: VecDeque::new(),
                    priority: VecDeque::new(),
                    exclusive_used: 0,
                    overdrawn: 0,
                    overtake: None,
                    in_available: false,
                    blocked: false,
                    sender: None,
                    sender_waiting: false,
                })
                .collect(),
            available: VecDeque::with_capacity(channels),
            priority_available: VecDeque::new(),
            floating_used: 0,
            floating_limit: floating,
            exclusive_limit: exclusive,
            announced_bytes: None,
            free_buffers: Vec::new(),
            queued_buffers: 0,
            queued_records: 0,
            receiver_gone: false,
        };
        Arc::new(GateShared {
            state: CachePadded::new(Mutex::new(state)),
            receiver,
            receiver_mailbox,
            exclusive,
            floating,
            capacity: channels * exclusive + floating,
        })
    }

    /// The sending end of channel `index`, owned by the task that wakes through `sender`.
    pub(crate) fn sender(self: &Arc<Self>, index: usize, sender: Signal) -> ChannelSender<T> {
        self.state.lock().channels[index].sender = Some(sender);
        ChannelSender {
            gate: self.clone(),
            index,
        }
    }

    /// Number of channels.
    pub(crate) fn channels(&self) -> usize {
        self.state.lock().channels.len()
    }

    /// Exclusive buffers per channel and floating buffers of the gate, as configured.
    pub(crate) fn credit_config(&self) -> (usize, usize) {
        (self.exclusive, self.floating)
    }

    /// Announces a buffer size and a credit to the senders (buffer debloating). The credit is
    /// spread as exclusive buffers (at least one per channel) and then floating ones; senders
    /// waiting for credit are woken when it grew. Buffers already admitted stay: a lower credit
    /// takes effect as they are consumed.
    pub(crate) fn announce(&self, a: Announcement) {
        let wake: Vec<Signal> = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let channels = st.channels.len().max(1);
            let credits = a.credits.clamp(channels, self.capacity.max(channels));
            let exclusive = (credits / channels).clamp(1, self.exclusive.max(1));
            let floating = credits
                .saturating_sub(channels * exclusive)
                .min(self.floating);
            let grew = exclusive > st.exclusive_limit || floating > st.floating_limit;
            st.exclusive_limit = exclusive;
            st.floating_limit = floating;
            st.announced_bytes = Some(a.buffer_bytes);
            if grew {
                st.channels
                    .iter_mut()
                    .filter(|c| c.sender_waiting)
                    .filter_map(|c| {
                        c.sender_waiting = false;
                        c.sender.clone()
                    })
                    .collect()
            } else {
                Vec::new()
            }
        };
        for s in wake {
            s.notify();
        }
    }
}

/// The sending end of one channel.
pub(crate) struct ChannelSender<T> {
    gate: Arc<GateShared<T>>,
    index: usize,
}

impl<T: Clone> ChannelSender<T> {
    /// Moves the leading messages of `pending` into the channel while credit allows (see
    /// [`ChannelSend::send`] for events and `forced` buffers, the overdraft).
    pub(crate) fn send(
        &self,
        pending: &mut VecDeque<Message<T>>,
        spare: &mut Option<VecDeque<T>>,
        mut forced: usize,
    ) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        if pending.is_empty() {
            return outcome;
        }
        let mut pushed = false;
        let mut priority = false;
        {
            let mut guard = self.gate.state.lock();
            let st = &mut *guard;
            if st.receiver_gone {
                // The receiver failed or was cancelled: the job is going down; drop the data.
                outcome.sent_buffers = pending
                    .iter()
                    .filter(|m| matches!(m, Message::Records(_)))
                    .count();
                pending.clear();
                return outcome;
            }
            // A channel still repaying an overdraft forces nothing more.
            let may_overdraw = st.channels[self.index].overdrawn == 0;
            while let Some(msg) = pending.front() {
                let ch = &mut st.channels[self.index];
                let force = forced > 0 && may_overdraw;
                forced = forced.saturating_sub(1);
                let credit = match msg {
                    Message::Event(_) => Credit::None,
                    Message::Records(_) => {
                        if ch.exclusive_used < st.exclusive_limit {
                            ch.exclusive_used += 1;
                            Credit::Exclusive
                        } else if st.floating_used < st.floating_limit {
                            st.floating_used += 1;
                            Credit::Floating
                        } else if force {
                            ch.overdrawn += 1;
                            Credit::Overdraft
                        } else {
                            ch.sender_waiting = true;
                            outcome.blocked = true;
                            break;
                        }
                    }
                };
                let Some(msg) = pending.pop_front() else {
                    break;
                };
                match msg {
                    Message::Records(buf) => {
                        st.queued_buffers += 1;
                        st.queued_records += buf.len();
                        outcome.sent_buffers += 1;
                        ch.queue.push_back((Message::Records(buf), credit));
                    }
                    Message::Event(Event::Barrier(b)) if ch.overtake == Some(b.id) => {
                        // The receiver already takes this checkpoint unaligned: the barrier
                        // overtakes what is queued, which becomes channel state.
                        ch.overtake = None;
                        let overtaken = queued_records(&ch.queue);
                        ch.priority.push_back((Event::Barrier(b), overtaken));
                        st.priority_available.push_back(self.index);
                        priority = true;
                        continue;
                    }
                    Message::Event(ev) => {
                        // Coalesce consecutive watermarks / status changes: only the latest counts.
                        let coalesce = matches!(
                            (ch.queue.back(), &ev),
                            (
                                Some((Message::Event(Event::Watermark(_)), _)),
                                Event::Watermark(_)
                            ) | (
                                Some((Message::Event(Event::Status(_)), _)),
                                Event::Status(_)
                            )
                        );
                        if coalesce {
                            if let Some(last) = ch.queue.back_mut() {
                                last.0 = Message::Event(ev);
                            }
                        } else {
                            ch.queue.push_back((Message::Event(ev), Credit::None));
                        }
                    }
                }
                pushed = true;
                if !ch.in_available && !ch.blocked {
                    ch.in_available = true;
                    st.available.push_back(self.index);
                }
            }
            if spare.is_none() {
                *spare = st.free_buffers.pop();
            }
            outcome.buffer_bytes = st.announced_bytes;
            outcome.overdrawn = st.channels[self.index].overdrawn;
        }
        if priority {
            self.gate.raise_priority();
        } else if pushed {
            self.gate.receiver.notify();
        }
        outcome
    }

    /// Sends `event` through the priority lane, ahead of every queued buffer (unaligned
    /// checkpoint barriers). The records it overtakes are copied at this moment, under the
    /// gate's lock, so the receiver learns exactly which queued records precede it.
    pub(crate) fn send_priority(&self, event: Event)
    where
        T: Clone,
    {
        {
            let mut guard = self.gate.state.lock();
            let st = &mut *guard;
            if st.receiver_gone {
                return;
            }
            let ch = &mut st.channels[self.index];
            let overtaken = queued_records(&ch.queue);
            ch.priority.push_back((event, overtaken));
            st.priority_available.push_back(self.index);
        }
        self.gate.raise_priority();
    }
}

/// Copies of the records among the first `n` messages of a channel's queue, in order.
fn queued_records_until<T: Clone>(queue: &VecDeque<(Message<T>, Credit)>, n: usize) -> Vec<T> {
    queue
        .iter()
        .take(n)
        .filter_map(|(m, _)| match m {
            Message::Records(b) => Some(b.iter().cloned()),
            Message::Event(_) => None,
        })
        .flatten()
        .collect()
}

/// Copies of the records queued in a channel, in order.
fn queued_records<T: Clone>(queue: &VecDeque<(Message<T>, Credit)>) -> Vec<T> {
    queued_records_until(queue, queue.len())
}

impl<T> GateShared<T> {
    /// Tells the receiver a priority event waits: through its mailbox flag, so it looks between
    /// two records.
    fn raise_priority(&self) {
        match &self.receiver_mailbox {
            Some(m) => m.raise_priority_input(),
            None => self.receiver.notify(),
        }
    }
}

/// The in-process channel: messages move into the receiver's gate under its lock; it never
/// fails.
impl<T: Clone + Send> ChannelSend<T> for ChannelSender<T> {
    fn send(
        &self,
        pending: &mut VecDeque<Message<T>>,
        spare: &mut Option<VecDeque<T>>,
        forced: usize,
    ) -> Result<SendOutcome, ChannelError> {
        Ok(ChannelSender::send(self, pending, spare, forced))
    }

    fn send_priority(&self, event: Event) -> Result<(), ChannelError> {
        ChannelSender::send_priority(self, event);
        Ok(())
    }
}

/// What a poll of the gate yields.
pub(crate) enum Polled<T> {
    /// A buffer or in-band event of channel `.0`.
    Message(usize, Message<T>),
    /// A priority event of channel `.0`, with copies of the records it overtook.
    Priority(usize, Event, Vec<T>),
}

/// The receiving end: the gate as its task sees it.
pub(crate) struct InputGate<T> {
    shared: Arc<GateShared<T>>,
    notify: Vec<Signal>,
}

impl<T> InputGate<T> {
    pub(crate) fn new(shared: Arc<GateShared<T>>) -> Self {
        InputGate {
            shared,
            notify: Vec::new(),
        }
    }

    /// Number of channels.
    pub(crate) fn channels(&self) -> usize {
        self.shared.channels()
    }

    /// Announces a buffer size and credit to the senders (see [`GateShared::announce`]).
    pub(crate) fn announce(&self, a: Announcement) {
        self.shared.announce(a);
    }

    /// Blocks or unblocks channel `ch` (barrier alignment): a blocked channel keeps its queue
    /// (and so its credit: its sender is backpressured) but is not served.
    pub(crate) fn set_blocked(&mut self, ch: usize, blocked: bool) {
        let mut guard = self.shared.state.lock();
        let st = &mut *guard;
        let c = &mut st.channels[ch];
        c.blocked = blocked;
        if blocked {
            if c.in_available {
                c.in_available = false;
                st.available.retain(|&x| x != ch);
            }
        } else if !c.in_available && !c.queue.is_empty() {
            c.in_available = true;
            st.available.push_back(ch);
        }
    }

    /// Takes the next priority event and the records it overtook, if any.
    pub(crate) fn poll_priority(&mut self) -> Option<(usize, Event, Vec<T>)> {
        let mut st = self.shared.state.lock();
        let ch = st.priority_available.pop_front()?;
        st.channels[ch]
            .priority
            .pop_front()
            .map(|(e, overtaken)| (ch, e, overtaken))
    }

    /// The task takes checkpoint `id` unaligned: if its barrier waits in-band in channel
    /// `ch`'s queue, returns copies of the records ahead of it; otherwise the barrier, when it
    /// comes, overtakes the queue as a priority event (with the records it overtook) rather than
    /// wait behind them. One lock, so a barrier cannot slip in between.
    pub(crate) fn overtake_barrier(&self, ch: usize, id: u64) -> Option<Vec<T>>
    where
        T: Clone,
    {
        let mut st = self.shared.state.lock();
        let c = &mut st.channels[ch];
        let at = c
            .queue
            .iter()
            .position(|(m, _)| matches!(m, Message::Event(Event::Barrier(b)) if b.id == id));
        match at {
            Some(at) => Some(queued_records_until(&c.queue, at)),
            None => {
                c.overtake = Some(id);
                None
            }
        }
    }

    /// Takes the next message (priority events first, then channels round-robin), returning
    /// its credit to the sender. `recycle` hands back an emptied buffer for reuse.
    pub(crate) fn poll(&mut self, recycle: Option<VecDeque<T>>) -> Option<Polled<T>> {
        let result;
        {
            let mut guard = self.shared.state.lock();
            let st = &mut *guard;
            if let Some(buf) = recycle {
                if st.free_buffers.len() < self.shared.capacity {
                    st.free_buffers.push(buf);
                }
            }
            if let Some(ch) = st.priority_available.pop_front() {
                if let Some((ev, overtaken)) = st.channels[ch].priority.pop_front() {
                    return Some(Polled::Priority(ch, ev, overtaken));
                }
            }
            let ch = st.available.pop_front()?;
            let c = &mut st.channels[ch];
            let Some((msg, credit)) = c.queue.pop_front() else {
                c.in_available = false;
                return None;
            };
            if c.queue.is_empty() || c.blocked {
                c.in_available = false;
            } else {
                st.available.push_back(ch);
            }
            if let Message::Records(buf) = &msg {
                st.queued_buffers -= 1;
                st.queued_records -= buf.len();
            }
            match credit {
                Credit::None => {}
                Credit::Overdraft => {
                    // Repaid: once nothing is owed the sender may force a barrier's buffers
                    // again; wake it if it waits.
                    let c = &mut st.channels[ch];
                    c.overdrawn -= 1;
                    if c.overdrawn == 0 && c.sender_waiting {
                        c.sender_waiting = false;
                        if let Some(s) = &c.sender {
                            self.notify.push(s.clone());
                        }
                    }
                }
                Credit::Exclusive => {
                    let c = &mut st.channels[ch];
                    c.exclusive_used -= 1;
                    if c.sender_waiting {
                        c.sender_waiting = false;
                        if let Some(s) = &c.sender {
                            self.notify.push(s.clone());
                        }
                    }
                }
                Credit::Floating => {
                    st.floating_used -= 1;
                    for c in st.channels.iter_mut().filter(|c| c.sender_waiting) {
                        c.sender_waiting = false;
                        if let Some(s) = &c.sender {
                            self.notify.push(s.clone());
                        }
                    }
                }
            }
            result = Some(Polled::Message(ch, msg));
        }
        for s in self.notify.drain(..) {
            s.notify();
        }
        result
    }
}

impl<T> Drop for InputGate<T> {
    fn drop(&mut self) {
        let senders: Vec<Signal> = {
            let mut st = self.shared.state.lock();
            st.receiver_gone = true;
            st.queued_buffers = 0;
            st.queued_records = 0;
            for c in st.channels.iter_mut() {
                c.queue.clear();
                c.priority.clear();
            }
            st.free_buffers.clear();
            st.channels
                .iter()
                .filter_map(|c| c.sender.clone())
                .collect()
        };
        for s in senders {
            s.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Watermark;
    use proptest::prelude::*;

    proptest! {
        /// Random sends (some forcing the buffers ahead of a barrier) and polls on three channels,
        /// in-process or through encoded frames: the gate never holds more buffers than its
        /// credit plus one overdraft per channel, every channel is FIFO (records and
        /// watermarks), and after a drain every record sent was received exactly once.
        #[test]
        fn credit_bound_fifo_and_no_loss(
            ops in proptest::collection::vec((0usize..3, 0u8..6), 1..400),
            exclusive in 1usize..3,
            floating in 0usize..4,
            encoded in any::<bool>(),
        ) {
            const CH: usize = 3;
            const MAX_FORCED: usize = 3;
            let gate = GateShared::<u64>::new(CH, exclusive, floating, Signal::new());
            let capacity = CH * exclusive + floating;
            let senders: Vec<Box<dyn ChannelSend<u64>>> = (0..CH)
                .map(|i| -> Box<dyn ChannelSend<u64>> {
                    let local = gate.sender(i, Signal::new());
                    if encoded {
                        Box::new(crate::channel::encoded::EncodedSender::new(local, i))
                    } else {
                        Box::new(local)
                    }
                })
                .collect();
            let fail = |e: ChannelError| TestCaseError::fail(e.to_string());
            let mut pending: Vec<VecDeque<Message<u64>>> = (0..CH).map(|_| VecDeque::new()).collect();
            let mut next = [0u64; CH];
            let mut next_wm = [0i64; CH];
            let mut sent = 0u64;
            let mut last_record = [None::<u64>; CH];
            let mut last_wm = [i64::MIN; CH];
            let mut received = 0u64;
            let mut rx = InputGate::new(gate.clone());
            let mut spare = None;
            let mut check = |m: Option<Polled<u64>>, received: &mut u64| -> Result<bool, TestCaseError> {
                let Some(Polled::Message(ch, msg)) = m else { return Ok(false) };
                match msg {
                    Message::Records(buf) => {
                        for v in buf {
                            prop_assert_eq!(v as usize % CH, ch, "record on the wrong channel");
                            let seq = v / CH as u64;
                            prop_assert!(last_record[ch].is_none_or(|l| seq == l + 1), "channel {} reordered", ch);
                            last_record[ch] = Some(seq);
                            *received += 1;
                        }
                    }
                    Message::Event(Event::Watermark(w)) => {
                        prop_assert!(w.0 > last_wm[ch], "watermark regressed");
                        last_wm[ch] = w.0;
                    }
                    Message::Event(_) => {}
                }
                Ok(true)
            };
            for (ch, op) in ops {
                match op {
                    0..=2 => {
                        let buf: VecDeque<u64> = (0..=op as u64)
                            .map(|_| {
                                let v = next[ch] * CH as u64 + ch as u64;
                                next[ch] += 1;
                                v
                            })
                            .collect();
                        sent += buf.len() as u64;
                        pending[ch].push_back(Message::Records(buf));
                        senders[ch].send(&mut pending[ch], &mut spare, 0).map_err(fail)?;
                    }
                    3 => {
                        next_wm[ch] += 1;
                        pending[ch].push_back(Message::Event(Event::Watermark(Watermark(next_wm[ch]))));
                        senders[ch].send(&mut pending[ch], &mut spare, 0).map_err(fail)?;
                    }
                    4 => {
                        // The buffers ahead of a barrier: forced in beyond credit (an overdraft).
                        let forced = pending[ch].len().min(MAX_FORCED);
                        senders[ch].send(&mut pending[ch], &mut spare, forced).map_err(fail)?;
                    }
                    _ => {
                        check(rx.poll(spare.take()), &mut received)?;
                    }
                }
                // Credit, plus at most one overdraft per channel however often barriers force.
                prop_assert!(gate.usage().queued_buffers <= capacity + CH * MAX_FORCED);
            }
            // Drain: keep sending what waits for credit and polling until both are empty.
            loop {
                for ch in 0..CH {
                    senders[ch].send(&mut pending[ch], &mut spare, 0).map_err(fail)?;
                }
                let mut progressed = false;
                while check(rx.poll(None), &mut received)? {
                    progressed = true;
                }
                if !progressed && pending.iter().all(|p| p.is_empty()) {
                    break;
                }
            }
            prop_assert_eq!(received, sent);
            prop_assert_eq!(gate.usage().queued_buffers, 0);
        }
    }

    fn records(n: u64) -> Message<u64> {
        Message::Records((0..n).collect())
    }

    #[test]
    fn credit_bounds_queued_buffers() {
        let gate = GateShared::<u64>::new(2, 2, 1, Signal::new());
        let s0 = gate.sender(0, Signal::new());
        let s1 = gate.sender(1, Signal::new());
        let mut spare = None;
        let mut p0: VecDeque<_> = (0..5).map(|_| records(3)).collect();
        let o = s0.send(&mut p0, &mut spare, 0);
        // 2 exclusive + 1 floating
        assert_eq!(o.sent_buffers, 3);
        assert!(o.blocked);
        let mut p1: VecDeque<_> = (0..3).map(|_| records(1)).collect();
        let o = s1.send(&mut p1, &mut spare, 0);
        assert_eq!(
            o.sent_buffers, 2,
            "floating buffer already taken by channel 0"
        );
        assert!(o.blocked);
        assert_eq!(gate.usage().queued_buffers, 5);
        assert_eq!(gate.usage().capacity_buffers, 5);
        // Events go without credit, in order behind the blocked buffers only once those went.
        let mut rx = InputGate::new(gate.clone());
        let Some(Polled::Message(ch, m)) = rx.poll(None) else {
            panic!("a buffer")
        };
        assert_eq!(ch, 0);
        assert!(matches!(m, Message::Records(ref b) if b.len() == 3));
        let o = s0.send(&mut p0, &mut spare, 0);
        assert_eq!(o.sent_buffers, 1);
    }

    #[test]
    fn a_channel_owing_an_overdraft_forces_nothing_more() {
        let gate = GateShared::<u64>::new(1, 1, 0, Signal::new());
        let s = gate.sender(0, Signal::new());
        let mut rx = InputGate::new(gate.clone());
        let mut spare = None;
        // Credit for one buffer; two more are forced ahead of a barrier.
        let mut p: VecDeque<_> = (0..3).map(|_| records(1)).collect();
        let o = s.send(&mut p, &mut spare, 3);
        assert_eq!((o.sent_buffers, o.overdrawn), (3, 2));
        // Barriers keep coming while the receiver is slow: nothing more is forced.
        for _ in 0..10 {
            let mut p: VecDeque<_> = (0..2).map(|_| records(1)).collect();
            let o = s.send(&mut p, &mut spare, 2);
            assert_eq!(o.sent_buffers, 0);
            assert!(o.blocked);
        }
        assert_eq!(gate.usage().queued_buffers, 3);
        // The receiver takes the credited buffer and both loans: repaid, it may force again.
        for _ in 0..3 {
            assert!(matches!(rx.poll(None), Some(Polled::Message(0, _))));
        }
        let mut p: VecDeque<_> = (0..2).map(|_| records(1)).collect();
        let o = s.send(&mut p, &mut spare, 2);
        assert_eq!((o.sent_buffers, o.overdrawn), (2, 1));
    }

    #[test]
    fn a_barrier_the_receiver_awaits_unaligned_overtakes_when_it_comes() {
        use crate::checkpoint::Barrier;
        use weir_state::checkpoint::CheckpointKind;
        let barrier = |id| {
            Event::Barrier(Barrier {
                id,
                timestamp_ms: 0,
                kind: CheckpointKind::Checkpoint,
                unaligned: false,
            })
        };
        let gate = GateShared::<u64>::new(1, 4, 0, Signal::new());
        let s = gate.sender(0, Signal::new());
        let mut rx = InputGate::new(gate.clone());
        let mut spare = None;
        let mut p: VecDeque<_> = (0..2).map(|_| records(3)).collect();
        s.send(&mut p, &mut spare, 0);
        // Not there yet: the receiver asks for it to overtake when it comes.
        assert_eq!(rx.overtake_barrier(0, 7), None);
        let mut p: VecDeque<_> = [records(3), Message::Event(barrier(7)), records(3)].into();
        s.send(&mut p, &mut spare, 0);
        let Some((0, Event::Barrier(b), overtaken)) = rx.poll_priority() else {
            panic!("the barrier overtook the queue")
        };
        assert_eq!(
            (b.id, overtaken.len()),
            (7, 9),
            "everything queued ahead of it"
        );
        // The queue keeps its buffers (they are processed after the snapshot), and the next
        // checkpoint's barrier stays in-band.
        assert_eq!(gate.usage().queued_buffers, 4);
        let mut p: VecDeque<_> = [Message::Event(barrier(8))].into();
        s.send(&mut p, &mut spare, 0);
        assert!(rx.poll_priority().is_none());
        assert_eq!(rx.overtake_barrier(0, 8).map(|r| r.len()), Some(12));
    }

    #[test]
    fn round_robin_and_priority_overtakes() {
        let gate = GateShared::<u64>::new(2, 4, 0, Signal::new());
        let s0 = gate.sender(0, Signal::new());
        let s1 = gate.sender(1, Signal::new());
        let mut spare = None;
        let mut p: VecDeque<_> = (0..3).map(|_| records(1)).collect();
        s0.send(&mut p, &mut spare, 0);
        let mut p: VecDeque<_> = (0..3).map(|_| records(1)).collect();
        s1.send(&mut p, &mut spare, 0);
        s1.send_priority(Event::EndOfInput);
        let mut rx = InputGate::new(gate.clone());
        let Some(Polled::Priority(ch, ev, overtaken)) = rx.poll(None) else {
            panic!("the priority event comes first")
        };
        assert_eq!((ch, ev), (1, Event::EndOfInput));
        assert_eq!(
            overtaken.len(),
            3,
            "it overtook channel 1's three queued records"
        );
        let order: Vec<usize> = std::iter::from_fn(|| match rx.poll(None) {
            Some(Polled::Message(c, _)) => Some(c),
            _ => None,
        })
        .collect();
        assert_eq!(order, vec![0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn watermarks_coalesce() {
        let gate = GateShared::<u64>::new(1, 1, 0, Signal::new());
        let s = gate.sender(0, Signal::new());
        let mut spare = None;
        for i in 0..100 {
            let mut p = VecDeque::from([Message::Event(Event::Watermark(Watermark(i)))]);
            s.send(&mut p, &mut spare, 0);
        }
        let mut rx = InputGate::new(gate.clone());
        let got: Vec<_> = std::iter::from_fn(|| rx.poll(None)).collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(
            got[0],
            Polled::Message(_, Message::Event(Event::Watermark(Watermark(99))))
        ));
    }
}
