//! The task thread pool: OS threads shared by every job of the process.
//!
//! A task's body is a blocking mailbox loop that owns its thread from start to end, so the
//! pool is a *cached* pool (like Java's `newCachedThreadPool`): a task runs on an idle pooled
//! thread if one waits, else on a new thread that joins the pool when the task ends. Idle
//! threads wait [`TaskPool::KEEP_ALIVE`] for work and then exit, so an idle runtime holds no
//! threads for long. The point is the start-up cost of short jobs: a job of parallelism 4 runs
//! ten or more threads (tasks, timers, checkpoints, supervisor) and spawning them is a large part
//! of a sub-millisecond job; a long-lived session runtime reuses them instead.
//!
//! Invariants: a job handed to [`TaskPool::spawn`] starts at once (never queued behind other
//! work: an idle thread is only handed a job when it is counted idle, else a thread is
//! spawned); a panic in a job is caught and returned by [`PoolJoinHandle::join`], and never
//! kills the pooled thread.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

type Work = Box<dyn FnOnce() + Send + 'static>;

struct State {
    queue: VecDeque<Work>,
    idle: usize,
}

struct Inner {
    state: Mutex<State>,
    available: Condvar,
    keep_alive: Duration,
    spawned: AtomicU64,
    reused: AtomicU64,
}

/// A cached pool of OS threads for task bodies (see the module docs).
#[derive(Clone)]
pub struct TaskPool {
    inner: Arc<Inner>,
}

/// Counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// OS threads spawned so far.
    pub spawned: u64,
    /// Jobs that ran on a reused thread.
    pub reused: u64,
    /// Threads idle now.
    pub idle: usize,
}

impl TaskPool {
    /// How long an idle thread waits for work before it exits.
    pub const KEEP_ALIVE: Duration = Duration::from_secs(60);

    /// A new, empty pool.
    pub fn new(keep_alive: Duration) -> Self {
        TaskPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: 0,
                }),
                available: Condvar::new(),
                keep_alive,
                spawned: AtomicU64::new(0),
                reused: AtomicU64::new(0),
            }),
        }
    }

    /// The pool shared by every job of this process.
    pub fn shared() -> &'static TaskPool {
        static POOL: OnceLock<TaskPool> = OnceLock::new();
        POOL.get_or_init(|| TaskPool::new(Self::KEEP_ALIVE))
    }

    /// Counters of the pool.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            spawned: self.inner.spawned.load(Ordering::Relaxed),
            reused: self.inner.reused.load(Ordering::Relaxed),
            idle: self.inner.state.lock().idle,
        }
    }

    /// Runs `f` on a pooled thread (an idle one, or a new one); it starts at once.
    ///
    /// # Errors
    ///
    /// Returns the [`std::io::Error`] of [`std::thread::Builder::spawn`] when no thread is idle and
    /// a new one cannot be started; `f` is then not run.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<PoolJoinHandle<T>> {
        let slot = Arc::new(Slot {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        let s2 = slot.clone();
        let work: Work = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            *s2.result.lock() = Some(r);
            s2.done.notify_all();
        });
        {
            let mut st = self.inner.state.lock();
            if st.idle > st.queue.len() {
                st.queue.push_back(work);
                drop(st);
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                self.inner.available.notify_one();
                return Ok(PoolJoinHandle { slot });
            }
        }
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("weir-pool".into())
            .spawn(move || worker(inner, work))?;
        self.inner.spawned.fetch_add(1, Ordering::Relaxed);
        Ok(PoolJoinHandle { slot })
    }
}

fn worker(inner: Arc<Inner>, first: Work) {
    first();
    let mut st = inner.state.lock();
    loop {
        st.idle += 1;
        let mut timed_out = false;
        while st.queue.is_empty() && !timed_out {
            timed_out = inner
                .available
                .wait_for(&mut st, inner.keep_alive)
                .timed_out();
        }
        st.idle -= 1;
        let Some(work) = st.queue.pop_front() else {
            return; // idle for the keep-alive time
        };
        drop(st);
        work();
        st = inner.state.lock();
    }
}

struct Slot<T> {
    result: Mutex<Option<std::thread::Result<T>>>,
    done: Condvar,
}

/// Waits for a job of the pool, like [`std::thread::JoinHandle`].
pub struct PoolJoinHandle<T> {
    slot: Arc<Slot<T>>,
}

impl<T> PoolJoinHandle<T> {
    /// Waits until the job ended; its panic, if it panicked.
    ///
    /// # Errors
    ///
    /// Returns the job's panic payload if it panicked, like [`std::thread::JoinHandle::join`].
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        let mut r = self.slot.result.lock();
        loop {
            if let Some(r) = r.take() {
                return r;
            }
            self.slot.done.wait(&mut r);
        }
    }

    /// Whether the job ended.
    pub fn is_finished(&self) -> bool {
        self.slot.result.lock().is_some()
    }
}

/// A thread of a job: pooled, or a plain OS thread (`execution.task-threads.pooled = false`).
pub(crate) enum TaskThread<T> {
    Pooled(PoolJoinHandle<T>),
    Os(std::thread::JoinHandle<T>),
}

impl<T: Send + 'static> TaskThread<T> {
    /// Starts `f` on a pooled thread or a new named OS thread.
    pub(crate) fn spawn(
        pooled: bool,
        name: String,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        if pooled {
            TaskPool::shared().spawn(f).map(TaskThread::Pooled)
        } else {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map(TaskThread::Os)
        }
    }

    /// Waits for it.
    pub(crate) fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        match self {
            TaskThread::Pooled(h) => h.join(),
            TaskThread::Os(h) => h.join(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_reused_and_panics_returned() {
        let pool = TaskPool::new(Duration::from_secs(5));
        let a = pool.spawn(|| 1).unwrap();
        assert_eq!(a.join().unwrap(), 1);
        // The first thread is idle now (give it a moment to count itself idle).
        let t0 = std::time::Instant::now();
        while pool.stats().idle == 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        let b = pool.spawn(|| -> u32 { panic!("boom") }).unwrap();
        assert!(b.join().is_err());
        let t0 = std::time::Instant::now();
        while pool.stats().idle == 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        let c = pool.spawn(|| 3).unwrap();
        assert_eq!(c.join().unwrap(), 3);
        let s = pool.stats();
        assert_eq!(s.spawned, 1, "{s:?}");
        assert_eq!(s.reused, 2, "{s:?}");
    }

    #[test]
    fn blocking_jobs_each_get_a_thread() {
        let pool = TaskPool::new(Duration::from_millis(200));
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let b = barrier.clone();
                pool.spawn(move || {
                    b.wait(); // would deadlock if any job were queued behind another
                    i
                })
                .unwrap()
            })
            .collect();
        let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 6);
        // Idle threads exit after the keep-alive time.
        let t0 = std::time::Instant::now();
        while pool.stats().idle > 0 {
            assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", pool.stats());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
