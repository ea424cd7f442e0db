//! `camux bench`: camux against the physical limits and its peers, every
//! participant a separate process, measured in one run on this machine.
//!
//! The harness (this process) runs a list of scenarios. For each it starts
//! a producer process and N reader processes, all of them this same
//! executable re-run with the hidden `--role`/`--spec` arguments; they
//! report on their stdout as JSON lines ([`spec::Line`]). The harness
//! waits for everyone to be set up, tells the producer to go (a line on its
//! stdin), collects the figures, and tears the processes down.
//!
//! | file | what |
//! | --- | --- |
//! | `spec.rs` | scenarios, the spec a participant gets, the lines it prints |
//! | `role.rs` | the producer's frame clock and window, the reader's recorder |
//! | `hist.rs` | latency histogram (mergeable across readers), percentiles, CPU arithmetic |
//! | `measure.rs` | getrusage, scheduler counters, smaps_rollup, the machine |
//! | `camux_sys.rs`, `daemon_sys.rs`, `limits.rs`, `broker.rs`, `gst.rs`, `ice.rs` | the systems |
//! | `shm.rs` | the futex floor's shared page (the bench's one `unsafe`) |
//! | `report.rs` | result rows, targets, the markdown report and its plots |

pub mod broker;
pub mod camux_sys;
pub mod daemon_sys;
pub mod gst;
pub mod hist;
#[cfg(feature = "bench-iceoryx2")]
pub mod ice;
pub mod limits;
pub mod measure;
pub mod report;
pub mod role;
pub mod shm;
pub mod spec;

use super::Status;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use report::{Row, RunJson};
use spec::{Line, Mode, Scenario, Shape, Spec, System, Touch, Wait};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The long `--help` text.
pub const LONG_ABOUT: &str = "\
Measure camux against the physical limits and its peers, on this machine.

Runs scenarios over frame size (64 B records, 640x480 and 1920x1080 YUYV,
3840x2160 NV12), reader count, paced (60 fps) and flat-out publishing,
blocking and spinning readers, readers that read only the metadata and
readers that touch every cache line. Every producer and reader is a
separate process (this executable, re-run). Systems:
  camux           Publisher::publish (copy-in) + Subscriber readers
  camux-daemon    the real `camux daemon` with one synthetic stream +
                  Subscriber readers; its CPU minus its source's render
  limit-memcpy    memcpy of the frame into tmpfs shared memory (no readers)
  limit-futex     a bare cross-process futex wake-up (no payload)
  socket-broker   every frame written to every reader over a Unix socket
  gstreamer       gst-launch-1.0 fdsrc ! rawvideoparse ! shmsink, read with
                  the shmsrc protocol (skipped when not installed)
  iceoryx2        publish/subscribe with the loan API and an Event (skipped
                  unless built with --features bench-iceoryx2)

Per scenario: delivered frames/s per reader, producer and reader CPU per
frame (getrusage), publish-to-wake-up latency p50/p99/p99.9, frames lost,
private memory per reader. Progress goes to stderr; --json prints one
object to stdout; --report DIR writes DIR/README.md with PNG plots.
docs/BENCHMARKS.md explains every figure and how it is taken.

Examples:
  camux bench --quick --json
  camux bench --report bench-report
  camux bench --repeat 3 --report bench-report   # medians of 3 runs (shared machines)
  camux bench --systems camux,limit-futex --groups latency";

