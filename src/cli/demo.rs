//! `camux demo`: one in-process publisher, N reader processes, live figures.

use super::common::{parse_duration, SourceArgs};
use super::json::{self, FormatJson, Percentiles};
use super::publish::{publish_one, ring_options};
use super::stats::p50_p99;
use super::{signal, Status};
use anyhow::{bail, Context};
use camux::ring::{RingOptions, StreamFormat};
use camux::source::Synthetic;
use camux::Publisher;
use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Run a publisher and several reader processes, and show what they see.

Creates a fresh temporary directory (in /dev/shm when there is one),
publishes the synthetic test pattern into a ring there from a thread of
this process (rendered straight into the ring slots: zero copy), and starts
--readers separate processes of `camux tail --json --verify`, each mapping
the ring read-only. Publishing starts once every reader is registered, so
each should get every frame. Once a second it shows, per reader: frames,
frame rate, frames verified, frames lagged, and the latency (publish to
receive) p50/p99 over that second, redrawn in place on a terminal.

After --seconds it stops publishing, waits (up to 2 s) for every reader to
get the last frame, stops the readers with SIGTERM, collects their
summaries, and prints a summary to stderr. With --json it also prints one
JSON object to stdout:
  {\"frames_published\":N,\"dropped\":N,\"seconds\":F,\"format\":{..},\"machine\":{..},
   \"readers\":[{\"frames\":N,\"verified\":N,\"torn\":N,\"lagged\":N,
                \"latency_us\":{\"p50\":F,\"p99\":F},\"exit_code\":N,...}],\"ok\":true}

Exit status: 0 if every reader verified every frame it got, 3 if a reader
saw a torn or unverifiable frame, 1 if a reader died or got no frame.

Examples:
  camux demo
  camux demo --readers 4 --seconds 10 --json
  camux demo --width 1920 --height 1080 --format NV12 --fps 60";

/// Run a publisher and several reader processes, and show what they see.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct DemoArgs {
    /// Reader processes to start.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub readers: u32,
    /// How long to publish (seconds, or with a unit: 500ms, 1m).
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_duration)]
    pub seconds: Duration,
    /// What to render.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Frame slots in the ring [default: 2 × readers + 4, at least 8].
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// Print one JSON object with the results to stdout.
    #[arg(long)]
    pub json: bool,
}

const STREAM: &str = "demo";
/// How long readers may take to start and register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long readers may take to get the last frame after publishing stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readers may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);

/// What the publisher thread reports when it stops publishing.
#[derive(Debug, Clone, Copy)]
struct PubReport {
    published: u64,
    dropped: u64,
    revoked: u64,
    last_seq: u64,
    elapsed: Duration,
}

/// Everything the main thread waits for, on one channel.
enum Msg {
    Line { reader: usize, value: Value },
    Garbage { reader: usize, line: String },
    Eof { reader: usize },
    Done(Result<PubReport, String>),
}

enum Setup {
    Created,
    Registered(u32),
    Failed(String),
}

/// The publishing thread: create, wait for the readers, publish for
/// `seconds`, then keep the ring served (readers cannot read a stopped
/// ring) until `release` closes.
fn publisher_thread(
    source: Synthetic,
    opts: RingOptions,
    readers: u32,
    seconds: Duration,
    setup: Sender<Setup>,
    done: Sender<Msg>,
    release: Receiver<()>,
) {
    let mut publisher = match Publisher::create(&opts) {
        Ok(p) => p,
        Err(e) => {
            let e = anyhow::Error::from(e).context("cannot create the demo ring");
            let _ = setup.send(Setup::Failed(format!("{e:#}")));
            return;
        }
    };
    let _ = setup.send(Setup::Created);
    let n = publisher.wait_readers(readers, REGISTER_TIMEOUT);
    let _ = setup.send(Setup::Registered(n));
    if n < readers {
        return;
    }
    let report = publish_for(&mut publisher, &source, seconds).map_err(|e| format!("{e:#}"));
    let _ = done.send(Msg::Done(report));
    let _ = release.recv();
}

