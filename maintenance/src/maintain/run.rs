//! Running a `weir maintain` configuration as one weir job.
//!
//! Before the job starts, the catalog is opened and every table looked up: an unreachable
//! catalog or an unknown table is an error naming it, and nothing runs. The job checkpoints
//! into the configured directory; a long-running job resumes from its latest checkpoint, a
//! `once` run starts fresh (each task runs once, then the job ends by itself).

use std::sync::Arc;
use std::time::Duration;

use weir_engine::rest::RestOptions;
use weir_engine::StreamEnv;
use weir_operators::DataStreamExt;

use super::board::MaintenanceBoard;
use super::config::MaintainConfig;
use super::tasks::TaskResult;
use crate::error::{MaintenanceError, Result};
use crate::runtime::IcebergRuntime;

/// Checks that the catalog answers and every configured table exists.
///
/// # Errors
///
/// Returns the errors of [`CatalogConfig::open`](crate::CatalogConfig::open),
/// [`MaintenanceError::Catalog`] when the catalog cannot say whether a table exists, and
/// [`MaintenanceError::Config`] naming the first table that does not exist.
pub fn check_tables(config: &MaintainConfig) -> Result<()> {
    let rt = IcebergRuntime::new(1)?;
    rt.block_on(async {
        let catalog = config.catalog.open().await?;
        for t in &config.tables {
            let ident = t.table();
            let exists = catalog.table_exists(ident).await.map_err(|e| {
                MaintenanceError::catalog(
                    config.catalog.describe(),
                    format!("cannot check whether table '{ident}' exists"),
                    e,
                )
            })?;
            if !exists {
                return Err(MaintenanceError::Config(format!(
                    "table '{ident}' does not exist in catalog {}",
                    config.catalog.describe()
                )));
            }
        }
        Ok(())
    })
}

/// Runs the maintenance job of `config`; `on_result` sees every task result as it arrives.
/// With `once`, returns the results when every task of every table ran once; otherwise runs
/// until the job fails or is cancelled.
///
/// # Errors
///
/// Returns (boxed) the errors of [`check_tables`], [`MaintenanceError::Io`] when a `once`
/// run cannot empty its checkpoint directory, the [`MaintenanceError`] of building a table's
/// topology, and the engine's error when the job cannot start or fails (a failed task is a
/// result with `success: false`, not an error).
pub fn run(
    config: &MaintainConfig,
    once: bool,
    on_result: impl Fn(&TaskResult) + Send + Sync + 'static,
) -> std::result::Result<Vec<TaskResult>, Box<dyn std::error::Error + Send + Sync>> {
    run_with(config, once, RunOptions::default(), on_result)
}

/// Called once with the URL the job's REST server serves at.
pub type OnServing = Box<dyn FnOnce(&str) + Send>;

/// How [`run_with`] serves and stops the job.
#[derive(Default)]
pub struct RunOptions {
    /// Serve the REST API, metrics and dashboard (with the maintenance board) here.
    pub rest: Option<RestOptions>,
    /// Called with the server's URL once it serves.
    pub on_serving: Option<OnServing>,
    /// Polled while the job runs: true stops it (cancelled, its checkpoints kept, as on a
    /// lost leadership: the next run resumes from the latest).
    pub stop: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// [`run`], with a REST server and a way to stop.
///
/// # Errors
///
/// The errors of [`run`], and the engine's [`RestError`](weir_engine::error::RestError) when
/// the server cannot start.
pub fn run_with(
    config: &MaintainConfig,
    once: bool,
    options: RunOptions,
    on_result: impl Fn(&TaskResult) + Send + Sync + 'static,
) -> std::result::Result<Vec<TaskResult>, Box<dyn std::error::Error + Send + Sync>> {
    check_tables(config)?;
    let env = StreamEnv::new();
    let interval = config.checkpoint_interval;
    let dir = if once {
        // A once run restores only its own checkpoints (after a failure), never those of the
        // long-running job or of an earlier once run.
        let d = config.checkpoint_dir.join("once");
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| {
                MaintenanceError::io(d.display(), "cannot empty the once run's checkpoints", e)
            })?;
        }
        d
    } else {
        config.checkpoint_dir.clone()
    };
    env.configure(|c| {
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = interval;
        c.restore_path = "latest".into();
        // A long rewrite may hold a barrier past the checkpoint timeout: that checkpoint is
        // lost, not the job.
        c.tolerable_failed_checkpoints = 10;
        if once {
            // A persistent failure (catalog down, table dropped) ends a once run.
            c.restart_strategy = weir_engine::RestartStrategyKind::FixedDelay;
            c.restart_fixed_delay_attempts = 3;
            c.restart_fixed_delay = std::time::Duration::from_secs(1);
        }
    });
    let mut streams = Vec::new();
    for t in &config.tables {
        streams.push(t.build(&env, once)?);
    }
    let first = streams.remove(0);
    let all = if streams.is_empty() {
        first
    } else {
        first.union(&streams)
    };
    let on_result = Arc::new(on_result);
    let board = MaintenanceBoard::new();
    let b2 = board.clone();
    let seen = all
        .map(move |r: TaskResult| {
            b2.record(&r);
            on_result(&r);
            r
        })
        .set_parallelism(1);
    let results = if once {
        Some(seen.collect())
    } else {
        seen.discard();
        None
    };
    let handle = env.start()?;
    let _server = match options.rest {
        Some(rest) => {
            let server = board.serve(rest, &handle)?;
            if let Some(f) = options.on_serving {
                f(&server.url());
            }
            Some(server)
        }
        None => None,
    };
    while !handle.is_finished() {
        if options.stop.as_ref().is_some_and(|s| s()) {
            handle.cancel();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.join()?;
    Ok(results.map(|r| r.take()).unwrap_or_default())
}
