//! Crash test: the exactly-once example SIGKILLed at several moments and restarted with the
//! same arguments ends with exactly the output of a run without failures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weir::operators::FileTransactions;

fn example() -> PathBuf {
    // target/<profile>/deps/it-<hash> -> target/<profile>/examples/exactly_once
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = profile_dir.join("examples").join("exactly_once");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "exactly_once"])
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
    let bin = example();
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
