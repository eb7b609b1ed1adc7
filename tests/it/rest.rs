//! The REST API of an embedded job (`rest.port`): Flink's paths and field names, figures that
//! match the job handle's, checkpoint details per subtask, triggers, cancel, errors as JSON
//! lists, and `/metrics` accepted by `promtool check metrics`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weir::prelude::*;

use crate::common::{eventually, join_within, SlowSink};

/// An HTTP client that returns every status (errors included) with its JSON body.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `method url` with an optional bearer token: (status, body as JSON or as a string).
pub fn call(method: &str, url: &str, token: Option<&str>) -> (u16, Value) {
    let agent = client();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = agent
        .run(req.body(()).expect("request"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn get(url: &str) -> Value {
    let (status, body) = call("GET", url, None);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Generator -> Relay -> slow sink (1 ms a record), unchained, checkpoints every 200 ms, REST on
/// an ephemeral port.
fn backpressured_job(dir: &std::path::Path) -> JobHandle {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.rest_port = Some(0);
        c.job_name = "rest-test".into();
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
        c.max_records_per_buffer = 64;
    });
    let consumed = Arc::new(AtomicU64::new(0));
    env.generate(Generator::new(|i| i))
        .map(|x: u64| x)
        .name("Relay")
        .disable_chaining()
        .sink("Slow Sink", move |_| SlowSink {
            cost: Duration::from_millis(1),
            consumed: consumed.clone(),
        })
        .disable_chaining();
    env.start().expect("job starts")
}

fn errors(body: &Value) -> String {
    let list = body["errors"].as_array().expect("an errors list");
    assert!(!list.is_empty());
    list.iter()
        .map(|e| e.as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn the_rest_api_shows_a_backpressured_job_with_flinks_paths_and_fields() {
    let dir = std::env::temp_dir().join(format!("weir-it-rest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let handle = backpressured_job(&dir);
    let base = handle.rest_url().expect("a REST URL").to_string();
    let jid = handle.observer().id().to_string();
    assert_eq!(jid.len(), 32);
    assert!(eventually(Duration::from_secs(30), || {
        handle
            .checkpoint_stats()
            .iter()
            .filter(|s| s.status == weir::engine::checkpoint::CheckpointStatus::Completed)
            .count()
            >= 3
    }));
    std::thread::sleep(Duration::from_millis(600));

    // The job list and overview.
    let jobs = get(&format!("{base}/jobs"));
    assert_eq!(jobs["jobs"][0]["id"], jid.as_str());
    assert_eq!(jobs["jobs"][0]["status"], "RUNNING");
    let overview = get(&format!("{base}/jobs/overview"));
    assert_eq!(overview["jobs"][0]["name"], "rest-test");
    assert_eq!(overview["jobs"][0]["end-time"], -1);

    // The job: plan with three vertices and two forward edges; figures match the handle's.
    let before = handle.metrics();
    let job = get(&format!("{base}/jobs/{jid}"));
    let after = handle.metrics();
    assert_eq!(job["state"], "RUNNING");
    assert!(job["start-time"].as_i64().unwrap() > 0);
    let nodes = job["plan"]["nodes"].as_array().unwrap();
    let vertices = job["vertices"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(vertices.len(), 3);
    let names: Vec<&str> = vertices
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        names[0].contains("Generator") && names[1] == "Relay" && names[2] == "Slow Sink",
        "{names:?}"
    );
    let edges = job["plan"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert!(edges.iter().all(|e| e["ship_strategy"] == "FORWARD"));
    assert_eq!(nodes[2]["inputs"][0]["id"], vertices[1]["id"]);
    for (i, v) in vertices.iter().enumerate() {
        let read = v["metrics"]["read-records"].as_u64().unwrap();
        let (lo, hi) = (before.tasks[i].records_in, after.tasks[i].records_in);
        assert!(
            lo <= read && read <= hi,
            "vertex {i}: {lo} <= {read} <= {hi}"
        );
        assert_eq!(v["subtasks"].as_array().unwrap().len(), 1);
    }
    let vid = |i: usize| vertices[i]["id"].as_str().unwrap().to_string();

    // Per-subtask metrics and back pressure: the sink is busy, its upstream backpressured.
    let sink = get(&format!("{base}/jobs/{jid}/vertices/{}", vid(2)));
    assert_eq!(sink["parallelism"], 1);
    assert!(
        sink["subtasks"][0]["busyRatio"].as_f64().unwrap() > 0.5,
        "{sink}"
    );
    let bp = get(&format!(
        "{base}/jobs/{jid}/vertices/{}/backpressure",
        vid(1)
    ));
    assert_eq!(bp["status"], "ok");
    assert_eq!(bp["backpressureLevel"], "high", "{bp}");
    let s0 = &bp["subtasks"][0];
    assert!(s0["ratio"].as_f64().unwrap() > 0.5, "{bp}");
    let sum = s0["ratio"].as_f64().unwrap()
        + s0["busyRatio"].as_f64().unwrap()
        + s0["idleRatio"].as_f64().unwrap();
    assert!((sum - 1.0).abs() < 0.05, "ratios add up to {sum}");

    // Checkpoints: counts, history, summary, per-vertex and per-subtask details.
    let cps = get(&format!("{base}/jobs/{jid}/checkpoints"));
    let completed = cps["counts"]["completed"].as_u64().unwrap();
    assert!(completed >= 3, "{cps}");
    let history = cps["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 10);
    let latest = &cps["latest"]["completed"];
    assert_eq!(latest["status"], "COMPLETED");
    assert_eq!(latest["num_subtasks"], 3);
    assert_eq!(latest["num_acknowledged_subtasks"], 3);
    let summary = &cps["summary"]["end_to_end_duration"];
    for k in ["min", "max", "avg", "p50", "p99"] {
        assert!(summary[k].as_f64().is_some(), "summary {k}");
    }
    let cid = latest["id"].as_u64().unwrap();
    let stats = handle.checkpoint_stats();
    let known = stats
        .iter()
        .find(|s| s.id == cid)
        .expect("the handle knows it");
    assert_eq!(latest["state_size"].as_u64().unwrap(), known.state_bytes);
    let details = get(&format!("{base}/jobs/{jid}/checkpoints/details/{cid}"));
    assert_eq!(details["id"].as_u64(), Some(cid));
    assert_eq!(details["tasks"].as_object().unwrap().len(), 3);
    let sub = get(&format!(
        "{base}/jobs/{jid}/checkpoints/details/{cid}/subtasks/{}",
        vid(2)
    ));
    let s = &sub["subtasks"][0];
    assert_eq!(s["status"], "completed");
    for k in [
        "start_delay",
        "ack_timestamp",
        "end_to_end_duration",
        "state_size",
        "unaligned_checkpoint",
    ] {
        assert!(!s[k].is_null(), "subtask field {k}: {sub}");
    }
    for k in ["sync", "async"] {
        assert!(
            s["checkpoint"][k].as_f64().is_some(),
            "checkpoint.{k}: {sub}"
        );
    }
    for k in ["duration", "processed", "persisted"] {
        assert!(s["alignment"][k].as_f64().is_some(), "alignment.{k}: {sub}");
    }
    let config = get(&format!("{base}/jobs/{jid}/checkpoints/config"));
    assert_eq!(config["interval"], 200);
    assert_eq!(config["mode"], "exactly_once");

    // A checkpoint on request, asynchronous as in Flink.
    let (status, trig) = call("POST", &format!("{base}/jobs/{jid}/checkpoints"), None);
    assert_eq!(status, 202, "{trig}");
    let rid = trig["request-id"].as_str().unwrap().to_string();
    let mut done = Value::Null;
    assert!(eventually(Duration::from_secs(30), || {
        done = get(&format!("{base}/jobs/{jid}/checkpoints/{rid}"));
        done["status"]["id"] == "COMPLETED"
    }));
    assert!(
        done["operation"]["checkpointId"].as_u64().unwrap() > cid,
        "{done}"
    );

    // What weir's savepoints do not support is refused, not ignored.
    let agent = client();
    let mut resp = agent
        .run(
            ureq::http::Request::builder()
                .method("POST")
                .uri(format!("{base}/jobs/{jid}/savepoints"))
                .header("Content-Type", "application/json")
                .body(r#"{"cancel-job": true}"#.to_string())
                .unwrap(),
        )
        .unwrap();
    assert_eq!(resp.status().as_u16(), 501);
    let body: Value = resp.body_mut().read_json().unwrap();
    assert!(errors(&body).contains("cancel-job"));

    // Bad requests: 4xx with an errors list naming what was wrong.
    let (status, body) = call("GET", &format!("{base}/jobs/0123"), None);
    assert_eq!(status, 404);
    assert!(errors(&body).contains("0123"));
    let (status, body) = call(
        "GET",
        &format!("{base}/jobs/{jid}/checkpoints/details/abc"),
        None,
    );
    assert_eq!(status, 400);
    assert!(errors(&body).contains("abc"));
    let (status, body) = call("GET", &format!("{base}/jobs/{jid}/vertices/nope"), None);
    assert_eq!(status, 404);
    assert!(errors(&body).contains("nope"));
    let (status, body) = call("PATCH", &format!("{base}/jobs/{jid}?mode=explode"), None);
    assert_eq!(status, 400);
    assert!(errors(&body).contains("explode"));
    let (status, body) = call("DELETE", &format!("{base}/jobs/{jid}"), None);
    assert_eq!(status, 405);
    errors(&body);
    let (status, body) = call("POST", &format!("{base}/jobs"), None);
    assert_eq!(status, 405, "an embedded job takes no submissions: {body}");
    assert_eq!(get(&format!("{base}/jobs/{jid}"))["state"], "RUNNING");

    // Exceptions: none yet.
    let ex = get(&format!("{base}/jobs/{jid}/exceptions"));
    assert_eq!(
        ex["exceptionHistory"]["entries"].as_array().unwrap().len(),
        0
    );

    // Cancel.
    let (status, _) = call("PATCH", &format!("{base}/jobs/{jid}?mode=cancel"), None);
    assert_eq!(status, 202);
    assert!(eventually(Duration::from_secs(30), || handle.is_finished()));
    assert_eq!(get(&format!("{base}/jobs/{jid}"))["state"], "CANCELED");
    let end = get(&format!("{base}/jobs/overview"))["jobs"][0]["end-time"]
        .as_i64()
        .unwrap();
    assert!(end > 0);
    join_within(handle, Duration::from_secs(30)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `promtool check metrics` on `text` when promtool is installed (`.ci/run` installs
/// Debian's `prometheus`); with `WEIR_REQUIRE_TOOLS=1` a missing promtool fails the test.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("WEIR_REQUIRE_TOOLS").is_err(),
                "promtool is required (apt-get install prometheus): {e}"
            );
            eprintln!("promtool not installed: the metrics text is not linted");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_are_prometheus_text_that_promtool_accepts() {
    let dir = std::env::temp_dir().join(format!("weir-it-rest-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let handle = backpressured_job(&dir);
    let base = handle.rest_url().unwrap().to_string();
    let jid = handle.observer().id().to_string();
    assert!(eventually(Duration::from_secs(30), || handle
        .checkpoint_stats()
        .len()
        >= 2));
    let (status, body) = call("GET", &format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_string();
    let line = |name: &str, task: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(task))
            .unwrap_or_else(|| panic!("no {name} of {task} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let label = format!("job_id=\"{jid}\"");
    assert!(text.contains(&label));
    assert!(
        text.contains("task_name=\"Slow Sink\",subtask_index=\"0\""),
        "{text}"
    );
    assert!(line("weir_num_records_in{", "Slow Sink") > 0.0);
    assert!(line("weir_busy_time_ratio", "Slow Sink") > 0.5);
    assert!(line("weir_back_pressured_time_ratio", "task_name=\"Relay\"") > 0.5);
    assert!(line("weir_number_of_completed_checkpoints", &label) >= 1.0);
    assert!(line("weir_num_restarts", &label) == 0.0);
    promtool_check(&text);
    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_serves_https_only_and_a_bad_certificate_is_named() {
    let dir = std::env::temp_dir().join(format!("weir-it-rest-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    // A private CA, and a server certificate for 127.0.0.1 it signed.
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=weir test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);

    // A certificate file that holds no certificate is refused at start, naming the option.
    let env = StreamEnv::new();
    env.configure(|c| {
        c.rest_port = Some(0);
        c.rest_ssl_enabled = true;
        c.rest_ssl_certificate = key.display().to_string();
        c.rest_ssl_key = key.display().to_string();
    });
    env.generate(Generator::new(|i| i)).discard();
    let e = env.start().err().expect("a bad certificate is refused");
    assert!(e.to_string().contains("rest.ssl.certificate"), "{e}");

    let env = StreamEnv::new();
    env.configure(|c| {
        c.rest_port = Some(0);
        c.rest_ssl_enabled = true;
        c.rest_ssl_certificate = cert.display().to_string();
        c.rest_ssl_key = key.display().to_string();
    });
    env.generate(Generator::new(|i| i).rate_limited(1000.0))
        .discard();
    let handle = env.start().unwrap();
    let url = handle.rest_url().unwrap().to_string();
    assert!(url.starts_with("https://"), "{url}");
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl (Debian's curl package)")
    };
    let out = curl(&[
        "--cacert",
        &cert.display().to_string(),
        &format!("{url}/jobs/overview"),
    ]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["jobs"][0]["state"], "RUNNING");
    // weir's own client (weir submit, job-status, cancel) trusts the CA it is given, and only it.
    let client = weir::session::SessionClient::at(&url);
    let e = client.request("GET", "/jobs/overview", None).unwrap_err();
    assert!(e.to_string().contains("unreachable"), "{e}");
    let v = client
        .ca_file(&ca)
        .unwrap()
        .request("GET", "/jobs/overview", None)
        .unwrap();
    assert_eq!(v["jobs"][0]["state"], "RUNNING");
    // Plain HTTP to the TLS port gets no answer.
    let plain = url.replace("https://", "http://");
    let out = curl(&[&format!("{plain}/jobs/overview")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RUNNING"));
    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
