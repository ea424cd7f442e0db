//! Helpers for the multi-process tests: run the real `camux` executable in a
//! fresh temporary directory, read its JSON lines live, kill it on drop, and
//! bound every test by a watchdog instead of a maximum-runtime assertion.
//!
//! The shape follows ripgrep's `tests/util.rs`: a [`Dir`] per test, commands
//! built from it, and helpers that panic with everything needed to
//! understand a failure (the command line, its stderr, what was seen).

#![allow(dead_code)] // not every test binary uses every helper

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The `camux` executable cargo built for this test run.
pub fn camux_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_camux"))
}

/// Writes straight to the test binary's stderr, bypassing the harness's
/// output capture: for measurements, skips, and the watchdog's last words
/// (captured output is lost when the watchdog aborts).
pub fn note(msg: impl AsRef<str>) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", msg.as_ref());
}

// ---------------------------------------------------------------------------
// Serialisation and the registry the watchdog cleans up.

/// The process tests share two cores: one at a time keeps a slow run from
/// turning into a flaky one. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child the watchdog must kill (its process group) before aborting.
struct Registered {
    id: u64,
    pgid: i32,
    name: String,
    stderr: Arc<Mutex<Tail>>,
}

/// Mount points the watchdog must detach before aborting.
struct Registry {
    children: Vec<Registered>,
    mounts: Vec<(u64, PathBuf)>,
    dirs: Vec<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    REG.get_or_init(|| {
        Mutex::new(Registry {
            children: Vec::new(),
            mounts: Vec::new(),
            dirs: Vec::new(),
        })
    })
}

fn reg() -> MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The last lines a child wrote to stderr (bounded).
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    const KEEP: usize = 40;
    fn push(&mut self, line: String) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
    fn text(&self) -> String {
        self.lines.iter().fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "    {l}");
            s
        })
    }
}

// ---------------------------------------------------------------------------
// Watchdog.

/// Aborts the whole test binary with a clear message if the test it guards
/// is still running after its deadline: every blocking wait in these tests
/// is bounded by it rather than by a timeout of its own. Before aborting it
/// kills every child process group and detaches every mount it knows of, so
/// nothing outlives the run.
pub struct Watchdog {
    phase: Arc<Mutex<String>>,
    _cancel: mpsc::Sender<()>,
}

impl Watchdog {
    /// Starts a watchdog for `test` that fires after `limit`.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        let phase = Arc::new(Mutex::new(String::from("starting")));
        let (cancel, cancelled) = mpsc::channel::<()>();
        let (test, p) = (test.to_owned(), phase.clone());
        std::thread::Builder::new()
            .name(format!("watchdog-{test}"))
            .spawn(move || {
                // Nothing is ever sent: the test dropping the Sender is the
                // "done" signal, and a timeout is the "hung" one.
                if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
                    fire(&test, limit, &p.lock().unwrap_or_else(|e| e.into_inner()));
                }
            })
            .expect("spawn watchdog");
        Watchdog {
            phase,
            _cancel: cancel,
        }
    }

    /// Records what the test is waiting for, for the watchdog's message.
    pub fn phase(&self, what: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = what.into();
    }
}

fn fire(test: &str, limit: Duration, phase: &str) -> ! {
    let mut msg = format!(
        "\n==== WATCHDOG: test `{test}` still running after {limit:?}; aborting the test binary.\n\
         ==== it was: {phase}\n"
    );
    let reg = reg();
    for c in &reg.children {
        let _ = write!(
            msg,
            "---- child {} (pgid {}), last stderr lines:\n{}",
            c.name,
            c.pgid,
            c.stderr.lock().unwrap_or_else(|e| e.into_inner()).text()
        );
        let _ = kill(Pid::from_raw(-c.pgid), Signal::SIGKILL);
    }
    for (_, m) in &reg.mounts {
        let _ = Command::new("umount").arg("-l").arg(m).status();
    }
    // Aborting skips the TempDir destructors.
    for d in &reg.dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    note(msg);
    std::process::abort();
}

