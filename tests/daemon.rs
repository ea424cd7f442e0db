//! `camux daemon` as a process: several streams, one failing source
//! retried with backoff, HTTP status/metrics/readiness, SIGHUP reload, and
//! clean shutdown. Real binary, real HTTP, real Prometheus text parsing.

mod util;

use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};
use util::{Dir, Proc, Watchdog};

use util::http_get as get;

fn status(addr: &str) -> Value {
    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

fn stream<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stream {name} in {status}"))
}

/// Polls `/status` until `cond` holds (HTTP state cannot be waited on
/// otherwise); the watchdog bounds it, and a deadline names what never came.
fn wait_status(addr: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(addr);
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(dir: &std::path::Path, gps_required: bool, s3_fps: u32) -> String {
    format!(
        "dir: {dir}\n\
         streams:\n\
         - name: s1\n  source: {{ type: synthetic, width: 64, height: 48, fps: 30 }}\n\
         - name: s2\n  source: {{ type: synthetic, format: GREY, width: 64, height: 48, fps: 30 }}\n\
         - name: s3\n  source: {{ type: synthetic, width: 64, height: 48, fps: {s3_fps} }}\n\
         - name: gps\n  required: {gps_required}\n  source: {{ type: sensor, path: {dir}/no-such-gps, lines: true, content_type: text/x-nmea }}\n",
        dir = dir.display()
    )
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, stream: &str) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("stream") == Some(stream))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain value"),
        })
        .unwrap_or_else(|| panic!("no {name}{{stream={stream:?}}} in the scrape"))
}

