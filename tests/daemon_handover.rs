//! Rolling update of `camux daemon` as processes: daemon B, started with
//! the same config and ring directory while daemon A publishes, stands by
//! for the stream (`standby` on /status, ready on /readyz, the standby
//! state gauge at 1 on /metrics) and takes it over when A stops (SIGTERM)
//! or dies (SIGKILL: the kernel releases A's flock). Two `camux tail
//! --verify` readers registered with A carry on through the handover on
//! their own: every frame verified, sequence numbers continuing into B's
//! epoch, no error or torn frame.
//!
//! Real binaries, a watchdog per test and no timing assertions: the
//! handover gap is measured and written to stderr (`util::note`).
//! HTTP state cannot be waited on other than by polling /status; reader
//! progress is waited on through the readers' JSON lines.

mod util;

use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use util::{note, serial, Dir, Proc, Reader, TailLog, Watchdog};

const STREAM: &str = "cam";

use util::http_get as get;

/// The one stream's entry of `/status`.
fn stream_status(addr: &str) -> Value {
    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "/status: {body}");
    let s: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"));
    s["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == STREAM))
        .cloned()
        .unwrap_or_else(|| panic!("no stream {STREAM} in {s}"))
}

/// Polls `/status` until `cond` holds for the stream (HTTP state cannot be
/// waited on otherwise). No deadline of its own: the watchdog bounds it,
/// and its phase carries the last status seen, so a state that never comes
/// is named when it fires.
fn wait_status(dog: &Watchdog, addr: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    loop {
        let s = stream_status(addr);
        if cond(&s) {
            return s;
        }
        dog.phase(format!("{what} on {addr}; last /status: {s}"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(dir: &Path) -> String {
    format!(
        "dir: {}\n\
         streams:\n\
         - name: {STREAM}\n  source: {{ type: synthetic, format: YUYV, width: 320, height: 240, fps: 30 }}\n",
        dir.display()
    )
}

/// A daemon process and its HTTP address.
struct Daemon {
    proc: Proc,
    addr: String,
}

fn start_daemon(name: &str, d: &Dir, cfg: &Path) -> Daemon {
    let mut proc = Proc::spawn(
        name,
        d.camux([
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--dir",
            d.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]),
    );
    let started = proc.wait_event("started");
    let addr = started["listen"]
        .as_str()
        .expect("listen address")
        .to_string();
    Daemon { proc, addr }
}

/// One value of a scrape: the sample named `name` with all of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain value"),
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
}

/// B stands by: /status says so, /readyz is 200 (a standby is ready), and
/// /metrics has the standby state at 1 (and every other state at 0).
fn assert_standing_by(addr: &str) {
    let s = stream_status(addr);
    assert_eq!(s["state"], "standby", "{s}");
    let (code, body) = get(addr, "/readyz");
    assert_eq!(code, 200, "a standby daemon is not ready: {body}");
    let (code, text) = get(addr, "/metrics");
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a Prometheus text-format scrape");
    for state in [
        "starting",
        "standby",
        "publishing",
        "stalled",
        "retrying",
        "stopped",
    ] {
        let v = sample(
            &scrape,
            "camux_stream_state",
            &[("stream", STREAM), ("state", state)],
        );
        let want = if state == "standby" { 1.0 } else { 0.0 };
        assert_eq!(
            v, want,
            "camux_stream_state{{state={state:?}}} while standing by"
        );
    }
    assert_eq!(
        sample(&scrape, "camux_stream_up", &[("stream", STREAM)]),
        0.0,
        "a standby does not publish"
    );
}

/// How A ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kill {
    Term,
    Kill,
}

/// What one reader saw across the handover.
struct Seen {
    last_a: u64,
    first_b: u64,
    gap_ms: f64,
    publish_gap_ms: f64,
    stale: usize,
    frames: u64,
}

/// Checks one reader's lines: no error/torn/timeout events, every frame
/// verified, every frame following the one before (or by exactly the
/// frames a `lagged` event says were missed), exactly one epoch change
/// (A to B) whose first frame carries a gap; returns the seqs and gap at
/// the handover.
fn check_reader(r: &Reader, a_epoch: u64, b_epoch: u64, how: Kill) -> Seen {
    let who = r.proc.name.as_str();
    let log: &TailLog = &r.log;
    assert!(log.text.is_empty(), "{who}: non-JSON lines: {:?}", log.text);
    for bad in ["error", "torn", "timeout", "format_changed", "revoked"] {
        let v: Vec<_> = log.events(bad).collect();
        assert!(v.is_empty(), "{who}: {bad} events: {v:?}");
    }
    let stale = log.events("stale").count();
    if how == Kill::Term {
        // A stopped cleanly: its ring said so, nobody waited on a heartbeat.
        let v: Vec<_> = log.events("stale").collect();
        assert!(v.is_empty(), "{who}: stale events after SIGTERM: {v:?}");
    }
    r.assert_all_verified();
    let acc = log.check_every_frame(who);
    assert_eq!(acc.epoch_changes, 1, "{who}: {acc:?}");
    let mut prev: Option<&util::FrameLine> = None;
    let mut handover = None;
    for f in log.frames() {
        assert!(
            f.epoch == a_epoch || f.epoch == b_epoch,
            "{who}: frame of epoch {} (A {a_epoch}, B {b_epoch}): {}",
            f.epoch,
            f.raw
        );
        if let Some(p) = prev {
            assert!(f.seq > p.seq, "{who}: seq {} after {}", f.seq, p.seq);
            if p.epoch == a_epoch && f.epoch == b_epoch {
                handover = Some((p.clone(), f.clone()));
            }
        }
        prev = Some(f);
    }
    let (a, b) = handover.unwrap_or_else(|| panic!("{who}: no frame from A before one from B"));
    assert!(
        b.seq > a.seq,
        "{who}: B's first seq {} not after A's last {}",
        b.seq,
        a.seq
    );
    let ns = |f: &util::FrameLine| f.raw["publish_mono_ns"].as_u64().expect("publish_mono_ns");
    Seen {
        last_a: a.seq,
        first_b: b.seq,
        gap_ms: b.gap_ms.expect("checked: the first frame of B has a gap"),
        publish_gap_ms: ns(&b).saturating_sub(ns(&a)) as f64 / 1e6,
        stale,
        frames: acc.frames,
    }
}

fn handover(test: &str, how: Kill) {
    let _serial = serial();
    let dog = Watchdog::new(test, Duration::from_secs(120));
    let d = Dir::new(test);
    let cfg = d.path().join("daemon.yaml");
    std::fs::write(&cfg, config(d.path())).unwrap();

    dog.phase("daemon A starts publishing");
    let mut a = start_daemon("daemon-a", &d, &cfg);
    let sa = wait_status(&dog, &a.addr, "A publishing", |s| {
        s["state"] == "publishing" && s["published"].as_u64() > Some(0)
    });
    let a_epoch = sa["epoch"].as_u64().expect("epoch");

    dog.phase("readers receive from A");
    let mut readers: Vec<Reader> = ["reader-1", "reader-2"]
        .into_iter()
        .map(|n| Reader::start(n, &d, d.path(), STREAM, "--verify"))
        .collect();
    for r in &mut readers {
        r.pump_frames(5);
    }

    dog.phase("daemon B starts and stands by");
    let mut b = start_daemon("daemon-b", &d, &cfg);
    wait_status(&dog, &b.addr, "B standing by", |s| s["state"] == "standby");
    // A goes on with B waiting, and B keeps standing by meanwhile.
    for r in &mut readers {
        r.pump_frames(10);
    }
    assert_standing_by(&b.addr);
    let sa = stream_status(&a.addr);
    assert_eq!(sa["state"], "publishing", "A with B standing by: {sa}");
    assert_eq!(sa["epoch"].as_u64(), Some(a_epoch), "{sa}");
    assert_eq!(
        sa["readers"].as_u64(),
        Some(2),
        "A's readers (both registered): {sa}"
    );

    dog.phase(format!("{how:?} to A"));
    let t_stop = Instant::now();
    match how {
        Kill::Term => {
            let (exit, _) = a.proc.terminate();
            assert!(
                exit.success(),
                "daemon A on SIGTERM: {exit}\nstderr:\n{}",
                a.proc.stderr_text()
            );
        }
        Kill::Kill => {
            let exit = a.proc.kill();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&exit),
                Some(Signal::SIGKILL as i32),
                "{exit}"
            );
        }
    }
    let a_exit_ms = util::ms_since(t_stop);

    let sb = wait_status(&dog, &b.addr, "B publishing after the handover", |s| {
        s["state"] == "publishing" && s["epoch"].as_u64() > Some(a_epoch)
    });
    let b_takeover_ms = util::ms_since(t_stop);
    let b_epoch = sb["epoch"].as_u64().expect("epoch");
    assert_eq!(
        sb["restarts"].as_u64(),
        Some(0),
        "B took over without a failed attempt: {sb}"
    );
    let (code, body) = get(&b.addr, "/readyz");
    assert_eq!(code, 200, "B publishing: {body}");

    dog.phase("readers receive from B");
    for r in &mut readers {
        r.pump_until("20 frames from B", |l| {
            l.frames().filter(|f| f.epoch == b_epoch).count() >= 20
        });
    }
    let sb = stream_status(&b.addr);
    assert_eq!(
        sb["readers"].as_u64(),
        Some(2),
        "both readers re-registered with B: {sb}"
    );

    dog.phase("readers stop");
    let mut seen = Vec::new();
    for r in &mut readers {
        let summary = r.stop();
        let s = check_reader(r, a_epoch, b_epoch, how);
        assert_eq!(summary["frames"].as_u64(), Some(s.frames), "{summary}");
        assert_eq!(summary["torn"].as_u64(), Some(0), "{summary}");
        assert_eq!(summary["gaps"].as_u64(), Some(1), "{summary}");
        seen.push((r.proc.name.clone(), s));
    }
    // Both readers saw the same handover.
    let (_, s0) = &seen[0];
    for (name, s) in &seen[1..] {
        assert_eq!(
            (s.last_a, s.first_b),
            (s0.last_a, s0.first_b),
            "{name} vs {}",
            seen[0].0
        );
    }

    dog.phase("daemon B stops");
    let (exit, _) = b.proc.terminate();
    assert!(
        exit.success(),
        "daemon B on SIGTERM: {exit}\nstderr:\n{}",
        b.proc.stderr_text()
    );
    let info = util::inspect(&d, &Dir::ring(d.path(), STREAM));
    assert_eq!(info["state"], "stopped", "{info}");

    for (name, s) in &seen {
        note(format!(
            "{test}: {name}: {} frames; A's last seq {} (epoch {a_epoch}) -> B's first seq {} (epoch {b_epoch}), \
             {} skipped; gap_ms {:.1}, publish-to-publish {:.1} ms; {} stale events",
            s.frames,
            s.last_a,
            s.first_b,
            s.first_b - s.last_a - 1,
            s.gap_ms,
            s.publish_gap_ms,
            s.stale
        ));
    }
    // Frames B dropped for want of a free slot: after a crash B keeps every
    // slot quarantined until the readers are back (Publisher::create_locked).
    note(format!(
        "{test}: A exited {a_exit_ms:.1} ms after the signal; B's /status said publishing after \
         {b_takeover_ms:.1} ms; B: dropped_no_slot {}, revoked {}",
        sb["dropped_no_slot"], sb["revoked"]
    ));
}