fn publish_for(
    publisher: &mut Publisher,
    source: &Synthetic,
    seconds: Duration,
) -> anyhow::Result<PubReport> {
    let mut pacer = source.pacer();
    let start = Instant::now();
    let deadline = start + seconds;
    let mut captured = 0;
    loop {
        pacer.wait();
        // Checked after the sleep: the deadline may have passed during it.
        if Instant::now() >= deadline || signal::stop_requested() {
            break;
        }
        captured += 1;
        let info = super::common::captured_now(captured);
        publish_one(publisher, source, &info)?;
    }
    let stats = publisher.stats();
    Ok(PubReport {
        published: stats.published,
        dropped: stats.dropped,
        revoked: stats.revoked,
        last_seq: stats.head,
        elapsed: start.elapsed(),
    })
}

/// The reader processes. Dropping it kills any still running.
struct Fleet {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Fleet {
    fn spawn(
        exe: &Path,
        dir: &Path,
        n: usize,
        idle_timeout: Duration,
        tx: &Sender<Msg>,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet {
            children: Vec::new(),
            logs: Vec::new(),
        };
        for reader in 0..n {
            let log = dir.join(format!("reader-{reader}.stderr"));
            let stderr = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let mut child = Command::new(exe)
                .arg("tail")
                .arg("--dir")
                .arg(dir)
                .arg(STREAM)
                .args(["--json", "--verify", "--timeout-ms"])
                .arg(idle_timeout.as_millis().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .with_context(|| format!("cannot start reader {reader}: {}", exe.display()))?;
            let stdout = child.stdout.take().expect("piped");
            fleet.children.push(child);
            fleet.logs.push(log);
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("reader-{reader}"))
                .spawn(move || read_lines(reader, stdout, tx))
                .context("cannot start a reader thread")?;
        }
        Ok(fleet)
    }

    fn pid(&self, reader: usize) -> u32 {
        self.children[reader].id()
    }

