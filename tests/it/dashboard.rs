//! The web dashboard in a real browser (Debian's headless Chromium, driven through ChromeDriver
//! for the live page): a job under full backpressure draws its slow vertex busy and its
//! upstream backpressured, checkpoint rows appear and grow with live updates (server-sent
//! events), and a checkpoint's timeline has one bar group per subtask. Screenshots go to the
//! test's output directory (`target/tmp/`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir::prelude::*;

use crate::common::{eventually, join_within, SlowSink};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Whether the browser is installed; with `WEIR_REQUIRE_TOOLS=1` (set by `.ci/run`, which
/// installs it) a missing browser fails the test.
fn browser_installed() -> bool {
    let there =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !there {
        assert!(
            std::env::var("WEIR_REQUIRE_TOOLS").is_err(),
            "chromium and chromium-driver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("chromium not installed: the dashboard is not tested in a browser");
    }
    there
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
fn chromium(url: &str, extra: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "weir-it-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let out = Command::new(CHROMIUM)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The DOM of `url` after the page settled (no live updates: `?live=0`).
fn dom(url: &str) -> String {
    chromium(
        url,
        &["--virtual-time-budget=5000".into(), "--dump-dom".into()],
    )
}

fn screenshot(url: &str, name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    chromium(
        url,
        &[
            "--virtual-time-budget=5000".into(),
            "--window-size=1400,1100".into(),
            format!("--screenshot={}", path.display()),
        ],
    );
    assert!(path.exists(), "no screenshot at {}", path.display());
    path
}

/// The attributes of the element that carries `marker` (e.g. `data-vertex-id="…"`): the text
/// of its start tag.
fn tag_with<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// The `fill` of the first `<rect>` after `marker`.
fn fill_after(dom: &str, marker: &str) -> String {
    let at = dom.find(marker).unwrap();
    let rect = at + dom[at..].find("<rect").unwrap();
    let tag = &dom[rect..rect + dom[rect..].find('>').unwrap()];
    let f = tag.find("fill=\"").expect("a fill") + 6;
    tag[f..f + tag[f..].find('"').unwrap()].to_string()
}

/// Lightness (0–100) of a `#rrggbb` or `hsl(h, s%, l%)` colour, and whether it is red-ish.
fn colour(c: &str) -> (f64, bool) {
    if let Some(hex) = c.strip_prefix('#') {
        let v = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0;
        let (r, g, b) = (v(0), v(2), v(4));
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        ((max + min) * 50.0, r > g + 0.2 && r > b + 0.2)
    } else {
        let inner = c.trim_start_matches("hsl(").trim_end_matches(')');
        let parts: Vec<f64> = inner
            .split(',')
            .map(|p| p.trim().trim_end_matches('%').parse().unwrap())
            .collect();
        (parts[2], parts[0] <= 30.0 || parts[0] >= 340.0)
    }
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

/// A ChromeDriver process and one browser session of it.
struct Driver {
    child: Child,
    base: String,
    session: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let up = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not start");
        let mut d = Driver {
            child,
            base,
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": FLAGS},
        }}});
        let v = d.post("/session", caps);
        d.session = v["value"]["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        d
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let mut resp = crate::rest::client()
            .post(&format!("{}{path}", self.base))
            .send_json(body)
            .expect("webdriver");
        let v: Value = resp.body_mut().read_json().expect("webdriver json");
        assert!(v["value"]["error"].is_null(), "webdriver {path}: {v}");
        v
    }

    fn open(&self, url: &str) {
        self.post(
            &format!("/session/{}/url", self.session),
            json!({ "url": url }),
        );
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn eval(&self, script: &str) -> Value {
        self.post(
            &format!("/session/{}/execute/sync", self.session),
            json!({ "script": script, "args": [] }),
        )["value"]
            .clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = crate::rest::client()
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_draws_backpressure_checkpoints_and_timelines_in_a_browser() {
    if !browser_installed() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-it-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = StreamEnv::new();
    env.configure(|c| {
        c.rest_port = Some(0);
        c.job_name = "dashboard-test".into();
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = Duration::from_millis(300);
        c.max_records_per_buffer = 64;
        c.web_refresh_interval = Duration::from_millis(300);
    });
    let consumed = Arc::new(AtomicU64::new(0));
    env.generate(Generator::new(|i| i))
        .set_parallelism(2)
        .map(|x: u64| x)
        .name("Relay")
        .set_parallelism(2)
        .disable_chaining()
        .rebalance()
        .sink("Slow Sink", move |_| SlowSink {
            cost: Duration::from_millis(2),
            consumed: consumed.clone(),
        })
        .set_parallelism(2)
        .disable_chaining();
    let handle = env.start().unwrap();
    let base = handle.rest_url().unwrap().to_string();
    let jid = handle.observer().id().to_string();
    let plan = handle.observer().plan().clone();
    let subtasks: usize = plan.vertices.iter().map(|v| v.parallelism).sum();
    assert!(eventually(Duration::from_secs(30), || handle
        .checkpoint_stats()
        .len()
        >= 3));
    std::thread::sleep(Duration::from_secs(1));

    // The graph: the slow sink busy (red), its upstream backpressured (dark).
    let page = dom(&format!("{base}/?live=0#/jobs/{jid}"));
    let sink = &plan.vertices[2];
    let relay = &plan.vertices[1];
    let source = &plan.vertices[0];
    let sink_marker = format!("data-vertex-id=\"{}\"", sink.id);
    assert!(
        tag_with(&page, &sink_marker).contains("data-state=\"busy\""),
        "{}",
        tag_with(&page, &sink_marker)
    );
    let (light, red) = colour(&fill_after(&page, &sink_marker));
    assert!(
        red && light <= 60.0,
        "the slow vertex is drawn busy red: {}",
        fill_after(&page, &sink_marker)
    );
    for v in [relay, source] {
        let marker = format!("data-vertex-id=\"{}\"", v.id);
        assert!(
            tag_with(&page, &marker).contains("data-state=\"backpressured\""),
            "{}: {}",
            v.name,
            tag_with(&page, &marker)
        );
        let (light, _) = colour(&fill_after(&page, &marker));
        assert!(
            light < 35.0,
            "{} is drawn backpressured (dark): {}",
            v.name,
            fill_after(&page, &marker)
        );
    }
    let rows_then = count(&page, "class=\"checkpoint-row");
    assert!(rows_then >= 3, "checkpoint rows: {rows_then}");
    assert_eq!(count(&page, "<g class=\"vertex"), 3);
    let shot = screenshot(&format!("{base}/?live=0#/jobs/{jid}"), "dashboard-job.png");
    eprintln!("screenshot: {}", shot.display());

    // A checkpoint's timeline: one bar group per subtask, with its phases.
    let cid = handle
        .checkpoint_stats()
        .iter()
        .rev()
        .find(|s| s.status == weir::engine::checkpoint::CheckpointStatus::Completed)
        .unwrap()
        .id;
    let url = format!("{base}/?live=0#/jobs/{jid}/checkpoints/{cid}");
    let page = dom(&url);
    assert!(
        page.contains(&format!(
            "id=\"checkpoint-timeline\" data-checkpoint-id=\"{cid}\""
        )) || page.contains("id=\"checkpoint-timeline\""),
        "no timeline"
    );
    assert_eq!(
        count(&page, "class=\"timeline-subtask"),
        subtasks,
        "one bar group per subtask"
    );
    for v in &plan.vertices {
        for i in 0..v.parallelism {
            assert!(
                page.contains(&format!("data-vertex-id=\"{}\" data-subtask=\"{i}\"", v.id))
                    || page.contains(&format!("data-subtask=\"{i}\" data-vertex-id=\"{}\"", v.id)),
                "no timeline row of {} subtask {i}",
                v.name
            );
        }
    }
    assert!(count(&page, "seg-sync") >= subtasks, "sync bars");
    let shot = screenshot(&url, "dashboard-timeline.png");
    eprintln!("screenshot: {}", shot.display());

    // Live: the page follows the server-sent events; rows appear and grow without a reload.
    let driver = Driver::start();
    driver.open(&format!("{base}/#/jobs/{jid}"));
    let rows = || {
        driver
            .eval(
                "return document.querySelectorAll('#checkpoint-history tr.checkpoint-row').length;",
            )
            .as_u64()
            .unwrap_or(0)
    };
    let newest = || {
        driver
            .eval("const r = document.querySelector('#checkpoint-history tr.checkpoint-row'); return r ? Number(r.dataset.checkpointId) : 0;")
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(20), || rows() > 0),
        "no checkpoint rows in the live page"
    );
    let first = newest();
    let t0 = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || newest() >= first + 3),
        "the live page did not follow new checkpoints (newest {first} -> {})",
        newest()
    );
    let mode = driver.eval("return document.querySelector('#live-indicator').dataset.mode;");
    assert_eq!(mode, "live", "updates come from the event stream");
    eprintln!("live page followed 3 new checkpoints in {:?}", t0.elapsed());
    drop(driver);

    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
