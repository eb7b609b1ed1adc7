//! The runtime the async Iceberg API runs on.

use std::future::Future;

use crate::error::{MaintenanceError, Result};

/// The tokio runtime Iceberg's async API runs on. weir's operators run on their own task
/// threads (not in async code); they call Iceberg through [`IcebergRuntime::block_on`].
pub struct IcebergRuntime {
    runtime: tokio::runtime::Runtime,
}

impl IcebergRuntime {
    /// A runtime with `threads` worker threads.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Internal`] when the runtime cannot be built (e.g. no
    /// thread can be spawned).
    pub fn new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("weir-iceberg")
            .enable_all()
            .build()
            .map_err(|e| {
                MaintenanceError::Internal(format!("cannot start a tokio runtime: {e}"))
            })?;
        Ok(IcebergRuntime { runtime })
    }

    /// Runs `f` to completion on this runtime, from a thread outside it.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}