/// Measure camux against the physical limits and its peers.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct BenchArgs {
    /// A short run (under a minute): fewer scenarios, 1 s each.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object with the machine and every result to stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a markdown report with PNG plots into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Only these systems (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub systems: Vec<System>,
    /// Only these scenario groups (comma-separated): latency, spin, size,
    /// throughput, records, fanout, daemon.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub groups: Vec<String>,
    /// Length of every measured window, in seconds (default: 1 with
    /// --quick; 10 for paced latency scenarios, 3-5 for the others).
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
    /// Run the scenario list this many times, round after round (so a busy
    /// spell of a shared machine hits every system alike), and report each
    /// figure as the median over the runs with its range in `spread`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// A tiny run for tests: one frame size (64 B), 1 reader, 0.2 s windows.
    #[arg(long, hide = true)]
    pub tiny: bool,
    /// Internal: run as a participant (producer or reader).
    #[arg(long, hide = true, value_name = "ROLE")]
    pub role: Option<String>,
    /// Internal: the participant's spec (JSON).
    #[arg(long, hide = true, value_name = "JSON")]
    pub spec: Option<String>,
}

/// Whether `system` can run here, or why not.
fn availability(system: System) -> Result<(), String> {
    match system {
        System::Gstreamer => gst_available(),
        System::Iceoryx2 => {
            if cfg!(feature = "bench-iceoryx2") {
                Ok(())
            } else {
                Err("this camux was built without the bench-iceoryx2 feature: \
                     rebuild with `cargo build --release --features bench-iceoryx2`"
                    .into())
            }
        }
        System::CamuxDaemon => {
            if cfg!(feature = "daemon") {
                Ok(())
            } else {
                Err("this camux was built without the daemon feature".into())
            }
        }
        _ => Ok(()),
    }
}

fn gst_available() -> Result<(), String> {
    for element in ["fdsrc", "rawvideoparse", "shmsink"] {
        match Command::new("gst-inspect-1.0")
            .arg(element)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(_) => {
                return Err(format!(
                    "GStreamer element {element} is missing: install gstreamer1.0-plugins-base \
                     and gstreamer1.0-plugins-bad"
                ))
            }
            Err(_) => {
                return Err(
                    "gst-launch-1.0/gst-inspect-1.0 not found: install gstreamer1.0-tools, \
                     gstreamer1.0-plugins-base and gstreamer1.0-plugins-bad"
                        .into(),
                )
            }
        }
    }
    if which(gst::GST_LAUNCH).is_none() {
        return Err("gst-launch-1.0 not found: install gstreamer1.0-tools".into());
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn gst_version() -> Option<String> {
    let out = Command::new(gst::GST_LAUNCH)
        .arg("--version")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("GStreamer"))
        .map(|l| l.trim().to_string())
}

