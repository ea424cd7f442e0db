//! `camux-daemon`: the real `camux daemon` process as the producer (issue
//! 4: the daemon's own CPU per frame, without its source, and its CPU with
//! no readers), read by the same `Subscriber` readers as the `camux`
//! system.
//!
//! The producer participant writes a config with one synthetic stream of
//! the scenario's shape and rate (ring slots as the `camux` system sizes
//! them), starts `camux daemon --config .. --listen 127.0.0.1:0` (this
//! executable), takes the HTTP address from its `started` line and waits
//! until `/status` shows the stream publishing. Then, after the harness's
//! "go" and once the readers are registered (the ring's reader count):
//!
//! - it reads the ring's head `h` (a read-only map of the ring file, as
//!   `camux inspect` does: no registration, no HTTP) and fixes the window
//!   as the seqs from `first = h + warmup + 1` to `last = first + fps ×
//!   seconds - 1`, which it writes into a file the readers look for (the daemon's
//!   frames carry no end marker: a reader counts the frames of the window
//!   by their ring seq, and ends at the first seq past it);
//! - it polls the head (sleeping half the time to the expected frame, then
//!   every 0.2 ms) and reads the daemon's CPU, the scheduler's run time of
//!   all its threads (`/proc/PID/task/*/schedstat`, as for gst-launch-1.0),
//!   as soon as seq `first - 1` and as soon as seq `last` are published:
//!   the CPU of exactly the window's frames, whatever thread did it (stream
//!   thread, HTTP, heartbeat, main loop);
//! - the source's share comes from `/status` (`source_cpu_ms`, the stream
//!   thread's CPU clock around each render, and `published`), read once
//!   before and once after the window (two HTTP requests, both outside
//!   it): the render cost per frame over those ~window-long intervals
//!   (the daemon flushes its counters every 250 ms, so the two reads are
//!   up to 250 ms stale; a rate, so that does not bias it), times the
//!   window's frames.
//!
//! The latency is the frame's `publish_mono_ns`, as for `camux`: the
//! daemon stamps it after the render into the slot, before the commit.

use super::role;
use super::spec::{Line, Mode, Pixels, ProducerReport, Spec};
use anyhow::{bail, Context};
use camux::ring::inspect;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stream's name in the daemon's config.
pub const STREAM: &str = "bench";

/// How long the daemon may take to start publishing, and readers to
/// register.
const SETUP: Duration = Duration::from_secs(20);

/// The daemon's ring directory.
pub fn ring_dir(spec: &Spec) -> PathBuf {
    spec.dir.join(format!("{}-daemon", spec.tag))
}

fn window_path(spec: &Spec) -> PathBuf {
    spec.dir.join(format!("{}.window", spec.tag))
}

/// The measured window's first and last ring seq, once the producer has
/// fixed it.
pub fn read_window(spec: &Spec) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(window_path(spec)).ok()?;
    let (a, b) = text.trim().split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The daemon's config: one synthetic stream of the scenario's shape.
pub fn config_yaml(spec: &Spec) -> String {
    let sc = &spec.scenario;
    let s = sc.shape;
    let format = match s.fourcc {
        Pixels::Raw => "RAW",
        Pixels::Yuyv => "YUYV",
        Pixels::Nv12 => "NV12",
    };
    format!(
        "dir: {dir}\n\
         log_format: text\n\
         streams:\n  \
           - name: {STREAM}\n    \
             source: {{ type: synthetic, format: {format}, width: {w}, height: {h}, fps: {fps} }}\n    \
             ring: {{ slots: {slots} }}\n",
        dir = ring_dir(spec).display(),
        w = s.width,
        h = s.height,
        fps = sc.fps,
        slots = super::camux_sys::slots(sc.readers),
    )
}

