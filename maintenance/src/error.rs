//! The crate's error type: what went wrong with a catalog, a table or its files.

/// An error of table access or maintenance.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The catalog could not be opened or answered with an error.
    #[error("catalog '{catalog}': {message}")]
    Catalog {
        /// The catalog's name or location.
        catalog: String,
        /// What went wrong.
        message: String,
    },
    /// An operation on a table failed.
    #[error("table '{table}': {message}")]
    Table {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
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
        /// What went wrong.
        message: String,
    },
    /// A configuration is wrong (the message names the key).
    #[error("configuration: {0}")]
    Config(String),
    /// An error inside weir (a bug), not caused by the input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The crate's result type.
pub type Result<T, E = MaintenanceError> = std::result::Result<T, E>;
