//! The async I/O operator: output order, watermarks, timeouts, retries, errors, backpressure
//! both ways, and checkpoints with a full queue (the FLINK-34704 scenario).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weir::engine::async_io::{AsyncIoState, QueuedItem};
use weir::engine::checkpoint::decode_state;
use weir::engine::checkpoint::CheckpointStatus;
use weir::prelude::*;
use weir::state::checkpoint::format::FileKind;
use weir::state::checkpoint::{CheckpointStorage, LocalCheckpointStorage};

use crate::common::{eventually, join_within, ScriptSource, Step, Ticker};

/// What reached the end of the pipeline: records and watermarks, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Rec(u64),
    Wm(i64),
}

/// Logs records and watermarks (and forwards nothing).
struct EventLog(Arc<Mutex<Vec<Seen>>>);

impl Sink for EventLog {
    type In = u64;
    fn write(&mut self, x: u64) -> Result<(), UserError> {
        self.0.lock().push(Seen::Rec(x));
        Ok(())
    }
}

struct WatermarkToLog(Arc<Mutex<Vec<Seen>>>);

impl Operator for WatermarkToLog {
    type In = u64;
    type Out = u64;
    fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        ctx.emit(x);
        Ok(())
    }
    fn process_watermark(
        &mut self,
        wm: Watermark,
        _: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        self.0.lock().push(Seen::Wm(wm.0));
        Ok(())
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-async-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn failure_message(r: Result<JobResult, JobError>) -> String {
    match r {
        Ok(_) => panic!("the job should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ordered_results_keep_input_order_while_requests_overlap() {
    let (inflight, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (i, m) = (inflight.clone(), max.clone());
    let env = StreamEnv::new();
    let out = env
        .generate_sequence(0..300)
        .async_io(
            "lookup",
            move |x: u64| {
                let (i, m) = (i.clone(), m.clone());
                async move {
                    let n = i.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(n, Ordering::SeqCst);
                    // Later elements often finish first.
                    tokio::time::sleep(Duration::from_millis((x * 7) % 5)).await;
                    i.fetch_sub(1, Ordering::SeqCst);
                    Ok(vec![x * 10])
                }
            },
            AsyncIo::ordered(16),
        )
        .collect();
    env.execute().unwrap();
    assert_eq!(out.take(), (0..300).map(|x| x * 10).collect::<Vec<_>>());
    let m = max.load(Ordering::SeqCst);
    assert!(m > 1, "requests never overlapped");
    assert!(m <= 16, "{m} requests in flight, capacity is 16");
}

/// 30 elements in three segments separated by watermarks; within a segment the first element
/// is the slowest, so unordered output reverses it. Nothing crosses a watermark.
fn segments(order: AsyncIo<u64, u64>) -> Vec<Seen> {
    let mut steps = Vec::new();
    for seg in 0..3u64 {
        for x in seg * 10..seg * 10 + 10 {
            steps.push(Step::Emit(x));
        }
        if seg < 2 {
            steps.push(Step::Watermark(100 * (seg as i64 + 1)));
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let env = StreamEnv::new();
    let (l1, l2) = (log.clone(), log.clone());
    env.add_source("script", move |_| ScriptSource::new(steps.clone()))
        .async_io(
            "lookup",
            |x: u64| async move {
                tokio::time::sleep(Duration::from_millis(5 * (10 - x % 10))).await;
                Ok(vec![x])
            },
            order,
        )
        .transform("watermarks", move |_| WatermarkToLog(l1.clone()))
        .sink("log", move |_| EventLog(l2.clone()));
    env.execute().unwrap();
    let v = log.lock().clone();
    v
}

fn check_segments(seen: &[Seen]) {
    let wm_pos: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Seen::Wm(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        wm_pos.iter().map(|&i| seen[i].clone()).collect::<Vec<_>>(),
        vec![Seen::Wm(100), Seen::Wm(200), Seen::Wm(i64::MAX)],
        "{seen:?}"
    );
    for (i, s) in seen.iter().enumerate() {
        if let Seen::Rec(x) = s {
            let segment = wm_pos.iter().filter(|&&p| p < i).count() as u64;
            assert_eq!(x / 10, segment, "record {x} crossed a watermark: {seen:?}");
        }
    }
}

#[test]
fn unordered_results_reorder_but_never_cross_a_watermark() {
    let seen = segments(AsyncIo::unordered(64));
    check_segments(&seen);
    let records: Vec<u64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Rec(x) => Some(*x),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 30);
    assert_ne!(
        records,
        (0..30).collect::<Vec<_>>(),
        "nothing was reordered"
    );
    // The slowest element of the first segment comes last in it.
    assert_eq!(records[9], 0);
}

#[test]
fn ordered_results_and_watermarks_keep_input_order() {
    let seen = segments(AsyncIo::ordered(64));
    check_segments(&seen);
    let records: Vec<u64> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Rec(x) => Some(*x),
            _ => None,
        })
        .collect();
    assert_eq!(records, (0..30).collect::<Vec<_>>());
}

/// A service that never answers for multiples of 3.
async fn silent_on_threes(x: u64) -> Result<Vec<i64>, UserError> {
    if x % 3 == 0 {
        std::future::pending::<()>().await;
    }
    Ok(vec![x as i64])
}

#[test]
fn the_timeout_handler_answers_for_requests_that_time_out() {
    let env = StreamEnv::new();
    let out = env
        .generate_sequence(1..31)
        .async_io(
            "lookup",
            silent_on_threes,
            AsyncIo::ordered(8)
                .timeout(Duration::from_millis(50))
                .on_timeout(|x: &u64| Ok(vec![-(*x as i64)])),
        )
        .collect();
    env.execute().unwrap();
    let expected: Vec<i64> = (1..31i64)
        .map(|x| if x % 3 == 0 { -x } else { x })
        .collect();
    assert_eq!(out.take(), expected);
}

#[test]
fn a_timeout_without_handler_fails_naming_operator_and_element() {
    let env = StreamEnv::new();
    env.generate_sequence(1..31)
        .async_io(
            "user-lookup",
            silent_on_threes,
            AsyncIo::unordered(8).timeout(Duration::from_millis(50)),
        )
        .collect();
    let msg = failure_message(join_within(env.start().unwrap(), Duration::from_secs(30)));
    assert!(msg.contains("user-lookup"), "{msg}");
    // One of the silent elements (a multiple of 3) is named; which one times out first
    // depends on timer threads.
    let element: u64 = msg
        .split("element ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no element in: {msg}"));
    assert!(element % 3 == 0 && msg.contains("timed out"), "{msg}");
}

/// Times of every attempt per element.
type Attempts = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

/// A service that fails (or answers empty) the first `bad` attempts of every element.
fn flaky(
    attempts: Attempts,
    bad: usize,
    empty: bool,
) -> impl Fn(u64) -> weir::engine::async_io::AsyncResult<u64> + Clone + Send + 'static {
    move |x: u64| {
        let attempts = attempts.clone();
        Box::pin(async move {
            let n = {
                let mut a = attempts.lock();
                let v = a.entry(x).or_default();
                v.push(Instant::now());
                v.len()
            };
            if n <= bad {
                if empty {
                    return Ok(vec![]);
                }
                return Err(format!("transient failure {n} of {x}").into());
            }
            Ok(vec![x])
        })
    }
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn fixed_delay_retries_errors_after_the_delay() {
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    let out = env
        .generate_sequence(0..20)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 2, false),
            AsyncIo::unordered(8)
                .retry(RetryStrategy::fixed_delay(3, Duration::from_millis(30)).retry_on_error()),
        )
        .collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    for (x, times) in attempts.lock().iter() {
        assert_eq!(times.len(), 3, "element {x}");
        for g in gaps(times) {
            assert!(
                g >= Duration::from_millis(30),
                "element {x}: retried after {g:?}"
            );
        }
    }
}

