//! Integration tests of weir: one binary, one module per feature.

mod async_io;
mod backpressure;
mod checkpoint;
mod common;
mod config;
mod coordination;
mod crash;
mod dashboard;
mod ha_failover;
mod iceberg_catalogs;
mod iceberg_interop;
mod iceberg_sink;
mod keyed;
mod lifecycle;
mod maintenance;
mod maintenance_files;
mod partitioning;
mod property;
mod rest;
mod rest_session;
mod restart;
mod session;
mod time;
mod tolerable;
mod validation;
