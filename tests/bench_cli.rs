//! `camux bench` end to end with a tiny scenario list (`--tiny`: 64-byte
//! frames, one reader, 0.2 s windows): the JSON has every field the issue
//! names (and issue 4's `camux-daemon` row its CPU with and without the
//! source), a peer that cannot run is skipped with a reason, and
//! `--report` writes a markdown file with PNG plots. No timing is asserted: the
//! figures are whatever this machine gives.

mod util;

use serde_json::Value;
use std::time::Duration;
use util::{serial, Dir, Watchdog};

const FIELDS: [&str; 12] = [
    "system",
    "scenario",
    "frame_bytes",
    "readers",
    "mode",
    "wait",
    "delivered_fps",
    "producer_cpu_ms_per_frame",
    "reader_cpu_ms_per_frame",
    "latency_us",
    "lost",
    "skipped",
];

fn bench(dir: &Dir, args: &[&str], path_env: Option<&str>) -> Value {
    let mut cmd = dir.camux(["bench", "--tiny", "--json"].iter().chain(args));
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let out = cmd.output().expect("run camux bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "camux bench failed: {stderr}");
    assert!(stderr.contains("[1/"), "no progress on stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn tiny_run_has_every_field_and_a_report() {
    let _serial = serial();
    let dog = Watchdog::new(
        "tiny_run_has_every_field_and_a_report",
        Duration::from_secs(120),
    );
    let dir = Dir::new("bench");
    let report = dir.path().join("report");
    dog.phase("camux bench --tiny --json --report");
    let doc = bench(&dir, &["--report", report.to_str().unwrap()], None);

    let m = &doc["machine"];
    for k in ["cpu_model", "cores", "kernel", "memory_mib"] {
        assert!(m.get(k).is_some(), "machine.{k} missing: {m}");
    }
    assert!(m["cores"].as_u64().unwrap() >= 1);
    let results = doc["results"].as_array().expect("results array");
    assert!(!results.is_empty());
    let mut ran = 0;
    for r in results {
        for k in FIELDS {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        for k in ["p50", "p99", "p999"] {
            assert!(
                r["latency_us"].get(k).is_some(),
                "latency_us.{k} missing in {r}"
            );
        }
        assert!(matches!(r["mode"].as_str(), Some("paced" | "flat")), "{r}");
        assert!(matches!(r["wait"].as_str(), Some("block" | "spin")), "{r}");
        if let Some(why) = r["skipped"].as_str() {
            assert!(!why.is_empty(), "a skip without a reason: {r}");
            continue;
        }
        assert!(r["error"].is_null(), "a scenario failed: {r}");
        ran += 1;
        assert!(r["delivered_fps"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["producer_cpu_ms_per_frame"].as_f64().is_some(), "{r}");
        if r["readers"].as_u64().unwrap() > 0 {
            assert!(r["latency_us"]["p50"].as_f64().is_some(), "{r}");
            assert!(
                r["latency_us"]["p999"].as_f64() >= r["latency_us"]["p50"].as_f64(),
                "{r}"
            );
            assert!(r["reader_cpu_ms_per_frame"].as_f64().is_some(), "{r}");
            assert!(r["lost"].as_u64().is_some(), "{r}");
        }
    }
    for sys in ["camux", "limit-memcpy", "limit-futex", "socket-broker"] {
        assert!(
            results
                .iter()
                .any(|r| r["system"] == sys && r["skipped"].is_null()),
            "{sys} did not run"
        );
    }
    assert!(ran >= 4);
    assert!(doc["targets"].is_array());
    // Issue 4: the real daemon as a producer, its CPU with and without its
    // source (figures not judged).
    let daemon = results
        .iter()
        .find(|r| r["system"] == "camux-daemon" && r["group"] == "daemon")
        .expect("a camux-daemon result");
    assert!(daemon["error"].is_null(), "{daemon}");
    for k in [
        "producer_cpu_ms_per_frame",
        "producer_cpu_ms_per_frame_with_source",
        "source_cpu_share",
        "producer_cpu_percent_of_core",
        "producer_cpu_percent_of_core_with_source",
    ] {
        assert!(daemon[k].as_f64().is_some(), "{k} in {daemon}");
    }
    assert!(daemon["latency_us"]["p50"].as_f64().is_some(), "{daemon}");
    assert!(daemon["published"].as_u64() > Some(0), "{daemon}");

    let md = std::fs::read_to_string(report.join("README.md")).expect("report README.md");
    assert!(md.contains("Machine:") && md.contains("## Targets"), "{md}");
    assert!(md.contains("## The daemon's own CPU"), "{md}");
    let pngs: Vec<_> = std::fs::read_dir(&report)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(!pngs.is_empty(), "no PNG plot in {}", report.display());
    for p in &pngs {
        let bytes = std::fs::read(p.path()).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            p.path().display()
        );
        assert!(md.contains(&*p.file_name().to_string_lossy()), "{md}");
    }
}

#[test]
fn missing_peers_are_skipped_with_a_reason() {
    let _serial = serial();
    let _dog = Watchdog::new(
        "missing_peers_are_skipped_with_a_reason",
        Duration::from_secs(60),
    );
    let dir = Dir::new("bench-skip");
    // No gst-launch-1.0 on this PATH.
    let doc = bench(
        &dir,
        &["--systems", "gstreamer,iceoryx2"],
        Some("/nonexistent"),
    );
    let results = doc["results"].as_array().unwrap();
    let gst: Vec<&Value> = results
        .iter()
        .filter(|r| r["system"] == "gstreamer")
        .collect();
    assert!(!gst.is_empty());
    for r in gst {
        let why = r["skipped"]
            .as_str()
            .unwrap_or_else(|| panic!("not skipped: {r}"));
        assert!(why.contains("gstreamer1.0"), "{why}");
        assert!(
            r["delivered_fps"].is_null() && r["latency_us"]["p50"].is_null(),
            "{r}"
        );
    }
    // iceoryx2 runs only in a build with its feature.
    for r in results.iter().filter(|r| r["system"] == "iceoryx2") {
        match r["skipped"].as_str() {
            Some(why) => assert!(why.contains("bench-iceoryx2"), "{why}"),
            None => assert!(r["error"].is_null(), "{r}"),
        }
    }
}

#[test]
fn repeated_runs_report_medians_and_their_spread() {
    let _serial = serial();
    let _dog = Watchdog::new(
        "repeated_runs_report_medians_and_their_spread",
        Duration::from_secs(120),
    );
    let dir = Dir::new("bench-repeat");
    let report = dir.path().join("report");
    let doc = bench(
        &dir,
        &[
            "--systems",
            "camux,limit-futex",
            "--repeat",
            "2",
            "--report",
            report.to_str().unwrap(),
        ],
        None,
    );
    let results = doc["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["runs"], 2, "{r}");
        let s = &r["spread"];
        let fps = s["delivered_fps"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"));
        let (lo, hi) = (fps[0].as_f64().unwrap(), fps[1].as_f64().unwrap());
        let med = r["delivered_fps"].as_f64().unwrap();
        assert!(
            lo <= med && med <= hi,
            "median {med} outside {lo}..{hi}: {r}"
        );
    }
    let md = std::fs::read_to_string(report.join("README.md")).unwrap();
    assert!(md.contains("median over 2 runs"), "{md}");
    assert!(md.contains("## Spread over 2 runs"), "{md}");

    // Out of range is a usage error that names the option.
    let out = dir
        .camux(["bench", "--tiny", "--repeat", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repeat"));
}