#[test]
fn exponential_backoff_doubles_the_wait() {
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    let out = env
        .generate_sequence(0..5)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 3, false),
            AsyncIo::ordered(8).retry(
                RetryStrategy::exponential_backoff(
                    5,
                    Duration::from_millis(20),
                    Duration::from_secs(1),
                    2.0,
                )
                .retry_on_error(),
            ),
        )
        .collect();
    env.execute().unwrap();
    assert_eq!(out.take(), (0..5).collect::<Vec<_>>());
    for (x, times) in attempts.lock().iter() {
        let g = gaps(times);
        assert_eq!(g.len(), 3, "element {x}");
        for (gap, want) in g.iter().zip([20u64, 40, 80]) {
            assert!(*gap >= Duration::from_millis(want), "element {x}: {g:?}");
        }
        // (Lower bounds only: a loaded machine may stretch any wait.)
    }
}

#[test]
fn empty_results_are_retried_and_the_last_answer_stands_when_retries_run_out() {
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    // Every element answers empty twice; with one retry the empty answer stands.
    let out = env
        .generate_sequence(0..10)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 2, true),
            AsyncIo::ordered(4)
                .retry(RetryStrategy::fixed_delay(1, Duration::from_millis(5)).retry_on_empty()),
        )
        .collect();
    env.execute().unwrap();
    assert!(out.take().is_empty());
    assert!(attempts.lock().values().all(|t| t.len() == 2));

    // With two retries the third answer is kept.
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    let out = env
        .generate_sequence(0..10)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 2, true),
            AsyncIo::ordered(4)
                .retry(RetryStrategy::fixed_delay(2, Duration::from_millis(5)).retry_on_empty()),
        )
        .collect();
    env.execute().unwrap();
    assert_eq!(out.take(), (0..10).collect::<Vec<_>>());
}

