//! The daemon config from outside the crate: the shipped example loads, and
//! a broken copy of it is refused with the file, line, column and field.
#![cfg(feature = "daemon")]

use camux::daemon::config::{load, ConfigError, LogFormat, SourceConfig};
use camux::format::FourCc;
use camux::source::Synthetic;
use std::path::Path;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/daemon.yaml")
}

#[test]
fn the_example_loads() {
    let config = load(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.dir, Path::new("/run/camux"));
    assert_eq!(config.listen.port(), 9470);
    assert_eq!(config.log_format, LogFormat::Text);
    let names: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["cam0", "cam1", "imu"]);
    let imu = config.stream("imu").unwrap();
    assert!(!imu.required);
    assert_eq!(imu.source_kind(), "synthetic");
    assert!(matches!(
        imu.source,
        SourceConfig::Synthetic { format: FourCc::RAW, width: 48, height: 1, fps } if fps == 200.0
    ));
    for stream in &config.streams {
        let synthetic = stream.source.synthetic_config().unwrap();
        let source = Synthetic::new(synthetic).unwrap_or_else(|e| panic!("{}: {e}", stream.name));
        assert_eq!(stream.max_frame_bytes(), Some(source.frame_bytes() as u64));
    }
}

#[test]
fn a_broken_copy_names_file_line_column_and_field() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("      fps: 200", "      fps: -3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.yaml");
    std::fs::write(&path, &text).unwrap();
    let err = load(&path).unwrap_err();
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("-3").map(|c| (i + 1, c + 1)))
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:{line}:{column}: streams[2].source.fps: expected a frame rate above 0 \
             (e.g. 30 or 29.97), found -3",
            path.display()
        )
    );
    assert!(matches!(err, ConfigError::Invalid { .. }));
}

/// The ConfigMap in k8s/ carries a config the daemon accepts: what the
/// cluster runs is validated here, not first on a node.
#[test]
fn the_configmap_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/base/configmap.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(cm["kind"].as_str(), Some("ConfigMap"));
    let config = cm["data"]["daemon.yaml"]
        .as_str()
        .expect("data.daemon.yaml");
    let parsed =
        camux::daemon::config::parse(config, Path::new("k8s/base/configmap.yaml#daemon.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.log_format, LogFormat::Json);
    let kinds: Vec<&str> = parsed.streams.iter().map(|s| s.source_kind()).collect();
    assert_eq!(kinds, ["v4l2", "v4l2", "sensor"]);
    let cam0 = parsed.stream("cam0").unwrap();
    assert!(cam0.required);
    assert_eq!(cam0.access.ring_mode, 0o640);
    assert_eq!(cam0.slot_count(), 12, "8 reader slots + 4 driver buffers");
}
