//! The consumer examples as an inference pod would run them: real
//! processes on a real synthetic stream.
//!
//! `motion` and `qr` read one stream in parallel (the reason camux exists:
//! two recognition models on one camera): both must account for every
//! frame they were given (frames received plus frames reported missed
//! equals the span of seqs they saw, from seq 1 since the producer waits
//! for both), with no frame failing its stamp, `motion` must see the
//! pattern move and `qr` must decode the exact payload the producer draws.
//!
//! The examples are built by this test (`cargo build --examples`, a no-op
//! after `cargo test`, which builds them) into the same target directory.

mod util;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use util::{serial, Dir, Proc, Producer, Watchdog};

/// The directory cargo put this test binary's examples in
/// (`<target>/<profile>/examples`), after building them.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // <target>/<profile>/deps/examples-<hash>
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("target/<profile>");
        let target = profile_dir.parent().expect("target dir");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "--target-dir"])
            .arg(target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        // What cargo sets for running tests (package and manifest names, the
        // dylib path) would look like a changed environment to build
        // scripts and rebuild half the dependencies: build as from a shell.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR"].contains(&k.as_ref());
            if (k.starts_with("CARGO_") && !keep) || k == "OUT_DIR" || k == "LD_LIBRARY_PATH" {
                cmd.env_remove(&key);
            }
        }
        let out = cmd.output().expect("run cargo build --examples");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    })
}

fn example(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(examples_dir().join(name));
    cmd.args(args);
    Proc::spawn(name, cmd)
}

/// Reads the example's stdout to the end; returns its `summary: {json}`
/// line and every line, asserting it exited 0.
fn summary(p: &mut Proc) -> (Value, Vec<String>) {
    let mut lines = Vec::new();
    while let Some(l) = p.next_line() {
        lines.push(match l {
            util::Line::Text(t) => t,
            util::Line::Json(v) => v.to_string(),
        });
    }
    let status = p.wait();
    assert!(
        status.success(),
        "{} failed ({status}):\n{}",
        p.name,
        p.stderr_text()
    );
    let last = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("{} printed no summary: {lines:?}", p.name));
    let v = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last}: {e}"));
    (v, lines)
}

/// Frames received plus frames missed (lagged) cover every seq from the
/// first to the last; none failed its stamp.
fn accounts_for_every_frame(who: &str, s: &Value, frames: u64) {
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("{who}: no {k} in {s}"))
    };
    assert_eq!(n("frames"), frames, "{who}: {s}");
    assert_eq!(n("first_seq"), 1, "{who}: the producer waited for it: {s}");
    assert_eq!(
        n("frames") + n("lagged"),
        n("last_seq") - n("first_seq") + 1,
        "{who}: {s}"
    );
    assert_eq!(n("torn"), 0, "{who}: {s}");
}

#[test]
fn motion_and_qr_read_one_stream_in_parallel() {
    let _s = serial();
    let wd = Watchdog::new("motion_and_qr", Duration::from_secs(300));
    wd.phase("building the examples");
    examples_dir();
    let d = Dir::new("examples");
    let dir = d.path().to_str().unwrap().to_owned();
    let payload = "camux://edge-1/cam0 QR check 42";
    wd.phase("the producer starts");
    // The payload has spaces: passed as one argument.
    let mut cmd = d.camux(["publish", "--dir", &dir, "--stream", "cam0"]);
    cmd.args(util::words(
        "--format YUYV --width 320 --height 240 --fps 15 --slots 16 --wait-readers 2",
    ))
    .args(["--qr", payload]);
    let mut producer = Proc::spawn("producer", cmd);
    let ready = producer.wait_event("ready");
    assert_eq!(ready["qr"], payload, "{ready}");

    let frames = 45u64;
    let n = frames.to_string();
    wd.phase("motion and qr read the stream");
    let mut motion = example(
        "motion",
        &[
            "--dir", &dir, "--stream", "cam0", "--frames", &n, "--verify",
        ],
    );
    let mut qr = example(
        "qr",
        &[
            "--dir", &dir, "--stream", "cam0", "--frames", &n, "--verify",
        ],
    );
    let (m, motion_lines) = summary(&mut motion);
    let (q, _) = summary(&mut qr);
    let (_, stopped) = producer.terminate();
    util::note(format!("motion: {m}\nqr: {q}\nproducer: {stopped:?}"));

    accounts_for_every_frame("motion", &m, frames);
    accounts_for_every_frame("qr", &q, frames);
    // The pattern scrolls and its box bounces: motion in (nearly) every frame.
    assert!(m["motion_frames"].as_u64() > Some(0), "{m}");
    assert!(m["events"].as_u64() >= Some(1), "{m}");
    assert!(
        motion_lines
            .iter()
            .any(|l| l.starts_with("motion started: seq=")),
        "{motion_lines:?}"
    );
    assert_eq!(q["texts"], serde_json::json!([payload]), "{q}");
    assert!(q["decoded"].as_u64() > Some(0), "{q}");
    // Each of them got frames the producer published.
    let published = stopped
        .iter()
        .find(|v| v["event"] == "stopped")
        .and_then(|v| v["published"].as_u64())
        .expect("stopped line");
    assert!(m["last_seq"].as_u64() <= Some(published) && q["last_seq"].as_u64() <= Some(published));
}

#[test]
fn latest_only_and_async_consumers_run() {
    let _s = serial();
    let wd = Watchdog::new("latest_only_async", Duration::from_secs(300));
    wd.phase("building the examples");
    examples_dir();
    let d = Dir::new("examples-more");
    let dir = d.path().to_str().unwrap().to_owned();
    let a = Producer::start(
        "cam0",
        &d,
        d.path(),
        "cam0",
        "--format GREY --width 64 --height 48 --fps 30",
    );
    let b = Producer::start(
        "cam1",
        &d,
        d.path(),
        "cam1",
        "--format NV12 --width 64 --height 48 --fps 30",
    );

    wd.phase("latest_only");
    let mut slow = example("latest_only", &[&dir, "cam0", "4", "100"]);
    let (mut lines, mut skipped) = (Vec::new(), 0u64);
    while let Some(l) = slow.next_line() {
        if let util::Line::Text(t) = l {
            let per_frame = t.starts_with("seq=");
            if let Some(k) = t
                .split(" skipped=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .filter(|_| per_frame)
            {
                skipped += k.parse::<u64>().unwrap();
            }
            lines.push(t);
        }
    }
    assert!(slow.wait().success(), "{}", slow.stderr_text());
    let last = lines.last().expect("output");
    assert!(
        last.starts_with("summary: processed=4 skipped="),
        "{lines:?}"
    );
    assert_eq!(
        last,
        &format!("summary: processed=4 skipped={skipped}"),
        "{lines:?}"
    );

    wd.phase("async_consumer");
    let mut both = example("async_consumer", &[&dir, "20", "cam0", "cam1"]);
    let mut summaries = Vec::new();
    while let Some(l) = both.next_line() {
        if let util::Line::Text(t) = l {
            if t.starts_with("summary: ") {
                summaries.push(t);
            }
        }
    }
    assert!(both.wait().success(), "{}", both.stderr_text());
    summaries.sort();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(
        summaries[0].starts_with("summary: stream=cam0 frames=20 "),
        "{summaries:?}"
    );
    assert!(
        summaries[1].starts_with("summary: stream=cam1 frames=20 "),
        "{summaries:?}"
    );
    a.stop();
    b.stop();
}
