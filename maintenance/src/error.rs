//! The crate's error type: what went wrong with a catalog, a table or its files.
//!
//! An error's message describes its own level: which catalog, table or file, and what could
//! not be done there. The error that caused it (from Iceberg, the filesystem, the SQL
//! database, Parquet or Arrow), when there is one, is its
//! [`source`](std::error::Error::source) and is not repeated in the message: print the whole
//! chain to show both (e.g. anyhow's `{:#}`).

use std::error::Error;
use std::fmt::Display;

/// An error of table access or maintenance.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The catalog could not be opened or answered with an error.
    #[error("catalog '{catalog}': {message}")]
    Catalog {
        /// The catalog's name or location.
        catalog: String,
        /// What went wrong (what could not be done).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    },
    /// An operation on a table failed.
    #[error("table '{table}': {message}")]
    Table {
        /// The table.
        table: String,
        /// What went wrong (what could not be done).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    },
    /// A batch does not match the table's schema (nothing was written).
    #[error("table '{table}': the batch does not match the table schema: {message}")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// The difference.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong (what could not be done).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    },
    /// A configuration is wrong (the message names the key).
    #[error("configuration: {0}")]
    Config(String),
    /// An error inside weir (a bug), not caused by the input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl MaintenanceError {
    /// A [`Catalog`](Self::Catalog) error: `message` (what could not be done) caused by
    /// `source`.
    pub(crate) fn catalog(
        catalog: impl Display,
        message: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        MaintenanceError::Catalog {
            catalog: catalog.to_string(),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`Catalog`](Self::Catalog) error with no underlying error.
    pub(crate) fn catalog_msg(catalog: impl Display, message: impl Into<String>) -> Self {
        MaintenanceError::Catalog {
            catalog: catalog.to_string(),
            message: message.into(),
            source: None,
        }
    }

    /// A [`Table`](Self::Table) error: `message` (what could not be done) caused by `source`.
    pub(crate) fn table(
        table: impl Display,
        message: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        MaintenanceError::Table {
            table: table.to_string(),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`Table`](Self::Table) error with no underlying error.
    pub(crate) fn table_msg(table: impl Display, message: impl Into<String>) -> Self {
        MaintenanceError::Table {
            table: table.to_string(),
            message: message.into(),
            source: None,
        }
    }

    /// An [`Io`](Self::Io) error: `message` (what could not be done) caused by `source`.
    pub(crate) fn io(
        path: impl Display,
        message: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        MaintenanceError::Io {
            path: path.to_string(),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Io`](Self::Io) error with no underlying error.
    pub(crate) fn io_msg(path: impl Display, message: impl Into<String>) -> Self {
        MaintenanceError::Io {
            path: path.to_string(),
            message: message.into(),
            source: None,
        }
    }
}

pub(crate) use weir_engine::error::report;

/// `e` as an error for the engine (an operator's, source's or coordinator's error): its
/// [`report`], since the engine shows a user error by its `Display` alone.
pub(crate) fn user<E: Error + 'static>(e: E) -> Box<dyn Error + Send + Sync + 'static> {
    report(&e).into()
}

/// The crate's result type.
pub type Result<T, E = MaintenanceError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_source_not_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = MaintenanceError::io("/w/c.toml", "cannot read the configuration", io);
        assert_eq!(e.to_string(), "/w/c.toml: cannot read the configuration");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("no such file")
        );
        assert_eq!(
            report(&e),
            "/w/c.toml: cannot read the configuration: no such file"
        );
        let plain = MaintenanceError::table_msg("db.t", "the table has no snapshot");
        assert!(plain.source().is_none());
        assert_eq!(report(&plain), "table 'db.t': the table has no snapshot");
    }

    #[test]
    fn a_report_shows_every_level_once() {
        let inner = std::io::Error::other("connection refused");
        let iceberg = iceberg::Error::new(iceberg::ErrorKind::Unexpected, "cannot reach it")
            .with_source(inner);
        let shown = iceberg.to_string();
        let e = MaintenanceError::table("db.t", "cannot load the table", iceberg);
        let r = report(&e);
        assert_eq!(r, format!("table 'db.t': cannot load the table: {shown}"));
        assert_eq!(r.matches("connection refused").count(), 1, "{r}");
    }
}
