//! The chain link of an async I/O operator: issues requests, applies their outcomes on the
//! task thread, emits results as order and credit allow, snapshots and restores its queue.
//!
//! See the module essay of [`async_io`](super) for the invariants. In short: the link never
//! waits; it tells the task loop through the task environment when to stop taking input
//! (`suspended_inputs`), when it still has results to emit once credit returns
//! (`async_backlog`), and when its end of input is still pending (`pending_ends`).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use parking_lot::Mutex;

use super::queue::{Element, ElementQueue, Released, Slot};
use super::{AsyncIo, AsyncIoState, AsyncResult, OutputOrder, QueuedItem};
use crate::checkpoint::Captured;
use crate::checkpoint::{decode_state, encode_state, Barrier, OperatorSubtaskState};
use crate::data::Data;
use crate::error::{TaskError, UserError};
use crate::mailbox::env::TaskEnv;
use crate::mailbox::Mailbox;
use crate::operator::output::Output;
use crate::operator::OperatorInfo;
use crate::time::{StreamStatus, Watermark};

/// How one attempt ended.
enum Outcome<Out> {
    Results(Vec<Out>),
    Failed(UserError),
    Panicked(String),
    TimedOut,
}

/// Outcomes posted by the runtime's threads, applied by the task thread.
pub(crate) struct Completions<Out> {
    done: Mutex<Vec<(u64, u32, Outcome<Out>)>>,
    mailbox: Arc<Mailbox>,
}

impl<Out> Completions<Out> {
    fn post(&self, seq: u64, attempt: u32, outcome: Outcome<Out>) {
        self.done.lock().push((seq, attempt, outcome));
        self.mailbox.post_async();
    }
}

/// Waiting to be issued: beyond the capacity, or a watermark behind such elements.
enum Held<In> {
    Element(In, u32),
    Watermark(Watermark),
}

/// A user function as the link calls it: input element in, boxed future out.
pub(crate) type AsyncCall<In, Out> = Box<dyn FnMut(In) -> AsyncResult<Out> + Send>;

/// A link running an async I/O operator.
pub(crate) struct AsyncLink<In, Out> {
    function: AsyncCall<In, Out>,
    settings: AsyncIo<In, Out>,
    next: Box<dyn Output<Out>>,
    index: usize,
    info: OperatorInfo,
    queue: ElementQueue<In, Out>,
    held: VecDeque<Held<In>>,
    completions: Option<Arc<Completions<Out>>>,
    runtime: Option<tokio::runtime::Handle>,
    /// Operator state to restore in `open`.
    pub restore: Option<Vec<u8>>,
    /// This link counts in `TaskEnv::suspended_inputs`.
    suspended: bool,
    /// End of input arrived; the rest of the chain ends once the queue drained.
    ending: bool,
    /// This link counts in `TaskEnv::pending_ends`.
    end_pending: bool,
    watermark: Watermark,
}

impl<In: Data + Debug, Out: Data> AsyncLink<In, Out> {
    pub(crate) fn new(
        function: AsyncCall<In, Out>,
        settings: AsyncIo<In, Out>,
        next: Box<dyn Output<Out>>,
        index: usize,
        info: OperatorInfo,
    ) -> Self {
        AsyncLink {
            function,
            queue: ElementQueue::new(settings.order == OutputOrder::Ordered, settings.capacity),
            settings,
            next,
            index,
            info,
            held: VecDeque::new(),
            completions: None,
            runtime: None,
            restore: None,
            suspended: false,
            ending: false,
            end_pending: false,
            watermark: Watermark::MIN,
        }
    }

    fn fail(&self, message: String) -> TaskError {
        TaskError::user(self.index, message.into())
    }

