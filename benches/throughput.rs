//! Throughput of weir against timely dataflow on the same pipeline, measured in one run.
//!
//! Pipeline: a generator of N u64 -> map(x * 2) -> key_by(x mod 1024) -> running sum per key
//! (emitted for every record) -> discarding sink; in timely: the same with an exchange by key and
//! a per-worker hash map (the same `FxHashMap` weir's keyed state uses).
//!
//! Every measured run is a fresh child process (this binary with `--child`), so each reports its
//! own peak RSS and no run warms the next. Runs alternate weir/timely, `--reps` times, and the
//! medians are compared. With `--memory-check`, weir also runs with 4N records and the growth of
//! its peak RSS is reported (bounded channels: it must stay flat).
//!
//! ```text
//! cargo bench --bench throughput [-- --records N --reps R --parallelism 1,2 --memory-check
//!                                      --checkpoint-overhead --debloat-compare --rest-compare]
//! ```
//! `--checkpoint-overhead` also runs weir with 4N records with and without a checkpoint every
//! second; `--debloat-compare` runs weir with buffer debloating on and off, alternating;
//! `--rest-compare` runs weir (4N records) with its REST server on and `/metrics` scraped every
//! second, and without, alternating.
//! Last lines: one JSON object per parallelism.

use std::process::Command;
use std::time::{Duration, Instant};

use weir::prelude::*;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Scrapes `url` every second until `stop`; the number of scrapes.
fn scrape_every_second(url: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut scrapes = 0;
    let mut next = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        if Instant::now() >= next {
            let text = agent
                .get(&url)
                .call()
                .expect("scrape")
                .body_mut()
                .read_to_string()
                .expect("metrics text");
            assert!(
                text.contains("weir_num_records_in"),
                "a scrape without task metrics"
            );
            scrapes += 1;
            next += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    scrapes
}

fn run_weir(
    n: u64,
    p: usize,
    checkpoint_interval: Option<Duration>,
    debloat: bool,
    rest: bool,
) -> (f64, usize) {
    let env = StreamEnv::new();
    env.set_parallelism(p);
    if debloat {
        env.configure(|c| c.buffer_debloat_enabled = true);
    }
    if rest {
        env.configure(|c| c.rest_port = Some(0));
    }
    let dir = std::env::temp_dir().join(format!("weir-bench-ckpt-{}", std::process::id()));
    if let Some(interval) = checkpoint_interval {
        env.configure(|c| {
            c.checkpoint_dir = dir.display().to_string();
            c.checkpoint_interval = interval;
        });
    }
    env.generate_sequence(0..n)
        .map(|x| x * 2)
        .key_by(|x| x % 1024)
        .reduce(|a, b| a + b)
        .discard();
    let start = Instant::now();
    let handle = env.start().expect("weir job failed to start");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = handle.rest_url().map(|u| {
        let (url, stop) = (format!("{u}/metrics"), stop.clone());
        std::thread::spawn(move || scrape_every_second(url, stop))
    });
    let result = handle.join().expect("weir job failed");
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Release);
    if let Some(s) = scraper {
        let scrapes = s.join().expect("scraper");
        assert!(
            scrapes as f64 >= secs.floor(),
            "{scrapes} scrapes in {secs:.1} s"
        );
    }
    let consumed: u64 = result
        .metrics
        .tasks_named("Reduce")
        .map(|t| t.records_in)
        .sum();
    assert_eq!(consumed, n, "weir lost records");
    let _ = std::fs::remove_dir_all(&dir);
    let checkpoints = result
        .checkpoints
        .iter()
        .filter(|c| c.status == weir::engine::checkpoint::CheckpointStatus::Completed)
        .count();
    (secs, checkpoints)
}

