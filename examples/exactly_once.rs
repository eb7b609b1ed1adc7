//! Exactly-once output across crashes.
//!
//! A sequence of `--records` numbers (one source subtask, rate-limited) → key_by(x mod 100) →
//! keyed running sum → transactional file sink (two-phase commit on checkpoints) in `--out`,
//! with a checkpoint every 200 ms in `--checkpoint-dir`. Every start restores the latest
//! checkpoint there, if any: kill the process at any moment (SIGKILL included), start it again
//! with the same arguments, and the committed output ends up exactly as if it never crashed.
//!
//! ```text
//! cargo run --release --example exactly_once -- --records 200000 --out /tmp/out --checkpoint-dir /tmp/chk
//! cat /tmp/out/part-* | sort | md5sum
//! ```
//! Options: `--mode aligned|unaligned|aligned-timeout=<d>|at-least-once` (default aligned),
//! `--rate <records/s>` (default 100000), `--parallelism <p>` of the sum and the sink (default 2).

use std::time::Duration;

use weir::bench::backpressure::Mode;
use weir::engine::CheckpointingMode;
use weir::operators::{FileTransactions, TwoPhaseCommit};
use weir::prelude::*;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let records: u64 = arg(&args, "--records")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let out = arg(&args, "--out").ok_or("--out DIR is required")?;
    let checkpoints = arg(&args, "--checkpoint-dir").ok_or("--checkpoint-dir DIR is required")?;
    let mode: Mode = arg(&args, "--mode")
        .unwrap_or_else(|| "aligned".into())
        .parse()?;
    let rate: f64 = arg(&args, "--rate")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000.0);
    let parallelism: usize = arg(&args, "--parallelism")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2);

    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = checkpoints.clone();
        c.checkpoint_interval = Duration::from_millis(200);
        c.restore_path = "latest".into();
        c.buffer_timeout = Duration::from_millis(10);
        match mode {
            Mode::Aligned => {}
            Mode::Unaligned => c.unaligned = true,
            Mode::AlignedTimeout(t) => {
                c.unaligned = true;
                c.aligned_checkpoint_timeout = t;
            }
            Mode::AtLeastOnce => c.checkpointing_mode = CheckpointingMode::AtLeastOnce,
        }
    });
    let out_dir = out.clone();
    env.generate(Generator::new(|i| i).bounded(records).rate_limited(rate))
        .set_parallelism(1)
        .uid("numbers")
        .map(|x| (x % 100, x))
        .uid("pairs")
        .set_parallelism(1)
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .uid("running-sums")
        .set_parallelism(parallelism)
        .sink("Files", move |_| {
            TwoPhaseCommit::new(FileTransactions::new(out_dir.clone(), |r: &(u64, u64)| {
                format!("{},{}", r.0, r.1)
            }))
        })
        .uid("files")
        .set_parallelism(parallelism);
    let handle = env.start()?;
    if let Some(c) = handle.restored_from() {
        eprintln!(
            "resumed from checkpoint {} ({})",
            c.metadata.checkpoint_id, c.location
        );
    }
    let result = handle.join()?;
    let completed = result
        .checkpoints
        .iter()
        .filter(|c| c.status == weir::engine::checkpoint::CheckpointStatus::Completed)
        .count();
    println!(
        "done: {records} records, {completed} checkpoints completed in this run, output in {out}"
    );
    Ok(())
}