/// The scenarios of a run.
pub fn scenarios(args: &BenchArgs) -> Vec<Scenario> {
    use System::*;
    let quick = args.quick || args.tiny;
    let secs = |full: f64| {
        args.seconds.unwrap_or(if args.tiny {
            0.2
        } else if quick {
            1.0
        } else {
            full
        })
    };
    let peers = [LimitFutex, Camux, Iceoryx2, Gstreamer, SocketBroker];
    let mut out = Vec::new();
    let mut add = |group: &str,
                   system: System,
                   shape: Shape,
                   readers: u32,
                   mode: Mode,
                   wait: Wait,
                   touch: Touch,
                   seconds: f64| {
        out.push(Scenario {
            group: group.into(),
            system,
            shape,
            readers,
            mode,
            fps: 60.0,
            wait,
            touch,
            seconds,
        })
    };
    if args.tiny {
        add(
            "throughput",
            LimitMemcpy,
            Shape::RECORD,
            0,
            Mode::Flat,
            Wait::Block,
            Touch::Meta,
            secs(1.0),
        );
        for s in [LimitFutex, Camux, Iceoryx2, Gstreamer, SocketBroker] {
            add(
                "latency",
                s,
                Shape::RECORD,
                1,
                Mode::Paced,
                Wait::Block,
                Touch::Meta,
                secs(1.0),
            );
        }
        add(
            "spin",
            Camux,
            Shape::RECORD,
            1,
            Mode::Paced,
            Wait::Spin,
            Touch::All,
            secs(1.0),
        );
        add(
            "daemon",
            CamuxDaemon,
            Shape::RECORD,
            1,
            Mode::Paced,
            Wait::Block,
            Touch::Meta,
            secs(1.0),
        );
        return filter(args, out);
    }
    // Publish-to-wake-up latency and producer CPU against reader count.
    let ns: &[u32] = if quick { &[1, 4] } else { &[1, 2, 4, 8] };
    for &n in ns {
        for s in peers {
            add(
                "latency",
                s,
                Shape::FHD,
                n,
                Mode::Paced,
                Wait::Block,
                Touch::Meta,
                secs(10.0),
            );
        }
    }
    // Spinning readers.
    let spinners: &[System] = if quick { &[LimitFutex, Camux] } else { &peers };
    for &s in spinners {
        add(
            "spin",
            s,
            Shape::FHD,
            1,
            Mode::Paced,
            Wait::Spin,
            Touch::Meta,
            secs(5.0),
        );
    }
    // Frame size: reader cost with metadata-only and touching readers, and
    // the copy each size costs.
    let shapes: &[Shape] = if quick {
        &[Shape::RECORD, Shape::UHD]
    } else {
        &[Shape::RECORD, Shape::VGA, Shape::FHD, Shape::UHD]
    };
    for &shape in shapes {
        if !quick {
            add(
                "size",
                LimitMemcpy,
                shape,
                0,
                Mode::Flat,
                Wait::Block,
                Touch::Meta,
                secs(2.0),
            );
        }
        let systems: &[System] = if quick {
            &[Camux]
        } else {
            &[Camux, Iceoryx2, Gstreamer, SocketBroker]
        };
        for &s in systems {
            add(
                "size",
                s,
                shape,
                1,
                Mode::Paced,
                Wait::Block,
                Touch::Meta,
                secs(5.0),
            );
            if !quick {
                add(
                    "size",
                    s,
                    shape,
                    1,
                    Mode::Paced,
                    Wait::Block,
                    Touch::All,
                    secs(5.0),
                );
            }
        }
    }
    // Flat-out copy-in throughput.
    let ns: &[u32] = if quick { &[4] } else { &[1, 4] };
    add(
        "throughput",
        LimitMemcpy,
        Shape::FHD,
        0,
        Mode::Flat,
        Wait::Block,
        Touch::Meta,
        secs(3.0),
    );
    for &n in ns {
        for s in [Camux, Iceoryx2, Gstreamer, SocketBroker] {
            add(
                "throughput",
                s,
                Shape::FHD,
                n,
                Mode::Flat,
                Wait::Block,
                Touch::Meta,
                secs(3.0),
            );
        }
    }
    // 64-byte records, flat out, two readers.
    add(
        "records",
        LimitMemcpy,
        Shape::RECORD,
        0,
        Mode::Flat,
        Wait::Block,
        Touch::Meta,
        secs(3.0),
    );
    for s in [Camux, Iceoryx2, Gstreamer, SocketBroker] {
        add(
            "records",
            s,
            Shape::RECORD,
            2,
            Mode::Flat,
            Wait::Block,
            Touch::Meta,
            secs(3.0),
        );
    }
    if !quick {
        for s in [Camux, Iceoryx2, SocketBroker] {
            add(
                "records",
                s,
                Shape::RECORD,
                2,
                Mode::Flat,
                Wait::Spin,
                Touch::Meta,
                secs(3.0),
            );
        }
        // Producer cost against many readers (issue 2's 1 vs 16), paced so
        // the readers sleep between frames.
        for n in [1, 16] {
            for s in [Camux, SocketBroker] {
                add(
                    "fanout",
                    s,
                    Shape::RECORD,
                    n,
                    Mode::Paced,
                    Wait::Block,
                    Touch::Meta,
                    secs(5.0),
                );
            }
        }
    }
    // Issue 4: the daemon's own CPU per frame (its source's render taken
    // out) and with no readers, against the bare Publisher at the same
    // shape and rate.
    let daemon: &[(Shape, f64, u32)] = if quick {
        &[(Shape::RECORD, 1000.0, 1)]
    } else {
        &[
            (Shape::FHD, 60.0, 0),
            (Shape::FHD, 60.0, 1),
            (Shape::FHD, 60.0, 4),
            (Shape::RECORD, 1000.0, 1),
        ]
    };
    let systems: &[System] = if quick {
        &[CamuxDaemon]
    } else {
        &[CamuxDaemon, Camux]
    };
    for &(shape, fps, readers) in daemon {
        for &system in systems {
            out.push(Scenario {
                group: "daemon".into(),
                system,
                shape,
                readers,
                mode: Mode::Paced,
                fps,
                wait: Wait::Block,
                touch: Touch::Meta,
                seconds: secs(10.0),
            });
        }
    }
    filter(args, out)
}