// ---------------------------------------------------------------------------
// A fresh directory and commands run in it.

/// A fresh temporary directory for one test; the ring directory is the
/// directory itself unless a test makes subdirectories.
pub struct Dir {
    tmp: tempfile::TempDir,
    born: Instant,
}

impl Dir {
    /// Makes `camux-<name>-XXXX` under the system temp dir.
    pub fn new(name: &str) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("camux-{name}-"))
            .tempdir()
            .expect("create temp dir");
        reg().dirs.push(tmp.path().to_owned());
        Dir {
            tmp,
            born: Instant::now(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// When the directory was made: no process of the test is older.
    pub fn born(&self) -> Instant {
        self.born
    }

    /// The ring file of `stream` in `dir`.
    pub fn ring(dir: &Path, stream: &str) -> PathBuf {
        dir.join(format!("{stream}.ring"))
    }

    /// A `camux` command with `args`, run in this directory.
    pub fn camux<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(camux_exe());
        c.args(args).current_dir(self.path());
        c
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let me = self.tmp.path();
        reg().dirs.retain(|d| d != me);
    }
}

/// Splits a command line written as one string (no quoting needed here).
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// Running processes.

/// One line of a child's stdout.
#[derive(Debug, Clone)]
pub enum Line {
    /// A JSON object.
    Json(Value),
    /// Anything else (kept for the failure message).
    Text(String),
}

/// A running child: its own process group (killed with SIGKILL on drop),
/// its stdout JSON lines arriving on a channel, its stderr collected.
pub struct Proc {
    /// A short name for messages (`producer#2`, `reader-a`, ...).
    pub name: String,
    cmdline: String,
    child: Child,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<Tail>>,
    status: Option<ExitStatus>,
    reg_id: u64,
    /// Every line received so far, in order.
    pub seen: Vec<Line>,
}

