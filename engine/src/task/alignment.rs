//! Barrier alignment at a task's input gate: which channels wait while a checkpoint aligns,
//! and when its barriers have all arrived.
//!
//! Invariants: with exactly-once, a channel that delivered the barrier of the aligning
//! checkpoint is blocked (it keeps its queue and so its credit: its sender is backpressured)
//! until every channel delivered that barrier or ended; every channel is unblocked as soon as
//! nothing aligns any more. A newer checkpoint's barrier gives older alignments up (barriers
//! come in id order on every channel). With at-least-once no channel is ever blocked.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::channel::gate::InputGate;
use crate::checkpoint::Barrier;
use crate::config::CheckpointingMode;
use crate::time::now_ms;

/// Milliseconds from the trigger of `b` until now (clocks of one machine).
pub(crate) fn since_trigger(b: &Barrier) -> f64 {
    (now_ms() - b.timestamp_ms).max(0) as f64
}

/// Barrier handling at a task's input gate.
///
/// Exactly-once: a channel is blocked once it delivered the barrier of the checkpoint being
/// aligned, until every channel delivered it (or ended); barriers arrive in id order on every
/// channel, so at most one checkpoint aligns at a time. At-least-once: nothing is blocked; a
/// checkpoint is taken when its barrier arrived on every channel, several may be in flight, and
/// completing one drops older incomplete ones.
pub(crate) struct Aligner {
    mode: CheckpointingMode,
    /// Per checkpoint: its barrier, which channels delivered it, and its first barrier.
    pending: BTreeMap<u64, (Barrier, Vec<bool>, FirstBarrier)>,
    ended: Vec<bool>,
}

/// A checkpoint whose barriers all arrived at an aligning task.
pub(crate) struct Aligned {
    pub barrier: Barrier,
    pub first_barrier: Instant,
    pub start_delay_ms: f64,
    /// The task's records-in counter when the first barrier came (what it read while
    /// aligning is the difference at completion).
    pub records_in_at_first_barrier: u64,
}

/// When a checkpoint's first barrier reached the task.
#[derive(Clone, Copy)]
struct FirstBarrier {
    at: Instant,
    /// Milliseconds after the trigger.
    start_delay_ms: f64,
    records_in: u64,
}

impl Aligner {
    pub(crate) fn new(mode: CheckpointingMode, channels: usize) -> Self {
        Aligner {
            mode,
            pending: BTreeMap::new(),
            ended: vec![false; channels],
        }
    }

    pub(crate) fn unblock_all<T>(&self, gate: &mut InputGate<T>) {
        if self.mode == CheckpointingMode::ExactlyOnce {
            for ch in 0..self.ended.len() {
                gate.set_blocked(ch, false);
            }
        }
    }

    /// A barrier arrived on `ch` after the task read `records_in` records: returns the
    /// checkpoint whose alignment completed, if any.
    pub(crate) fn barrier<T>(
        &mut self,
        ch: usize,
        b: Barrier,
        records_in: u64,
        gate: &mut InputGate<T>,
    ) -> Option<Aligned> {
        if self
            .pending
            .keys()
            .next_back()
            .is_some_and(|&last| b.id < last)
            && !self.pending.contains_key(&b.id)
        {
            return None; // a barrier of a checkpoint already given up here
        }
        if self.mode == CheckpointingMode::ExactlyOnce {
            // Barriers come in id order on every channel, so a newer checkpoint's barrier
            // means older alignments can never complete here (their checkpoint was given up
            // upstream): drop them and release their channels.
            let older: Vec<u64> = self.pending.range(..b.id).map(|(id, _)| *id).collect();
            if !older.is_empty() {
                for id in older {
                    self.pending.remove(&id);
                }
                self.unblock_all(gate);
            }
        }
        let n = self.ended.len();
        let entry = self.pending.entry(b.id).or_insert_with(|| {
            let first = FirstBarrier {
                at: Instant::now(),
                start_delay_ms: since_trigger(&b),
                records_in,
            };
            (b, vec![false; n], first)
        });
        entry.1[ch] = true;
        if self.mode == CheckpointingMode::ExactlyOnce {
            gate.set_blocked(ch, true);
        }
        self.complete(gate)
    }

    /// Channel `ch` ended: it no longer holds any alignment back.
    pub(crate) fn ended<T>(&mut self, ch: usize, gate: &mut InputGate<T>) -> Option<Aligned> {
        self.ended[ch] = true;
        self.complete(gate)
    }

    fn complete<T>(&mut self, gate: &mut InputGate<T>) -> Option<Aligned> {
        let done = self.pending.iter().find_map(|(id, (_, arrived, _))| {
            arrived
                .iter()
                .zip(&self.ended)
                .all(|(a, e)| *a || *e)
                .then_some(*id)
        })?;
        let (barrier, _, first) = self.pending.remove(&done)?;
        // Older checkpoints can no longer complete here.
        self.pending.retain(|id, _| *id > done);
        if self.pending.is_empty() {
            self.unblock_all(gate);
        }
        Some(Aligned {
            barrier,
            first_barrier: first.at,
            start_delay_ms: first.start_delay_ms,
            records_in_at_first_barrier: first.records_in,
        })
    }

    /// Stops aligning checkpoint `id` (it switches to unaligned) and returns which channels
    /// had delivered its barrier.
    pub(crate) fn take(&mut self, id: u64, gate: &mut InputGate<impl Sized>) -> Vec<bool> {
        let arrived = self
            .pending
            .get(&id)
            .map(|p| p.1.clone())
            .unwrap_or_else(|| vec![false; self.ended.len()]);
        // Older alignments (say, a savepoint) can no longer complete here once `id` is taken.
        self.pending.retain(|p, _| *p > id);
        if self.pending.is_empty() {
            self.unblock_all(gate);
        }
        arrived
    }

