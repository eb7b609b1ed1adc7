//! Crash test: the exactly-once example SIGKILLed at several moments and restarted with the
//! same arguments ends with exactly the output of a run without failures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weir::operators::FileTransactions;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/it-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = profile_dir.join("examples").join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("cargo");
        assert!(status.success(), "building the example failed");
    }
    bin
}

fn run(bin: &Path, out: &Path, chk: &Path, mode: &str, kill_after: Option<Duration>) {
    let mut child = Command::new(bin)
        .args(["--records", "60000", "--rate", "60000", "--mode", mode])
        .arg("--out")
        .arg(out)
        .arg("--checkpoint-dir")
        .arg(chk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the example");
    match kill_after {
        Some(d) => {
            std::thread::sleep(d);
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        None => {
            let status = child.wait().expect("wait");
            assert!(status.success(), "the final run failed");
        }
    }
}

fn committed(out: &Path) -> Vec<String> {
    let mut lines = FileTransactions::<(u64, u64)>::committed_lines(out).expect("read output");
    lines.sort();
    lines
}

#[test]
fn sigkilled_runs_resume_to_the_failure_free_output() {
    let bin = example("exactly_once");
    let root = std::env::temp_dir().join(format!("weir-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (mode, kills) in [
        ("aligned", [180u64, 420, 650, 300]),
        ("unaligned", [250, 90, 510, 700]),
    ] {
        let reference = root.join(format!("{mode}-ref"));
        run(
            &bin,
            &reference.join("out"),
            &reference.join("chk"),
            mode,
            None,
        );
        let expected = committed(&reference.join("out"));
        assert_eq!(expected.len(), 60_000);

        let crashed = root.join(format!("{mode}-crashed"));
        for ms in kills {
            run(
                &bin,
                &crashed.join("out"),
                &crashed.join("chk"),
                mode,
                Some(Duration::from_millis(ms)),
            );
        }
        run(&bin, &crashed.join("out"), &crashed.join("chk"), mode, None);
        let got = committed(&crashed.join("out"));
        assert_eq!(
            got.len(),
            expected.len(),
            "{mode}: records lost or duplicated"
        );
        assert!(
            got == expected,
            "{mode}: committed output differs from the failure-free run"
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

/// The Iceberg sink example SIGKILLed at several moments and restarted: the table ends with
/// every row exactly once (read back through the catalog).
#[test]
fn a_sigkilled_iceberg_sink_commits_every_row_exactly_once() {
    use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
    use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};

    let bin = example("iceberg_sink");
    let root = std::env::temp_dir().join(format!("weir-crash-iceberg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (wh, chk) = (root.join("warehouse"), root.join("chk"));
    let start = |kill_after: Option<Duration>| {
        let mut child = Command::new(&bin)
            .args(["--rows", "60000", "--rate", "30000", "--mode", "unaligned"])
            .arg("--warehouse")
            .arg(&wh)
            .arg("--checkpoint-dir")
            .arg(&chk)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the example");
        match kill_after {
            Some(d) => {
                std::thread::sleep(d);
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
            }
            None => assert!(
                child.wait().expect("wait").success(),
                "the final run failed"
            ),
        }
    };
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "numbers".into());
    let rt = IcebergRuntime::new(1).unwrap();
    let snapshots = || {
        rt.block_on(async {
            let catalog = CatalogConfig::embedded(&wh).open().await.unwrap();
            let t = catalog.load_table(&ident).await.unwrap();
            t.metadata().snapshots().count()
        })
    };
    let mut progress = Vec::new();
    for ms in [700u64, 1100, 500, 900] {
        start(Some(Duration::from_millis(ms)));
        progress.push(snapshots());
    }
    // The killed runs committed some checkpoints each (they resumed, not restarted).
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(*progress.last().unwrap() >= 2, "{progress:?}");
    start(None);
    let mut ids: Vec<i64> = rt.block_on(async {
        let catalog = CatalogConfig::embedded(&wh).open().await.unwrap();
        let batches = table_io::read_all(&*catalog, &ident).await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .expect("id column")
                    .values()
                    .to_vec()
            })
            .collect()
    });
    ids.sort();
    assert_eq!(ids.len(), 60_000, "rows lost or duplicated");
    assert_eq!(ids, (0..60_000).collect::<Vec<i64>>());
    eprintln!("iceberg crash test: snapshots after each SIGKILL {progress:?}");
    std::fs::remove_dir_all(&root).ok();
}
