//! Failover of session runtimes with real processes: two `weir session` processes share one
//! HA database (SQLite on this host, or a real PostgreSQL server); the leader runs
//! `iceberg-ingest` jobs (exactly-once Iceberg sink, checkpoints every 300 ms) and is killed
//! with SIGKILL. The standby must take over within a bounded time, recover each unfinished job
//! from its latest completed checkpoint, never run a finished job again, and the tables must
//! hold every row exactly once.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};

const LONG_ROWS: u64 = 40_000;
const QUICK_ROWS: u64 = 300;

/// A `weir session` process and its event lines.
struct Session {
    child: Child,
    events: Receiver<Value>,
    seen: Vec<Value>,
}

impl Session {
    fn start(name: &str, ha: &[String], log: &Path) -> Session {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.arg("session")
            .args(["--name", name, "--listen", "127.0.0.1:0"]);
        // Logs for diagnosis (kept in the test directory when the test fails).
        cmd.env("RUST_LOG", "info");
        for o in ha {
            cmd.args(["-D", o]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start weir session");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Session {
            child,
            events: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred` (events seen before count too).
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {timeout:?}; events: {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the session ended before {what}; events: {:?}", self.seen)
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weir(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir");
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn submit(
    ha: &[String],
    warehouse: &Path,
    table: &str,
    rows: u64,
    rate: u64,
    wait: bool,
) -> String {
    let mut args: Vec<String> = vec!["submit".into(), "iceberg-ingest".into()];
    for p in [
        format!("warehouse={}", warehouse.display()),
        format!("table={table}"),
        format!("rows={rows}"),
        format!("rate={rate}"),
    ] {
        args.push("-p".into());
        args.push(p);
    }
    args.push("-o".into());
    args.push("execution.checkpointing.interval=300ms".into());
    for o in ha {
        args.push("-D".into());
        args.push(o.clone());
    }
    if wait {
        args.push("--wait".into());
    }
    let out = weir(&args);
    let id = out.lines().next().unwrap_or_default().to_string();
    assert!(id.starts_with("iceberg-ingest-"), "{out}");
    if wait {
        assert!(out.contains("Finished"), "{out}");
    }
    id
}

fn table_state(warehouse: &Path, table: &str) -> (usize, Vec<i64>) {
    let (ns, name) = table.split_once('.').unwrap();
    let ident = TableIdent::new(NamespaceIdent::new(ns.into()), name.into());
    IcebergRuntime::new(1).unwrap().block_on(async {
        let catalog = CatalogConfig::embedded(warehouse).open().await.unwrap();
        let Ok(t) = catalog.load_table(&ident).await else {
            return (0, Vec::new());
        };
        let snapshots = t.metadata().snapshots().count();
        let batches = table_io::read_all(&*catalog, &ident).await.unwrap();
        (snapshots, crate::iceberg_interop::ids(&batches))
    })
}

fn exactly_once(ids: &[i64], rows: u64, table: &str) {
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len() as u64, rows, "{table}: rows (duplicates?)");
    assert_eq!(distinct.len() as u64, rows, "{table}: distinct ids");
    assert_eq!(distinct.first().copied(), Some(0), "{table}");
    assert_eq!(distinct.last().copied(), Some(rows as i64 - 1), "{table}");
}

fn failover(kind: &str, dir: PathBuf, mut ha: Vec<String>) {
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let warehouse = dir.join("warehouse");
    ha.push(format!(
        "high-availability.storageDir={}",
        dir.join("ha").display()
    ));
    ha.push("high-availability.leader-election.lease-duration=2s".into());

    let mut a = Session::start("a", &ha, &dir.join("a.log"));
    let leading = a.wait_for("leadership of a", Duration::from_secs(30), |v| {
        v["event"] == "leading"
    });
    let token_a = leading["token"].as_u64().unwrap();
    let mut b = Session::start("b", &ha, &dir.join("b.log"));
    b.wait_for("start of b", Duration::from_secs(30), |v| {
        v["event"] == "started"
    });

    // A quick job that finishes before the kill, then two long ones.
    let quick = submit(&ha, &warehouse, "ha.quick", QUICK_ROWS, 100_000, true);
    let long: Vec<(String, String)> = ["ha.first", "ha.second"]
        .iter()
        .map(|t| {
            (
                t.to_string(),
                submit(&ha, &warehouse, t, LONG_ROWS, 4_000, false),
            )
        })
        .collect();
    // Kill the leader once both long jobs committed some checkpoints.
    let t0 = Instant::now();
    loop {
        let committed: Vec<usize> = long
            .iter()
            .map(|(t, _)| table_state(&warehouse, t).0)
            .collect();
        if committed.iter().all(|&n| n >= 2) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no commits: {committed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before: Vec<usize> = long
        .iter()
        .map(|(t, _)| table_state(&warehouse, t).1.len())
        .collect();
    assert!(
        before.iter().all(|&n| (n as u64) < LONG_ROWS),
        "the jobs ended before the kill: {before:?}"
    );
    a.child.kill().expect("SIGKILL the leader");
    let killed_ms = weir::ha::now_ms();
    let _ = a.child.wait();

    let leading = b.wait_for("leadership of b", Duration::from_secs(30), |v| {
        v["event"] == "leading"
    });
    assert!(leading["token"].as_u64().unwrap() > token_a);
    let mut recovered_ms = 0;
    for (table, id) in &long {
        let r = b.wait_for("recovery", Duration::from_secs(30), |v| {
            v["event"] == "recovered" && v["job_id"] == id.as_str()
        });
        assert!(
            r["checkpoint"].as_u64().is_some(),
            "{table}: resumed from a checkpoint: {r}"
        );
        recovered_ms = recovered_ms.max(r["at_ms"].as_i64().unwrap());
    }
    let takeover = (leading["at_ms"].as_i64().unwrap() - killed_ms).max(0);
    let running = (recovered_ms - killed_ms).max(0);
    eprintln!(
        "failover ({kind}): leader killed → standby leads after {takeover} ms, jobs running again after {running} ms (lease 2 s)"
    );
    assert!(running < 15_000, "failover took {running} ms");

    for (table, id) in &long {
        let e = b.wait_for("job end", Duration::from_secs(90), |v| {
            v["event"] == "ended" && v["job_id"] == id.as_str()
        });
        assert_eq!(e["outcome"], "Finished", "{table}: {e}");
    }
    b.drain();
    assert!(
        !b.seen.iter().any(|v| v["job_id"] == quick.as_str()),
        "the finished job ran again: {:?}",
        b.seen
    );
    for (table, _) in &long {
        exactly_once(&table_state(&warehouse, table).1, LONG_ROWS, table);
    }
    exactly_once(
        &table_state(&warehouse, "ha.quick").1,
        QUICK_ROWS,
        "ha.quick",
    );
    // The new leader answers for the finished job from the job result store.
    let mut args: Vec<String> = vec!["job-status".into(), quick.clone()];
    for o in &ha {
        args.push("-D".into());
        args.push(o.clone());
    }
    assert!(weir(&args).contains("Finished"));
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("weir-ha-{name}-{}", std::process::id()))
}

#[test]
fn a_sigkilled_leader_is_replaced_and_jobs_stay_exactly_once_on_sqlite() {
    failover(
        "sqlite",
        temp("sqlite"),
        vec!["high-availability.type=sqlite".into()],
    );
}

#[test]
fn a_sigkilled_leader_is_replaced_and_jobs_stay_exactly_once_on_postgres() {
    let url = crate::iceberg_catalogs::postgres_url();
    let cluster = format!("failover-{}-{}", std::process::id(), weir::ha::now_ms());
    failover(
        "postgres",
        temp("postgres"),
        vec![
            "high-availability.type=postgres".into(),
            format!("high-availability.postgres.url={url}"),
            format!("high-availability.cluster-id={cluster}"),
        ],
    );
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} failed");
}

/// A leader frozen (SIGSTOP) past its lease is deposed while its job still runs; when it
/// wakes (SIGCONT) it must stop that job without committing anything: the new leader's run
/// of the job alone decides the table, which holds every row exactly once.
#[test]
fn a_frozen_leader_wakes_deposed_and_cannot_commit() {
    let dir = temp("frozen");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let warehouse = dir.join("warehouse");
    let ha = vec![
        "high-availability.type=sqlite".to_string(),
        format!("high-availability.storageDir={}", dir.join("ha").display()),
        "high-availability.leader-election.lease-duration=2s".into(),
    ];
    let mut a = Session::start("a", &ha, &dir.join("a.log"));
    a.wait_for("leadership of a", Duration::from_secs(30), |v| {
        v["event"] == "leading"
    });
    let mut b = Session::start("b", &ha, &dir.join("b.log"));
    b.wait_for("start of b", Duration::from_secs(30), |v| {
        v["event"] == "started"
    });
    let id = submit(&ha, &warehouse, "ha.frozen", LONG_ROWS, 4_000, false);
    let t0 = Instant::now();
    while table_state(&warehouse, "ha.frozen").0 < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no commits");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&a.child, "-STOP");
    b.wait_for("leadership of b", Duration::from_secs(30), |v| {
        v["event"] == "leading"
    });
    b.wait_for("recovery", Duration::from_secs(30), |v| {
        v["event"] == "recovered" && v["job_id"] == id.as_str()
    });
    // Let the new leader commit checkpoints of its own before the old one wakes up.
    let snapshots = table_state(&warehouse, "ha.frozen").0;
    let t0 = Instant::now();
    while table_state(&warehouse, "ha.frozen").0 < snapshots + 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "b commits nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&a.child, "-CONT");
    a.wait_for("a's loss of leadership", Duration::from_secs(30), |v| {
        v["event"] == "lost-leadership"
    });
    a.wait_for("a's job suspended", Duration::from_secs(30), |v| {
        v["event"] == "suspended" && v["job_id"] == id.as_str()
    });
    let e = b.wait_for("job end", Duration::from_secs(90), |v| {
        v["event"] == "ended" && v["job_id"] == id.as_str()
    });
    assert_eq!(e["outcome"], "Finished", "{e}");
    a.drain();
    assert!(
        !a.seen.iter().any(|v| v["event"] == "ended"),
        "the deposed leader recorded a result: {:?}",
        a.seen
    );
    exactly_once(
        &table_state(&warehouse, "ha.frozen").1,
        LONG_ROWS,
        "ha.frozen",
    );
    drop((a, b));
    if std::env::var_os("WEIR_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