impl Proc {
    /// Spawns `cmd` as `name` in a new process group with piped stdout and
    /// stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let cmdline = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {cmdline}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let l = match serde_json::from_str::<Value>(&line) {
                        Ok(v @ Value::Object(_)) => Line::Json(v),
                        _ => Line::Text(line),
                    };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn stdout reader");
        let stderr = Arc::new(Mutex::new(Tail::default()));
        let err = child.stderr.take().expect("piped stderr");
        let (e2, n2) = (stderr.clone(), name.to_owned());
        std::thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    // Captured by the harness: shown when the test fails.
                    eprintln!("[{n2}] {line}");
                    e2.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
            .expect("spawn stderr reader");
        let reg_id = next_id();
        reg().children.push(Registered {
            id: reg_id,
            pgid: child.id() as i32,
            name: name.to_owned(),
            stderr: stderr.clone(),
        });
        Proc {
            name: name.to_owned(),
            cmdline,
            child,
            lines,
            stderr,
            status: None,
            reg_id,
            seen: Vec::new(),
        }
    }

    /// The child's PID (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// The last stderr lines, for messages.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).text()
    }

    fn died(&mut self, waiting_for: &str) -> ! {
        let status = self.wait();
        panic!(
            "{} exited ({status}) while waiting for {waiting_for}\n  command: {}\n  last stdout lines: {:#?}\n  stderr:\n{}",
            self.name,
            self.cmdline,
            self.seen.iter().rev().take(10).collect::<Vec<_>>(),
            self.stderr_text()
        );
    }

    /// The next stdout line, blocking (the watchdog bounds the wait);
    /// `None` once stdout is closed (the process exited).
    pub fn next_line(&mut self) -> Option<Line> {
        let l = self.lines.recv().ok()?;
        self.seen.push(l.clone());
        Some(l)
    }

    /// A line already received, if any, without blocking.
    pub fn try_line(&mut self) -> Option<Line> {
        match self.lines.try_recv() {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Blocks until a JSON line with `"event": event`, and returns it.
    /// Other lines are kept in [`Proc::seen`]. Panics if the process exits
    /// first.
    pub fn wait_event(&mut self, event: &str) -> Value {
        loop {
            match self.next_line() {
                Some(Line::Json(v)) if v["event"] == event => return v,
                Some(_) => {}
                None => self.died(&format!("event {event:?}")),
            }
        }
    }

    /// Sends `sig` to the process (not yet reaped: we reap only in
    /// [`Proc::wait`], so the PID is still ours).
    pub fn signal(&self, sig: Signal) {
        if let Err(e) = kill(Pid::from_raw(self.pid() as i32), sig) {
            panic!("kill({}, {sig}) for {}: {e}", self.pid(), self.name);
        }
    }

    /// Sends SIGSTOP and returns once the kernel reports the process
    /// stopped (`waitid(WSTOPPED | WNOWAIT)`: a blocking wait on that state
    /// change, which it leaves for nobody else to reap). A signal is
    /// delivered asynchronously, so without this the process may still run
    /// for a while after [`Proc::signal`] returns.
    pub fn freeze(&self) {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        self.signal(Signal::SIGSTOP);
        let pid = Pid::from_raw(self.pid() as i32);
        loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WSTOPPED | WaitPidFlag::WNOWAIT) {
                // Stopped, by ours or by any stop signal: either way it runs
                // no more. (WNOWAIT leaves the state to be reported again,
                // so waiting on for another one would spin.)
                Ok(WaitStatus::Stopped(..)) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(other) => panic!("{} did not stop: {other:?}", self.name),
                Err(e) => panic!("waitid({pid}) for {}: {e}", self.name),
            }
        }
    }

    /// Sends `sig` to the whole process group.
    pub fn signal_group(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(-(self.pid() as i32)), sig);
    }

    /// Waits for the process to exit (bounded by the watchdog).
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let s = self.child.wait().expect("wait for child");
        self.status = Some(s);
        s
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(s) => {
                self.status = Some(s);
                false
            }
            None => true,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        if self.is_running() {
            self.signal(Signal::SIGKILL);
        }
        self.wait()
    }

    /// SIGTERM, then reads the rest of stdout and reaps; returns the
    /// status and the remaining JSON lines (the exit summary among them).
    pub fn terminate(&mut self) -> (ExitStatus, Vec<Value>) {
        if self.is_running() {
            self.signal(Signal::SIGTERM);
        }
        let mut rest = Vec::new();
        while let Some(l) = self.next_line() {
            if let Line::Json(v) = l {
                rest.push(v);
            }
        }
        (self.wait(), rest)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The group, so that helpers the child started go too.
        if self.status.is_none() {
            self.signal_group(Signal::SIGKILL);
            // A stopped process dies of SIGKILL too; reap it.
            let _ = self.child.wait();
        }
        reg().children.retain(|c| c.id != self.reg_id);
    }
}