fn filter(args: &BenchArgs, v: Vec<Scenario>) -> Vec<Scenario> {
    v.into_iter()
        .filter(|s| args.systems.is_empty() || args.systems.contains(&s.system))
        .filter(|s| args.groups.is_empty() || args.groups.iter().any(|g| g == &s.group))
        .collect()
}

/// Runs `camux bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Status> {
    if let Some(role) = &args.role {
        return run_role(role, args.spec.as_deref().unwrap_or(""));
    }
    let list = scenarios(&args);
    if list.is_empty() {
        bail!("no scenario matches --systems/--groups");
    }
    let exe = std::env::current_exe().context("cannot find the camux executable")?;
    let mut b = tempfile::Builder::new();
    b.prefix("camux-bench-");
    let tmp = b
        .tempdir_in("/dev/shm")
        .or_else(|_| b.tempdir())
        .context("cannot create a temporary directory")?;
    let iceoryx2: Option<&'static str> = {
        #[cfg(feature = "bench-iceoryx2")]
        {
            Some(ice::VERSION)
        }
        #[cfg(not(feature = "bench-iceoryx2"))]
        {
            None
        }
    };
    let machine = measure::machine(tmp.path(), gst_version(), iceoryx2);
    let mut avail = std::collections::HashMap::new();
    for s in &list {
        avail
            .entry(s.system)
            .or_insert_with(|| availability(s.system));
    }
    eprintln!(
        "camux bench: {} scenarios on {}{} ({} cores, kernel {}), in {}",
        list.len(),
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        machine
            .cpu_id
            .as_deref()
            .map_or(String::new(), |id| format!(", {id}")),
        machine.cores,
        machine.kernel.as_deref().unwrap_or("?"),
        machine.shm_dir
    );
    for (s, a) in &avail {
        if let Err(why) = a {
            eprintln!("  {} skipped: {why}", s.name());
        }
    }
    let start = Instant::now();
    let mut runs: Vec<Vec<Row>> = list.iter().map(|_| Vec::new()).collect();
    for round in 0..args.repeat {
        let of_rounds = if args.repeat > 1 {
            format!("round {}/{} ", round + 1, args.repeat)
        } else {
            String::new()
        };
        for (i, sc) in list.iter().enumerate() {
            let head = format!(
                "{of_rounds}[{}/{}] {:<13} {}",
                i + 1,
                list.len(),
                sc.system.name(),
                sc.name()
            );
            let row = match &avail[&sc.system] {
                Err(why) => {
                    if round == 0 {
                        eprintln!("{head} ... skipped");
                    }
                    Row::skipped(sc, why)
                }
                Ok(()) => {
                    eprint!("{head} ... ");
                    let _ = std::io::stderr().flush();
                    let t = Instant::now();
                    // Each run its own participant directory index.
                    let row =
                        match run_scenario(&exe, tmp.path(), sc, i + round as usize * list.len()) {
                            Ok(row) => row,
                            Err(e) => Row::failed(sc, &format!("{e:#}")),
                        };
                    eprintln!("{} ({:.1} s)", row.summary(), t.elapsed().as_secs_f64());
                    row
                }
            };
            runs[i].push(row);
        }
    }
    let rows: Vec<Row> = runs.into_iter().map(Row::combine).collect();
    let targets = report::targets(&rows);
    eprintln!("done in {:.0} s", start.elapsed().as_secs_f64());
    for t in &targets {
        eprintln!("  {}", t.line());
    }
    let run = RunJson {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        results: rows,
        targets,
    };
    if let Some(dir) = &args.report {
        report::write(dir, &run)
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
        eprintln!("report: {}", dir.join("README.md").display());
    }
    if args.json {
        super::json::emit(&mut std::io::stdout().lock(), &run)?;
    }
    Ok(if run.results.iter().any(|r| r.error.is_some()) {
        Status::Failed
    } else {
        Status::Success
    })
}

