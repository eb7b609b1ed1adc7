//! The catalogs besides the embedded SQLite one: the SQL catalog on a real PostgreSQL server
//! (started by `.ci/postgres.sh`) and the REST catalog client against a real REST server
//! (`tests/support/rest_catalog.py`, pyiceberg's SQL catalog behind the REST protocol). In each,
//! weir and pyiceberg share one table: both append, weir compacts with a REPLACE commit while
//! pyiceberg appends, and pyiceberg reads every row.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use arrow_array::RecordBatch;
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::replace::{commit_replace, live_data_files, ReplaceError};
use weir::maintenance::{table_io, CatalogConfig, CatalogKind, IcebergRuntime};

use crate::iceberg_interop::{ids, pyiceberg_with, python, temp_dir};

/// The test PostgreSQL server's URL: `$WEIR_POSTGRES_URL`, else the one `.ci/postgres.sh` starts
/// (once; the script serialises concurrent callers). Asked once per test binary.
pub(crate) fn postgres_url() -> String {
    crate::common::provisioned(
        "WEIR_POSTGRES_URL",
        ".ci/postgres.sh",
        "starting PostgreSQL",
    )
}

/// The shared scenario on `config` (python `py_catalog` opens the same catalog as `cat`).
fn share_and_compact(config: &CatalogConfig, py_catalog: &str) {
    let py = |code: &str| pyiceberg_with(py_catalog, code);
    let rt = IcebergRuntime::new(2).unwrap();
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "shared".into());
    let batch = |r: std::ops::Range<i64>| -> RecordBatch { crate::iceberg_interop::batch_of(r) };
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        table_io::create_table_if_missing(&*catalog, &ident, crate::iceberg_interop::schema())
            .await
            .unwrap();
        for r in [0..100, 100..200] {
            table_io::append(&*catalog, &ident, &[batch(r)], Default::default())
                .await
                .unwrap()
                .unwrap();
        }
    });
    let append = |from: i64, to: i64| {
        py(&format!(
            "import pyarrow as pa\n\
             t = cat.load_table('db.shared')\n\
             t.append(pa.table({{'id': pa.array(range({from}, {to}), pa.int64()), 'name': ['py']*{n}}}, schema=t.schema().as_arrow()))",
            n = to - from
        ))
    };
    append(200, 250);
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let rows = table_io::read_all(&*catalog, &ident).await.unwrap();
        assert!(
            ids(&rows) == (0..250).collect::<Vec<_>>(),
            "weir reads pyiceberg's rows"
        );
        // Compaction: plan on the 3 live files; pyiceberg appends before the commit.
        let table = catalog.load_table(&ident).await.unwrap();
        let (seq, files) = live_data_files(&table).await.unwrap();
        assert_eq!(files.len(), 3);
        let removed: BTreeSet<String> = files.iter().map(|f| f.file_path().to_string()).collect();
        let added = table_io::write_data_files(&table, &rows).await.unwrap();
        append(250, 260);
        commit_replace(config, &*catalog, &ident, &removed, added.clone(), seq, 5)
            .await
            .unwrap();
        let again = commit_replace(config, &*catalog, &ident, &removed, added, seq, 5).await;
        assert!(
            matches!(again, Err(ReplaceError::Conflict { .. })),
            "{again:?}"
        );
    });
    let out = py("t = cat.load_table('db.shared')\n\
         a = t.scan().to_arrow()\n\
         files = [f.file.file_path for f in t.scan().plan_files()]\n\
         print(json.dumps({'ids': sorted(a.column('id').to_pylist()), 'files': len(files), 'operation': t.current_snapshot().summary.operation.value}))");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert!(
        got == (0..260).collect::<Vec<_>>(),
        "rows lost or duplicated"
    );
    assert_eq!(v["files"], 2, "the compacted file and the late append");
    assert_eq!(v["operation"], "replace");
}

/// The SQL catalog on PostgreSQL, shared with pyiceberg (its SQL catalog on the same database).
#[test]
fn the_postgres_catalog_is_shared_with_pyiceberg() {
    let url = postgres_url();
    let dir = temp_dir("postgres");
    // A catalog name of its own: the database outlives the test.
    let name = format!(
        "weir_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let config = CatalogConfig {
        name: name.clone(),
        kind: CatalogKind::Postgres { url: url.clone() },
        warehouse: dir.clone(),
    };
    let py_url = url.replacen("postgres://", "postgresql+psycopg2://", 1);
    share_and_compact(
        &config,
        &format!(
            "from pyiceberg.catalog.sql import SqlCatalog\ncat = SqlCatalog('{name}', uri='{py_url}', warehouse='file://{}')",
            dir.display()
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A REST catalog server for one test, killed when dropped.
struct RestServer {
    child: Child,
    uri: String,
}

impl RestServer {
    fn start(dir: &Path) -> RestServer {
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rest_catalog.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--catalog-name", "rest"])
            .arg("--uri")
            .arg(format!("sqlite:///{}/catalog.db", dir.display()))
            .arg("--warehouse")
            .arg(format!("file://{}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the REST catalog server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let uri = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the REST server said {line:?}"))
            .to_string();
        RestServer { child, uri }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The REST catalog client against a real REST server, shared with pyiceberg's REST client.
#[test]
fn the_rest_catalog_is_shared_with_pyiceberg() {
    let dir = temp_dir("rest");
    let server = RestServer::start(&dir);
    let config = CatalogConfig {
        name: "rest".into(),
        kind: CatalogKind::Rest {
            uri: server.uri.clone(),
        },
        warehouse: dir.clone(),
    };
    share_and_compact(
        &config,
        &format!(
            "from pyiceberg.catalog.rest import RestCatalog\ncat = RestCatalog('rest', uri='{}')",
            server.uri
        ),
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unreachable catalogs: a clear error naming the catalog, at open.
#[test]
fn an_unreachable_catalog_is_a_clear_error() {
    let dir = temp_dir("unreachable");
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = IcebergRuntime::new(1).unwrap();
    for kind in [
        CatalogKind::Rest {
            uri: format!("http://127.0.0.1:{port}"),
        },
        CatalogKind::Postgres {
            url: format!("postgres://weir:secret@127.0.0.1:{port}/weir"),
        },
    ] {
        let config = CatalogConfig {
            name: "far".into(),
            kind,
            warehouse: dir.clone(),
        };
        let e = rt
            .block_on(config.open())
            .expect_err("opening an unreachable catalog must fail")
            .to_string();
        assert!(e.starts_with("catalog 'far ("), "{e}");
        assert!(
            e.contains(&port.to_string()) && !e.contains("secret"),
            "{e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