/// Runs `cmd` to completion (bounded by the watchdog) and returns its
/// stdout, panicking with stderr if it fails.
pub fn run_ok(mut cmd: Command) -> String {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {line}: {e}"));
    if !out.status.success() {
        panic!(
            "{line} failed ({})\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

// ---------------------------------------------------------------------------
// camux-specific wrappers.

/// A `camux publish` process.
pub struct Producer {
    /// The process.
    pub proc: Proc,
    /// Its `ready` line.
    pub ready: Value,
}

impl Producer {
    /// Spawns `camux publish --dir <dir> --stream <stream> <extra>` and waits
    /// for its `ready` line.
    pub fn start(name: &str, d: &Dir, dir: &Path, stream: &str, extra: &str) -> Producer {
        let mut p = Self::spawn(name, d, dir, stream, extra);
        let ready = p.wait_event("ready");
        Producer { proc: p, ready }
    }

    /// Spawns the producer without waiting for it to be ready.
    pub fn spawn(name: &str, d: &Dir, dir: &Path, stream: &str, extra: &str) -> Proc {
        let mut args = vec![
            "publish".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
            "--stream".to_owned(),
            stream.to_owned(),
        ];
        args.extend(words(extra));
        Proc::spawn(name, d.camux(args))
    }

    /// The ready line's `origin`.
    pub fn origin(&self) -> &str {
        self.ready["origin"].as_str().unwrap_or("<missing>")
    }

    /// The ready line's `epoch`.
    pub fn epoch(&self) -> u64 {
        self.ready["epoch"].as_u64().expect("ready.epoch")
    }

    /// The ready line's `next_seq`.
    pub fn next_seq(&self) -> u64 {
        self.ready["next_seq"].as_u64().expect("ready.next_seq")
    }

    /// The ready line's `ring` path.
    pub fn ring(&self) -> PathBuf {
        PathBuf::from(self.ready["ring"].as_str().expect("ready.ring"))
    }

    /// SIGTERM; returns the `stopped` line.
    pub fn stop(mut self) -> Value {
        let name = self.proc.name.clone();
        let (status, rest) = self.proc.terminate();
        assert!(
            status.success(),
            "{name} did not exit cleanly on SIGTERM: {status}\nstderr:\n{}",
            self.proc.stderr_text()
        );
        rest.into_iter()
            .find(|v| v["event"] == "stopped")
            .unwrap_or_else(|| panic!("{name} printed no stopped line"))
    }
}

/// A frame line of `camux tail --json`.
#[derive(Debug, Clone)]
pub struct FrameLine {
    /// The whole line.
    pub raw: Value,
    /// `seq`.
    pub seq: u64,
    /// `epoch`.
    pub epoch: u64,
    /// `len`.
    pub len: u64,
    /// `verified` (`None` for JSON null).
    pub verified: Option<bool>,
    /// `gap_ms` (`None` for JSON null).
    pub gap_ms: Option<f64>,
}

/// One line of `camux tail --json`, classified.
#[derive(Debug, Clone)]
pub enum Item {
    /// A frame.
    Frame(FrameLine),
    /// `{"event": ...}`; the name and the line.
    Event(String, Value),
}

/// Everything a tail printed, in order, with running totals.
#[derive(Debug, Default)]
pub struct TailLog {
    /// All items in order.
    pub items: Vec<Item>,
    /// Frame lines.
    pub frames: usize,
    /// Sum of `missed` over `lagged` events.
    pub missed: u64,
    /// Non-JSON stdout lines (should stay empty with `--json`).
    pub text: Vec<String>,
}

impl TailLog {
    /// The frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = &FrameLine> {
        self.items.iter().filter_map(|i| match i {
            Item::Frame(f) => Some(f),
            _ => None,
        })
    }

    /// The events named `name`.
    pub fn events<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.items.iter().filter_map(move |i| match i {
            Item::Event(n, v) if n == name => Some(v),
            _ => None,
        })
    }

    /// The last frame received.
    pub fn last(&self) -> Option<&FrameLine> {
        self.items.iter().rev().find_map(|i| match i {
            Item::Frame(f) => Some(f),
            _ => None,
        })
    }

    /// The first frame received.
    pub fn first(&self) -> Option<&FrameLine> {
        self.frames().next()
    }

    fn push(&mut self, v: Value) {
        if let Some(ev) = v.get("event").and_then(Value::as_str) {
            if ev == "lagged" {
                self.missed += v["missed"].as_u64().expect("lagged.missed");
            }
            self.items.push(Item::Event(ev.to_owned(), v));
            return;
        }
        let f = FrameLine {
            seq: v["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("frame line without seq: {v}")),
            epoch: v["epoch"]
                .as_u64()
                .unwrap_or_else(|| panic!("frame line without epoch: {v}")),
            len: v["len"].as_u64().unwrap_or(0),
            verified: v["verified"].as_bool(),
            gap_ms: v["gap_ms"].as_f64(),
            raw: v,
        };
        self.frames += 1;
        self.items.push(Item::Frame(f));
    }

    /// Checks the lines against the every-frame contract and returns the
    /// accounting: every frame follows the previous one, or follows it by
    /// exactly the `missed` of the `lagged` events in between; the epoch
    /// never goes back, and a frame whose epoch differs from the previous
    /// frame's carries a gap. With that, frames + missed (after the first
    /// frame) == last − first + 1.
    pub fn check_every_frame(&self, who: &str) -> Accounting {
        let mut expect: Option<u64> = None;
        let mut prev_epoch: Option<u64> = None;
        let mut acc = Accounting::default();
        let mut pending = 0;
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Event(n, v) if n == "lagged" => {
                    let m = v["missed"].as_u64().expect("missed");
                    assert!(m > 0, "{who}: lagged event with missed 0 at item {i}: {v}");
                    match &mut expect {
                        // Counted once a frame follows (a lag reported just
                        // before the reader stopped lies past the last frame).
                        Some(e) => {
                            *e += m;
                            pending += m;
                        }
                        // Lag before the first frame: outside the window.
                        None => acc.missed_before_first += m,
                    }
                }
                // A replaced file numbers its epochs afresh.
                Item::Event(n, _) if n == "format_changed" => prev_epoch = None,
                Item::Event(..) => {}
                Item::Frame(f) => {
                    if let Some(e) = expect {
                        assert_eq!(
                            f.seq, e,
                            "{who}: frame at item {i} has seq {} but {} was due (previous items: {:#?})",
                            f.seq,
                            e,
                            &self.items[i.saturating_sub(4)..i]
                        );
                    } else {
                        acc.first = f.seq;
                    }
                    acc.missed += std::mem::take(&mut pending);
                    if let Some(pe) = prev_epoch {
                        assert!(
                            f.epoch >= pe,
                            "{who}: epoch went back from {pe} to {} at seq {}",
                            f.epoch,
                            f.seq
                        );
                        if f.epoch != pe {
                            assert!(
                                f.gap_ms.is_some(),
                                "{who}: first frame of epoch {} (seq {}) has no gap_ms: {}",
                                f.epoch,
                                f.seq,
                                f.raw
                            );
                            acc.epoch_changes += 1;
                        }
                    }
                    prev_epoch = Some(f.epoch);
                    expect = Some(f.seq + 1);
                    acc.last = f.seq;
                    acc.frames += 1;
                }
            }
        }
        acc.missed_after_last = pending;
        if acc.frames > 0 {
            assert_eq!(
                acc.frames + acc.missed,
                acc.last - acc.first + 1,
                "{who}: accounting"
            );
        }
        acc
    }
}