#[test]
fn an_error_the_predicate_rejects_fails_at_once() {
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    // Only errors saying "timeout" are retried; the service says "transient failure".
    env.generate_sequence(0..10)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 1, false),
            AsyncIo::ordered(4).retry(
                RetryStrategy::fixed_delay(5, Duration::from_millis(5))
                    .retry_on_error_if(|e| e.to_string().contains("timeout")),
            ),
        )
        .collect();
    let msg = failure_message(join_within(env.start().unwrap(), Duration::from_secs(30)));
    assert!(msg.contains("failed after 1 attempt(s)"), "{msg}");
    assert!(msg.contains("transient failure 1"), "{msg}");
}

#[test]
fn retries_stop_when_the_budget_is_spent() {
    let attempts: Attempts = Default::default();
    let env = StreamEnv::new();
    env.generate_sequence(0..3)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 100, false),
            AsyncIo::ordered(4)
                .retry(RetryStrategy::fixed_delay(2, Duration::from_millis(5)).retry_on_error()),
        )
        .collect();
    let msg = failure_message(join_within(env.start().unwrap(), Duration::from_secs(30)));
    assert!(msg.contains("failed after 3 attempt(s)"), "{msg}");
}

#[test]
fn no_retry_starts_after_the_total_timeout() {
    let attempts: Attempts = Default::default();
    let timeouts = Arc::new(AtomicU64::new(0));
    let t = timeouts.clone();
    let env = StreamEnv::new();
    // Attempts at 0 and 60 ms; the next retry would start at 120 ms, after the 100 ms timeout:
    // the timeout handler answers instead.
    let out = env
        .generate_sequence(0..4)
        .async_io(
            "lookup",
            flaky(attempts.clone(), 100, false),
            AsyncIo::ordered(4)
                .timeout(Duration::from_millis(100))
                .retry(RetryStrategy::fixed_delay(10, Duration::from_millis(60)).retry_on_error())
                .on_timeout(move |x: &u64| {
                    t.fetch_add(1, Ordering::SeqCst);
                    Ok(vec![1000 + x])
                }),
        )
        .collect();
    env.execute().unwrap();
    assert_eq!(out.take(), vec![1000, 1001, 1002, 1003]);
    assert_eq!(timeouts.load(Ordering::SeqCst), 4);
    std::thread::sleep(Duration::from_millis(150));
    for (x, times) in attempts.lock().iter() {
        assert_eq!(times.len(), 2, "element {x}: attempts after the timeout");
    }
}

#[test]
fn an_error_in_the_future_fails_the_job_naming_operator_and_element() {
    let env = StreamEnv::new();
    env.generate_sequence(0..10)
        .async_io(
            "geo-lookup",
            |x: u64| async move {
                if x == 7 {
                    return Err::<Vec<u64>, UserError>("service unavailable".into());
                }
                Ok(vec![x])
            },
            AsyncIo::ordered(4),
        )
        .collect();
    let msg = failure_message(join_within(env.start().unwrap(), Duration::from_secs(30)));
    assert!(msg.contains("geo-lookup"), "{msg}");
    assert!(
        msg.contains("element 7 ") && msg.contains("service unavailable"),
        "{msg}"
    );

    // A panic in the future is an error of the operator too.
    let env = StreamEnv::new();
    env.generate_sequence(0..10)
        .async_io(
            "geo-lookup",
            |x: u64| async move {
                if x == 4 {
                    panic!("bad response");
                }
                Ok(vec![x])
            },
            AsyncIo::unordered(4),
        )
        .collect();
    let msg = failure_message(join_within(env.start().unwrap(), Duration::from_secs(30)));
    assert!(
        msg.contains("geo-lookup") && msg.contains("element 4 "),
        "{msg}"
    );
    assert!(
        msg.contains("panicked") && msg.contains("bad response"),
        "{msg}"
    );
}

