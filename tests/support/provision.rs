//! Runs one of the repository's provisioning scripts (`.ci/pyiceberg-venv.sh`,
//! `.ci/postgres.sh`) for a test and returns the one line it prints. Shared by the integration
//! tests and the unit tests of the crates that need a real pyiceberg or PostgreSQL (included
//! with `#[path]`, so there is one copy).

use std::path::Path;

/// Runs `script` (a path relative to the repository root `root`); an error says `what` failed,
/// with the script's error output.
pub fn provision(root: &Path, script: &str, what: &str) -> Result<String, String> {
    let path = root.join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
