//! The `weir` command line.
//!
//! - `weir demo`: the main demo job on the embedded defaults: events into a partitioned Iceberg
//!   table through the exactly-once sink, with compaction and expiry after the commits.
//! - `weir keyed-demo`: a generator feeding a keyed running sum, ending with per-task metrics.
//! - `weir maintain --config maintenance.toml [--once]`: Iceberg table maintenance.
//! - `weir session`, `weir submit`, `weir job-status`: a session runtime with high availability
//!   (leader election, job recovery) and its client.
//! - `weir config`: lists every configuration option with its default, or with the values of a
//!   TOML file (which also validates the file).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use weir::prelude::*;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "An embeddable stream-processing runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which session runtime a client talks to, how it authenticates, and which CA it trusts.
#[derive(Args, Clone)]
struct RuntimeArgs {
    /// `high-availability.*` options to find the leader, as for `weir session`.
    #[arg(short = 'D', long = "ha-option")]
    ha_options: Vec<String>,
    /// The runtime's address (instead of leader retrieval).
    #[arg(long)]
    address: Option<String>,
    /// A file whose first line is the runtime's REST token (rest.authentication.token);
    /// or set WEIR_REST_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// runtime (rest.ssl.*) with a private CA.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

impl RuntimeArgs {
    fn token(&self) -> Result<Option<String>> {
        if let Some(p) = &self.token_file {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the token file {}", p.display()))?;
            return Ok(Some(text.lines().next().unwrap_or("").trim().to_string()));
        }
        Ok(std::env::var("WEIR_REST_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()))
    }

    /// The client of the runtime these arguments name.
    fn client(&self) -> Result<weir::session::SessionClient> {
        use weir::session::SessionClient;
        let token = self.token()?;
        let trusting = |c: SessionClient| -> Result<SessionClient> {
            Ok(match &self.ca_file {
                Some(path) => c.ca_file(path)?,
                None => c,
            })
        };
        if let Some(a) = &self.address {
            return trusting(SessionClient::at(a).token(token));
        }
        let options = ha_options(&self.ha_options)?;
        if options.kind == weir::ha::HaType::None {
            bail!(
                "without high-availability.type (sqlite or postgres) give the runtime's --address"
            );
        }
        trusting(SessionClient::new(weir::ha::HaServices::retrieval(&options)?).token(token))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo job: events into a partitioned Iceberg table (embedded SQLite catalog,
    /// warehouse under --dir) through the exactly-once sink, with compaction and expiry after
    /// the commits; ends with a summary and how to read the table with pyiceberg.
    Demo {
        /// Events to generate.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// Events per second.
        #[arg(long, default_value_t = 25_000.0)]
        rate: f64,
        /// Parallelism of the writers and maintenance workers.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// The demo's directory (its warehouse and checkpoints are replaced).
        #[arg(long, default_value = "weir-demo")]
        dir: PathBuf,
        /// Address of the job's dashboard and REST API (port 0 picks a free one; the URL is
        /// printed as the job starts).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run the keyed demo job: generator -> map -> key_by -> running sum per key -> sink.
    KeyedDemo {
        /// Number of records to generate.
        #[arg(long, default_value_t = 50_000_000)]
        records: u64,
        /// Parallelism of every operator.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// Number of distinct keys.
        #[arg(long, default_value_t = 1024)]
        keys: u64,
        /// Limit the source to this many records per second.
        #[arg(long)]
        rate: Option<f64>,
        /// A TOML configuration file (see `weir config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the final metrics as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks for exploring settings.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Keep Iceberg tables healthy: compaction, snapshot expiry, orphan file cleanup and
    /// manifest rewriting, as a checkpointed weir job (see examples/maintenance.toml).
    Maintain {
        /// The maintenance configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Run every task once, print a summary and exit (non-zero if a task failed).
        #[arg(long)]
        once: bool,
        /// Print each task result as a JSON line (stdout) instead of text.
        #[arg(long)]
        json: bool,
        /// Address of the REST API, metrics and dashboard (port 0 picks a free one; the URL is
        /// printed as it starts).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run a session runtime: a long-lived runtime that runs the jobs of weir's job registry
    /// (word-count, iceberg-ingest) submitted with `weir submit`, with leader election and
    /// job recovery as the high-availability options say. Prints one JSON line per event
    /// (leading, recovered, ended, ...) with its time in ms since the Unix epoch.
    Session {
        /// A `high-availability.*` option as key=value (repeatable), e.g.
        /// -D high-availability.type=sqlite -D high-availability.storageDir=/tmp/ha
        #[arg(short = 'D', long = "ha-option")]
        ha_options: Vec<String>,
        /// A job configuration option as key=value applied to every job (repeatable).
        #[arg(short = 'o', long = "option")]
        options: Vec<String>,
        /// Address of the REST API and dashboard (sets rest.bind-address and rest.port; port 0
        /// picks a free one). Outside loopback it needs a token
        /// (-o rest.authentication.token-file=FILE, or WEIR_REST_TOKEN).
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// This process's name in leader election (default: weir-<pid>).
        #[arg(long)]
        name: Option<String>,
    },
    /// Submit a job to the leading session runtime (found through leader retrieval, or at
    /// --address); prints the job id.
    Submit {
        /// The registered job name (word-count, iceberg-ingest).
        job: String,
        /// A job parameter as key=value (repeatable).
        #[arg(short = 'p', long = "param")]
        params: Vec<String>,
        /// A job configuration option as key=value (repeatable).
        #[arg(short = 'o', long = "option")]
        options: Vec<String>,
        /// An artifact as name=file (repeatable), e.g. input=words.txt
        #[arg(long = "artifact")]
        artifacts: Vec<String>,
        /// Wait until the job ended and print its status.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Cancel a job of a session runtime.
    Cancel {
        /// The job id.
        job_id: String,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// The status of a job of a session runtime.
    JobStatus {
        /// The job id.
        job_id: String,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// List configuration options with their defaults, or the values of a TOML file.
    Config {
        /// A TOML configuration file to validate and show.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Checkpoint durations under full backpressure: generator -> key_by -> stages -> a sink
    /// costing --record-cost per record, checkpoints every --interval for --duration.
    Backpressure(BackpressureArgs),
    /// Round trip of coordinator events (subtask -> coordinator -> subtask) with several
    /// subtasks pinging at once.
    Coordinator(CoordinatorArgs),
    /// Many short jobs (word count) on one session runtime from concurrent clients, with and
    /// without high availability: jobs/s and latency p50/p99.
    ShortJobs(ShortJobsArgs),
    /// Async I/O throughput against Little's law (capacity / latency · parallelism):
    /// generator -> async_io (a tokio timer of --latency per request) -> sink, optionally with
    /// checkpoints every --interval.
    Async(AsyncArgs),
}

/// Arguments of `weir bench backpressure`.
#[derive(Args)]
struct BackpressureArgs {
    /// aligned | unaligned | aligned-timeout=<duration> | at-least-once
    #[arg(long, default_value = "aligned")]
    mode: weir::bench::backpressure::Mode,
    /// Parallelism of every operator.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Stages between key_by and the sink.
    #[arg(long, default_value_t = 3)]
    stages: usize,
    /// Time the sink spends per record.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    record_cost: Duration,
    /// Checkpoint interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to run.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Buffer debloating (taskmanager.network.memory.buffer-debloat.enabled, target 1 s).
    #[arg(long, value_enum, default_value = "off")]
    debloat: OnOff,
    /// Run all five ways side by side (aligned, aligned + debloating, unaligned, unaligned +
    /// debloating, aligned-timeout=100ms), alternating, each for --duration per round; --mode
    /// and --debloat are ignored.
    #[arg(long)]
    compare_modes: bool,
    /// With --compare-modes: how many times each mode runs (alternating).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Print JSON (one object; with --compare-modes one line per mode) instead of a table.
    #[arg(long)]
    json: bool,
    /// Serve the job's dashboard and REST API, and keep the job running after its report
    /// until Ctrl-C (SIGINT) or SIGTERM, so that a person can look at it.
    #[arg(long)]
    ui: bool,
    /// With --ui: where to serve (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Arguments of `weir bench coordinator`.
#[derive(Args)]
struct CoordinatorArgs {
    /// Parallelisms to measure, comma-separated.
    #[arg(long, default_value = "1,2,4,8,16", value_delimiter = ',')]
    subtasks: Vec<usize>,
    /// Round trips per subtask.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `weir bench short-jobs`.
#[derive(Args)]
struct ShortJobsArgs {
    /// Jobs to time (after a warm-up of 2 x clients jobs).
    #[arg(long, default_value_t = 300)]
    jobs: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Lines of input per job.
    #[arg(long, default_value_t = 1000)]
    records: usize,
    /// Parallelism of each job.
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
    /// none | sqlite | postgres
    #[arg(long, default_value = "none")]
    ha: String,
    /// on | off: persist jobs so that a new leader recovers them.
    #[arg(long, default_value = "off")]
    job_recovery: String,
    /// Run a thread per task per job instead of the shared task pool.
    #[arg(long)]
    no_pool: bool,
    /// Run every mode (none, none without pool, sqlite off/on, postgres off/on when a URL
    /// is known) in alternating rounds and report ratios to no-HA.
    #[arg(long)]
    compare: bool,
    /// Rounds of --compare (the median round of each mode is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// PostgreSQL URL for --ha postgres.
    #[arg(long, env = "WEIR_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `weir bench async`.
#[derive(Args)]
struct AsyncArgs {
    /// Bound on requests in flight per subtask.
    #[arg(long, default_value_t = 100)]
    capacity: usize,
    /// Latency of one request.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Parallelism of every operator.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// ordered | unordered
    #[arg(long, default_value = "ordered")]
    order: String,
    /// What stands in for the remote call: precise (a thread answering each call at its
    /// deadline) | tokio-timer (tokio::time::sleep, about 1 ms late)
    #[arg(long, default_value = "precise")]
    service: weir::bench::async_io::Service,
    /// How long to run (the first fifth, at most 2 s, is warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Checkpoint interval (default: no checkpoints).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Barrier mode with --interval: aligned | unaligned | aligned-timeout=<duration> |
    /// at-least-once
    #[arg(long, default_value = "aligned")]
    mode: weir::bench::backpressure::Mode,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            rows,
            rate,
            parallelism,
            dir,
            listen,
        } => iceberg_demo(rows, rate, parallelism, dir, &listen),
        Command::KeyedDemo {
            records,
            parallelism,
            keys,
            rate,
            config,
            json,
        } => demo(records, parallelism, keys, rate, config, json),
        Command::Config { file } => show_config(file),
        Command::Session {
            ha_options,
            options,
            listen,
            name,
        } => session(&ha_options, &options, listen, name),
        Command::Submit {
            job,
            params,
            options,
            artifacts,
            wait,
            runtime,
        } => submit(job, &params, &options, &artifacts, runtime.client()?, wait),
        Command::JobStatus { job_id, runtime } => {
            let client = runtime.client()?;
            println!("{}", serde_json::to_string(&client.status(&job_id)?)?);
            Ok(())
        }
        Command::Cancel { job_id, runtime } => {
            runtime.client()?.cancel(&job_id)?;
            println!("{job_id}");
            Ok(())
        }
        Command::Maintain {
            config,
            once,
            json,
            listen,
        } => maintain(&config, once, json, &listen),
        Command::Bench { which } => match which {
            BenchCommand::Backpressure(args) => bench_backpressure(args),
            BenchCommand::Coordinator(args) => bench_coordinator(args),
            BenchCommand::ShortJobs(args) => bench_short_jobs(args),
            BenchCommand::Async(args) => bench_async(args),
        },
    }
}

/// The job shape of a backpressure bench, for its progress line.
fn describe(s: &weir::bench::backpressure::Settings) -> String {
    format!(
        "parallelism {}, {} stages, {} per record, checkpoint every {}",
        s.parallelism,
        s.stages,
        humantime::format_duration(s.record_cost),
        humantime::format_duration(s.interval)
    )
}

/// `weir bench backpressure`.
fn bench_backpressure(args: BackpressureArgs) -> Result<()> {
    let BackpressureArgs {
        mode,
        parallelism,
        stages,
        record_cost,
        interval,
        duration,
        debloat,
        compare_modes,
        rounds,
        json,
        ui,
        listen,
    } = args;
    if ui && compare_modes {
        bail!("--ui shows one run: leave out --compare-modes");
    }
    if parallelism == 0 || stages == 0 || rounds == 0 {
        bail!("--parallelism, --stages and --rounds must be at least 1");
    }
    if interval.is_zero() || duration.is_zero() {
        bail!("--interval and --duration must be positive");
    }
    let settings = weir::bench::backpressure::Settings {
        mode,
        parallelism,
        stages,
        record_cost,
        interval,
        duration,
        debloat: debloat == OnOff::On,
    };
    if compare_modes {
        use weir::bench::backpressure;
        if !json {
            eprintln!(
                "comparing 5 modes: {}, {} per run, {rounds} round(s) ...",
                describe(&settings),
                humantime::format_duration(duration)
            );
        }
        let reports = backpressure::compare_modes(&settings, rounds, |r| {
            if !json {
                eprintln!(
                    "  {} (debloat {}): {} checkpoints, p50 {:.1} ms",
                    r.mode,
                    if r.debloat { "on" } else { "off" },
                    r.completed,
                    r.p50_ms.unwrap_or(f64::NAN)
                );
            }
        })?;
        if json {
            for r in &reports {
                println!("{}", serde_json::to_string(r)?);
            }
        } else {
            print!("{}", backpressure::table(&reports));
        }
        return Ok(());
    }
    let debloat_text = if settings.debloat { "on" } else { "off" };
    if !json {
        eprintln!(
            "running {mode} (debloat {debloat_text}): {}, for {} ...",
            describe(&settings),
            humantime::format_duration(duration)
        );
    }
    if ui {
        let signal = std::sync::Arc::new(weir::signals::Termination::register()?);
        let s = signal.clone();
        let ui = weir::bench::backpressure::Ui {
            rest: rest_options(&listen)?,
            on_serving: Box::new(|url: &str| eprintln!("dashboard: {url}/")),
            on_report: Box::new(move |report: &weir::bench::backpressure::Report| {
                let _ = print_report(json, report, || report.table());
                eprintln!("the job keeps running for the dashboard: Ctrl-C to stop");
            }),
            until: Box::new(move || s.caught().is_some()),
        };
        weir::bench::backpressure::run_with_ui(&settings, ui)?;
        return Ok(());
    }
    let report = weir::bench::backpressure::run(&settings)?;
    print_report(json, &report, || report.table())
}

/// `weir bench coordinator`.
fn bench_coordinator(args: CoordinatorArgs) -> Result<()> {
    let CoordinatorArgs {
        subtasks,
        round_trips,
        json,
    } = args;
    if subtasks.contains(&0) || round_trips == 0 {
        bail!("--subtasks and --round-trips must be at least 1");
    }
    let rows = weir::bench::coordinator::run(&subtasks, round_trips)?;
    print_report(json, &rows, || weir::bench::coordinator::table(&rows))
}

/// `weir bench short-jobs`.
fn bench_short_jobs(args: ShortJobsArgs) -> Result<()> {
    let ShortJobsArgs {
        jobs,
        clients,
        records,
        parallelism,
        ha,
        job_recovery,
        no_pool,
        compare,
        rounds,
        postgres_url,
        json,
    } = args;
    use weir::bench::short_jobs::{self, Mode};
    use weir::ha::HaType;
    if jobs == 0 || clients == 0 || records == 0 || parallelism == 0 {
        bail!("--jobs, --clients, --records and --parallelism must be at least 1");
    }
    let settings = short_jobs::Settings {
        jobs,
        clients,
        records,
        parallelism,
        postgres_url: postgres_url.clone(),
        dir: std::env::temp_dir(),
    };
    let modes = if compare {
        short_jobs::comparison_modes(postgres_url.is_some())
    } else {
        let ha = match ha.as_str() {
            "none" => HaType::None,
            "sqlite" => HaType::Sqlite,
            "postgres" => HaType::Postgres,
            other => bail!("unknown --ha '{other}': use none, sqlite or postgres"),
        };
        let job_recovery = match job_recovery.as_str() {
            "on" => true,
            "off" => false,
            other => bail!("unknown --job-recovery '{other}': use on or off"),
        };
        vec![Mode {
            ha,
            job_recovery,
            pooled: !no_pool,
        }]
    };
    if !json {
        eprintln!(
                "{jobs} word-count jobs ({records} lines, parallelism {parallelism}) from {clients} clients per mode{} ...",
                if compare { format!(", {rounds} alternating rounds") } else { String::new() }
            );
    }
    let reports = short_jobs::compare(&settings, &modes, if compare { rounds } else { 1 })
        .map_err(anyhow::Error::from_boxed)?;
    if json {
        println!("{}", short_jobs::json(&reports));
    } else {
        print!("{}", short_jobs::table(&reports));
    }
    Ok(())
}

/// `weir bench async`.
fn bench_async(args: AsyncArgs) -> Result<()> {
    let AsyncArgs {
        capacity,
        latency,
        parallelism,
        order,
        service,
        duration,
        interval,
        mode,
        json,
    } = args;
    if capacity == 0 || parallelism == 0 {
        bail!("--capacity and --parallelism must be at least 1");
    }
    if latency.is_zero() || duration.is_zero() || interval.is_some_and(|i| i.is_zero()) {
        bail!("--latency, --duration and --interval must be positive");
    }
    let ordered = match order.as_str() {
        "ordered" => true,
        "unordered" => false,
        other => bail!("unknown --order '{other}': use ordered or unordered"),
    };
    let settings = weir::bench::async_io::Settings {
        service,
        capacity,
        latency,
        parallelism,
        ordered,
        duration,
        interval,
        mode,
    };
    if !json {
        eprintln!(
                "running {order}: capacity {capacity}, latency {}, parallelism {parallelism}, for {}{} ...",
                humantime::format_duration(latency),
                humantime::format_duration(duration),
                interval
                    .map(|i| format!(", {mode} checkpoints every {}", humantime::format_duration(i)))
                    .unwrap_or_default()
            );
    }
    let report = weir::bench::async_io::run(&settings)?;
    print_report(json, &report, || report.table())
}

/// Prints a bench report: one JSON line with `json`, else its table.
fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    table: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", table());
    }
    Ok(())
}

fn load_config(path: Option<PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Config::from_toml_file(&p).with_context(|| format!("loading {}", p.display())),
        None => Ok(Config::default()),
    }
}

fn show_config(file: Option<PathBuf>) -> Result<()> {
    let config = load_config(file)?;
    for option in Config::options() {
        let value = config.get(option.key)?;
        let mark = if value != option.default { "*" } else { " " };
        println!(
            "{mark} {:<62} {:<10} {}",
            option.key, value, option.description
        );
    }
    Ok(())
}

fn demo(
    records: u64,
    parallelism: usize,
    keys: u64,
    rate: Option<f64>,
    config: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    if keys == 0 {
        bail!("--keys must be at least 1");
    }
    if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be a positive number of records per second");
    }
    let env = StreamEnv::with_config(load_config(config)?);
    env.set_parallelism(parallelism);
    let mut generator = Generator::new(|i| i).bounded(records);
    if let Some(r) = rate {
        generator = generator.rate_limited(r);
    }
    let sums = env
        .generate(generator)
        .map(move |x| (x % keys, x))
        .name("Key")
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .name("Running Sum")
        .filter(move |(_, s)| *s >= u64::MAX / 2) // keeps the output tiny: only overflow-prone sums
        .collect();

    let started = Instant::now();
    let handle = env.start()?;
    let bar = ProgressBar::new(records);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !handle.is_finished() {
        let done: u64 = handle
            .metrics()
            .tasks_named("Running Sum")
            .map(|t| t.records_in)
            .sum();
        bar.set_position(done.min(records));
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = handle.join()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string_pretty(&result.metrics)?);
    } else {
        print!("{}", result.metrics.table());
        println!(
            "\n{records} records through a keyed running sum over {keys} keys at parallelism {parallelism}: \
             {secs:.2} s, {:.1} M records/s",
            records as f64 / secs / 1e6
        );
        println!("sums that reached u64::MAX / 2: {}", sums.len());
    }
    Ok(())
}

/// A configuration with the `rest.*` options of a command's `--listen HOST:PORT` (and
/// `WEIR_REST_TOKEN`).
fn rest_config(listen: &str) -> Result<Config> {
    let mut config = Config::default();
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("--listen '{listen}' is not host:port"))?;
    config.set("rest.bind-address", host)?;
    config.set("rest.port", port)?;
    if let Ok(t) = std::env::var("WEIR_REST_TOKEN") {
        config.set("rest.authentication.token", &t)?;
    }
    Ok(config)
}

/// The REST options of a command's `--listen HOST:PORT` (and `WEIR_REST_TOKEN`).
fn rest_options(listen: &str) -> Result<weir::engine::rest::RestOptions> {
    Ok(weir::engine::rest::RestOptions::from_config(
        &rest_config(listen)?,
        0,
    )?)
}

fn maintain(path: &std::path::Path, once: bool, json: bool, listen: &str) -> Result<()> {
    use weir::maintenance::maintain::{run, summary_line, MaintainConfig, TaskResult};
    let signal = std::sync::Arc::new(weir::signals::Termination::register()?);
    let config = MaintainConfig::load(path)?;
    for t in &config.tables {
        let tasks: Vec<&str> = t.tasks().iter().map(|k| k.kind.name()).collect();
        eprintln!("maintaining {}: {}", t.table(), tasks.join(", "));
    }
    eprintln!(
        "catalog {}; checkpoints in {} every {}",
        config.catalog.describe(),
        config.checkpoint_dir.display(),
        humantime::format_duration(config.checkpoint_interval)
    );
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress.set_message("waiting for triggers");
    let p = progress.clone();
    let started = Instant::now();
    let options = run::RunOptions {
        rest: Some(rest_options(listen)?),
        on_serving: Some(Box::new(|url: &str| eprintln!("dashboard: {url}/"))),
        stop: Some({
            let s = signal.clone();
            std::sync::Arc::new(move || s.caught().is_some())
        }),
    };
    let results: Vec<TaskResult> = run::run_with(&config, once, options, move |r| {
        if json {
            // One line per result, as it happens (a killed process has printed what it did).
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            p.println(summary_line(r));
        }
        p.set_message(format!("last: {} on {}", r.task, r.table));
    })
    .map_err(anyhow::Error::from_boxed)?;
    progress.finish_and_clear();
    if let Some(sig) = signal.caught() {
        // Stopped as on a lost leadership: the tasks in flight are cancelled, the checkpoints
        // kept; the next run resumes from the latest.
        let line =
            serde_json::json!({"event": "stopped", "signal": sig, "at_ms": weir::ha::now_ms()});
        if json {
            println!("{line}");
        } else {
            eprintln!(
                "weir maintain: stopped on {sig}; the next run resumes from the latest checkpoint"
            );
        }
        return Ok(());
    }
    if !once {
        return Ok(());
    }
    let failed = results.iter().filter(|r| !r.success).count();
    if json {
        if failed > 0 {
            bail!("{failed} task(s) failed");
        }
        return Ok(());
    }
    println!(
        "summary: {} task run(s) in {:.1} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    for r in &results {
        println!("  {}", summary_line(r));
    }
    if failed > 0 {
        bail!("{failed} task(s) failed");
    }
    Ok(())
}

fn iceberg_demo(
    rows: u64,
    rate: f64,
    parallelism: usize,
    dir: PathBuf,
    listen: &str,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    use weir::demo::{pyiceberg_line, run, DemoProgress, DemoSettings};
    use weir::maintenance::maintain::summary_line;
    if rate.is_nan() || rate <= 0.0 || parallelism == 0 {
        bail!("--rate must be positive and --parallelism at least 1");
    }
    let settings = DemoSettings {
        dir,
        rows,
        rate,
        parallelism,
        rest: Some(rest_options(listen)?),
    };
    eprintln!(
        "weir demo: {rows} events at {rate}/s into demo.events (partitioned by region and day) in {}, \
         checkpoints every second, compaction and expiry after the commits",
        settings.dir.display()
    );
    let progress = std::sync::Arc::new(DemoProgress::default());
    let bar = ProgressBar::new(rows);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (p, b) = (progress.clone(), bar.clone());
    let mut announced = false;
    let ticker = std::thread::spawn(move || loop {
        if let (false, Some(url)) = (announced, p.dashboard.get()) {
            if b.is_hidden() {
                eprintln!("dashboard: {url}");
            } else {
                b.println(format!("dashboard: {url}"));
            }
            announced = true;
        }
        b.set_position(p.rows.load(Ordering::Relaxed));
        b.set_message(format!(
            "| {} commits | {} maintenance runs",
            p.commits.load(Ordering::Relaxed),
            p.maintenance_runs.load(Ordering::Relaxed)
        ));
        if b.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    let summary = run(&settings, progress.clone());
    bar.finish_and_clear();
    let _ = ticker.join();
    let summary = summary.map_err(anyhow::Error::from_boxed)?;
    println!("maintenance:");
    for r in &summary.maintenance {
        println!("  {}", summary_line(r));
    }
    println!(
        "summary: {} rows in {} ({} sink commits, {} snapshots kept) in {:.1} s",
        summary.rows,
        summary.table,
        summary.commits,
        summary.snapshots,
        summary.duration.as_secs_f64()
    );
    println!(
        "live data files: {} when the input ended, {} after the final compaction",
        summary.files_before, summary.files_after
    );
    println!("read it with pyiceberg:\n  {}", pyiceberg_line(&summary));
    Ok(())
}

fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("{what} '{kv}' is not key=value"))
        })
        .collect()
}

fn ha_options(items: &[String]) -> Result<weir::ha::HaOptions> {
    let mut o = weir::ha::HaOptions::default();
    for (k, v) in key_values(items, "HA option")? {
        o.set(&k, &v)?;
    }
    Ok(o)
}

fn session(ha: &[String], options: &[String], listen: String, name: Option<String>) -> Result<()> {
    use std::io::Write as _;
    use weir::session::{SessionEvent, SessionOptions, SessionRuntime};
    let ha = ha_options(ha)?;
    let mut config = rest_config(&listen)?;
    for (k, v) in key_values(options, "option")? {
        config.set(&k, &v)?;
    }
    let rest = weir::engine::rest::RestOptions::from_config(&config, 8081)?;
    if rest.token.is_none() {
        eprintln!(
            "weir session: no REST token: any local user can submit and cancel jobs \
             (set WEIR_REST_TOKEN or -o rest.authentication.token-file=FILE)"
        );
    }
    let print = |e: &SessionEvent| {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        v["at_ms"] = serde_json::json!(weir::ha::now_ms());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let mut opts = SessionOptions {
        ha,
        config,
        rest: Some(rest),
        on_event: Some(std::sync::Arc::new(print)),
        ..Default::default()
    };
    if let Some(n) = name {
        opts.contender = n;
    }
    let contender = opts.contender.clone();
    let runtime = SessionRuntime::start(weir::jobs::registry(), opts)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"event": "started", "contender": contender, "address": runtime.address(), "at_ms": weir::ha::now_ms()})
        );
        let _ = out.flush();
    }
    let signal = weir::signals::Termination::register()?;
    let caught = signal.wait();
    runtime.shutdown();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::json!({"event": "stopped", "signal": caught, "contender": contender, "at_ms": weir::ha::now_ms()})
    );
    let _ = out.flush();
    Ok(())
}

fn submit(
    job: String,
    params: &[String],
    options: &[String],
    artifacts: &[String],
    client: weir::session::SessionClient,
    wait: bool,
) -> Result<()> {
    use weir::session::{JobSubmission, SessionJobStatus};
    let mut sub = JobSubmission::new(&job);
    for (k, v) in key_values(params, "parameter")? {
        sub.parameters.insert(k, v);
    }
    for (k, v) in key_values(options, "option")? {
        sub.config.insert(k, v);
    }
    for (name, path) in key_values(artifacts, "artifact")? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read artifact '{name}' from {path}"))?;
        sub.artifacts.insert(name, text);
    }
    let id = client.submit(&sub)?;
    println!("{id}");
    if wait {
        // During a failover the leader is unknown or unreachable for a while: keep asking.
        let mut failing_since: Option<Instant> = None;
        loop {
            match client.status(&id) {
                Ok(status) => {
                    failing_since = None;
                    if matches!(status, SessionJobStatus::Ended(_)) {
                        println!("{}", serde_json::to_string(&status)?);
                        break;
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(120) {
                        return Err(e.into());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
