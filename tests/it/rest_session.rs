//! A `weir session` process's REST API as a control plane open to the network: strangers are
//! refused, bad and slow requests get errors without harm, 1,000 idle connections cost neither
//! threads nor memory, the CLI submits, reads and cancels over the API, and SIGTERM stops the
//! runtime gracefully with a final event line.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::eventually;
use crate::rest::call;

const TOKEN: &str = "weir-test-token-5f1c";

struct Session {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Session {
    fn next_event(&self, what: &str) -> Value {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {what} line"));
            if v["event"] == what {
                return v;
            }
        }
    }
}

fn start_session(dir: &std::path::Path, token_file: &std::path::Path) -> Session {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["session", "--listen", "127.0.0.1:0"])
        .args([
            "-o",
            &format!("rest.authentication.token-file={}", token_file.display()),
        ])
        .args(["-o", "rest.server.max-content-length=1mb"])
        .args(["-o", "rest.server.read-timeout=2s"])
        .args(["-o", "rest.server.max-connections=64"])
        .env_remove("WEIR_REST_TOKEN")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("session.log")).unwrap())
        .spawn()
        .expect("start weir session");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    Session { child, lines: rx }
}

/// Threads and resident memory (KiB) of process `pid`.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

fn weir(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env_remove("WEIR_REST_TOKEN")
        .output()
        .expect("run weir");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn post(url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let agent = crate::rest::client();
    let mut req = ureq::http::Request::builder()
        .method("POST")
        .uri(url)
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    match agent.run(req.body(body).unwrap()) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        // The server may answer 413 and close before the client finished sending.
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn read_records(base: &str, jid: &str) -> u64 {
    let job = crate::rest::get(&format!("{base}/jobs/{jid}"));
    job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["metrics"]["read-records"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_session_refuses_strangers_survives_bad_clients_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("weir-it-rest-session-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let session = start_session(&dir, &token_file);
    let started = session.next_event("started");
    let base = started["address"].as_str().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{started}");
    let pid = session.child.id();

    // A real job, submitted with the token through the CLI.
    let warehouse = dir.join("warehouse");
    let tf = token_file.display().to_string();
    let (ok, jid, err) = weir(&[
        "submit",
        "iceberg-ingest",
        "--address",
        &base,
        "--token-file",
        &tf,
        "-p",
        &format!("warehouse={}", warehouse.display()),
        "-p",
        "rows=100000000",
        "-p",
        "rate=2000",
        "-p",
        "writers=1",
    ]);
    assert!(ok, "submit: {err}");
    assert!(eventually(Duration::from_secs(60), || read_records(
        &base, &jid
    ) > 0));

    // Strangers: no token, a wrong token; for a submission and for a cancel.
    let sub = serde_json::to_vec(
        &json!({"name": "iceberg-ingest", "parameters": {"warehouse": "/tmp/x"}}),
    )
    .unwrap();
    let (status, body) = post(&format!("{base}/jobs"), None, sub.clone());
    assert_eq!(status, 401, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("bearer token"),
        "{body}"
    );
    let (status, _) = post(&format!("{base}/jobs"), Some("guess"), sub.clone());
    assert_eq!(status, 401);
    let (status, _) = call("PATCH", &format!("{base}/jobs/{jid}?mode=cancel"), None);
    assert_eq!(status, 401);
    let (status, _) = call(
        "POST",
        &format!("{base}/jobs/{jid}/savepoints"),
        Some("guess"),
    );
    assert_eq!(status, 401);
    let (ok, _, err) = weir(&["cancel", &jid, "--address", &base]);
    assert!(!ok && err.contains("401"), "cancel without a token: {err}");

    // Malformed, unknown, oversized.
    let (status, body) = post(&format!("{base}/jobs"), Some(TOKEN), b"{not json".to_vec());
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("job submission"),
        "{body}"
    );
    let (status, body) = post(
        &format!("{base}/jobs"),
        Some(TOKEN),
        br#"{"name": "nope"}"#.to_vec(),
    );
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown job name 'nope'"),
        "{body}"
    );
    let big = vec![b' '; 2 << 20];
    let (status, body) = post(&format!("{base}/jobs"), Some(TOKEN), big);
    assert!(status == 413 || status == 0, "oversized: {status} {body}");

    // Pages of other sites: a cross-origin submission (even with the token), a text/plain one
    // (no CORS preflight), and a request for a foreign host (DNS rebinding).
    let agent = crate::rest::client();
    let send = |content_type: &str, origin: Option<&str>| {
        let mut req = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{base}/jobs"))
            .header("Content-Type", content_type)
            .header("Authorization", format!("Bearer {TOKEN}"));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        agent
            .run(req.body(sub.clone()).unwrap())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send("application/json", Some("http://evil.example")), 403);
    assert_eq!(send("text/plain", None), 415);
    let addr = base.trim_start_matches("http://").to_string();
    let mut rebound = TcpStream::connect(&addr).unwrap();
    rebound
        .write_all(b"GET /jobs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = rebound.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "a foreign host: {answer}"
    );

    // Slow clients: headers that never end, and a body that never comes.
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "a slow header was cut after {:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(
        format!("POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "a slow body: {answer}");
    assert!(t0.elapsed() < Duration::from_secs(15));

    // 1,000 idle connections: no thread each, little memory, and the server still answers.
    let (threads_before, rss_before) = threads_and_rss(pid);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (threads_during, rss_during) = threads_and_rss(pid);
    assert!(
        threads_during <= threads_before + 2,
        "threads {threads_before} -> {threads_during} with 1000 idle connections"
    );
    assert!(
        rss_during <= rss_before + 32 * 1024,
        "RSS {rss_before} KiB -> {rss_during} KiB with 1000 idle connections"
    );
    let t0 = Instant::now();
    let overview = crate::rest::get(&format!("{base}/jobs/overview"));
    eprintln!(
        "1000 idle connections: threads {threads_before} -> {threads_during}, RSS {rss_before} -> {rss_during} KiB; a request answered in {:?}",
        t0.elapsed()
    );
    drop(idle);

    // Nothing was submitted or cancelled by any of that; the job kept running.
    let jobs = overview["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{overview}");
    assert_eq!(jobs[0]["state"], "RUNNING");
    let before = read_records(&base, &jid);
    assert!(eventually(Duration::from_secs(30), || read_records(
        &base, &jid
    ) > before));
    let (ok, status, err) = weir(&["job-status", &jid, "--address", &base]);
    assert!(ok && status.contains("Running"), "{status} {err}");

    // The dashboard is served; the metrics name the job.
    let (code, page) = call("GET", &format!("{base}/"), None);
    assert_eq!(code, 200);
    assert!(page.as_str().unwrap().contains("<title>"));
    let (_, metrics) = call("GET", &format!("{base}/metrics"), None);
    assert!(metrics
        .as_str()
        .unwrap()
        .contains(&format!("job_id=\"{jid}\"")));

    // Cancel with the token, then SIGTERM: a final line, exit 0.
    let (ok, _, err) = weir(&["cancel", &jid, "--address", &base, "--token-file", &tf]);
    assert!(ok, "cancel: {err}");
    assert!(eventually(Duration::from_secs(60), || {
        let (_, s, _) = weir(&["job-status", &jid, "--address", &base]);
        s.contains("Cancelled")
    }));
    let mut session = session;
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = session.next_event("stopped");
    assert_eq!(stopped["signal"], "SIGTERM");
    let status = session.child.wait().unwrap();
    assert!(status.success(), "weir session exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