#[test]
fn a_full_queue_stops_input_but_the_mailbox_is_served() {
    let fired = Arc::new(AtomicU64::new(0));
    let taken = Arc::new(AtomicU64::new(0));
    let (f, t) = (fired.clone(), taken.clone());
    let env = StreamEnv::new();
    env.generate_sequence(0..1_000_000)
        .map(move |x| {
            t.fetch_add(1, Ordering::SeqCst);
            x
        })
        .transform("ticker", move |_| Ticker {
            interval: Duration::from_millis(20),
            fired: f.clone(),
            _t: Default::default(),
        })
        .async_io(
            "stuck",
            |_x: u64| async move {
                std::future::pending::<()>().await;
                Ok(vec![0u64])
            },
            AsyncIo::ordered(4),
        )
        .collect();
    let handle = env.start().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || fired.load(Ordering::SeqCst)
            >= 10),
        "the ticker's timer stopped firing: the mailbox is not served"
    );
    // The source (chained) was polled only until the queue was full.
    assert_eq!(taken.load(Ordering::SeqCst), 4);
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).ok();
}

#[test]
fn results_wait_for_credit_without_deadlock() {
    let consumed = Arc::new(AtomicU64::new(0));
    let c = consumed.clone();
    let env = StreamEnv::new();
    env.configure(|c| {
        c.max_records_per_buffer = 16;
        c.buffer_timeout = Duration::from_millis(1);
    });
    let out = env
        .generate_sequence(0..3000)
        .async_io(
            "lookup",
            |x: u64| async move {
                if x % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(vec![x, x])
            },
            AsyncIo::unordered(32),
        )
        .rebalance()
        .map(move |x: u64| {
            // A slow consumer: the async operator's output runs out of credit.
            if c.fetch_add(1, Ordering::SeqCst) % 8 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            x
        })
        .collect();
    let r = join_within(env.start().unwrap(), Duration::from_secs(60));
    r.unwrap();
    let mut got = out.take();
    got.sort();
    let expected: Vec<u64> = (0..3000).flat_map(|x| [x, x]).collect();
    assert_eq!(got, expected);
}