    /// Sends SIGTERM to reader `i` (by its PID; it is our child, not yet reaped).
    fn terminate(&self, reader: usize) {
        let pid = nix::unistd::Pid::from_raw(self.pid(reader) as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    /// The last lines a reader wrote to stderr.
    fn stderr_tail(&self, reader: usize) -> String {
        let text = std::fs::read_to_string(&self.logs[reader]).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn read_lines(reader: usize, stdout: std::process::ChildStdout, tx: Sender<Msg>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let msg = match serde_json::from_str::<Value>(&line) {
            Ok(value) if value.is_object() => Msg::Line { reader, value },
            _ => Msg::Garbage { reader, line },
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::Eof { reader });
}

/// What the demo knows of one reader, from its output.
#[derive(Debug, Default)]
struct View {
    frames: u64,
    verified: u64,
    torn: u64,
    lagged: u64,
    last_seq: u64,
    latencies: Vec<f64>,
    window_frames: u64,
    window_latencies: Vec<f64>,
    summary: Option<Value>,
    torn_event: Option<Value>,
    garbage: Option<String>,
    eof: bool,
}

impl View {
    fn apply(&mut self, v: Value) {
        match v.get("event").and_then(Value::as_str) {
            Some("summary") => self.summary = Some(v),
            Some("torn") => {
                self.torn += 1;
                self.torn_event.get_or_insert(v);
            }
            Some("lagged") => self.lagged += v["missed"].as_u64().unwrap_or(0),
            Some(_) => {}
            None => {
                self.frames += 1;
                self.window_frames += 1;
                if v["verified"].as_bool() == Some(true) {
                    self.verified += 1;
                }
                if let Some(seq) = v["seq"].as_u64() {
                    self.last_seq = self.last_seq.max(seq);
                }
                if let Some(l) = v["latency_us"].as_f64() {
                    self.latencies.push(l);
                    self.window_latencies.push(l);
                }
            }
        }
    }

    fn caught_up(&self, last_seq: u64) -> bool {
        self.eof || self.summary.is_some() || self.last_seq >= last_seq
    }
}

/// The once-a-second figures on stderr.
struct Screen {
    tty: bool,
    drawn: usize,
    last: Instant,
    start: Instant,
}

fn us_text(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}us"))
}

impl Screen {
    /// Draws the last second's figures, or with `whole_run` those of the
    /// whole run (the last window may be a few milliseconds long).
    fn draw(&mut self, views: &mut [View], pids: &[u32], whole_run: bool) {
        let now = Instant::now();
        let since = if whole_run { self.start } else { self.last };
        let secs = now.duration_since(since).as_secs_f64().max(1e-3);
        self.last = now;
        let t = now.duration_since(self.start).as_secs_f64();
        let mut lines = vec![if whole_run {
            format!("camux demo  t={t:.1}s  (whole run)")
        } else {
            format!("camux demo  t={t:.0}s  (last second)")
        }];
        for (i, v) in views.iter_mut().enumerate() {
            if whole_run {
                v.window_frames = v.frames;
                v.window_latencies.clone_from(&v.latencies);
            }
            let (p50, p99) = p50_p99(&mut v.window_latencies);
            let state = if v.eof { "  (exited)" } else { "" };
            lines.push(format!(
                "  reader {i} (pid {}): {:>6} frames {:>7.1} fps  verified {:>6}  torn {}  lagged {:>4}  latency p50 {:>7} p99 {:>7}{state}",
                pids[i],
                v.frames,
                v.window_frames as f64 / secs,
                v.verified,
                v.torn,
                v.lagged,
                us_text(p50),
                us_text(p99),
            ));
            v.window_frames = 0;
            v.window_latencies.clear();
        }
        let mut out = String::new();
        if self.tty {
            if self.drawn > 0 {
                out += &format!("\x1b[{}A", self.drawn);
            }
            for l in &lines {
                out += "\r\x1b[2K";
                out += l;
                out += "\n";
            }
            self.drawn = lines.len();
        } else {
            for l in &lines {
                out += l;
                out += "\n";
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

/// One reader's result.
#[derive(Debug, Serialize)]
struct ReaderResult {
    reader: usize,
    pid: u32,
    frames: u64,
    verified: u64,
    torn: u64,
    lagged: u64,
    latency_us: Percentiles,
    exit_code: Option<i32>,
    problem: Option<String>,
    #[serde(skip)]
    status: Status,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: Option<String>,
    cpu: Option<String>,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    Machine {
        cpus: thread::available_parallelism().map_or(1, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        cpu,
    }
}

#[derive(Serialize)]
struct RingJson {
    path: String,
    slots: u32,
    slot_bytes: u64,
}

#[derive(Serialize)]
struct DemoJson {
    frames_published: u64,
    dropped: u64,
    revoked: u64,
    seconds: f64,
    fps: f64,
    format: FormatJson,
    ring: RingJson,
    machine: Machine,
    readers: Vec<ReaderResult>,
    ok: bool,
}

/// Judges one reader from what it printed and how it exited.
fn judge(
    reader: usize,
    pid: u32,
    view: &mut View,
    exit: Option<ExitStatus>,
    stderr: &str,
) -> ReaderResult {
    use std::os::unix::process::ExitStatusExt;
    let s = view.summary.as_ref();
    let get = |k: &str, observed: u64| s.and_then(|s| s[k].as_u64()).unwrap_or(observed);
    let (frames, verified, torn, lagged) = (
        get("frames", view.frames),
        get("verified", view.verified),
        get("torn", view.torn).max(view.torn),
        get("lagged", view.lagged),
    );
    let latency_us = match s {
        Some(s) => Percentiles {
            p50: s["latency_us"]["p50"].as_f64(),
            p99: s["latency_us"]["p99"].as_f64(),
        },
        None => {
            let (p50, p99) = p50_p99(&mut view.latencies);
            Percentiles { p50, p99 }
        }
    };
    let exit_code = exit.and_then(|e| e.code());
    let with_stderr = |m: String| {
        if stderr.is_empty() {
            m
        } else {
            format!("{m}; its stderr: {stderr}")
        }
    };
    let (status, problem) = if torn > 0 || exit_code == Some(Status::VerifyFailed.code().into()) {
        let what = view
            .torn_event
            .as_ref()
            .map_or("a torn frame".to_string(), |e| format!("a torn frame: {e}"));
        (Status::VerifyFailed, Some(what))
    } else if verified != frames {
        (
            Status::VerifyFailed,
            Some(format!("only {verified} of {frames} frames verified")),
        )
    } else if let Some(line) = &view.garbage {
        (
            Status::Failed,
            Some(format!("printed a line that is not JSON: {line:?}")),
        )
    } else if !exit.is_some_and(|e| e.success()) {
        let how = match exit {
            Some(e) => match (e.code(), e.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => format!("ended: {e}"),
            },
            None => "did not exit".into(),
        };
        (Status::Failed, Some(with_stderr(format!("reader {how}"))))
    } else if s.is_none() {
        (
            Status::Failed,
            Some(with_stderr("reader printed no summary".into())),
        )
    } else if frames == 0 {
        (Status::Failed, Some("reader received no frame".into()))
    } else {
        (Status::Success, None)
    };
    ReaderResult {
        reader,
        pid,
        frames,
        verified,
        torn,
        lagged,
        latency_us,
        exit_code,
        problem,
        status,
    }
}

/// Worst of two outcomes: a verification failure outranks any other failure.
fn worst(a: Status, b: Status) -> Status {
    let rank = |s| match s {
        Status::Success => 0,
        Status::Failed => 1,
        Status::VerifyFailed => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn make_tempdir() -> anyhow::Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("camux-demo-");
    // tmpfs, like /run/camux on a node; the default temp dir otherwise.
    b.tempdir_in("/dev/shm")
        .or_else(|_| b.tempdir())
        .context("cannot create a temporary directory")
}

/// Runs `camux demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<Status> {
    signal::install()?;
    let source = args.source.synthetic()?;
    let n = args.readers as usize;
    let tmp = make_tempdir()?;
    let mut opts = ring_options(&source, tmp.path(), STREAM);
    opts.slots = args.slots.unwrap_or((2 * args.readers + 4).max(8));
    let (ring_path, _, _) = camux::ring::paths(tmp.path(), STREAM);
    let slot_bytes = source.frame_bytes() as u64;
    let slots = opts.slots;
    let format = StreamFormat::from_layout(source.layout(), args.source.fps);
    let exe =
        std::env::current_exe().context("cannot find the camux executable for the readers")?;
    let period = Duration::from_secs_f64(1.0 / args.source.fps).min(Duration::from_secs(3600));
    let idle_timeout = REGISTER_TIMEOUT + Duration::from_secs(5) + 3 * period;

    eprintln!(
        "camux demo: {} at {} fps for {:.1} s to {n} reader processes; ring of {slots} slots x {} in {}",
        json::format_human(&format),
        args.source.fps,
        args.seconds.as_secs_f64(),
        super::inspect::human_bytes(slot_bytes),
        tmp.path().display()
    );

    let (setup_tx, setup_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    let publisher = {
        let tx = tx.clone();
        let (readers, seconds) = (args.readers, args.seconds);
        thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                publisher_thread(source, opts, readers, seconds, setup_tx, tx, release_rx)
            })
            .context("cannot start the publisher thread")?
    };
    match setup_rx.recv() {
        Ok(Setup::Created) => {}
        Ok(Setup::Failed(e)) => bail!(e),
        _ => bail!("the publisher thread ended before creating the ring"),
    }
    let fleet = Fleet::spawn(&exe, tmp.path(), n, idle_timeout, &tx)?;
    drop(tx);
    let pids: Vec<u32> = (0..n).map(|i| fleet.pid(i)).collect();
    match setup_rx.recv() {
        Ok(Setup::Registered(got)) if got as usize >= n => {}
        Ok(Setup::Registered(got)) => {
            let why: Vec<String> = (0..n)
                .map(|i| format!("reader {i}: {}", fleet.stderr_tail(i)))
                .filter(|s| !s.ends_with(": "))
                .collect();
            bail!(
                "only {got} of {n} readers registered within {} s{}",
                REGISTER_TIMEOUT.as_secs(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            );
        }
        _ => bail!("the publisher thread ended while waiting for readers"),
    }

    let mut views: Vec<View> = (0..n).map(|_| View::default()).collect();
    let start = Instant::now();
    let mut screen = Screen {
        tty: std::io::stderr().is_terminal(),
        drawn: 0,
        last: start,
        start,
    };
    let apply = |views: &mut [View], msg: Msg| -> Option<Result<PubReport, String>> {
        match msg {
            Msg::Line { reader, value } => views[reader].apply(value),
            Msg::Garbage { reader, line } => {
                views[reader].garbage.get_or_insert(line);
            }
            Msg::Eof { reader } => views[reader].eof = true,
            Msg::Done(report) => return Some(report),
        }
        None
    };

    // Publishing: live figures once a second until the publisher is done.
    let mut tick = start + TICK;
    let report = loop {
        match rx.recv_deadline(tick) {
            Ok(msg) => {
                if let Some(report) = apply(&mut views, msg) {
                    break report.map_err(anyhow::Error::msg)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                screen.draw(&mut views, &pids, false);
                tick += TICK;
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the publisher thread died"),
        }
    };

    // Every reader should get the last frame; wait for that on their lines.
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while !views.iter().all(|v| v.caught_up(report.last_seq)) {
        match rx.recv_deadline(drain_until) {
            Ok(msg) => {
                apply(&mut views, msg);
            }
            Err(_) => break,
        }
    }
    if screen.tty {
        screen.draw(&mut views, &pids, true);
    }

    // Stop the readers; each prints its summary and exits.
    for (i, v) in views.iter().enumerate() {
        if !v.eof {
            fleet.terminate(i);
        }
    }
    let exit_until = Instant::now() + EXIT_TIMEOUT;
    while !views.iter().all(|v| v.eof) {
        match rx.recv_deadline(exit_until) {
            Ok(msg) => {
                apply(&mut views, msg);
            }
            Err(_) => break,
        }
    }
    let mut fleet = fleet;
    let exits: Vec<Option<ExitStatus>> = fleet
        .children
        .iter_mut()
        .zip(&views)
        .map(|(child, v)| {
            if !v.eof {
                let _ = child.kill();
            }
            child.wait().ok()
        })
        .collect();
    drop(release_tx);
    let _ = publisher.join();

    let results: Vec<ReaderResult> = views
        .iter_mut()
        .enumerate()
        .map(|(i, v)| judge(i, pids[i], v, exits[i], &fleet.stderr_tail(i)))
        .collect();
    let status = results
        .iter()
        .fold(Status::Success, |s, r| worst(s, r.status));
    let secs = report.elapsed.as_secs_f64();
    let fps = if secs > 0.0 {
        report.published as f64 / secs
    } else {
        0.0
    };

    let mut err = String::new();
    err += &format!(
        "published {} frames in {secs:.2} s ({fps:.1} fps), dropped {}, revoked {}\n",
        report.published, report.dropped, report.revoked
    );
    err += &format!(
        "{:>6} {:>8} {:>8} {:>8} {:>5} {:>6} {:>9} {:>9}  result\n",
        "reader", "pid", "frames", "verified", "torn", "lagged", "p50", "p99"
    );
    for r in &results {
        err += &format!(
            "{:>6} {:>8} {:>8} {:>8} {:>5} {:>6} {:>9} {:>9}  {}\n",
            r.reader,
            r.pid,
            r.frames,
            r.verified,
            r.torn,
            r.lagged,
            us_text(r.latency_us.p50),
            us_text(r.latency_us.p99),
            r.problem.as_deref().unwrap_or("ok")
        );
    }
    err += &match status {
        Status::Success => format!(
            "OK: {n} readers in separate processes each verified every frame they received, none torn\n"
        ),
        Status::VerifyFailed => "FAILED: a reader saw a torn or unverifiable frame\n".into(),
        Status::Failed => "FAILED: a reader died or received nothing\n".into(),
    };
    eprint!("{err}");

    if args.json {
        let doc = DemoJson {
            frames_published: report.published,
            dropped: report.dropped,
            revoked: report.revoked,
            seconds: secs,
            fps,
            format: FormatJson::from(&format),
            ring: RingJson {
                path: ring_path.display().to_string(),
                slots,
                slot_bytes,
            },
            machine: machine(),
            ok: status == Status::Success,
            readers: results,
        };
        json::emit(&mut std::io::stdout().lock(), &doc)?;
    }
    drop(fleet);
    drop(tmp);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(lines: &[Value]) -> View {
        let mut v = View::default();
        for l in lines {
            v.apply(l.clone());
        }
        v
    }

    fn ok_exit() -> Option<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        Some(ExitStatus::from_raw(0))
    }

    #[test]
    fn views_count_frames_and_events() {
        let mut v = view(&[
            json!({"seq": 1, "verified": true, "latency_us": 10.0}),
            json!({"event": "lagged", "missed": 3}),
            json!({"seq": 5, "verified": true, "latency_us": 30.0}),
            json!({"event": "stale", "since_ms": 400.0}),
        ]);
        assert_eq!((v.frames, v.verified, v.lagged, v.last_seq), (2, 2, 3, 5));
        assert!(v.caught_up(5) && !v.caught_up(6));
        v.apply(
            json!({"event": "summary", "frames": 2, "verified": 2, "torn": 0,
                       "lagged": 3, "latency_us": {"p50": 10.0, "p99": 30.0}, "gaps": 0}),
        );
        let r = judge(0, 1, &mut v, ok_exit(), "");
        assert_eq!(r.status, Status::Success, "{:?}", r.problem);
        assert_eq!(r.latency_us.p99, Some(30.0));
    }

    #[test]
    fn judging_readers() {
        let summary = |frames: u64, verified: u64, torn: u64| {
            json!({"event": "summary", "frames": frames, "verified": verified, "torn": torn,
                   "lagged": 0, "latency_us": {"p50": 1.0, "p99": 2.0}, "gaps": 0})
        };
        let mut torn = view(&[
            json!({"seq": 1, "verified": false}),
            json!({"event": "torn", "seq": 1, "error": "checksum"}),
            summary(1, 0, 1),
        ]);
        let r = judge(0, 1, &mut torn, ok_exit(), "");
        assert_eq!(r.status, Status::VerifyFailed);
        assert!(r.problem.unwrap().contains("checksum"));

        let mut unverified = view(&[json!({"seq": 1, "verified": null}), summary(1, 0, 0)]);
        assert_eq!(
            judge(0, 1, &mut unverified, ok_exit(), "").status,
            Status::VerifyFailed
        );

        let mut empty = view(&[summary(0, 0, 0)]);
        assert_eq!(
            judge(0, 1, &mut empty, ok_exit(), "").status,
            Status::Failed
        );

        let mut died = view(&[json!({"seq": 1, "verified": true, "latency_us": 5.0})]);
        use std::os::unix::process::ExitStatusExt;
        let r = judge(0, 1, &mut died, Some(ExitStatus::from_raw(9)), "boom");
        assert_eq!(r.status, Status::Failed);
        let p = r.problem.unwrap();
        assert!(p.contains("signal 9") && p.contains("boom"), "{p}");
        assert_eq!(r.latency_us.p50, Some(5.0), "falls back to observed lines");

        assert_eq!(
            worst(Status::Failed, Status::VerifyFailed),
            Status::VerifyFailed
        );
        assert_eq!(
            worst(Status::VerifyFailed, Status::Failed),
            Status::VerifyFailed
        );
        assert_eq!(worst(Status::Success, Status::Failed), Status::Failed);
    }
}
