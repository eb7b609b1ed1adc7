//! # weir-maintenance: Apache Iceberg tables for weir
//!
//! Table access for weir jobs and, built on it, table maintenance as operator topologies
//! (monitor, trigger manager, lock, rewrite/expire/orphans/manifests tasks). This crate owns:
//! - [`catalog`]: opening catalogs — the SQL catalog on SQLite (the embedded default,
//!   `./warehouse/catalog.db` with the warehouse `./warehouse`) or PostgreSQL, and the
//!   in-memory catalog for unit tests;
//! - [`table_io`]: appending Arrow batches to a table as one snapshot (with summary
//!   properties) and reading a table's rows back;
//! - [`table_writer`]: writing batches into a table's data files, partitioned by its spec and
//!   rolled at a target file size;
//! - [`sink`]: the exactly-once Iceberg sink (writers, one committer, post-commit events);
//! - [`replace`]: the REPLACE snapshot (compaction commit) iceberg-rust cannot make;
//! - [`row_deletes`]: row-level deletes by position (merge-on-read delete files);
//! - [`rewrite`]: rewrite groups (read a group's files, write them at the target size, one
//!   REPLACE per group; conflicting groups skipped);
//! - [`expire`]: expiring snapshots and deleting exactly the files no snapshot reaches any
//!   more; [`location`]: listing a table's location (for orphan detection), behind a trait;
//! - [`orphans`]: deleting orphan files (unreferenced and older than a minimum age) below a
//!   table's location;
//! - [`manifests`]: rewriting manifests (merging the current snapshot's small data manifests
//!   in one REPLACE snapshot);
//! - [`maintain`]: table maintenance as operator topologies (monitor, trigger manager, lock,
//!   tasks);
//! - [`IcebergRuntime`]: the tokio runtime Iceberg's async API runs on, so that weir's
//!   operators (which run on their task threads) can call it.
//!
//! Tables are shared with other engines: everything written here is plain Iceberg (format v2
//! metadata, Parquet data files) that pyiceberg reads, and tables pyiceberg made in the same
//! SQLite catalog are read and written here.

pub mod catalog;
pub mod error;
pub mod expire;
pub mod location;
pub mod maintain;
pub mod manifests;
pub mod orphans;
pub mod replace;
pub mod rewrite;
pub mod row_deletes;
pub mod runtime;
pub mod sink;
pub mod table_io;
pub mod table_writer;

pub use catalog::{CatalogConfig, CatalogKind};
pub use error::{MaintenanceError, Result};
pub use runtime::IcebergRuntime;

/// The Iceberg crate (iceberg-rust) this crate builds on, for its schema and table types.
pub use iceberg;