/// The FLINK-34704 scenario: capacity 1, one request that never completes, unaligned
/// checkpoints every 100 ms. Checkpoints keep completing, the pending element is in them, and
/// a restore issues its request again.
#[test]
fn a_full_queue_never_blocks_unaligned_checkpoints() {
    let dir = temp_dir("flink-34704");
    let calls = Arc::new(Mutex::new(Vec::<u64>::new()));
    let healed = Arc::new(AtomicBool::new(false));
    let run = |restore: Option<String>| {
        let env = StreamEnv::new();
        env.configure(|c| {
            c.checkpoint_dir = dir.join("chk").display().to_string();
            c.checkpoint_interval = Duration::from_millis(100);
            c.unaligned = true;
            c.max_records_per_buffer = 8;
            c.buffer_timeout = Duration::from_millis(5);
            c.restart_strategy = weir::engine::RestartStrategyKind::None;
            if let Some(r) = &restore {
                c.restore_path = r.clone();
            }
        });
        let (calls, healed) = (calls.clone(), healed.clone());
        let out = env
            .generate_sequence(0..1000)
            .uid("numbers")
            .rebalance()
            .async_io(
                "lookup",
                move |x: u64| {
                    calls.lock().push(x);
                    let healed = healed.clone();
                    async move {
                        if x == 0 && !healed.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        Ok(vec![x])
                    }
                },
                AsyncIo::ordered(1),
            )
            .uid("lookup")
            .collect();
        (env.start().unwrap(), out)
    };

    let (handle, out) = run(None);
    let completed = || {
        handle
            .checkpoint_stats()
            .iter()
            .filter(|s| s.status == CheckpointStatus::Completed)
            .count()
    };
    assert!(
        eventually(Duration::from_secs(20), || completed() >= 5),
        "checkpoints stalled behind the full queue: {:?}",
        handle.checkpoint_stats()
    );
    let durations: Vec<f64> = handle
        .checkpoint_stats()
        .iter()
        .filter(|s| s.status == CheckpointStatus::Completed)
        .map(|s| s.duration_ms)
        .collect();
    handle.cancel();
    let _ = join_within(handle, Duration::from_secs(10));
    assert!(
        out.take().is_empty(),
        "nothing passes element 0 in ordered mode"
    );
    assert_eq!(
        calls.lock().clone(),
        vec![0],
        "one request, never completed"
    );

    // The pending element is in the latest checkpoint.
    let storage = LocalCheckpointStorage::new(dir.join("chk"));
    let latest = storage.latest().unwrap().expect("a completed checkpoint");
    let op = latest
        .metadata
        .operator("lookup")
        .expect("the async operator's state");
    let handle_ = op.subtasks[0].operator.as_ref().expect("operator state");
    let bytes = storage
        .read_state(&latest, handle_, FileKind::OperatorState)
        .unwrap();
    let state: AsyncIoState<u64> = decode_state(&bytes).unwrap();
    assert_eq!(
        state.queue,
        vec![QueuedItem::Element {
            input: 0,
            retries: 0
        }]
    );
    eprintln!("FLINK-34704 scenario: checkpoint durations {durations:?} ms");

    // A restore issues the request again; the service answers now and every record arrives
    // exactly once.
    healed.store(true, Ordering::SeqCst);
    calls.lock().clear();
    let (handle, out) = run(Some(latest.location.clone()));
    join_within(handle, Duration::from_secs(30)).unwrap();
    assert_eq!(
        calls.lock().first(),
        Some(&0),
        "element 0 was not issued again first"
    );
    assert_eq!(out.take(), (0..1000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A slow service keeps the queue full (capacity 10, 200 ms per request); unaligned
/// checkpoints every 500 ms take far less than one request.
#[test]
fn checkpoints_with_a_queue_kept_full_take_milliseconds() {
    let dir = temp_dir("slow-service");
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = Duration::from_millis(500);
        c.unaligned = true;
        c.max_records_per_buffer = 16;
    });
    env.generate(Generator::new(|i| i))
        .rebalance()
        .async_io(
            "slow",
            |x: u64| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(vec![x])
            },
            AsyncIo::unordered(10),
        )
        .sink("discard", |_| {
            weir::operators::DiscardSink::<u64>::default()
        });
    let handle = env.start().unwrap();
    let completed = |h: &JobHandle| {
        h.checkpoint_stats()
            .into_iter()
            .filter(|s| s.status == CheckpointStatus::Completed)
            .map(|s| s.duration_ms)
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(20), || completed(&handle)
        .len()
        >= 5));
    let durations = completed(&handle);
    let metrics = handle.metrics();
    handle.cancel();
    let _ = join_within(handle, Duration::from_secs(10));
    eprintln!("full queue, 200 ms service: checkpoint durations {durations:?} ms");
    // Far below one request (200 ms): nothing waits for the queue. (One checkpoint may be
    // slow when the test binary's other tests starve the CPU; a barrier that waited for the
    // queue would make every one slow.)
    let mut sorted = durations.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    assert!(
        sorted[sorted.len() / 2] < 50.0 && sorted[sorted.len() - 2] < 150.0,
        "checkpoints waited for requests: {durations:?}"
    );
    // The source was throttled to the service's pace: ~10 records per 200 ms.
    let _ = metrics;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Aligned checkpoints with a 30 ms alignment timeout, behind a queue that never frees (one
/// request never completes): each checkpoint switches to unaligned and completes.
#[test]
fn aligned_checkpoints_switch_past_a_full_queue_after_their_timeout() {
    let dir = temp_dir("aligned-timeout");
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_millis(100);
        c.unaligned = true;
        c.aligned_checkpoint_timeout = Duration::from_millis(30);
        c.max_records_per_buffer = 8;
        c.buffer_timeout = Duration::from_millis(5);
    });
    env.generate_sequence(0..100_000)
        .rebalance()
        .async_io(
            "lookup",
            |x: u64| async move {
                if x == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(vec![x])
            },
            AsyncIo::ordered(1),
        )
        .collect();
    let handle = env.start().unwrap();
    let completed = |h: &JobHandle| {
        h.checkpoint_stats()
            .into_iter()
            .filter(|s| s.status == CheckpointStatus::Completed)
            .map(|s| s.duration_ms)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(20), || completed(&handle).len() >= 5),
        "checkpoints stalled: {:?}",
        handle.checkpoint_stats()
    );
    let durations = completed(&handle);
    handle.cancel();
    let _ = join_within(handle, Duration::from_secs(10));
    eprintln!("aligned-timeout 30 ms behind a full queue: checkpoint durations {durations:?} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