#[test]
fn streams_publish_a_failing_source_retries_and_http_tells() {
    let dog = Watchdog::new("daemon", Duration::from_secs(120));
    let d = Dir::new("daemon");
    let cfg_path = d.path().join("daemon.yaml");
    std::fs::write(&cfg_path, config(d.path(), false, 30)).unwrap();
    dog.phase("daemon start");
    let mut daemon = Proc::spawn(
        "daemon",
        d.camux([
            "daemon",
            "--config",
            cfg_path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]),
    );
    let started = daemon.wait_event("started");
    let addr = started["listen"]
        .as_str()
        .expect("listen address")
        .to_string();

    // A reader of s1 gets frames: the stream really publishes. (The ring
    // is made by the stream's own thread: wait until it says publishing.)
    wait_status(&addr, "s1 publishing", |s| {
        stream(s, "s1")["state"] == "publishing"
    });
    dog.phase("tail s1");
    let out = util::run_ok(d.camux([
        "tail",
        "--dir",
        d.path().to_str().unwrap(),
        "s1",
        "--count",
        "5",
        "--verify",
        "--json",
    ]));
    assert!(out.contains("\"verified\":true"), "{out}");

    dog.phase("three publishing, gps retrying twice");
    let s = wait_status(&addr, "3 publishing streams and 2 gps retries", |s| {
        ["s1", "s2", "s3"].iter().all(|n| {
            stream(s, n)["state"] == "publishing" && stream(s, n)["published"].as_u64() > Some(0)
        }) && stream(s, "gps")["restarts"].as_u64() >= Some(2)
    });
    let gps = stream(&s, "gps");
    assert!(
        matches!(gps["state"].as_str(), Some("retrying") | Some("starting")),
        "{gps}"
    );
    assert_eq!(gps["last_error"]["kind"], "not_found", "{gps}");
    assert!(
        gps["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-gps"),
        "{gps}"
    );
    assert_eq!(gps["required"], false);

    // Backoff grows: later retries wait longer than the first.
    dog.phase("backoff grows");
    let later = wait_status(&addr, "gps retry delay above 1 s", |s| {
        stream(s, "gps")["retry_in_ms"].as_u64() > Some(1000)
    });
    assert!(stream(&later, "gps")["restarts"].as_u64() >= Some(3));

    // Ready: gps is not required.
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    let (code, _) = get(&addr, "/healthz");
    assert_eq!(code, 200);
    let (code, _) = get(&addr, "/nope");
    assert_eq!(code, 404);

    // /metrics parses as the Prometheus text format and agrees with /status
    // (counters read between two /status reads lie between their values).
    dog.phase("metrics");
    let before = status(&addr);
    let (code, text) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    let after = status(&addr);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a Prometheus text-format scrape");
    for n in ["s1", "s2", "s3"] {
        let m = metric(&scrape, "camux_frames_published_total", n);
        let (lo, hi) = (
            stream(&before, n)["published"].as_f64().unwrap(),
            stream(&after, n)["published"].as_f64().unwrap(),
        );
        assert!(
            lo <= m && m <= hi,
            "{n}: metric {m} outside /status {lo}..{hi}"
        );
        assert_eq!(metric(&scrape, "camux_stream_up", n), 1.0);
    }
    let restarts = metric(&scrape, "camux_source_restarts_total", "gps");
    assert!(
        stream(&before, "gps")["restarts"].as_f64().unwrap() <= restarts
            && restarts <= stream(&after, "gps")["restarts"].as_f64().unwrap()
    );
    assert_eq!(metric(&scrape, "camux_stream_up", "gps"), 0.0);

    // SIGHUP with gps required (and s3 changed): only those two restart,
    // s1 and s2 go on in the same epoch; /readyz now fails naming gps.
    dog.phase("reload");
    let s1_epoch = stream(&after, "s1")["epoch"].clone();
    let s1_published = stream(&after, "s1")["published"].as_u64().unwrap();
    std::fs::write(&cfg_path, config(d.path(), true, 15)).unwrap();
    daemon.signal(Signal::SIGHUP);
    let reloaded = wait_status(&addr, "gps required after SIGHUP", |s| {
        stream(s, "gps")["required"] == true
    });
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("gps"), "{body}");
    assert_eq!(
        stream(&reloaded, "s1")["epoch"],
        s1_epoch,
        "s1 was restarted"
    );
    assert!(stream(&reloaded, "s1")["published"].as_u64().unwrap() >= s1_published);
    let s3 = wait_status(&addr, "s3 at its new rate", |s| {
        stream(s, "s3")["state"] == "publishing"
            && stream(s, "s3")["format"]
                .as_str()
                .unwrap_or("")
                .contains("15")
    });
    assert!(
        stream(&s3, "s3")["epoch"].as_u64() > Some(1),
        "s3 restarted on its own ring: {s3}"
    );

    // An invalid config is rejected; the running one stays.
    std::fs::write(&cfg_path, "streams: [ { name: x, sourc: {} } ]\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let still = wait_status(&addr, "the running config after a bad reload", |s| {
        stream(s, "s1")["state"] == "publishing"
    });
    assert_eq!(still["streams"].as_array().map(Vec::len), Some(4));

    dog.phase("shutdown");
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "daemon exit: {exit}");
    let errors = daemon.stderr_text();
    assert!(
        errors.contains("config rejected"),
        "the bad reload was not logged: {errors}"
    );
    let info = util::run_ok(d.camux([
        "inspect",
        Dir::ring(d.path(), "s1").to_str().unwrap(),
        "--json",
    ]));
    assert!(info.contains("\"state\":\"stopped\""), "{info}");
}

#[test]
fn check_config_names_file_line_and_field() {
    let _dog = Watchdog::new("check-config", Duration::from_secs(30));
    let d = Dir::new("check");
    let good = d.path().join("good.yaml");
    std::fs::write(&good, config(d.path(), true, 30)).unwrap();
    let out = util::run_ok(d.camux(["daemon", "--check-config", good.to_str().unwrap()]));
    assert!(out.contains("ok: 4 streams"), "{out}");
    let bad = d.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "streams:\n- name: cam0\n  source: { type: synthetic, fps: -3 }\n",
    )
    .unwrap();
    let o = d
        .camux(["daemon", "--check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:3:"), "no file:line in {err}");
    assert!(err.contains("fps"), "no field in {err}");
}

/// A ConfigMap update as kubelet does it: the config is a symlink through
/// `..data`, which is swapped by a rename to a new directory.
fn configmap_write(dir: &std::path::Path, version: u32, text: &str) {
    let v = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("daemon.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("daemon.yaml");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/daemon.yaml", &link).unwrap();
    }
}

fn synthetic(name: &str, fps: u32) -> String {
    format!("- name: {name}\n  source: {{ type: synthetic, width: 64, height: 48, fps: {fps} }}\n")
}

