//! Graceful termination of long-running commands (`weir session`, `weir maintain`, `weir bench
//! backpressure --ui`): SIGTERM and SIGINT are caught (signal-hook) and turned into a wait that
//! returns, so the command stops its jobs as on a lost leadership and prints a final line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// SIGTERM and SIGINT, caught.
pub struct Termination {
    caught: Arc<AtomicUsize>,
}

impl Termination {
    /// Catches SIGTERM and SIGINT from now on (a second signal of the same kind is caught too:
    /// stopping is never cut short).
    ///
    /// # Errors
    ///
    /// Fails when the handlers cannot be installed.
    pub fn register() -> std::io::Result<Termination> {
        let caught = Arc::new(AtomicUsize::new(0));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register_usize(sig, caught.clone(), sig as usize)?;
        }
        Ok(Termination { caught })
    }

    /// The signal caught so far (`SIGTERM` or `SIGINT`), if any.
    pub fn caught(&self) -> Option<&'static str> {
        match self.caught.load(Ordering::Acquire) {
            0 => None,
            s if s == signal_hook::consts::SIGTERM as usize => Some("SIGTERM"),
            _ => Some("SIGINT"),
        }
    }

    /// Waits for a signal; its name.
    pub fn wait(&self) -> &'static str {
        loop {
            if let Some(s) = self.caught() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
