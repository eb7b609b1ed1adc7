//! Running a `weir maintain` configuration as one weir job.
//!
//! Before the job starts, the catalog is opened and every table looked up: an unreachable
//! catalog or an unknown table is an error naming it, and nothing runs. The job checkpoints
//! into the configured directory; a long-running job resumes from its latest checkpoint, a
//! `once` run starts fresh (each task runs once, then the job ends by itself).

use std::sync::Arc;

use weir_engine::StreamEnv;
use weir_operators::DataStreamExt;

use super::config::MaintainConfig;
use super::tasks::TaskResult;
use crate::error::{MaintenanceError, Result};
use crate::runtime::IcebergRuntime;

/// Checks that the catalog answers and every configured table exists.
pub fn check_tables(config: &MaintainConfig) -> Result<()> {
    let rt = IcebergRuntime::new(1)?;
    rt.block_on(async {
        let catalog = config.catalog.open().await?;
        for t in &config.tables {
            let ident = t.table();
            let exists =
                catalog
                    .table_exists(ident)
                    .await
                    .map_err(|e| MaintenanceError::Catalog {
                        catalog: config.catalog.describe(),
                        message: e.to_string(),
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
pub fn run(
    config: &MaintainConfig,
    once: bool,
    on_result: impl Fn(&TaskResult) + Send + Sync + 'static,
) -> std::result::Result<Vec<TaskResult>, Box<dyn std::error::Error + Send + Sync>> {
    check_tables(config)?;
    let env = StreamEnv::new();
    let (dir, interval) = (config.checkpoint_dir.clone(), config.checkpoint_interval);
    env.configure(|c| {
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = interval;
        if !once {
            c.restore_path = "latest".into();
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
    let seen = all
        .map(move |r: TaskResult| {
            on_result(&r);
            r
        })
        .set_parallelism(1);
    if once {
        let results = seen.collect();
        env.execute()?;
        Ok(results.take())
    } else {
        seen.discard();
        env.execute()?;
        Ok(Vec::new())
    }
}