/// What [`TailLog::check_every_frame`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// First frame's seq.
    pub first: u64,
    /// Last frame's seq.
    pub last: u64,
    /// Frames received.
    pub frames: u64,
    /// Frames missed between the first and the last (lagged events).
    pub missed: u64,
    /// Frames missed before the first frame arrived.
    pub missed_before_first: u64,
    /// Frames reported missed after the last frame arrived.
    pub missed_after_last: u64,
    /// Frames whose epoch differs from the frame before.
    pub epoch_changes: u64,
}

/// A `camux tail --json` process and what it printed so far.
pub struct Reader {
    /// The process.
    pub proc: Proc,
    /// Its lines so far.
    pub log: TailLog,
    /// When the test's directory was made (see [`Reader::stop`]).
    born: Instant,
}

impl Reader {
    /// Spawns `camux tail --dir <dir> <stream> --json <extra>`.
    pub fn start(name: &str, d: &Dir, dir: &Path, stream: &str, extra: &str) -> Reader {
        let mut args = vec![
            "tail".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
            stream.to_owned(),
            "--json".to_owned(),
        ];
        args.extend(words(extra));
        Self::from_command(name, d, d.camux(args))
    }

    /// Wraps an already built tail command (e.g. one run through `setpriv`).
    pub fn from_command(name: &str, d: &Dir, cmd: Command) -> Reader {
        Reader {
            proc: Proc::spawn(name, cmd),
            log: TailLog::default(),
            born: d.born(),
        }
    }