/// Rolling update: SIGTERM to A. A exits 0 (its standby-free threads all
/// join), marks the ring stopped, and B resumes it at once.
#[test]
fn sigterm_handover() {
    handover("sigterm_handover", Kill::Term);
}

/// A crashed daemon: SIGKILL to A. The kernel drops A's flock, B resumes
/// the ring; the readers see no torn frame (a `stale` event is allowed:
/// nobody marked the ring stopped).
#[test]
fn sigkill_handover() {
    handover("sigkill_handover", Kill::Kill);
}

/// A rolling update rolled back: a standby daemon stopped (SIGTERM) while
/// it still waits for the lock exits 0 at once (its stream thread, blocked
/// in `flock`, is not joined) and disturbs neither A nor A's reader: same
/// epoch, no gap.
#[test]
fn standby_daemon_stops_while_waiting() {
    let test = "standby_daemon_stops_while_waiting";
    let _serial = serial();
    let dog = Watchdog::new(test, Duration::from_secs(60));
    let d = Dir::new(test);
    let cfg = d.path().join("daemon.yaml");
    std::fs::write(&cfg, config(d.path())).unwrap();

    let mut a = start_daemon("daemon-a", &d, &cfg);
    let sa = wait_status(&dog, &a.addr, "A publishing", |s| {
        s["state"] == "publishing"
    });
    let a_epoch = sa["epoch"].as_u64().expect("epoch");
    let mut r = Reader::start("reader", &d, d.path(), STREAM, "--verify");
    dog.phase("reader receives from A");
    r.pump_frames(5);

    let mut c = start_daemon("daemon-c", &d, &cfg);
    wait_status(&dog, &c.addr, "C standing by", |s| s["state"] == "standby");
    assert_standing_by(&c.addr);
    dog.phase("SIGTERM to the standby C");
    let t = Instant::now();
    let (exit, _) = c.proc.terminate();
    let c_exit_ms = util::ms_since(t);
    assert!(
        exit.success(),
        "standby daemon on SIGTERM: {exit}\nstderr:\n{}",
        c.proc.stderr_text()
    );

    dog.phase("reader goes on with A");
    r.pump_frames(20);
    let summary = r.stop();
    r.assert_all_verified();
    let acc = r.log.check_every_frame("reader");
    assert_eq!(acc.epoch_changes, 0, "{acc:?}");
    assert!(r
        .log
        .frames()
        .all(|f| f.epoch == a_epoch && f.gap_ms.is_none()));
    for bad in ["error", "stale", "timeout"] {
        assert_eq!(r.log.events(bad).count(), 0, "{bad}: {summary}");
    }
    let sa = stream_status(&a.addr);
    assert_eq!(sa["state"], "publishing", "{sa}");
    assert_eq!(sa["epoch"].as_u64(), Some(a_epoch), "{sa}");
    let (exit, _) = a.proc.terminate();
    assert!(exit.success(), "daemon A on SIGTERM: {exit}");
    note(format!(
        "{test}: standby C exited {c_exit_ms:.1} ms after SIGTERM; reader {acc:?}"
    ));
}
