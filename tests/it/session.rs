//! The session runtime in one process: concurrent short jobs, cancel, job recovery by a new
//! leader on a shared SQLite database (finished jobs are not run again), and bad input
//! (unknown job name, bad option, unreachable store, stale fencing token) refused with a clear
//! error and nothing written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::ha::{HaError, HaOptions, JobGraphRecord, JobOutcome};
use weir::operators::{DataStreamExt, Generator, StreamEnvExt};
use weir::session::{
    JobRegistry, JobSubmission, SessionError, SessionEvent, SessionJobStatus, SessionOptions,
    SessionRuntime,
};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-session-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// weir's registry plus `endless` (a rate-limited generator that never ends, checkpointed).
fn registry() -> JobRegistry {
    let mut r = weir::jobs::registry();
    r.register("endless", 1, |_, env| {
        env.generate(Generator::new(|i| i).rate_limited(2000.0))
            .uid("endless")
            .discard();
        Ok(())
    });
    r
}

fn words(lines: usize) -> (String, u64) {
    let mut s = String::new();
    for i in 0..lines {
        s.push_str(&format!("a b w{} c\n", i % 7));
    }
    (s, 4 * lines as u64)
}

fn sqlite_options(dir: &std::path::Path, recovery: bool) -> HaOptions {
    let mut ha = HaOptions::default();
    ha.set("high-availability.type", "sqlite").unwrap();
    ha.set("high-availability.storageDir", &dir.display().to_string())
        .unwrap();
    ha.set(
        "high-availability.job-recovery.enabled",
        &recovery.to_string(),
    )
    .unwrap();
    ha.set("high-availability.leader-election.lease-duration", "3s")
        .unwrap();
    ha
}

#[test]
fn a_session_runs_concurrent_short_jobs_and_cancels() {
    let runtime = SessionRuntime::start(registry(), SessionOptions::default()).unwrap();
    assert_eq!(
        runtime.leader_token(),
        Some(1),
        "without HA the runtime leads"
    );
    let (text, total) = words(500);
    let results: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut sums = Vec::new();
                    for _ in 0..5 {
                        let job = runtime
                            .submit(
                                JobSubmission::new("word-count")
                                    .parameter("output", "memory")
                                    .artifact("input", text.clone()),
                            )
                            .unwrap();
                        assert_eq!(job.wait(), SessionJobStatus::Ended(JobOutcome::Finished));
                        let counts = weir::jobs::take_word_counts(job.id()).unwrap();
                        assert_eq!(counts["a"], 500);
                        sums.push(counts.values().sum::<u64>());
                        // Finished jobs are answered from the job result store.
                        assert_eq!(
                            runtime.status(job.id()).unwrap(),
                            SessionJobStatus::Ended(JobOutcome::Finished)
                        );
                    }
                    sums
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, vec![total; 20]);

    let endless = runtime.submit(JobSubmission::new("endless")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(endless.status(), SessionJobStatus::Running);
    assert_eq!(runtime.running_jobs(), vec![endless.id().to_string()]);
    endless.cancel();
    assert_eq!(
        endless.wait_timeout(Duration::from_secs(20)),
        SessionJobStatus::Ended(JobOutcome::Cancelled)
    );
    assert!(runtime.running_jobs().is_empty());
    let e = runtime.status("no-such-job").unwrap_err();
    assert!(matches!(e, SessionError::NoSuchJob(_)), "{e}");
}

