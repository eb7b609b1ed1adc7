//! The queue of an async I/O operator: the elements in flight and the watermarks between them.
//!
//! Every element taken from the input gets a slot (sequence numbers give input order) and keeps
//! it until all of its results were emitted: a request waiting for a retry, and a completed
//! request whose results wait for their turn or for output credit, keep their slot. `capacity`
//! bounds the element slots, so it bounds both the requests in flight and the results held.
//!
//! Output order:
//! - ordered: the head slot is emitted once complete; everything behind it waits;
//! - unordered: a completed element is emitted at once if no watermark is ahead of it;
//!   otherwise it waits until every element before that watermark was emitted and the
//!   watermark itself went out. A result never crosses a watermark in either direction.
//!
//! Watermarks do not take element slots; consecutive watermarks collapse into the latest, so
//! there is at most one watermark per element slot (plus one).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use crate::time::Watermark;

/// One element of the queue and the state of its request.
pub(crate) struct Element<In, Out> {
    /// The input element (issued again on retry and after restore).
    pub input: In,
    /// Retries issued so far.
    pub retries: u32,
    /// Number of the attempt in progress: outcomes of other attempts are stale.
    pub attempt: u32,
    /// The total timeout of this element, if any.
    pub deadline: Option<Instant>,
    /// Cancels the attempt in progress.
    pub abort: Option<tokio::task::AbortHandle>,
    /// The results once complete, emitted front first.
    pub results: Option<VecDeque<Out>>,
    /// The error of the last attempt, if it failed and was retried (reported on timeout).
    pub last_error: Option<String>,
}

impl<In, Out> Element<In, Out> {
    pub(crate) fn new(input: In, retries: u32, deadline: Option<Instant>) -> Self {
        Element {
            input,
            retries,
            attempt: 0,
            deadline,
            abort: None,
            results: None,
            last_error: None,
        }
    }
}

/// A slot of the queue.
pub(crate) enum Slot<In, Out> {
    /// An element (in flight, waiting for a retry, or complete).
    Element(Element<In, Out>),
    /// A watermark that waits for the elements before it.
    Watermark(Watermark),
}

/// What the queue releases to the output next.
#[derive(Debug, PartialEq)]
pub(crate) enum Released<Out> {
    Record(Out),
    Watermark(Watermark),
}

/// The in-flight elements of one async I/O subtask, in input order.
pub(crate) struct ElementQueue<In, Out> {
    ordered: bool,
    capacity: usize,
    slots: BTreeMap<u64, Slot<In, Out>>,
    /// Sequence numbers of the watermark slots.
    watermarks: BTreeSet<u64>,
    /// Unordered: completed elements ahead of every watermark, in completion order.
    ready: VecDeque<u64>,
    elements: usize,
    next_seq: u64,
    /// Some but not all results of the element at the output front went out.
    partial: bool,
}

impl<In, Out> ElementQueue<In, Out> {
    pub(crate) fn new(ordered: bool, capacity: usize) -> Self {
        ElementQueue {
            ordered,
            capacity: capacity.max(1),
            slots: BTreeMap::new(),
            watermarks: BTreeSet::new(),
            ready: VecDeque::new(),
            elements: 0,
            next_seq: 0,
            partial: false,
        }
    }

    /// Whether the element at the output front is partly emitted: its other results must go
    /// out before anything else happens (a snapshot only knows whole elements).
    pub(crate) fn in_element(&self) -> bool {
        self.partial
    }

    /// No element slot is free.
    pub(crate) fn is_full(&self) -> bool {
        self.elements >= self.capacity
    }

    /// Nothing is queued (no element, no watermark).
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Element slots in use.
    pub(crate) fn elements(&self) -> usize {
        self.elements
    }

    /// Takes an element slot; the caller checked that one is free.
    pub(crate) fn push_element(&mut self, element: Element<In, Out>) -> u64 {
        debug_assert!(!self.is_full());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.insert(seq, Slot::Element(element));
        self.elements += 1;
        seq
    }

