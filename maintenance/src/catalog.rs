//! Opening catalogs: the SQL catalog (SQLite — the embedded default — or PostgreSQL), the REST
//! catalog client, and the in-memory catalog (unit tests only).
//!
//! The SQL catalog keeps tables in `iceberg_tables(catalog_name, table_namespace, table_name,
//! metadata_location, previous_metadata_location, iceberg_type)`, the same schema pyiceberg
//! (≥ 0.12) uses, so both see the same tables when they use the same catalog name and
//! database. A commit is a compare-and-swap on `metadata_location`. A REST catalog commits on
//! the server (requirements checked there; a lost race is HTTP 409).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::io::LocalFsStorageFactory;
use iceberg::memory::MemoryCatalogBuilder;
use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{
    RestCatalogBuilder, REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_sql::SqlCatalogBuilder;

use crate::error::{MaintenanceError, Result};

/// The kind of catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// The SQL catalog in a SQLite database file (created if missing).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// The SQL catalog in PostgreSQL.
    Postgres {
        /// A `postgres://user:password@host/db` URL.
        url: String,
    },
    /// A REST catalog (the Iceberg REST protocol): the server owns the commits. Data and
    /// metadata files are reached through the locations the server hands out (local paths
    /// here: object-store credentials vending is not supported yet).
    Rest {
        /// The server's base URL (`http://host:port`; requests go to `{uri}/v1/...`).
        uri: String,
    },
    /// An in-memory catalog: tables live as long as the process (unit tests only).
    Memory,
}

/// Where a catalog is and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// The catalog's name (tables are keyed by it in a SQL catalog: use the same name as the
    /// other engines that share the tables).
    pub name: String,
    /// The kind of catalog.
    pub kind: CatalogKind,
    /// The warehouse directory: new tables go below it.
    pub warehouse: PathBuf,
}

/// The embedded default: catalog `weir` in `./warehouse/catalog.db`, warehouse `./warehouse`.
impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig::embedded("warehouse")
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

impl CatalogConfig {
    /// The embedded catalog `weir` in `dir/catalog.db`, with `dir` as the warehouse.
    pub fn embedded(dir: impl AsRef<Path>) -> Self {
        let dir = absolute(dir.as_ref());
        CatalogConfig {
            name: "weir".into(),
            kind: CatalogKind::Sqlite {
                path: dir.join("catalog.db"),
            },
            warehouse: dir,
        }
    }

    /// Uses another catalog name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A description for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            CatalogKind::Sqlite { path } => format!("{} (sqlite {})", self.name, path.display()),
            CatalogKind::Postgres { url } => {
                // Never print a password.
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 3], &url[a..]),
                    _ => url.clone(),
                };
                format!("{} (postgres {shown})", self.name)
            }
            CatalogKind::Rest { uri } => format!("{} (rest {uri})", self.name),
            CatalogKind::Memory => format!("{} (memory)", self.name),
        }
    }

    /// Opens the catalog (must run inside a tokio runtime, e.g. in
    /// [`IcebergRuntime::block_on`](crate::IcebergRuntime::block_on)). Creates the warehouse
    /// directory and a missing SQLite database.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Io`] when the warehouse directory or the SQLite database's
    /// directory cannot be created, and [`MaintenanceError::Catalog`] when the catalog cannot
    /// be opened or (PostgreSQL, REST) does not answer.
    pub async fn open(&self) -> Result<Arc<dyn Catalog>> {
        let err = |message: &str, e: iceberg::Error| {
            MaintenanceError::catalog(self.describe(), message, e)
        };
        std::fs::create_dir_all(&self.warehouse).map_err(|e| {
            MaintenanceError::io(
                self.warehouse.display(),
                "cannot create the warehouse directory",
                e,
            )
        })?;
        let warehouse = format!("file://{}", self.warehouse.display());
        let (uri, bind) = match &self.kind {
            CatalogKind::Sqlite { path } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        MaintenanceError::io(
                            parent.display(),
                            "cannot create the catalog's directory",
                            e,
                        )
                    })?;
                }
                (format!("sqlite://{}?mode=rwc", path.display()), "QMark")
            }
            CatalogKind::Postgres { url } => {
                // The catalog's pool waits 30 s for a connection; find out sooner.
                sqlx::any::install_default_drivers();
                let probe = sqlx::any::AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect(url)
                    .await
                    .map_err(|e| {
                        MaintenanceError::catalog(
                            self.describe(),
                            "cannot connect to PostgreSQL",
                            e,
                        )
                    })?;
                probe.close().await;
                (url.clone(), "DollarNumeric")
            }
            CatalogKind::Rest { uri } => {
                let catalog = RestCatalogBuilder::default()
                    .with_storage_factory(Arc::new(LocalFsStorageFactory))
                    .load(
                        &self.name,
                        HashMap::from([
                            (REST_CATALOG_PROP_URI.to_string(), uri.clone()),
                            (REST_CATALOG_PROP_WAREHOUSE.to_string(), warehouse),
                        ]),
                    )
                    .await
                    .map_err(|e| err("cannot set up the REST catalog client", e))?;
                // The client connects lazily: ask the server now, so an unreachable catalog
                // is reported here, by name.
                catalog
                    .list_namespaces(None)
                    .await
                    .map_err(|e| err("the REST catalog does not answer", e))?;
                return Ok(Arc::new(catalog));
            }
            CatalogKind::Memory => {
                let catalog = MemoryCatalogBuilder::default()
                    .with_storage_factory(Arc::new(LocalFsStorageFactory))
                    .load(
                        &self.name,
                        HashMap::from([("warehouse".to_string(), warehouse)]),
                    )
                    .await
                    .map_err(|e| err("cannot create the in-memory catalog", e))?;
                return Ok(Arc::new(catalog));
            }
        };
        let props = HashMap::from([
            ("uri".to_string(), uri),
            ("warehouse".to_string(), warehouse),
            ("sql_bind_style".to_string(), bind.to_string()),
        ]);
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(LocalFsStorageFactory))
            .load(&self.name, props)
            .await
            .map_err(|e| err("cannot open the SQL catalog", e))?;
        Ok(Arc::new(catalog))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        let c = CatalogConfig {
            name: "weir".into(),
            kind: CatalogKind::Postgres {
                url: "postgres://weir:secret@localhost/db".into(),
            },
            warehouse: "/tmp/w".into(),
        };
        let d = c.describe();
        assert!(!d.contains("secret") && d.contains("@localhost/db"), "{d}");
    }

    #[test]
    fn the_default_is_the_embedded_catalog() {
        let c = CatalogConfig::default();
        assert_eq!(c.name, "weir");
        assert!(c.warehouse.ends_with("warehouse"));
        assert!(
            matches!(&c.kind, CatalogKind::Sqlite { path } if path.ends_with("warehouse/catalog.db"))
        );
    }
}
