//! Listing the files under a table's location, for orphan detection: a file there that no
//! snapshot (nor any metadata file) references, and older than a minimum age, is an orphan.
//!
//! Listing sits behind the [`LocationLister`] trait so that object stores can be added; the
//! local filesystem (`file://` locations and plain paths) is implemented here.

use std::path::Path;
use std::time::SystemTime;

use crate::error::{MaintenanceError, Result};

/// One file under a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Its location, in the form table metadata uses (`file:///...` for local files).
    pub location: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified.
    pub modified: SystemTime,
}

/// Lists every file below a location, recursively.
pub trait LocationLister: Send + Sync {
    /// The files below `location`.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Io`] when the location, or a directory below it, cannot be
    /// listed (for [`LocalLister`], a location that does not exist has no files).
    fn list(&self, location: &str) -> Result<Vec<ListedFile>>;
}

/// Lists local directories (`file://` locations or plain paths).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalLister;

impl LocationLister for LocalLister {
    fn list(&self, location: &str) -> Result<Vec<ListedFile>> {
        let (prefix, path) = match location.strip_prefix("file://") {
            Some(p) => ("file://", p),
            None => ("", location),
        };
        let mut out = Vec::new();
        walk(Path::new(path), prefix, &mut out)?;
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<ListedFile>) -> Result<()> {
    let io = |e: std::io::Error| MaintenanceError::io(dir.display(), "cannot list", e);
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        let path = entry.path();
        if meta.is_dir() {
            walk(&path, prefix, out)?;
        } else {
            out.push(ListedFile {
                location: format!("{prefix}{}", path.display()),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_recursively_in_metadata_form() {
        let dir = std::env::temp_dir().join(format!("weir-list-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data/a=1")).unwrap();
        std::fs::write(dir.join("data/a=1/f.parquet"), b"xyz").unwrap();
        std::fs::write(dir.join("top.json"), b"{}").unwrap();
        let files = LocalLister
            .list(&format!("file://{}", dir.display()))
            .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].starts_with("file://") && names[0].ends_with("data/a=1/f.parquet"));
        assert_eq!(files[0].size, 3);
        assert!(LocalLister.list("/does/not/exist").unwrap().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