    /// Checkpoint `id` was aborted: stop aligning it.
    pub(crate) fn abort<T>(&mut self, id: u64, gate: &mut InputGate<T>) {
        if self.pending.remove(&id).is_some() && self.pending.is_empty() {
            self.unblock_all(gate);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use weir_state::checkpoint::CheckpointKind;

    use super::*;
    use crate::channel::gate::{ChannelSender, GateShared, Polled};
    use crate::channel::Message;
    use crate::mailbox::signal::Signal;

    fn barrier(id: u64) -> Barrier {
        Barrier {
            id,
            timestamp_ms: now_ms(),
            kind: CheckpointKind::Checkpoint,
            unaligned: false,
        }
    }

    /// A gate of `n` channels, its senders and its receiving end.
    fn gate(n: usize) -> (Vec<ChannelSender<u64>>, InputGate<u64>) {
        let shared = GateShared::<u64>::new(n, 2, 4, Signal::new());
        let senders = (0..n).map(|i| shared.sender(i, Signal::new())).collect();
        (senders, InputGate::new(shared))
    }

    /// Sends record `x` on `sender`; returns the channels of the records the gate gives out.
    fn served(senders: &[ChannelSender<u64>], gate: &mut InputGate<u64>) -> Vec<usize> {
        let mut spare = None;
        for (ch, s) in senders.iter().enumerate() {
            let mut pending =
                VecDeque::from(vec![Message::Records(VecDeque::from(vec![ch as u64]))]);
            s.send(&mut pending, &mut spare, 0);
        }
        let mut out = Vec::new();
        while let Some(p) = gate.poll(None) {
            if let Polled::Message(ch, Message::Records(_)) = p {
                out.push(ch);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn exactly_once_blocks_each_channel_until_every_barrier_arrived() {
        let (senders, mut gate) = gate(3);
        let mut a = Aligner::new(CheckpointingMode::ExactlyOnce, 3);
        assert!(a.barrier(0, barrier(1), 0, &mut gate).is_none());
        assert!(a.barrier(2, barrier(1), 0, &mut gate).is_none());
        // Channels 0 and 2 delivered barrier 1: their records wait; channel 1's are served.
        assert_eq!(served(&senders, &mut gate), vec![1]);
        let done = a.barrier(1, barrier(1), 0, &mut gate).expect("aligned");
        assert_eq!(done.barrier.id, 1);
        // Every channel is served again, the waiting records first.
        assert_eq!(served(&senders, &mut gate), vec![0, 0, 1, 2, 2]);
    }

    #[test]
    fn at_least_once_never_blocks() {
        let (senders, mut gate) = gate(2);
        let mut a = Aligner::new(CheckpointingMode::AtLeastOnce, 2);
        assert!(a.barrier(0, barrier(1), 0, &mut gate).is_none());
        assert_eq!(served(&senders, &mut gate), vec![0, 1]);
        // A second checkpoint may be in flight beside the first.
        assert!(a.barrier(0, barrier(2), 0, &mut gate).is_none());
        assert_eq!(
            a.barrier(1, barrier(1), 0, &mut gate).map(|d| d.barrier.id),
            Some(1)
        );
        assert_eq!(
            a.barrier(1, barrier(2), 0, &mut gate).map(|d| d.barrier.id),
            Some(2)
        );
    }

    #[test]
    fn an_ended_channel_holds_no_alignment_back() {
        let (senders, mut gate) = gate(2);
        let mut a = Aligner::new(CheckpointingMode::ExactlyOnce, 2);
        assert!(a.barrier(0, barrier(1), 0, &mut gate).is_none());
        let done = a
            .ended(1, &mut gate)
            .expect("aligned once the other channel ended");
        assert_eq!(done.barrier.id, 1);
        assert_eq!(served(&senders, &mut gate), vec![0, 1]);
        // Later checkpoints need only the channels still open.
        assert_eq!(
            a.barrier(0, barrier(2), 0, &mut gate).map(|d| d.barrier.id),
            Some(2)
        );
    }

    #[test]
    fn a_newer_barrier_gives_older_alignments_up_and_abort_releases_channels() {
        let (senders, mut gate) = gate(2);
        let mut a = Aligner::new(CheckpointingMode::ExactlyOnce, 2);
        assert!(a.barrier(0, barrier(1), 0, &mut gate).is_none());
        // Barrier 2 on channel 1: checkpoint 1 can no longer align here.
        assert!(a.barrier(1, barrier(2), 0, &mut gate).is_none());
        assert_eq!(served(&senders, &mut gate), vec![0]);
        // Barrier 1 arriving late is ignored; checkpoint 2 completes with channel 0's barrier.
        assert!(a.barrier(1, barrier(1), 0, &mut gate).is_none());
        assert_eq!(
            a.barrier(0, barrier(2), 0, &mut gate).map(|d| d.barrier.id),
            Some(2)
        );
        assert_eq!(served(&senders, &mut gate), vec![0, 1, 1]);
        // An aborted alignment releases its channels.
        assert!(a.barrier(0, barrier(3), 0, &mut gate).is_none());
        assert_eq!(served(&senders, &mut gate), vec![1]);
        a.abort(3, &mut gate);
        assert_eq!(served(&senders, &mut gate), vec![0, 0, 1]);
    }
}