    /// Queues a watermark behind the elements; returns it if it can go out at once (the queue
    /// is empty).
    pub(crate) fn push_watermark(&mut self, wm: Watermark) -> Option<Watermark> {
        if self.slots.is_empty() {
            return Some(wm);
        }
        if let Some(mut last) = self.slots.last_entry() {
            if let Slot::Watermark(w) = last.get_mut() {
                *w = (*w).max(wm);
                return None;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.insert(seq, Slot::Watermark(wm));
        self.watermarks.insert(seq);
        None
    }

    /// The element in slot `seq`, if it is still queued.
    pub(crate) fn element_mut(&mut self, seq: u64) -> Option<&mut Element<In, Out>> {
        match self.slots.get_mut(&seq) {
            Some(Slot::Element(e)) => Some(e),
            _ => None,
        }
    }

    /// Element `seq` completed with `results`.
    pub(crate) fn complete(&mut self, seq: u64, results: Vec<Out>) {
        let Some(Slot::Element(e)) = self.slots.get_mut(&seq) else {
            return;
        };
        if e.results.is_some() {
            return;
        }
        e.results = Some(results.into());
        e.abort = None;
        if !self.ordered && self.watermarks.first().is_none_or(|w| seq < *w) {
            self.ready.push_back(seq);
        }
    }

    fn release(&mut self, seq: u64) {
        self.slots.remove(&seq);
        self.elements -= 1;
    }

    /// Takes the next record or watermark that may go out now, freeing slots as they empty.
    pub(crate) fn next_output(&mut self) -> Option<Released<Out>> {
        loop {
            let seq = if self.ordered {
                *self.slots.first_key_value()?.0
            } else if let Some(&seq) = self.ready.front() {
                seq
            } else {
                // Nothing completed ahead of the first watermark: it may go if it is the head.
                let (&seq, slot) = self.slots.first_key_value()?;
                if !matches!(slot, Slot::Watermark(_)) {
                    return None;
                }
                seq
            };
            match self.slots.get_mut(&seq) {
                Some(Slot::Watermark(wm)) => {
                    let wm = *wm;
                    self.slots.remove(&seq);
                    self.watermarks.remove(&seq);
                    if !self.ordered {
                        // The next segment's completed elements may go now.
                        let end = self.watermarks.first().copied().unwrap_or(u64::MAX);
                        for (s, slot) in self.slots.range(seq + 1..end) {
                            if let Slot::Element(e) = slot {
                                if e.results.is_some() {
                                    self.ready.push_back(*s);
                                }
                            }
                        }
                    }
                    return Some(Released::Watermark(wm));
                }
                Some(Slot::Element(e)) => {
                    let results = e.results.as_mut()?;
                    let record = results.pop_front();
                    self.partial = !results.is_empty();
                    if results.is_empty() {
                        if !self.ordered {
                            self.ready.pop_front();
                        }
                        self.release(seq);
                    }
                    if let Some(r) = record {
                        return Some(Released::Record(r));
                    }
                }
                None => {
                    // Cannot happen: `ready` only names queued elements. Drop the stale entry.
                    self.ready.pop_front();
                }
            }
        }
    }

    /// The queued slots in input order (for a snapshot).
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot<In, Out>> {
        self.slots.values()
    }

    /// Cancels every request in flight (the operator closes).
    pub(crate) fn abort_all(&mut self) {
        for slot in self.slots.values_mut() {
            if let Slot::Element(e) = slot {
                if let Some(a) = e.abort.take() {
                    a.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(ordered: bool, cap: usize) -> ElementQueue<u32, u32> {
        ElementQueue::new(ordered, cap)
    }

    fn push(q: &mut ElementQueue<u32, u32>, x: u32) -> u64 {
        q.push_element(Element::new(x, 0, None))
    }

    fn drain(q: &mut ElementQueue<u32, u32>) -> Vec<Released<u32>> {
        std::iter::from_fn(|| q.next_output()).collect()
    }

    #[test]
    fn ordered_waits_for_the_head() {
        let mut q = q(true, 3);
        let a = push(&mut q, 1);
        let b = push(&mut q, 2);
        let c = push(&mut q, 3);
        assert!(q.is_full());
        q.complete(c, vec![30]);
        q.complete(b, vec![20, 21]);
        assert_eq!(q.next_output(), None);
        q.complete(a, vec![]);
        assert_eq!(
            drain(&mut q),
            vec![
                Released::Record(20),
                Released::Record(21),
                Released::Record(30)
            ]
        );
        assert!(q.is_empty() && q.elements() == 0);
    }

    #[test]
    fn unordered_never_crosses_a_watermark() {
        let mut q = q(false, 4);
        let a = push(&mut q, 1);
        assert_eq!(q.push_watermark(Watermark(10)), None);
        assert_eq!(q.push_watermark(Watermark(12)), None); // collapses into one
        let b = push(&mut q, 2);
        let c = push(&mut q, 3);
        q.complete(c, vec![3]);
        q.complete(b, vec![2]);
        assert_eq!(q.next_output(), None, "b and c are behind the watermark");
        q.complete(a, vec![1]);
        assert_eq!(
            drain(&mut q),
            vec![
                Released::Record(1),
                Released::Watermark(Watermark(12)),
                // Completed while held back: they go in input order.
                Released::Record(2),
                Released::Record(3)
            ]
        );
        assert_eq!(q.push_watermark(Watermark(20)), Some(Watermark(20)));
    }

    proptest! {
        /// Whatever the completion order: every result goes out once; ordered mode keeps input
        /// order; unordered mode keeps every record between the watermarks it was between.
        #[test]
        fn results_respect_order_and_watermarks(
            ordered in any::<bool>(),
            ops in proptest::collection::vec((0u8..4, any::<u16>()), 1..200),
        ) {
            let mut q = q(ordered, 5);
            let mut inflight: Vec<(u64, u32)> = Vec::new();
            let mut next = 0u32;
            let mut wm = 0i64;
            // Segment (number of watermarks before) of every input record.
            let mut segment_of = Vec::new();
            let mut out = Vec::new();
            let mut segment = 0u32;
            for (op, r) in ops {
                match op {
                    0 if !q.is_full() => {
                        let s = push(&mut q, next);
                        inflight.push((s, next));
                        segment_of.push(segment);
                        next += 1;
                    }
                    1 => {
                        wm += 1;
                        segment += 1;
                        if let Some(w) = q.push_watermark(Watermark(wm)) {
                            out.push(Released::Watermark(w));
                        }
                    }
                    2 if !inflight.is_empty() => {
                        let (s, x) = inflight.remove(r as usize % inflight.len());
                        q.complete(s, vec![x]);
                    }
                    _ => {}
                }
                out.extend(drain(&mut q));
            }
            for (s, x) in inflight.drain(..) {
                q.complete(s, vec![x]);
            }
            out.extend(drain(&mut q));
            prop_assert!(q.is_empty());
            let records: Vec<u32> = out.iter().filter_map(|o| match o {
                Released::Record(r) => Some(*r),
                _ => None,
            }).collect();
            let mut sorted = records.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, &(0..next).collect::<Vec<_>>());
            if ordered {
                prop_assert_eq!(&records, &sorted);
            }
            // Watermarks go out increasing, and every record stays in its segment: the
            // watermarks emitted before it are exactly those that came before it in the input.
            let mut last_wm = 0;
            let mut emitted_wms = 0;
            for o in &out {
                match o {
                    Released::Watermark(w) => {
                        prop_assert!(w.0 > last_wm);
                        last_wm = w.0;
                        emitted_wms = w.0 as u32;
                    }
                    Released::Record(r) => {
                        prop_assert_eq!(emitted_wms, segment_of[*r as usize]);
                    }
                }
            }
        }
    }
}