    /// Takes in one line, blocking; panics if the tail exits, or prints a
    /// torn-frame event (property 2: never a torn frame).
    fn pump_one(&mut self, waiting_for: &str) {
        match self.proc.next_line() {
            Some(Line::Json(v)) => {
                if v["event"] == "torn" {
                    panic!(
                        "{}: TORN frame reported while waiting for {waiting_for}: {v}\nstderr:\n{}",
                        self.proc.name,
                        self.proc.stderr_text()
                    );
                }
                self.log.push(v)
            }
            Some(Line::Text(t)) => self.log.text.push(t),
            None => self.proc.died(waiting_for),
        }
    }

    /// Reads lines until `done(log)` holds (checked before each line too).
    pub fn pump_until(&mut self, what: &str, mut done: impl FnMut(&TailLog) -> bool) {
        while !done(&self.log) {
            self.pump_one(what);
        }
    }

    /// Reads until `n` more frames arrived.
    pub fn pump_frames(&mut self, n: usize) {
        let want = self.log.frames + n;
        self.pump_until(&format!("{want} frames"), |l| l.frames >= want);
    }

    /// Reads until a frame with seq >= `seq` arrived.
    pub fn pump_to_seq(&mut self, seq: u64) {
        self.pump_until(&format!("a frame with seq >= {seq}"), |l| {
            l.last().is_some_and(|f| f.seq >= seq)
        });
    }

    /// Takes in whatever is already there, without blocking.
    pub fn drain(&mut self) {
        while let Some(l) = self.proc.try_line() {
            match l {
                Line::Json(v) => {
                    assert_ne!(v["event"], "torn", "{}: torn frame: {v}", self.proc.name);
                    self.log.push(v)
                }
                Line::Text(t) => self.log.text.push(t),
            }
        }
    }

    /// SIGTERM; reads the rest and returns the exit summary line. Asserts
    /// a clean exit (status 0).
    pub fn stop(&mut self) -> Value {
        if self.proc.is_running() {
            self.proc.signal(Signal::SIGTERM);
        }
        let mut summary = None;
        while let Some(l) = self.proc.next_line() {
            match l {
                Line::Json(v) if v["event"] == "summary" => summary = Some(v),
                Line::Json(v) => {
                    assert_ne!(v["event"], "torn", "{}: torn frame: {v}", self.proc.name);
                    self.log.push(v)
                }
                Line::Text(t) => self.log.text.push(t),
            }
        }
        let status = self.proc.wait();
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM\nstderr:\n{}",
            self.proc.name,
            self.proc.stderr_text()
        );
        // Every producer this reader ever saw started after the test's
        // directory was made, so no stale event may claim a longer silence
        // (a bound that holds however slow the machine is).
        let bound = ms_since(self.born);
        for v in self.log.events("stale") {
            let since = v["since_ms"].as_f64().expect("stale.since_ms");
            assert!(
                since <= bound,
                "{}: stale event claims {since:.0} ms without a heartbeat, but the test has run only {bound:.0} ms: {v}",
                self.proc.name
            );
        }
        summary.unwrap_or_else(|| panic!("{}: no summary line at exit", self.proc.name))
    }

    /// Asserts every frame so far was verified (`verified: true`), but for
    /// a frame the producer revoked while it was being read (a `revoked`
    /// event names it and its line says `verified: null`: the reader was
    /// told, property 3).
    pub fn assert_all_verified(&self) {
        let revoked: std::collections::HashSet<u64> = self
            .log
            .events("revoked")
            .filter_map(|v| v["seq"].as_u64())
            .collect();
        for f in self.log.frames() {
            if f.verified.is_none() && revoked.contains(&f.seq) {
                continue;
            }
            assert_eq!(
                f.verified,
                Some(true),
                "{}: frame seq {} not verified: {}",
                self.proc.name,
                f.seq,
                f.raw
            );
        }
    }
}