fn run_timely(n: u64, p: usize) -> f64 {
    use rustc_hash::FxHashMap;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::channels::pact::{Exchange, Pipeline};
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::ToStream;

    let start = Instant::now();
    timely::execute(timely::Config::process(p), move |worker| {
        let index = worker.index() as u64;
        let peers = worker.peers();
        worker.dataflow::<u64, _, _>(|scope| {
            (index..n)
                .step_by(peers)
                .to_stream(scope)
                .container::<Vec<u64>>()
                .map(|x| x * 2)
                .unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
                    Exchange::new(|x: &u64| x % 1024),
                    "Sum",
                    |_cap, _info| {
                        let mut sums: FxHashMap<u64, u64> = FxHashMap::default();
                        move |input, output| {
                            input.for_each_stamp(|cap, data| {
                                let mut session = output.session(&cap);
                                for x in data.flat_map(|d| d.drain(..)) {
                                    let e = sums.entry(x % 1024).or_insert(0);
                                    *e += x;
                                    session.give(*e);
                                }
                            });
                        }
                    },
                )
                .sink(Pipeline, "Discard", |(input, _frontier)| {
                    input.for_each_stamp(|_cap, data| {
                        for d in data {
                            d.clear();
                        }
                    });
                });
        });
    })
    .expect("timely failed");
    start.elapsed().as_secs_f64()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Measurement {
    system: String,
    parallelism: usize,
    records: u64,
    seconds: f64,
    records_per_sec: f64,
    peak_rss_bytes: u64,
    #[serde(default)]
    checkpoints: usize,
}

fn child(system: &str, n: u64, p: usize) {
    let (seconds, checkpoints) = match system {
        "weir" => run_weir(n, p, None, false, false),
        "weir-debloat" => run_weir(n, p, None, true, false),
        "weir-checkpointed" => run_weir(n, p, Some(Duration::from_secs(1)), false, false),
        "weir-rest" => run_weir(n, p, None, false, true),
        "timely" => (run_timely(n, p), 0),
        other => panic!("unknown system {other}"),
    };
    let m = Measurement {
        system: system.into(),
        parallelism: p,
        records: n,
        seconds,
        records_per_sec: n as f64 / seconds,
        peak_rss_bytes: peak_rss_bytes(),
        checkpoints,
    };
    println!("{}", serde_json::to_string(&m).expect("serialise"));
}

fn measure(system: &str, n: u64, p: usize) -> Measurement {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args([
            "--child",
            system,
            "--records",
            &n.to_string(),
            "--parallelism",
            &p.to_string(),
        ])
        .output()
        .expect("spawn child");
    if !out.status.success() {
        panic!(
            "{system} child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad child output {line:?}: {e}"))
}