fn run_role(role: &str, spec: &str) -> anyhow::Result<Status> {
    let spec: Spec = serde_json::from_str(spec).context("bad --spec")?;
    let r = match (role, spec.scenario.system) {
        ("producer", System::Camux) => camux_sys::producer(&spec),
        ("reader", System::Camux) => camux_sys::reader(&spec),
        ("producer", System::CamuxDaemon) => daemon_sys::producer(&spec),
        ("reader", System::CamuxDaemon) => camux_sys::reader(&spec),
        ("producer", System::LimitMemcpy) => limits::memcpy_producer(&spec),
        ("producer", System::LimitFutex) => limits::futex_producer(&spec),
        ("reader", System::LimitFutex) => limits::futex_reader(&spec),
        ("producer", System::SocketBroker) => broker::producer(&spec),
        ("reader", System::SocketBroker) => broker::reader(&spec),
        ("producer", System::Gstreamer) => gst::producer(&spec),
        ("reader", System::Gstreamer) => gst::reader(&spec),
        #[cfg(feature = "bench-iceoryx2")]
        ("producer", System::Iceoryx2) => ice::producer(&spec),
        #[cfg(feature = "bench-iceoryx2")]
        ("reader", System::Iceoryx2) => ice::reader(&spec),
        (r, s) => Err(anyhow!("no {r} role for {}", s.name())),
    };
    match r {
        Ok(()) => Ok(Status::Success),
        Err(e) => {
            let _ = role::say(&Line::Failed {
                error: format!("{e:#}"),
            });
            Ok(Status::Failed)
        }
    }
}

/// What a participant's stdout thread passes on.
enum Msg {
    Line(Line),
    Garbage,
    Eof,
}

/// One participant process.
struct Participant {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Msg>,
    log: PathBuf,
}