/// A `camux daemon` child; stopped with SIGTERM (as Kubernetes stops it)
/// when dropped.
struct Daemon {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Daemon {
    fn start(spec: &Spec) -> anyhow::Result<Daemon> {
        let cfg = spec.dir.join(format!("{}-daemon.yaml", spec.tag));
        std::fs::write(&cfg, config_yaml(spec))?;
        let log = spec.dir.join(format!("{}-daemon.stderr", spec.tag));
        let exe = std::env::current_exe().context("cannot find the camux executable")?;
        let mut child = Command::new(exe)
            .arg("daemon")
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start camux daemon")?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut d = Daemon {
            child,
            addr: String::new(),
            log,
        };
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                bail!("camux daemon ended before starting: {}", d.log_tail());
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["event"] == "started" {
                d.addr = v["listen"].as_str().context("no listen address")?.into();
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(d)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// The stream's entry of `/status`.
    fn status(&self) -> anyhow::Result<StreamFigures> {
        let body = http_get(&self.addr, "/status")?;
        let doc: serde_json::Value = serde_json::from_str(&body).context("/status is not JSON")?;
        let s = doc["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == STREAM))
            .context("no bench stream in /status")?;
        Ok(StreamFigures {
            state: s["state"].as_str().unwrap_or("").to_string(),
            published: s["published"].as_u64().unwrap_or(0),
            source_cpu_ms: s["source_cpu_ms"]
                .as_f64()
                .context("no source_cpu_ms in /status")?,
            last_error: s["last_error"]["message"].as_str().map(str::to_string),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // A graceful stop takes milliseconds; on its exit, not a timer.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/status` says about the bench stream.
#[derive(Debug, Clone)]
struct StreamFigures {
    state: String,
    published: u64,
    source_cpu_ms: f64,
    last_error: Option<String>,
}

/// A plain HTTP/1.1 GET (`Connection: close`); the body of a 200.
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8(buf).context("a response that is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("a response without a header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path}: {}",
            head.lines().next().unwrap_or("no status line")
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        Ok(body.to_string())
    }
}

fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("a bad chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("a bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("a short chunk")?);
        s = rest.get(n + 2..).context("a short chunk")?;
    }
}

/// Polls until `done(status)` or `SETUP` passes.
fn wait_status(
    d: &Daemon,
    what: &str,
    done: impl Fn(&StreamFigures) -> bool,
) -> anyhow::Result<StreamFigures> {
    let deadline = Instant::now() + SETUP;
    loop {
        let s = d.status()?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: stream {} after {SETUP:?} (last error: {}) {}",
                s.state,
                s.last_error.as_deref().unwrap_or("none"),
                d.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ring's live words now.
fn snap(ring: &std::path::Path) -> anyhow::Result<inspect::RingSnapshot> {
    inspect::snapshot(ring).context("cannot read the daemon's ring")
}

/// Waits until the ring's head reaches `seq`, then reads the daemon's CPU
/// at once: (snapshot, schedstat ns, when).
fn at_seq(
    ring: &std::path::Path,
    pid: u32,
    seq: u64,
    fps: f64,
) -> anyhow::Result<(inspect::RingSnapshot, u64, Instant)> {
    let frame = Duration::from_secs_f64(1.0 / fps);
    let deadline = Instant::now() + frame * (seq.min(1 << 20) as u32) + role::STALL;
    loop {
        let s = snap(ring)?;
        if s.head >= seq {
            let cpu = super::measure::schedstat_ns(pid);
            return Ok((s, cpu, Instant::now()));
        }
        if Instant::now() >= deadline {
            bail!("the daemon's head stuck at {} (waiting for {seq})", s.head);
        }
        // Half the expected time to the frame before it, then finely.
        let ahead = (seq - s.head).saturating_sub(1);
        let nap = if ahead > 0 {
            frame.mul_f64(ahead as f64 / 2.0)
        } else {
            Duration::from_micros(200)
        };
        std::thread::sleep(nap);
    }
}

/// The producer participant: the daemon, and its measured window.
pub fn producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    if sc.mode != Mode::Paced {
        bail!("camux-daemon runs paced scenarios only (its source sets the rate)");
    }
    let daemon = Daemon::start(spec)?;
    wait_status(&daemon, "starting", |s| {
        s.state == "publishing" && s.published > 0
    })?;
    let (ring, _, _) = camux::ring::paths(&ring_dir(spec), STREAM);
    role::say(&Line::Ready)?;
    role::wait_go();
    let deadline = Instant::now() + SETUP;
    loop {
        let s = snap(&ring)?;
        if s.readers >= sc.readers {
            break;
        }
        if Instant::now() >= deadline {
            bail!("only {} of {} readers registered", s.readers, sc.readers);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s0 = daemon.status()?;
    let head = snap(&ring)?.head;
    let frames = (sc.fps * sc.seconds).round().max(1.0) as u64;
    let first = head + sc.warmup() + 1;
    let last = first + frames - 1;
    let tmp = window_path(spec).with_extension("tmp");
    std::fs::write(&tmp, format!("{first} {last}\n"))?;
    std::fs::rename(&tmp, window_path(spec))?;
    let pid = daemon.pid();
    let (a, cpu0, t0) = at_seq(&ring, pid, first - 1, sc.fps)?;
    let (b, cpu1, t1) = at_seq(&ring, pid, last, sc.fps)?;
    // The head is read within 0.2 ms of each frame; should a poll come a
    // frame late, the CPU is scaled to the window's frames.
    let seen = (b.head - a.head).max(1);
    let cpu = super::hist::cpu_between(cpu0, cpu1);
    let cpu = (cpu as f64 * frames as f64 / seen as f64) as u64;
    // The source's render cost per frame, from the daemon's own counters:
    // a flush (every 250 ms) must lie between the two reads.
    let s1 = loop {
        let s = daemon.status()?;
        if s.published > s0.published {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let src_per_frame_ns =
        (s1.source_cpu_ms - s0.source_cpu_ms).max(0.0) * 1e6 / (s1.published - s0.published) as f64;
    let report = ProducerReport {
        frames,
        dropped: b.dropped.saturating_sub(a.dropped),
        window_ns: t1.duration_since(t0).as_nanos() as u64,
        cpu_ns: cpu,
        cpu_clock_ns: cpu,
        private_kib: super::measure::private_kib(&pid.to_string()),
        source_cpu_ns: Some((src_per_frame_ns * frames as f64) as u64),
        note: Some(format!(
            "producer CPU: the camux daemon process, all threads (schedstat), \
             minus its synthetic source's render (/status source_cpu_ms: \
             {:.1} us a frame over {} frames)",
            src_per_frame_ns / 1e3,
            s1.published - s0.published
        )),
    };
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    drop(daemon);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::spec::{Scenario, Shape, System, Touch, Wait};
    use super::*;

    #[test]
    fn config_and_chunks() {
        let spec = Spec {
            scenario: Scenario {
                group: "daemon".into(),
                system: System::CamuxDaemon,
                shape: Shape::FHD,
                readers: 4,
                mode: Mode::Paced,
                fps: 60.0,
                wait: Wait::Block,
                touch: Touch::Meta,
                seconds: 1.0,
            },
            dir: "/dev/shm/x".into(),
            tag: "s3".into(),
        };
        let y = config_yaml(&spec);
        assert!(y.contains("dir: /dev/shm/x/s3-daemon\n"), "{y}");
        assert!(
            y.contains("format: YUYV, width: 1920, height: 1080, fps: 60 }"),
            "{y}"
        );
        assert!(y.contains("slots: 12"), "{y}");
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
        assert!(dechunk("5\r\nab").is_err());
    }
}