    /// The element as error messages show it (shortened if long).
    fn describe(input: &In) -> String {
        let mut s = format!("{input:?}");
        if s.len() > 200 {
            let mut cut = 200;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }

    /// Starts the next attempt of element `seq`, after `delay` if given.
    fn issue(&mut self, seq: u64, delay: Option<Duration>, env: &mut TaskEnv) {
        let (Some(runtime), Some(completions)) = (&self.runtime, &self.completions) else {
            return;
        };
        let Some(e) = self.queue.element_mut(seq) else {
            return;
        };
        e.attempt += 1;
        let attempt = e.attempt;
        let input = e.input.clone();
        let deadline = e.deadline.map(tokio::time::Instant::from_std);
        let prev = env.current_operator;
        env.current_operator = self.index;
        let call = (self.function)(input);
        env.current_operator = prev;
        let completions = completions.clone();
        let task = async move {
            let attempt_fut = async move {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                    Ok(Ok(results)) => Outcome::Results(results),
                    Ok(Err(e)) => Outcome::Failed(e),
                    Err(panic) => Outcome::Panicked(crate::error::panic_message(&*panic)),
                }
            };
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, attempt_fut)
                    .await
                    .unwrap_or(Outcome::TimedOut),
                None => attempt_fut.await,
            };
            completions.post(seq, attempt, outcome);
        };
        let handle = runtime.spawn(task);
        if let Some(e) = self.queue.element_mut(seq) {
            e.abort = Some(handle.abort_handle());
        }
    }

    /// Takes an element into the queue (or holds it if the queue is full) and issues it.
    fn accept(&mut self, input: In, retries: u32, env: &mut TaskEnv) {
        if self.queue.is_full() || !self.held.is_empty() {
            self.held.push_back(Held::Element(input, retries));
        } else {
            self.enqueue(input, retries, env);
        }
        self.update_suspension(env);
    }

    /// Puts an element into a free slot and issues its first attempt (its timeout starts).
    fn enqueue(&mut self, input: In, retries: u32, env: &mut TaskEnv) {
        let deadline = self
            .settings
            .timeout
            .and_then(|t| Instant::now().checked_add(t));
        let seq = self
            .queue
            .push_element(Element::new(input, retries, deadline));
        self.issue(seq, None, env);
    }

    /// Queues a watermark behind the elements (or forwards it if nothing is queued).
    fn accept_watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        if !self.held.is_empty() {
            self.held.push_back(Held::Watermark(wm));
            return Ok(());
        }
        match self.queue.push_watermark(wm) {
            Some(wm) => self.next.watermark(wm, env),
            None => Ok(()),
        }
    }

    /// Suspends the task's input while the queue is full or elements are held.
    fn update_suspension(&mut self, env: &mut TaskEnv) {
        let full = self.queue.is_full() || !self.held.is_empty();
        if full && !self.suspended {
            self.suspended = true;
            env.suspended_inputs += 1;
            env.attention = true;
        } else if !full && self.suspended {
            self.suspended = false;
            env.suspended_inputs -= 1;
        }
    }

    /// Applies the outcomes posted since the last call.
    fn apply_outcomes(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        let Some(completions) = &self.completions else {
            return Ok(());
        };
        let mut done = std::mem::take(&mut *completions.done.lock());
        // Oldest element first: a failure names the first element that failed.
        done.sort_by_key(|(seq, _, _)| *seq);
        for (seq, attempt, outcome) in done {
            let Some(e) = self.queue.element_mut(seq) else {
                continue; // the element is gone (cannot happen while it has an attempt)
            };
            if e.attempt != attempt || e.results.is_some() {
                continue; // stale: an outcome of an earlier attempt
            }
            e.abort = None;
            let retries = e.retries;
            let retry = self.settings.retry.as_ref();
            // The predicates are user code: a panic in them is this operator's.
            let prev = env.current_operator;
            env.current_operator = self.index;
            let wanted = match &outcome {
                Outcome::Results(r) => retry.is_some_and(|s| s.retries_result(r)),
                Outcome::Failed(err) => retry.is_some_and(|s| s.retries_error(err)),
                Outcome::Panicked(_) | Outcome::TimedOut => false,
            };
            env.current_operator = prev;
            if wanted {
                if let Some(s) = retry {
                    if retries < s.max_retries() {
                        // A retry that would start after the deadline never starts: the
                        // deadline ends its wait, and the timeout handler answers.
                        let delay = s.delay(retries + 1);
                        if let Some(e) = self.queue.element_mut(seq) {
                            e.retries += 1;
                            e.last_error = match &outcome {
                                Outcome::Failed(err) => Some(err.to_string()),
                                _ => None,
                            };
                        }
                        self.issue(seq, Some(delay), env);
                        continue;
                    }
                }
            }
            let attempts = retries + 1;
            let element = |q: &mut ElementQueue<In, Out>| {
                q.element_mut(seq)
                    .map(|e| Self::describe(&e.input))
                    .unwrap_or_default()
            };
            match outcome {
                Outcome::Results(r) => self.queue.complete(seq, r),
                Outcome::Failed(err) => {
                    let element = element(&mut self.queue);
                    return Err(self.fail(format!(
                        "async request for element {element} failed after {attempts} attempt(s): {err}"
                    )));
                }
                Outcome::Panicked(msg) => {
                    let element = element(&mut self.queue);
                    return Err(self.fail(format!("async request for element {element} {msg}")));
                }
                Outcome::TimedOut => {
                    let Some(e) = self.queue.element_mut(seq) else {
                        continue;
                    };
                    let input = e.input.clone();
                    let last_error = e
                        .last_error
                        .as_ref()
                        .map(|m| format!("; the last attempt failed: {m}"))
                        .unwrap_or_default();
                    match self.settings.on_timeout.clone() {
                        Some(handler) => {
                            let prev = env.current_operator;
                            env.current_operator = self.index;
                            let r = handler(&input);
                            env.current_operator = prev;
                            match r {
                                Ok(results) => self.queue.complete(seq, results),
                                Err(err) => return Err(TaskError::user(self.index, err)),
                            }
                        }
                        None => {
                            return Err(self.fail(format!(
                                "async request for element {} timed out after {:?} ({attempts} attempt(s){last_error})",
                                Self::describe(&input),
                                self.settings.timeout.unwrap_or_default()
                            )))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits what may go out while downstream has credit; issues held elements into the slots
    /// that freed.
    fn emit_ready(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        loop {
            // An element's results go out together (like one record's output of a flat map):
            // a snapshot knows whole elements only, so none may be taken between them.
            while env.blocked_channels == 0 || self.queue.in_element() {
                match self.queue.next_output() {
                    Some(Released::Record(r)) => self.next.element(r, env)?,
                    Some(Released::Watermark(wm)) => self.next.watermark(wm, env)?,
                    None => break,
                }
            }
            if env.blocked_channels > 0 {
                // Come back once credit returned.
                env.async_backlog = true;
            }
            let mut issued = false;
            while !self.queue.is_full() {
                match self.held.pop_front() {
                    Some(Held::Element(input, retries)) => {
                        self.enqueue(input, retries, env);
                        issued = true;
                    }
                    Some(Held::Watermark(wm)) => {
                        if self.queue.is_empty() && env.blocked_channels > 0 {
                            // It would go out now, but there is no credit: later.
                            self.held.push_front(Held::Watermark(wm));
                            env.async_backlog = true;
                            break;
                        }
                        if let Some(wm) = self.queue.push_watermark(wm) {
                            self.next.watermark(wm, env)?;
                        }
                    }
                    None => break,
                }
            }
            self.update_suspension(env);
            if !issued || env.blocked_channels > 0 {
                return Ok(());
            }
        }
    }

    /// Ends the rest of the chain once the queue drained after the end of input.
    fn maybe_end(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        if !self.ending || !self.queue.is_empty() || !self.held.is_empty() {
            return Ok(());
        }
        if env.blocked_channels > 0 {
            // Ending flushes the rest of the chain: wait for credit first.
            env.async_backlog = true;
            return Ok(());
        }
        self.ending = false;
        if self.end_pending {
            self.end_pending = false;
            env.pending_ends -= 1;
        }
        self.next.end_of_input(env)
    }

    /// The queue as operator state; `None` when it is empty (so that a savepoint of a drained
    /// job holds no state that would prevent rescaling).
    fn snapshot_bytes(&self) -> Result<Option<Vec<u8>>, UserError> {
        if self.queue.is_empty() && self.held.is_empty() {
            return Ok(None);
        }
        let mut queue = Vec::with_capacity(self.queue.elements() + self.held.len());
        for slot in self.queue.slots() {
            queue.push(match slot {
                Slot::Element(e) => QueuedItem::Element {
                    input: e.input.clone(),
                    retries: e.retries,
                },
                Slot::Watermark(wm) => QueuedItem::Watermark(wm.0),
            });
        }
        for h in &self.held {
            queue.push(match h {
                Held::Element(input, retries) => QueuedItem::Element {
                    input: input.clone(),
                    retries: *retries,
                },
                Held::Watermark(wm) => QueuedItem::Watermark(wm.0),
            });
        }
        encode_state(&AsyncIoState { queue }).map(Some)
    }
}

impl<In, Out> Drop for AsyncLink<In, Out> {
    fn drop(&mut self) {
        // Also after a panic (when `close` is not called): no request outlives its operator.
        self.queue.abort_all();
    }
}

impl<In: Data + Debug, Out: Data> Output<In> for AsyncLink<In, Out> {
    #[inline]
    fn element(&mut self, record: In, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.accept(record, 0, env);
        Ok(())
    }
    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.accept_watermark(wm, env)
    }
    fn status(&mut self, status: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.status(status, env)
    }
    fn processing_time(&mut self, now: i64, env: &mut TaskEnv) -> Result<Option<i64>, TaskError> {
        self.next.processing_time(now, env)
    }
    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.open(env)?;
        let Some(runtime) = env.async_runtime.clone() else {
            return Err(self.fail("internal error: the job has no async runtime".into()));
        };
        self.runtime = Some(runtime);
        self.completions = Some(Arc::new(Completions {
            done: Mutex::new(Vec::new()),
            mailbox: env.mailbox.clone(),
        }));
        if let Some(bytes) = self.restore.take() {
            let state: AsyncIoState<In> =
                decode_state(&bytes).map_err(|e| TaskError::user(self.index, e))?;
            // Every queued element is issued again, in order; beyond the capacity (a smaller
            // capacity than before) elements wait in the overflow.
            for item in state.queue {
                match item {
                    QueuedItem::Element { input, retries } => self.accept(input, retries, env),
                    QueuedItem::Watermark(wm) => {
                        let wm = Watermark(wm);
                        self.watermark = self.watermark.max(wm);
                        self.accept_watermark(wm, env)?;
                    }
                }
            }
        }
        Ok(())
    }
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.ending = true;
        self.poll_async(env)?;
        if self.ending && !self.end_pending {
            self.end_pending = true;
            env.pending_ends += 1;
        }
        Ok(())
    }
    fn close(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.queue.abort_all();
        if self.suspended {
            self.suspended = false;
            env.suspended_inputs -= 1;
        }
        if self.end_pending {
            self.end_pending = false;
            env.pending_ends -= 1;
        }
        self.next.close(env)
    }
    fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.flush(partial, env)
    }
    fn operator_event(
        &mut self,
        operator: usize,
        event: crate::coordination::OperatorEvent,
        env: &mut TaskEnv,
    ) -> Result<Option<crate::coordination::OperatorEvent>, TaskError> {
        self.next.operator_event(operator, event, env)
    }
    fn poll_async(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.apply_outcomes(env)?;
        self.emit_ready(env)?;
        self.maybe_end(env)?;
        self.next.poll_async(env)
    }
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        let bytes = self
            .snapshot_bytes()
            .map_err(|e| TaskError::user(self.index, e))?;
        if let Some(bytes) = bytes {
            out.push(OperatorSubtaskState::operator_state(
                &self.info.uid,
                self.info.subtask,
                bytes,
            ));
        }
        self.next.snapshot(id, env, out)
    }
    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError> {
        self.next.barrier(barrier, env, captured)
    }
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        self.next.notify_checkpoint(id, complete, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::signal::Signal;
    use crate::metrics::TaskMetricsCell;

    /// The rest of the chain: records what it gets; "runs out of credit" after `credit` records.
    struct Downstream {
        got: Arc<Mutex<Vec<u64>>>,
        credit: usize,
    }

    impl Output<u64> for Downstream {
        fn element(&mut self, record: u64, env: &mut TaskEnv) -> Result<(), TaskError> {
            self.got.lock().push(record);
            if self.got.lock().len() >= self.credit {
                env.blocked_channels = 1;
            }
            Ok(())
        }
        fn watermark(&mut self, _: Watermark, _: &mut TaskEnv) -> Result<(), TaskError> {
            Ok(())
        }
        fn status(&mut self, _: StreamStatus, _: &mut TaskEnv) -> Result<(), TaskError> {
            Ok(())
        }
        fn end_of_input(&mut self, _: &mut TaskEnv) -> Result<(), TaskError> {
            Ok(())
        }
        fn snapshot(
            &mut self,
            _: u64,
            _: &mut TaskEnv,
            _: &mut Vec<OperatorSubtaskState>,
        ) -> Result<(), TaskError> {
            Ok(())
        }
        fn barrier(
            &mut self,
            _: Barrier,
            _: &mut TaskEnv,
            _: &mut Captured,
        ) -> Result<(), TaskError> {
            Ok(())
        }
        fn notify_checkpoint(&mut self, _: u64, _: bool, _: &mut TaskEnv) -> Result<(), TaskError> {
            Ok(())
        }
    }

    /// An element's results go out together even when credit runs out after the first: a
    /// snapshot right after holds no part-emitted element (which a restore would emit again).
    #[test]
    fn the_results_of_one_element_are_not_split_by_missing_credit() {
        let runtime = crate::async_io::runtime(1).unwrap();
        let mailbox = Arc::new(Mailbox::new(Signal::new()));
        let mut env = TaskEnv::new(
            mailbox.clone(),
            Arc::new(TaskMetricsCell::new("t".into(), 0, 1, 0)),
        );
        env.async_runtime = Some(runtime.handle().clone());
        let got = Arc::new(Mutex::new(Vec::new()));
        let info = OperatorInfo {
            name: "lookup".into(),
            uid: "lookup".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            commit_fence: Default::default(),
        };
        let call: AsyncCall<u64, u64> =
            Box::new(|x| Box::pin(async move { Ok(vec![x * 10, x * 10 + 1, x * 10 + 2]) }));
        let mut link = AsyncLink::new(
            call,
            AsyncIo::ordered(4),
            Box::new(Downstream {
                got: got.clone(),
                credit: 1,
            }),
            1,
            info,
        );
        link.open(&mut env).unwrap();
        link.element(7, &mut env).unwrap();
        link.element(8, &mut env).unwrap();
        let start = Instant::now();
        while link.completions.as_ref().unwrap().done.lock().len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "requests never completed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        link.poll_async(&mut env).unwrap();
        // Element 7 went out whole; element 8 waits for credit.
        assert_eq!(*got.lock(), vec![70, 71, 72]);
        assert!(env.async_backlog);
        let mut states = Vec::new();
        link.snapshot(1, &mut env, &mut states).unwrap();
        let state: AsyncIoState<u64> = decode_state(states[0].operator.as_ref().unwrap()).unwrap();
        assert_eq!(
            state.queue,
            vec![QueuedItem::Element {
                input: 8,
                retries: 0
            }]
        );
        // Credit returns: element 8 goes out.
        env.blocked_channels = 0;
        link.poll_async(&mut env).unwrap();
        assert_eq!(got.lock().len(), 6);
        link.close(&mut env).unwrap();
        assert_eq!((env.suspended_inputs, env.pending_ends), (0, 0));
    }
}