/// The reader table of an inspect snapshot; `None` if no producer answered
/// (inspect then prints `readers: null` and a `readers_error`).
pub fn readers(snap: &Value) -> Option<&Vec<Value>> {
    snap["readers"].as_array()
}

/// The reader entry whose pid is `pid`, if registered. Panics if the
/// producer did not answer: "no table" must not read as "not in the table".
pub fn reader_with_pid(snap: &Value, pid: u32) -> Option<Value> {
    readers(snap)
        .unwrap_or_else(|| panic!("inspect got no reader table: {}", snap["readers_error"]))
        .iter()
        .find(|r| r["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
}

/// The integer at `key` of a JSON object; panics naming it if absent.
pub fn u64_at(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}

/// `camux inspect <ring> --json`, parsed.
pub fn inspect(d: &Dir, ring: &Path) -> Value {
    let out = run_ok(d.camux(["inspect".as_ref(), ring.as_os_str(), "--json".as_ref()]));
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}):\n{out}"))
}

/// The descriptors open in process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// A fresh, unconnected Unix SOCK_SEQPACKET socket, as a reader's client
/// makes to reach a producer's `<stream>.sock`.
pub fn seqpacket_socket() -> std::os::fd::OwnedFd {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("a Unix seqpacket socket")
}

/// Polls `cond` until it holds (bounded by the watchdog). For states that
/// only show in polled files (`/proc`, `inspect`): no notification exists
/// to wait on, so a short poll interval is the condition wait.
pub fn poll_until<T>(mut cond: impl FnMut() -> Option<T>) -> T {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(t) = cond() {
            return t;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Elapsed time since `t` in milliseconds, for notes.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// Mounts and /proc.

/// A mount point detached on drop (and by the watchdog if it fires).
pub struct MountGuard {
    path: PathBuf,
    id: u64,
}

impl MountGuard {
    /// Bind-mounts `src` on `dst` read-only. `Err` explains why not (not
    /// permitted here, for instance).
    pub fn bind_ro(src: &Path, dst: &Path) -> Result<MountGuard, String> {
        let out = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(dst)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount --bind failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let id = next_id();
        reg().mounts.push((id, dst.to_owned()));
        let g = MountGuard {
            path: dst.to_owned(),
            id,
        };
        let out = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dst)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "remount read-only failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(g)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        reg().mounts.retain(|(id, _)| *id != self.id);
    }
}

/// Lines of `/proc/<pid>/maps` that map `file`.
pub fn maps_of(pid: u32, file: &Path) -> Vec<String> {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{pid}/maps"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"));
    let want = file.display().to_string();
    s.lines()
        .filter(|l| l.split_whitespace().nth(5).is_some_and(|p| p == want))
        .map(str::to_owned)
        .collect()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds an executable on PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(prog))
            .find(|p| p.is_file())
    })
}

/// Device and inode of `path` as `/proc/locks` prints them
/// (`MAJOR:MINOR:INODE`, major and minor in hex).
pub fn lock_key(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let dev = m.dev();
    // glibc's encoding of dev_t (what the kernel's new_encode_dev undoes).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major:02x}:{minor:02x}:{}", m.ino())
}

/// Whether `/proc/locks` shows `pid` blocked waiting for a lock on the file
/// with key `key` (see [`lock_key`]): waiters are the `->` lines.
pub fn blocked_on_lock(pid: u32, key: &str) -> bool {
    let s = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    s.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INO 0 EOF"
        f.get(1) == Some(&"->")
            && f.get(5).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
            && f.get(6) == Some(&key)
    })
}

// ---------------------------------------------------------------------------
// HTTP (the daemon's endpoints).

/// A minimal HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response to {path}: {head}"));
    (code, body.to_string())
}