impl Participant {
    fn spawn(exe: &Path, role: &str, index: u32, spec: &Spec) -> anyhow::Result<Participant> {
        let what = format!("{role} {index}");
        let log = spec.dir.join(format!("{}-{role}-{index}.stderr", spec.tag));
        let mut child = Command::new(exe)
            .args(["bench", "--role", role, "--spec"])
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start the {what}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg = match serde_json::from_str::<Line>(&line) {
                    Ok(l) => Msg::Line(l),
                    Err(_) => Msg::Garbage,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::Eof);
        });
        Ok(Participant {
            what,
            child,
            stdin,
            rx,
            log,
        })
    }

    fn stderr_tail(&mut self) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("{s}"),
            _ => "still running".into(),
        };
        let text = std::fs::read_to_string(&self.log).unwrap_or_default() + &format!(" [{status}]");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// The next line, within `timeout`.
    fn expect(&mut self, timeout: Duration) -> anyhow::Result<Line> {
        loop {
            match self.rx.recv_timeout(timeout) {
                Ok(Msg::Line(Line::Failed { error })) => bail!("{}: {error}", self.what),
                Ok(Msg::Line(l)) => return Ok(l),
                // Libraries may print on stdout too (iceoryx2's logger).
                Ok(Msg::Garbage) => continue,
                Ok(Msg::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let tail = self.stderr_tail();
                    bail!("{} ended early: {tail}", self.what)
                }
                Err(RecvTimeoutError::Timeout) => {
                    let tail = self.stderr_tail();
                    bail!("{} said nothing for {timeout:?}: {tail}", self.what)
                }
            }
        }
    }

    fn go(&mut self) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // A participant ends on its own once stdin closes or its end marker
        // came; give it a moment (on its exit, not a timer), then kill.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => match self.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = self.child.wait();
                        return;
                    }
                },
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_scenario(exe: &Path, dir: &Path, sc: &Scenario, i: usize) -> anyhow::Result<Row> {
    let spec = Spec {
        scenario: sc.clone(),
        dir: dir.to_path_buf(),
        tag: format!("s{i}"),
    };
    let mut producer = Participant::spawn(exe, "producer", 0, &spec)?;
    match producer.expect(Duration::from_secs(20))? {
        Line::Ready => {}
        other => bail!("producer: unexpected {other:?}"),
    }
    let mut readers = Vec::new();
    for r in 0..sc.readers {
        readers.push(Participant::spawn(exe, "reader", r, &spec)?);
    }
    for r in &mut readers {
        match r.expect(Duration::from_secs(20))? {
            Line::Ready => {}
            other => bail!("{}: unexpected {other:?}", r.what),
        }
    }
    producer.go()?;
    // The window is bounded by time (flat) or by frames at a fixed rate
    // (paced): a producer that has not reported 5 s after it is stuck.
    let window = Duration::from_secs_f64(sc.seconds * 1.5 + 0.5) + Duration::from_secs(5);
    let p = match producer.expect(window)? {
        Line::Producer(p) => p,
        other => bail!("producer: unexpected {other:?}"),
    };
    let mut reports = Vec::new();
    for r in &mut readers {
        match r.expect(role::STALL + Duration::from_secs(5))? {
            Line::Reader(rep) => reports.push(rep),
            other => bail!("{}: unexpected {other:?}", r.what),
        }
    }
    drop(readers);
    drop(producer);
    Ok(Row::from_reports(sc, &p, &reports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        b: BenchArgs,
    }

    fn args(a: &[&str]) -> BenchArgs {
        Wrap::try_parse_from(std::iter::once("bench").chain(a.iter().copied()))
            .unwrap()
            .b
    }

    #[test]
    fn scenario_lists() {
        let quick = scenarios(&args(&["--quick"]));
        let secs: f64 = quick.iter().map(|s| s.seconds + 0.5).sum();
        assert!(secs < 45.0, "quick run of {secs} s");
        let full = scenarios(&args(&[]));
        for (g, n) in [("latency", 8), ("throughput", 4), ("records", 2)] {
            assert!(
                full.iter()
                    .any(|s| s.group == g && s.readers == n && s.system == System::Camux),
                "{g} N={n}"
            );
        }
        let only = scenarios(&args(&[
            "--systems",
            "camux,limit-futex",
            "--groups",
            "latency",
        ]));
        assert!(!only.is_empty());
        assert!(only.iter().all(
            |s| s.group == "latency" && matches!(s.system, System::Camux | System::LimitFutex)
        ));
        assert!(scenarios(&args(&["--tiny"]))
            .iter()
            .all(|s| s.shape == Shape::RECORD));
        let d = scenarios(&args(&["--groups", "daemon"]));
        for n in [0, 1, 4] {
            for sys in [System::CamuxDaemon, System::Camux] {
                assert!(
                    d.iter().any(|s| s.system == sys
                        && s.readers == n
                        && s.shape == Shape::FHD
                        && s.fps == 60.0),
                    "{sys:?} N={n}"
                );
            }
        }
        assert!(d
            .iter()
            .any(|s| s.shape == Shape::RECORD && s.fps == 1000.0 && s.readers == 1));
        assert!(d
            .iter()
            .all(|s| s.group == "daemon" && s.mode == Mode::Paced));
        assert!(quick.iter().any(|s| s.system == System::CamuxDaemon));
        assert!(full.iter().any(|s| s.group == "daemon"));
    }
}