#[test]
fn a_new_leader_recovers_unfinished_jobs_and_never_reruns_finished_ones() {
    let dir = temp("recovery");
    let events: Arc<Mutex<Vec<SessionEvent>>> = Default::default();
    let ev = events.clone();
    let opts = |name: &str| SessionOptions {
        ha: sqlite_options(&dir, true),
        contender: name.to_string(),
        on_event: Some(Arc::new({
            let ev = ev.clone();
            move |e: &SessionEvent| ev.lock().unwrap().push(e.clone())
        })),
        ..Default::default()
    };
    let a = SessionRuntime::start(registry(), opts("a")).unwrap();
    let b = SessionRuntime::start(registry(), opts("b")).unwrap();
    assert_eq!(a.leader_token(), Some(1));
    assert_eq!(b.leader_token(), None, "one leader at a time");
    let e = b.submit(JobSubmission::new("endless")).unwrap_err();
    assert!(matches!(e, SessionError::NotLeader { .. }), "{e}");

    let (text, _) = words(100);
    let done = a
        .submit(
            JobSubmission::new("word-count")
                .artifact("input", text)
                .parameter("output", "memory"),
        )
        .unwrap();
    assert_eq!(done.wait(), SessionJobStatus::Ended(JobOutcome::Finished));
    let running = a
        .submit(JobSubmission::new("endless").option("execution.checkpointing.interval", "100ms"))
        .unwrap();
    // A job without checkpoints: recovered from its beginning.
    let plain = a.submit(JobSubmission::new("endless")).unwrap();
    // Wait for a completed checkpoint in the store.
    let t0 = Instant::now();
    while a
        .ha()
        .persistence
        .checkpoints
        .latest(running.id())
        .unwrap()
        .is_none()
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let graphs = a.ha().persistence.job_graphs.graphs().unwrap();
    let mut stored: Vec<&str> = graphs.iter().map(|g| g.job_id.as_str()).collect();
    stored.sort();
    let mut expected = vec![running.id(), plain.id()];
    expected.sort();
    assert_eq!(stored, expected, "finished jobs are cleaned up");

    // A goes away: its job is suspended (not ended), and B takes over.
    let killed_at = Instant::now();
    a.shutdown();
    assert_eq!(
        running.wait_timeout(Duration::from_secs(30)),
        SessionJobStatus::Suspended
    );
    assert!(b.wait_for_leadership(Duration::from_secs(10)));
    assert_eq!(b.leader_token(), Some(2));
    let t0 = Instant::now();
    let mut both = vec![running.id().to_string(), plain.id().to_string()];
    both.sort();
    while b.running_jobs() != both {
        assert!(t0.elapsed() < Duration::from_secs(10), "not recovered");
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("takeover to running again: {:?}", killed_at.elapsed());
    let recovered: Vec<SessionEvent> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, SessionEvent::Recovered { .. }))
        .cloned()
        .collect();
    assert_eq!(recovered.len(), 2, "{recovered:?}");
    for r in &recovered {
        match r {
            SessionEvent::Recovered { job_id, checkpoint } if job_id == running.id() => {
                assert!(checkpoint.is_some(), "resumed from a checkpoint")
            }
            SessionEvent::Recovered { job_id, checkpoint } => {
                assert_eq!(job_id, plain.id());
                assert_eq!(*checkpoint, None, "no checkpoint: from the beginning");
            }
            _ => unreachable!(),
        }
    }
    let p = b.job(plain.id()).unwrap();
    p.cancel();
    assert_eq!(
        p.wait_timeout(Duration::from_secs(20)),
        SessionJobStatus::Ended(JobOutcome::Cancelled)
    );
    // The finished job is known from the result store and was not run again.
    assert_eq!(
        b.status(done.id()).unwrap(),
        SessionJobStatus::Ended(JobOutcome::Finished)
    );
    let job = b.job(running.id()).unwrap();
    job.cancel();
    assert_eq!(
        job.wait_timeout(Duration::from_secs(20)),
        SessionJobStatus::Ended(JobOutcome::Cancelled)
    );
    assert!(b.ha().persistence.job_graphs.graphs().unwrap().is_empty());
    assert!(b
        .ha()
        .persistence
        .checkpoints
        .latest(running.id())
        .unwrap()
        .is_none());
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let dir = temp("bad-input");
    let a = SessionRuntime::start(
        registry(),
        SessionOptions {
            ha: sqlite_options(&dir, true),
            contender: "a".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let store = || a.ha().persistence.job_graphs.graphs().unwrap();

    // Unknown job name: the error names it and what is registered.
    let e = a.submit(JobSubmission::new("word-cuont")).unwrap_err();
    assert!(matches!(e, SessionError::UnknownJob { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("'word-cuont'") && text.contains("word-count"),
        "{text}"
    );
    // An unknown option, a builder that refuses its input.
    let e = a
        .submit(JobSubmission::new("endless").option("execution.checkpointing.intervall", "1s"))
        .unwrap_err();
    assert!(
        e.to_string().contains("execution.checkpointing.intervall"),
        "{e}"
    );
    let e = a.submit(JobSubmission::new("word-count")).unwrap_err();
    assert!(e.to_string().contains("artifact 'input'"), "{e}");
    let e = a
        .submit(
            JobSubmission::new("word-count")
                .artifact("input", "a b")
                .parameter("parallelism", "four"),
        )
        .unwrap_err();
    assert!(e.to_string().contains("parameter 'parallelism'"), "{e}");
    assert!(store().is_empty(), "nothing written: {:?}", store());
    assert!(a
        .ha()
        .persistence
        .blobs
        .get("x", "input")
        .unwrap()
        .is_none());

    // A stale fencing token: a write of a deposed leader is refused, nothing written.
    let old = a.leader_token().unwrap();
    a.shutdown();
    let b = SessionRuntime::start(
        registry(),
        SessionOptions {
            ha: sqlite_options(&dir, true),
            contender: "b".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(b.wait_for_leadership(Duration::from_secs(10)));
    let graph = JobGraphRecord {
        job_id: "stale-1".into(),
        name: "endless".into(),
        version: 1,
        parameters: BTreeMap::new(),
        config: BTreeMap::new(),
        submitted_ms: 0,
    };
    let e = b.ha().persistence.job_graphs.put(old, &graph).unwrap_err();
    assert!(matches!(e, HaError::Fenced { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("stale fencing token {old}")),
        "{e}"
    );
    assert!(b.ha().persistence.job_graphs.graphs().unwrap().is_empty());
    b.shutdown();

    // An unreachable store: a clear error at start, quickly, without the password.
    let mut ha = HaOptions::default();
    ha.set("high-availability.type", "postgres").unwrap();
    ha.set(
        "high-availability.postgres.url",
        "postgres://weir:secret@127.0.0.1:1/weir",
    )
    .unwrap();
    ha.set("high-availability.job-recovery.enabled", "false")
        .unwrap();
    let t0 = Instant::now();
    let e = match SessionRuntime::start(
        registry(),
        SessionOptions {
            ha,
            ..Default::default()
        },
    ) {
        Err(e) => e,
        Ok(_) => panic!("an unreachable store must fail the start"),
    };
    assert!(
        matches!(e, SessionError::Ha(HaError::Unreachable { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_job_recovery_off_nothing_per_job_is_persisted() {
    let dir = temp("no-recovery");
    let rt = SessionRuntime::start(
        registry(),
        SessionOptions {
            ha: sqlite_options(&dir, false),
            contender: "solo".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rt.wait_for_leadership(Duration::from_secs(10)));
    // Leader election is on the database ...
    let leader = rt.ha().leader.retrieval.leader().unwrap().unwrap();
    assert_eq!(leader.holder, "solo");
    let job = rt
        .submit(JobSubmission::new("word-count").artifact("input", "x y\n"))
        .unwrap();
    assert_eq!(job.wait(), SessionJobStatus::Ended(JobOutcome::Finished));
    rt.shutdown();
    // ... and the persistence tables of the database hold no row of this job.
    let other = weir::ha::HaServices::open(&sqlite_options(&dir, true), "reader").unwrap();
    assert!(other.persistence.job_graphs.graphs().unwrap().is_empty());
    assert!(other
        .persistence
        .job_results
        .get(job.id())
        .unwrap()
        .is_none());
    assert!(other
        .persistence
        .blobs
        .get(job.id(), "input")
        .unwrap()
        .is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_job_graph_fails_that_job_alone() {
    let dir = temp("corrupt");
    let events: Arc<Mutex<Vec<SessionEvent>>> = Default::default();
    let opts = |name: &str| SessionOptions {
        ha: sqlite_options(&dir, true),
        contender: name.to_string(),
        on_event: Some(Arc::new({
            let ev = events.clone();
            move |e: &SessionEvent| ev.lock().unwrap().push(e.clone())
        })),
        ..Default::default()
    };
    let a = SessionRuntime::start(registry(), opts("a")).unwrap();
    let good = a.submit(JobSubmission::new("endless")).unwrap();
    let bad = a.submit(JobSubmission::new("endless")).unwrap();
    a.shutdown();
    // Flip a byte of one stored record (with Python's sqlite3: a real edit of the file).
    let db = dir.join("weir-ha.db");
    let script = format!(
        "import sqlite3\n\
         c = sqlite3.connect({db:?})\n\
         (r,) = c.execute(\"select record from weir_ha_job_graphs where job_id = ?\", ({id:?},)).fetchone()\n\
         r = bytearray(r); r[-1] ^= 0xff\n\
         c.execute(\"update weir_ha_job_graphs set record = ? where job_id = ?\", (bytes(r), {id:?}))\n\
         c.commit()\n",
        db = db.display().to_string(),
        id = bad.id()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let b = SessionRuntime::start(registry(), opts("b")).unwrap();
    assert!(b.wait_for_leadership(Duration::from_secs(10)));
    let t0 = Instant::now();
    while b.running_jobs() != vec![good.id().to_string()] {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "good job not recovered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    match b.status(bad.id()).unwrap() {
        SessionJobStatus::Ended(JobOutcome::Failed(e)) => {
            assert!(e.contains("corrupt HA record job graph"), "{e}");
            assert!(e.contains(bad.id()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, SessionEvent::RecoveryFailed { job_id, .. } if job_id == bad.id())));
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