#[test]
fn a_configmap_update_restarts_only_what_changed() {
    let dog = Watchdog::new("reload", Duration::from_secs(120));
    let d = Dir::new("reload");
    let rings = d.path().join("rings");
    let cm = d.path().join("configmap");
    std::fs::create_dir_all(&cm).unwrap();
    let head = format!("dir: {}\nstreams:\n", rings.display());
    configmap_write(
        &cm,
        1,
        &format!(
            "{head}{}{}{}",
            synthetic("a", 30),
            synthetic("b", 30),
            synthetic("c", 30)
        ),
    );
    let cfg = cm.join("daemon.yaml");
    let mut daemon = Proc::spawn(
        "daemon",
        d.camux([
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]),
    );
    let addr = daemon.wait_event("started")["listen"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&addr, "a, b, c publishing", |s| {
        ["a", "b", "c"]
            .iter()
            .all(|n| stream(s, n)["state"] == "publishing")
    });
    // A reader of the stream that will not change, running through the update.
    dog.phase("reader of a");
    let mut reader = Proc::spawn(
        "reader-a",
        d.camux([
            "tail",
            "--dir",
            rings.to_str().unwrap(),
            "a",
            "--json",
            "--verify",
        ]),
    );
    let first = loop {
        match reader.next_line() {
            Some(util::Line::Json(v)) if v.get("seq").is_some() => break v,
            Some(_) => {}
            None => panic!("reader of a ended: {}", reader.stderr_text()),
        }
    };
    // The reader is known by its socket's peer credentials.
    let pid = u64::from(reader.pid());
    let uid = u64::from(nix::unistd::getuid().as_raw());
    let before = wait_status(&addr, "the reader of a in /status", |s| {
        stream(s, "a")["reader_list"].as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["pid"].as_u64() == Some(pid) && r["uid"].as_u64() == Some(uid))
        })
    });

    // a unchanged, b changed, c removed, d added: no signal, just the swap.
    dog.phase("configmap update");
    configmap_write(
        &cm,
        2,
        &format!(
            "{head}{}{}{}",
            synthetic("a", 30),
            synthetic("b", 10),
            synthetic("d", 30)
        ),
    );
    let after = wait_status(&addr, "d publishing and c gone", |s| {
        let names: Vec<&str> = s["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        names == ["a", "b", "d"]
            && stream(s, "d")["state"] == "publishing"
            && stream(s, "b")["state"] == "publishing"
    });
    assert_eq!(
        stream(&after, "a")["epoch"],
        stream(&before, "a")["epoch"],
        "a restarted"
    );
    assert!(
        stream(&after, "b")["epoch"].as_u64() > stream(&before, "b")["epoch"].as_u64(),
        "b was not restarted: {after:#}"
    );
    assert!(stream(&after, "b")["format"]
        .as_str()
        .unwrap()
        .contains("10 fps"));

    // An invalid update is rejected; everything keeps running.
    configmap_write(
        &cm,
        3,
        "streams:\n- name: a\n  source: { type: synthetic, fps: fast }\n",
    );
    dog.phase("rejected update");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.stderr_text().contains("config rejected") {
        assert!(
            Instant::now() < deadline,
            "the bad update was not reported: {}",
            daemon.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon.stderr_text().contains("fps"),
        "{}",
        daemon.stderr_text()
    );
    let still = status(&addr);
    assert_eq!(still["streams"].as_array().map(Vec::len), Some(3));
    assert_eq!(stream(&still, "a")["state"], "publishing");

    // The reader of a saw every frame, with no gap, stale or lag.
    dog.phase("reader check");
    let (_, rest) = reader.terminate();
    // `seen` has every line read (terminate() reads the rest into it too).
    let seen: Vec<Value> = reader
        .seen
        .iter()
        .filter_map(|l| match l {
            util::Line::Json(v) => Some(v.clone()),
            util::Line::Text(_) => None,
        })
        .collect();
    assert_eq!(seen.first(), Some(&first));
    let mut frames = Vec::new();
    for v in seen {
        if v.get("seq").is_some() {
            frames.push(v);
        } else if v["event"] != "summary" {
            panic!("reader of a saw {v} during the update");
        }
    }
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "seqs not increasing");
    assert!(frames
        .iter()
        .all(|f| f["gap_ms"].is_null() && f["verified"] == true));
    let summary = rest
        .iter()
        .find(|v| v["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["lagged"], 0, "{summary}");
    assert_eq!(summary["gaps"], 0, "{summary}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
}
