//! Configuration files and option errors, as a user meets them.

use weir::engine::ConfigError;
use weir::prelude::*;

#[test]
fn a_toml_file_configures_a_job() {
    let dir = std::env::temp_dir().join(format!("weir-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        "parallelism.default = 2\n[taskmanager.network.memory]\nbuffers-per-channel = 3\n[execution]\n\"buffer-timeout.interval\" = \"5 ms\"\n",
    )
    .unwrap();
    let config = Config::from_toml_file(&path).unwrap();
    assert_eq!(config.default_parallelism, 2);
    assert_eq!(config.buffers_per_channel, 3);
    assert_eq!(config.buffer_timeout, std::time::Duration::from_millis(5));
    let env = StreamEnv::with_config(config);
    let out = env.generate_sequence(0..100).map(|x| x + 1).collect();
    env.execute().unwrap();
    assert_eq!(out.take().len(), 100);

    std::fs::write(
        &path,
        "[taskmanager.network.memory]\nbufers-per-channel = 3\n",
    )
    .unwrap();
    let e = Config::from_toml_file(&path).unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownOption { key } if key == "taskmanager.network.memory.bufers-per-channel")
    );
    std::fs::write(&path, "\"pipeline.auto-watermark-interval\" = \"fast\"\n").unwrap();
    let e = Config::from_toml_file(&path).unwrap_err();
    assert!(
        e.to_string().contains("'fast'")
            && e.to_string().contains("pipeline.auto-watermark-interval"),
        "{e}"
    );
    let e = Config::from_toml_file(dir.join("missing.toml")).unwrap_err();
    assert!(e.to_string().contains("missing.toml"));
    std::fs::remove_dir_all(&dir).ok();
}
