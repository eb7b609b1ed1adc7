//! # Async I/O: calls to slow external services, overlapped, exactly once
//!
//! [`DataStream::async_io`](crate::DataStream::async_io) applies a function that returns a
//! future (a lookup, an HTTP call, an object-store request) to every element. The futures run
//! on one tokio runtime per job, shared by its async operators; the operator itself runs on its
//! task thread like every other operator. Flink's `AsyncWaitOperator` is the model, without its
//! failure mode (FLINK-34704: a full queue blocked the task inside the element call, so a
//! checkpoint barrier could not be taken).
//!
//! How it works, and the invariants:
//! - **Bounded.** At most `capacity` elements per subtask are in the queue ([`AsyncIo`]):
//!   requests in flight, requests waiting for a retry, and completed requests whose results
//!   wait for their turn or for credit. When the queue is full the operator *suspends its
//!   task's input*: the task stops taking records (a chained source stops being polled) but
//!   keeps serving its mailbox — completions, timers, checkpoint barriers (priority ones too),
//!   notifications, cancellation. It never waits inside an element call. Records that still
//!   arrive while the queue is full wait, not issued, in an overflow list (part of the
//!   snapshot): what one step of the task emits — the fan-out of one input record, a timer
//!   firing in an upstream operator of the chain, the in-flight input replayed at a restore,
//!   or the results of an async operator before this one in the chain (bounded by its
//!   capacity).
//! - **Completions are mail.** A finished future posts its outcome to the operator and raises
//!   the task's mailbox; the task thread then applies retries, the timeout handler and errors,
//!   and emits results. Every attempt is one tokio task that posts exactly one outcome (its
//!   result, its error, its panic, or "timed out"), tagged with its attempt number, so a
//!   timeout can never race a retry.
//! - **Output credit.** Results are emitted element by element while downstream has credit
//!   (the results of one element go out together, like one record's output of a flat map);
//!   when it has none they stay in the queue (holding their slots) and the task waits for
//!   credit in its loop, serving mail. No combination of full queue and missing credit
//!   deadlocks: both waits are the task's one wait on its signal.
//! - **Order.** Ordered mode emits in input order; unordered mode emits as requests complete
//!   but never moves a result across a watermark ([`OutputOrder`]).
//! - **Timeouts and retries.** The timeout is total, from the first attempt: at the deadline the
//!   attempt in progress is dropped and the user's timeout handler runs on the task thread
//!   (default: fail the job, naming the operator and the element). A retry ([`RetryStrategy`])
//!   keeps its slot and is issued only if it starts before the deadline.
//! - **Checkpoints.** The snapshot holds every queued element (in flight, waiting for a retry,
//!   or complete but not emitted) with its retry count, the watermarks between them, and the
//!   overflow ([`AsyncIoState`]); on restore every element is issued again. Results emitted
//!   before the barrier are not in the snapshot, results after it are produced again from it:
//!   exactly once. Taking the snapshot does not wait for anything, so an unaligned barrier (or
//!   the switch of an aligned checkpoint after its timeout) is taken at once, full queue or not.
//! - **End of input.** The operator finishes once its queue drained; the task keeps serving
//!   mail meanwhile.

mod link;
mod queue;
mod retry;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::UserError;

pub(crate) use link::AsyncLink;
pub use retry::{Backoff, ErrorPredicate, ResultPredicate, RetryStrategy};

/// The future an async function returns: the results for one element, or an error.
pub type AsyncResult<Out> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Out>, UserError>> + Send>>;

/// What the timeout handler is given and returns: the element, and its results (or an error
/// that fails the job).
pub type TimeoutHandler<In, Out> = Arc<dyn Fn(&In) -> Result<Vec<Out>, UserError> + Send + Sync>;

/// In which order an async I/O operator emits results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputOrder {
    /// In input order (Flink's `orderedWait`).
    Ordered,
    /// As requests complete, never across a watermark (Flink's `unorderedWait`).
    Unordered,
}

/// The settings of an async I/O operator: capacity, order, timeout, retries.
pub struct AsyncIo<In, Out> {
    pub(crate) capacity: usize,
    pub(crate) order: OutputOrder,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<RetryStrategy<Out>>,
    pub(crate) on_timeout: Option<TimeoutHandler<In, Out>>,
}

impl<In, Out> Clone for AsyncIo<In, Out> {
    fn clone(&self) -> Self {
        AsyncIo {
            capacity: self.capacity,
            order: self.order,
            timeout: self.timeout,
            retry: self.retry.clone(),
            on_timeout: self.on_timeout.clone(),
        }
    }
}

impl<In, Out> fmt::Debug for AsyncIo<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncIo")
            .field("capacity", &self.capacity)
            .field("order", &self.order)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("on_timeout", &self.on_timeout.is_some())
            .finish()
    }
}

impl<In, Out> AsyncIo<In, Out> {
    /// Results in input order; at most `capacity` elements in the queue per subtask.
    pub fn ordered(capacity: usize) -> Self {
        Self::new(OutputOrder::Ordered, capacity)
    }

    /// Results as requests complete (never across a watermark); at most `capacity` elements
    /// in the queue per subtask.
    pub fn unordered(capacity: usize) -> Self {
        Self::new(OutputOrder::Unordered, capacity)
    }

    fn new(order: OutputOrder, capacity: usize) -> Self {
        AsyncIo {
            capacity,
            order,
            timeout: None,
            retry: None,
            on_timeout: None,
        }
    }

    /// Total time an element may take, over all its attempts (default: no limit). At the
    /// deadline the timeout handler runs; by default the job fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries failed or unwanted outcomes as `strategy` says.
    pub fn retry(mut self, strategy: RetryStrategy<Out>) -> Self {
        self.retry = Some(strategy);
        self
    }

    /// Runs `handler` for an element whose timeout passed: its results are emitted for the
    /// element; its error fails the job.
    pub fn on_timeout(
        mut self,
        handler: impl Fn(&In) -> Result<Vec<Out>, UserError> + Send + Sync + 'static,
    ) -> Self {
        self.on_timeout = Some(Arc::new(handler));
        self
    }

    /// The bound on queued elements per subtask.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The output order.
    pub fn order(&self) -> OutputOrder {
        self.order
    }
}

/// One queued item of an async I/O subtask's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueuedItem<In> {
    /// An element whose results were not all emitted, and the retries it already had.
    Element {
        /// The input element.
        input: In,
        /// Retries issued before the snapshot.
        retries: u32,
    },
    /// A watermark waiting for the elements before it.
    Watermark(i64),
}

/// The operator state of an async I/O subtask: its queue in input order. Public so that tools
/// can inspect a checkpoint (decode it with [`decode_state`](crate::checkpoint::decode_state)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncIoState<In> {
    /// Queued elements and watermarks, oldest first (the overflow last).
    pub queue: Vec<QueuedItem<In>>,
}

/// Builds the job's runtime for async functions.
pub(crate) fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .thread_name("weir-async")
        .enable_time()
        .build()
}
