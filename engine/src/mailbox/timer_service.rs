//! The job's processing-time service: one thread that turns deadlines into mails.
//!
//! Tasks never sleep until a deadline themselves: they register it here and wait on their
//! signal, so a mail or new input can still wake them. When a deadline passes, the service
//! posts a timer mail to the task. A task keeps at most one deadline registered at a time (its
//! earliest), so the heap stays as small as the number of tasks; stale entries only cause a
//! harmless extra mail.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::Mailbox;

struct State {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    shutdown: bool,
}

/// The processing-time service of one job.
pub(crate) struct TimerService {
    state: Mutex<State>,
    cv: Condvar,
    mailboxes: Vec<Arc<Mailbox>>,
}

impl TimerService {
    pub(crate) fn new(mailboxes: Vec<Arc<Mailbox>>) -> Arc<Self> {
        Arc::new(TimerService {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                shutdown: false,
            }),
            cv: Condvar::new(),
            mailboxes,
        })
    }

    /// Posts a timer mail to `task` at `at`.
    pub(crate) fn schedule(&self, task: usize, at: Instant) {
        let mut st = self.state.lock();
        let earliest = st.heap.peek().map(|Reverse((t, _))| *t);
        st.heap.push(Reverse((at, task)));
        if earliest.is_none_or(|e| at < e) {
            self.cv.notify_one();
        }
    }

    /// Stops the service thread.
    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_one();
    }

    /// The service thread's loop.
    pub(crate) fn run(&self) {
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            let now = Instant::now();
            while let Some(Reverse((at, task))) = st.heap.peek().copied() {
                if at > now {
                    break;
                }
                st.heap.pop();
                self.mailboxes[task].post_timer();
            }
            match st.heap.peek() {
                Some(Reverse((at, _))) => {
                    let at = *at;
                    self.cv.wait_until(&mut st, at);
                }
                None => self.cv.wait(&mut st),
            }
        }
    }
}