/// Runs `first` and `second` alternately `reps` times; returns their median records/s and the
/// measurements of `second`.
fn alternate(
    first: &str,
    second: &str,
    n: u64,
    p: usize,
    reps: usize,
) -> (f64, f64, Vec<Measurement>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..reps {
        a.push(measure(first, n, p));
        b.push(measure(second, n, p));
    }
    let rate = |v: &[Measurement]| median(v.iter().map(|m| m.records_per_sec).collect());
    (rate(&a), rate(&b), b)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let records: u64 = arg("--records")
        .or_else(|| std::env::var("WEIR_BENCH_RECORDS").ok())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .expect("--records takes a number")
        })
        .unwrap_or(50_000_000);
    if let Some(system) = arg("--child") {
        let p = arg("--parallelism")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        child(&system, records, p);
        return;
    }
    let reps: usize = arg("--reps")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let ps: Vec<usize> = arg("--parallelism")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("--parallelism takes a list like 1,2")
        })
        .collect();
    let memory_check = args.iter().any(|a| a == "--memory-check");
    let checkpoint_overhead = args.iter().any(|a| a == "--checkpoint-overhead");
    let debloat_compare = args.iter().any(|a| a == "--debloat-compare");
    let rest_compare = args.iter().any(|a| a == "--rest-compare");

    let mut json = Vec::new();
    println!(
        "{:>3} {:>8} {:>14} {:>14} {:>7} {:>14} {:>14}",
        "p", "reps", "weir rec/s", "timely rec/s", "ratio", "weir RSS", "timely RSS"
    );
    for &p in &ps {
        let mut weir = Vec::new();
        let mut timely = Vec::new();
        for _ in 0..reps {
            weir.push(measure("weir", records, p));
            timely.push(measure("timely", records, p));
        }
        let w = median(weir.iter().map(|m| m.records_per_sec).collect());
        let t = median(timely.iter().map(|m| m.records_per_sec).collect());
        let w_rss = weir.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
        let t_rss = timely.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
        println!(
            "{:>3} {:>8} {:>14.0} {:>14.0} {:>7.2} {:>12.1}MB {:>12.1}MB",
            p,
            reps,
            w,
            t,
            w / t,
            w_rss as f64 / 1e6,
            t_rss as f64 / 1e6
        );
        let mut line = serde_json::json!({
            "bench": "throughput",
            "parallelism": p,
            "records": records,
            "weir_records_per_sec": w.round(),
            "timely_records_per_sec": t.round(),
            "ratio": (w / t * 1000.0).round() / 1000.0,
            "weir_peak_rss_bytes": w_rss,
        });
        if memory_check {
            let big = measure("weir", records * 4, p);
            let growth = big.peak_rss_bytes as f64 / w_rss as f64 - 1.0;
            println!(
                "    weir with {} records: peak RSS {:.1}MB ({:+.1}% vs {} records)",
                records * 4,
                big.peak_rss_bytes as f64 / 1e6,
                growth * 100.0,
                records
            );
            line["weir_peak_rss_bytes_4n"] = big.peak_rss_bytes.into();
            line["rss_growth_4n"] = ((growth * 1000.0).round() / 1000.0).into();
        }
        if checkpoint_overhead {
            // 4N records, so that a run spans several one-second checkpoints.
            let (a, b, checkpointed) = alternate("weir", "weir-checkpointed", records * 4, p, reps);
            let n_ckpt = checkpointed
                .iter()
                .map(|m| m.checkpoints)
                .min()
                .unwrap_or(0);
            println!(
                "    checkpoint every 1 s ({} records, >= {n_ckpt} checkpoints per run): {:.0} vs {:.0} rec/s without: {:+.1}%",
                records * 4,
                b,
                a,
                (b / a - 1.0) * 100.0
            );
            line["weir_checkpointed_records_per_sec"] = b.round().into();
            line["weir_uncheckpointed_records_per_sec"] = a.round().into();
            line["checkpoint_overhead"] = (((1.0 - b / a) * 1000.0).round() / 1000.0).into();
            line["checkpoints_per_run"] = n_ckpt.into();
        }
        if debloat_compare {
            // Buffer debloating where nothing is backpressured: it must cost nothing.
            let (a, b, _) = alternate("weir", "weir-debloat", records, p, reps);
            println!(
                "    buffer debloating on: {:.0} vs {:.0} rec/s off: {:+.1}%",
                b,
                a,
                (b / a - 1.0) * 100.0
            );
            line["weir_debloat_records_per_sec"] = b.round().into();
            line["weir_no_debloat_records_per_sec"] = a.round().into();
            line["debloat_ratio"] = ((b / a * 1000.0).round() / 1000.0).into();
        }
        if rest_compare {
            // The REST server on and Prometheus scraping it every second (4N records, so that
            // a run spans several scrapes).
            let (a, b, _) = alternate("weir", "weir-rest", records * 4, p, reps);
            println!(
                "    REST server on, /metrics scraped every second ({} records): {:.0} vs {:.0} rec/s off: {:+.1}%",
                records * 4,
                b,
                a,
                (b / a - 1.0) * 100.0
            );
            line["weir_rest_records_per_sec"] = b.round().into();
            line["weir_no_rest_records_per_sec"] = a.round().into();
            line["rest_ratio"] = ((b / a * 1000.0).round() / 1000.0).into();
        }
        json.push(line);
    }
    for j in json {
        println!("{j}");
    }
}
