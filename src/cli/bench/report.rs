//! Result rows (what `--json` prints), the targets judged from
//! them, and the `--report` directory: a markdown file with the machine,
//! the tables and PNG plots (plotters, bitmap backend, with an embedded
//! DejaVu Sans font so that no system font library is needed).

use super::hist::{cpu_ms_per_frame, mean, median, LatHist};
use super::measure::Machine;
use super::spec::{Mode, ProducerReport, ReaderReport, Scenario, Touch, Wait};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Latency {
    fn of(h: &LatHist) -> Latency {
        let us = |v: Option<u64>| v.map(|ns| ns as f64 / 1e3);
        Latency {
            p50: us(h.quantile(0.50)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            mean: h.mean().map(|ns| ns / 1e3),
            max: (h.count > 0).then(|| h.max_ns as f64 / 1e3),
        }
    }
}

/// One result: a scenario of one system.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `camux`, `limit-futex`, ...
    pub system: &'static str,
    /// The scenario's name (group/shape/mode/wait/touch/N).
    pub scenario: String,
    /// The scenario's group.
    pub group: String,
    /// Frame format and size (`1920x1080 YUYV`, `64 B`).
    pub format: String,
    /// Bytes per frame.
    pub frame_bytes: usize,
    /// Reader processes.
    pub readers: u32,
    /// `paced` or `flat`.
    pub mode: Mode,
    /// The paced rate (frames/s); `null` when flat.
    pub fps: Option<f64>,
    /// `block` or `spin`.
    pub wait: Wait,
    /// `meta` (metadata only) or `all` (every cache line).
    pub touch: Touch,
    /// Measured window (s).
    pub seconds: Option<f64>,
    /// Frames published in the window.
    pub published: Option<u64>,
    /// Frames per second delivered to each reader, mean over readers (for
    /// limit-memcpy, which has none: copies per second).
    pub delivered_fps: Option<f64>,
    /// The slowest reader's.
    pub delivered_fps_min: Option<f64>,
    /// Every reader's.
    pub delivered_fps_per_reader: Vec<f64>,
    /// Producer CPU per published frame (ms), getrusage of its process;
    /// for `camux-daemon`, the daemon process's (schedstat) minus its
    /// source's render CPU (the daemon's own cost).
    pub producer_cpu_ms_per_frame: Option<f64>,
    /// `camux-daemon`: the daemon's CPU per frame with its source's render
    /// in it (the raw figure).
    pub producer_cpu_ms_per_frame_with_source: Option<f64>,
    /// `camux-daemon`: the source's share of the raw figure (0..1).
    pub source_cpu_share: Option<f64>,
    /// Producer CPU over the window as % of one core (for `camux-daemon`
    /// without its source; with 0 readers, its idle cost).
    pub producer_cpu_percent_of_core: Option<f64>,
    /// `camux-daemon`: the same with the source.
    pub producer_cpu_percent_of_core_with_source: Option<f64>,
    /// Reader CPU per received frame (ms), mean over readers, getrusage.
    pub reader_cpu_ms_per_frame: Option<f64>,
    /// Every reader's.
    pub reader_cpu_ms_per_frame_per_reader: Vec<f64>,
    /// Publish-to-wake-up latency over every reader's frames (µs).
    pub latency_us: Latency,
    /// Frames published in the window that readers did not get, summed
    /// over readers.
    pub lost: Option<u64>,
    /// Every reader's.
    pub lost_per_reader: Vec<u64>,
    /// Frames the producer side dropped.
    pub producer_dropped: Option<u64>,
    /// Private memory per reader (KiB), mean: resident pages not shared
    /// with other processes.
    pub reader_private_kib: Option<f64>,
    /// The producer process's private memory (KiB).
    pub producer_private_kib: Option<u64>,
    /// Why the system did not run (not installed, not built).
    pub skipped: Option<String>,
    /// Why the scenario failed.
    pub error: Option<String>,
    /// What to know about the figures.
    pub note: Option<String>,
    /// (µs, fraction at or below) of the latency distribution, for plots.
    pub latency_cdf: Vec<(f64, f64)>,
    /// Runs of this scenario the figures combine (`--repeat`): with more
    /// than one, every figure above is the median over the runs that
    /// finished, and `spread` gives the range of the main ones.
    pub runs: u32,
    /// Lowest and highest of the main figures over the runs (`None` for a
    /// single run).
    pub spread: Option<Spread>,
}

/// The range (lowest, highest) of a row's main figures over its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// `delivered_fps`.
    pub delivered_fps: Option<(f64, f64)>,
    /// `producer_cpu_ms_per_frame`.
    pub producer_cpu_ms_per_frame: Option<(f64, f64)>,
    /// `reader_cpu_ms_per_frame`.
    pub reader_cpu_ms_per_frame: Option<(f64, f64)>,
    /// `latency_us.p50`.
    pub latency_p50_us: Option<(f64, f64)>,
    /// `latency_us.p99`.
    pub latency_p99_us: Option<(f64, f64)>,
}

impl Row {
    fn empty(sc: &Scenario) -> Row {
        Row {
            system: sc.system.name(),
            scenario: sc.name(),
            group: sc.group.clone(),
            format: sc.shape.label(),
            frame_bytes: sc.shape.bytes(),
            readers: sc.readers,
            mode: sc.mode,
            fps: (sc.mode == Mode::Paced).then_some(sc.fps),
            wait: sc.wait,
            touch: sc.touch,
            seconds: None,
            published: None,
            delivered_fps: None,
            delivered_fps_min: None,
            delivered_fps_per_reader: Vec::new(),
            producer_cpu_ms_per_frame: None,
            producer_cpu_ms_per_frame_with_source: None,
            source_cpu_share: None,
            producer_cpu_percent_of_core: None,
            producer_cpu_percent_of_core_with_source: None,
            reader_cpu_ms_per_frame: None,
            reader_cpu_ms_per_frame_per_reader: Vec::new(),
            latency_us: Latency::default(),
            lost: None,
            lost_per_reader: Vec::new(),
            producer_dropped: None,
            reader_private_kib: None,
            producer_private_kib: None,
            skipped: None,
            error: None,
            note: None,
            latency_cdf: Vec::new(),
            runs: 1,
            spread: None,
        }
    }

    /// One row from several runs of the same scenario: each figure the
    /// median over the runs that finished (failed runs are left out and
    /// counted in the note; if every run failed, the first failure), the
    /// latency plot from the run whose p50 is nearest the median.
    pub fn combine(mut runs: Vec<Row>) -> Row {
        assert!(!runs.is_empty(), "a scenario ran at least once");
        let total = runs.len();
        if total == 1 || runs[0].skipped.is_some() {
            return runs.swap_remove(0);
        }
        let (ok, failed): (Vec<Row>, Vec<Row>) = runs.into_iter().partition(|r| r.error.is_none());
        let Some(first) = ok.first() else {
            let mut r = failed.into_iter().next().expect("a failed run");
            r.runs = total as u32;
            return r;
        };
        let values =
            |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<f64> { ok.iter().filter_map(f).collect() };
        let med = |f: &dyn Fn(&Row) -> Option<f64>| median(&values(f));
        let range = |f: &dyn Fn(&Row) -> Option<f64>| {
            let v = values(f);
            Some((
                v.iter().copied().reduce(f64::min)?,
                v.iter().copied().reduce(f64::max)?,
            ))
        };
        let med_u64 = |f: &dyn Fn(&Row) -> Option<u64>| {
            med(&|r| f(r).map(|v| v as f64)).map(|v| v.round() as u64)
        };
        // Element-wise medians of a per-reader figure (the same reader
        // count in every run).
        let each = |n: usize, f: &dyn Fn(&Row, usize) -> Option<f64>| -> Vec<f64> {
            (0..n).filter_map(|i| med(&|r| f(r, i))).collect()
        };
        let p50 = med(&|r| r.latency_us.p50);
        let plotted = ok
            .iter()
            .min_by(|a, b| {
                let d = |r: &Row| (r.latency_us.p50.unwrap_or(f64::MAX) - p50.unwrap_or(0.0)).abs();
                d(a).total_cmp(&d(b))
            })
            .expect("a finished run");
        let mut note = first.note.clone();
        if !failed.is_empty() {
            let why = failed[0].error.as_deref().unwrap_or("?");
            let n = format!("{} of {total} runs failed (first: {why})", failed.len());
            note = Some(match note {
                Some(x) => format!("{x}; {n}"),
                None => n,
            });
        }
        Row {
            seconds: med(&|r| r.seconds),
            published: med_u64(&|r| r.published),
            delivered_fps: med(&|r| r.delivered_fps),
            delivered_fps_min: med(&|r| r.delivered_fps_min),
            delivered_fps_per_reader: each(first.delivered_fps_per_reader.len(), &|r, i| {
                r.delivered_fps_per_reader.get(i).copied()
            }),
            producer_cpu_ms_per_frame: med(&|r| r.producer_cpu_ms_per_frame),
            producer_cpu_ms_per_frame_with_source: med(&|r| {
                r.producer_cpu_ms_per_frame_with_source
            }),
            source_cpu_share: med(&|r| r.source_cpu_share),
            producer_cpu_percent_of_core: med(&|r| r.producer_cpu_percent_of_core),
            producer_cpu_percent_of_core_with_source: med(&|r| {
                r.producer_cpu_percent_of_core_with_source
            }),
            reader_cpu_ms_per_frame: med(&|r| r.reader_cpu_ms_per_frame),
            reader_cpu_ms_per_frame_per_reader: each(
                first.reader_cpu_ms_per_frame_per_reader.len(),
                &|r, i| r.reader_cpu_ms_per_frame_per_reader.get(i).copied(),
            ),
            latency_us: Latency {
                p50,
                p99: med(&|r| r.latency_us.p99),
                p999: med(&|r| r.latency_us.p999),
                mean: med(&|r| r.latency_us.mean),
                max: ok.iter().filter_map(|r| r.latency_us.max).reduce(f64::max),
            },
            lost: med_u64(&|r| r.lost),
            lost_per_reader: each(first.lost_per_reader.len(), &|r, i| {
                r.lost_per_reader.get(i).map(|&v| v as f64)
            })
            .into_iter()
            .map(|v| v.round() as u64)
            .collect(),
            producer_dropped: med_u64(&|r| r.producer_dropped),
            reader_private_kib: med(&|r| r.reader_private_kib),
            producer_private_kib: med_u64(&|r| r.producer_private_kib),
            note,
            latency_cdf: plotted.latency_cdf.clone(),
            runs: total as u32,
            spread: Some(Spread {
                delivered_fps: range(&|r| r.delivered_fps),
                producer_cpu_ms_per_frame: range(&|r| r.producer_cpu_ms_per_frame),
                reader_cpu_ms_per_frame: range(&|r| r.reader_cpu_ms_per_frame),
                latency_p50_us: range(&|r| r.latency_us.p50),
                latency_p99_us: range(&|r| r.latency_us.p99),
            }),
            ..first.clone()
        }
    }

    /// A system that cannot run here.
    pub fn skipped(sc: &Scenario, why: &str) -> Row {
        Row {
            skipped: Some(why.to_string()),
            ..Row::empty(sc)
        }
    }

    /// A scenario that failed.
    pub fn failed(sc: &Scenario, why: &str) -> Row {
        Row {
            error: Some(why.to_string()),
            ..Row::empty(sc)
        }
    }

    /// The row of a finished scenario.
    pub fn from_reports(sc: &Scenario, p: &ProducerReport, readers: &[ReaderReport]) -> Row {
        let secs = p.window_ns as f64 / 1e9;
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let fps: Vec<f64> = readers.iter().map(|r| per_sec(r.frames)).collect();
        let cpu: Vec<f64> = readers
            .iter()
            .filter_map(|r| cpu_ms_per_frame(r.cpu_ns, r.frames))
            .collect();
        let lost: Vec<u64> = readers
            .iter()
            .map(|r| p.frames.saturating_sub(r.frames))
            .collect();
        let mut hist = LatHist::new();
        for r in readers {
            hist.merge(&r.latency);
        }
        let kib: Vec<f64> = readers
            .iter()
            .filter_map(|r| r.private_kib.map(|k| k as f64))
            .collect();
        let cdf = hist.cdf();
        let step = (cdf.len() / 200).max(1);
        let latency_cdf = cdf
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i + 1 == cdf.len())
            .map(|(_, &(ns, q))| (ns as f64 / 1e3, q))
            .collect();
        let own_ns = p
            .source_cpu_ns
            .map_or(p.cpu_ns, |src| p.cpu_ns.saturating_sub(src));
        let pct = |ns: u64| (p.window_ns > 0).then(|| ns as f64 * 100.0 / p.window_ns as f64);
        let with_source = p.source_cpu_ns.is_some();
        Row {
            seconds: Some(secs),
            published: Some(p.frames),
            producer_cpu_ms_per_frame_with_source: with_source
                .then(|| cpu_ms_per_frame(p.cpu_ns, p.frames))
                .flatten(),
            source_cpu_share: p
                .source_cpu_ns
                .filter(|_| p.cpu_ns > 0)
                .map(|src| src as f64 / p.cpu_ns as f64),
            producer_cpu_percent_of_core: pct(own_ns),
            producer_cpu_percent_of_core_with_source: with_source.then(|| pct(p.cpu_ns)).flatten(),
            delivered_fps: if readers.is_empty() {
                Some(per_sec(p.frames))
            } else {
                mean(&fps)
            },
            delivered_fps_min: fps.iter().copied().reduce(f64::min),
            delivered_fps_per_reader: fps,
            producer_cpu_ms_per_frame: cpu_ms_per_frame(own_ns, p.frames),
            reader_cpu_ms_per_frame: mean(&cpu),
            reader_cpu_ms_per_frame_per_reader: cpu,
            latency_us: Latency::of(&hist),
            lost: (!readers.is_empty()).then(|| lost.iter().sum()),
            lost_per_reader: lost,
            producer_dropped: Some(p.dropped),
            reader_private_kib: mean(&kib),
            producer_private_kib: p.private_kib,
            note: p.note.clone(),
            latency_cdf,
            ..Row::empty(sc)
        }
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAILED: {e}");
        }
        let f = |v: Option<f64>, unit: &str, prec: usize| {
            v.map_or("-".into(), |v| format!("{v:.prec$}{unit}"))
        };
        let with = self
            .producer_cpu_ms_per_frame_with_source
            .map_or(String::new(), |m| {
                format!(" ({:.2}us with source)", m * 1e3)
            });
        format!(
            "fps {} p50 {} p99 {} p99.9 {} cpu prod {}{with} read {} lost {}",
            f(self.delivered_fps, "", 0),
            f(self.latency_us.p50, "us", 1),
            f(self.latency_us.p99, "us", 1),
            f(self.latency_us.p999, "us", 1),
            f(self.producer_cpu_ms_per_frame.map(|m| m * 1e3), "us", 2),
            f(self.reader_cpu_ms_per_frame.map(|m| m * 1e3), "us", 2),
            self.lost.map_or("-".into(), |l| l.to_string()),
        )
    }
}

/// One of the targets, judged from a run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is asked.
    pub target: String,
    /// What was measured (a ratio or a rate).
    pub value: Option<f64>,
    /// The bound.
    pub bound: f64,
    /// `true` met, `false` missed, `null` not measured in this run.
    pub met: Option<bool>,
    /// The figures behind it.
    pub detail: String,
}

impl Target {
    /// `met: ... (value)`, for the progress output.
    pub fn line(&self) -> String {
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let v = self.value.map_or("-".into(), |v| format!("{v:.3}"));
        format!(
            "{verdict:>12}: {} = {v} (bound {}) {}",
            self.target, self.bound, self.detail
        )
    }
}

/// Everything a run prints with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunJson {
    /// The machine.
    pub machine: Machine,
    /// The command line that made it.
    pub command: String,
    /// Every scenario of every system.
    pub results: Vec<Row>,
    /// The targets, judged.
    pub targets: Vec<Target>,
}

fn find<'a>(
    rows: &'a [Row],
    group: &str,
    system: &str,
    readers: u32,
    pred: impl Fn(&Row) -> bool,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.group == group
            && r.system == system
            && r.readers == readers
            && r.error.is_none()
            && r.skipped.is_none()
            && pred(r)
    })
}

fn any(_: &Row) -> bool {
    true
}

/// `value <= bound` (or `>=` with `at_least`), when measured.
fn judge(target: String, value: Option<f64>, bound: f64, at_least: bool, detail: String) -> Target {
    Target {
        target,
        value,
        bound,
        met: value.map(|v| if at_least { v >= bound } else { v <= bound }),
        detail,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The targets (1920x1080 YUYV unless said), judged from `rows`.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let mut out = Vec::new();
    let lat = |sys: &str, n: u32| find(rows, "latency", sys, n, any);
    let floor1 = lat("limit-futex", 1).and_then(|r| r.latency_us.p50);
    for n in [1u32, 8] {
        let camux = lat("camux", n).and_then(|r| r.latency_us.p50);
        let floor = lat("limit-futex", n).and_then(|r| r.latency_us.p50);
        let bound = if n == 1 { 1.5 } else { 3.0 };
        out.push(judge(
            format!("latency p50 camux / futex floor, N={n}"),
            ratio(camux, floor),
            bound,
            false,
            format!(
                "camux {} us, floor {} us (floor at N=1: {} us, ratio to it {})",
                fmt(camux),
                fmt(floor),
                fmt(floor1),
                fmt(ratio(camux, floor1))
            ),
        ));
    }
    let ns: Vec<u32> = {
        let mut v: Vec<u32> = rows
            .iter()
            .filter(|r| r.group == "latency" && r.system == "camux")
            .map(|r| r.readers)
            .collect();
        v.dedup();
        v
    };
    for peer in ["iceoryx2", "gstreamer"] {
        for &n in &ns {
            let c = lat("camux", n);
            let p = lat(peer, n);
            let (c50, p50) = (
                c.and_then(|r| r.latency_us.p50),
                p.and_then(|r| r.latency_us.p50),
            );
            let (c99, p99) = (
                c.and_then(|r| r.latency_us.p99),
                p.and_then(|r| r.latency_us.p99),
            );
            out.push(judge(
                format!("latency p50 {peer} / camux, N={n}"),
                ratio(p50, c50),
                3.0,
                true,
                format!("camux {} us, {peer} {} us", fmt(c50), fmt(p50)),
            ));
            out.push(judge(
                format!("latency p99 {peer} / camux, N={n}"),
                ratio(p99, c99),
                1.0,
                true,
                format!(
                    "camux {} us, {peer} {} us (above 1: camux lower)",
                    fmt(c99),
                    fmt(p99)
                ),
            ));
        }
    }
    let cpu = |sys: &str, n: u32| lat(sys, n).and_then(|r| r.producer_cpu_ms_per_frame);
    out.push(judge(
        "producer CPU per frame camux N=8 / N=1".into(),
        ratio(cpu("camux", 8), cpu("camux", 1)),
        1.1,
        false,
        format!(
            "camux {} / {} us; socket broker {} / {} us (ratio {})",
            fmt(cpu("camux", 8).map(|v| v * 1e3)),
            fmt(cpu("camux", 1).map(|v| v * 1e3)),
            fmt(cpu("socket-broker", 8).map(|v| v * 1e3)),
            fmt(cpu("socket-broker", 1).map(|v| v * 1e3)),
            fmt(ratio(cpu("socket-broker", 8), cpu("socket-broker", 1)))
        ),
    ));
    let thr = |sys: &str| find(rows, "throughput", sys, 4, any).and_then(|r| r.delivered_fps);
    out.push(judge(
        "flat-out delivered fps camux / iceoryx2, N=4".into(),
        ratio(thr("camux"), thr("iceoryx2")),
        1.0,
        true,
        format!(
            "camux {} fps, iceoryx2 {} fps",
            fmt(thr("camux")),
            fmt(thr("iceoryx2"))
        ),
    ));
    out.push(judge(
        "flat-out delivered fps camux / gstreamer, N=4".into(),
        ratio(thr("camux"), thr("gstreamer")),
        1.8,
        true,
        format!(
            "camux {} fps, gstreamer {} fps",
            fmt(thr("camux")),
            fmt(thr("gstreamer"))
        ),
    ));
    // Both wait modes: the issue names no mode, and they trade differently
    // (blocking readers sleep per batch, spinning ones hold a core each).
    for (wait, label) in [(Wait::Block, "blocking"), (Wait::Spin, "spinning")] {
        let rec = |sys: &str| {
            find(rows, "records", sys, 2, |r| r.wait == wait).and_then(|r| r.delivered_fps_min)
        };
        if rec("camux").is_none() && wait == Wait::Spin {
            continue; // not in this run (--quick has no spinning records)
        }
        out.push(judge(
            format!("64 B records flat out, {label} readers: records/s to each of 2 readers"),
            rec("camux"),
            1_000_000.0,
            true,
            format!("slowest reader {} records/s", fmt(rec("camux"))),
        ));
        out.push(judge(
            format!("64 B records flat out, {label} readers: camux / iceoryx2 (slowest reader)"),
            ratio(rec("camux"), rec("iceoryx2")),
            2.0,
            true,
            format!(
                "camux {} /s, iceoryx2 {} /s",
                fmt(rec("camux")),
                fmt(rec("iceoryx2"))
            ),
        ));
    }
    let rd = |bytes: usize| {
        find(rows, "size", "camux", 1, |r| {
            r.touch == Touch::Meta && r.frame_bytes == bytes
        })
        .and_then(|r| r.reader_cpu_ms_per_frame)
    };
    let (small, big) = (rd(64), rd(3840 * 2160 * 3 / 2));
    out.push(judge(
        "metadata-only reader CPU per frame camux 3840x2160 NV12 / 64 B".into(),
        ratio(big, small),
        1.2,
        false,
        format!(
            "{} us vs {} us",
            fmt(big.map(|v| v * 1e3)),
            fmt(small.map(|v| v * 1e3))
        ),
    ));
    let fan =
        |n: u32| find(rows, "fanout", "camux", n, any).and_then(|r| r.producer_cpu_ms_per_frame);
    out.push(judge(
        "(issue 2, cross-process) producer CPU per 64 B frame, 16 / 1 readers".into(),
        ratio(fan(16), fan(1)),
        1.1,
        false,
        format!(
            "{} vs {} us per frame (paced 60 fps: includes the frame clock's wake-up and a FUTEX_WAKE)",
            fmt(fan(16).map(|v| v * 1e3)),
            fmt(fan(1).map(|v| v * 1e3))
        ),
    ));
    out
}

// ------------------------------------------------------------ the report

const W: u32 = 960;
const H: u32 = 600;

fn colour(system: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match system {
        "camux" => RGBColor(0xd6, 0x27, 0x28),
        "limit-futex" => RGBColor(0x40, 0x40, 0x40),
        "limit-memcpy" => RGBColor(0x80, 0x80, 0x80),
        "iceoryx2" => RGBColor(0x1f, 0x77, 0xb4),
        "gstreamer" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0xff, 0x7f, 0x0e),
    }
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// The latency distribution (CDF, log x) of every system, one group/N.
fn plot_latency(path: &Path, title: &str, rows: &[&Row]) -> PlotResult {
    use plotters::prelude::*;
    register_font();
    let xs: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.latency_cdf.iter().map(|p| p.0))
        .collect();
    let lo = xs.iter().copied().fold(f64::MAX, f64::min).max(0.1);
    let hi = xs.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.8..hi * 1.2).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("publish to wake-up (µs, log scale)")
        .y_desc("fraction of frames at or below")
        .label_style(("sans-serif", 15))
        .draw()?;
    for r in rows {
        let c = colour(r.system);
        chart
            .draw_series(LineSeries::new(
                r.latency_cdf.iter().copied(),
                c.stroke_width(2),
            ))?
            .label(format!(
                "{} (p50 {:.1} µs, p99 {:.1} µs)",
                r.system,
                r.latency_us.p50.unwrap_or(0.0),
                r.latency_us.p99.unwrap_or(0.0)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A per-frame figure against reader count, one line per system.
fn plot_vs_readers(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(u32, f64)>)],
) -> PlotResult {
    use plotters::prelude::*;
    register_font();
    let max_n = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(2);
    let max_y = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..max_n + 1, 0.0..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("reader processes")
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()?;
    for (name, pts) in series {
        let c = colour(name);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

fn cell(v: Option<f64>, scale: f64, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{:.prec$}", v * scale))
}

/// The markdown table of `rows`.
pub fn table(rows: &[&Row]) -> String {
    let mut s = String::from(
        "| system | scenario | fps/reader | p50 µs | p99 µs | p99.9 µs | producer µs CPU/frame | reader µs CPU/frame | lost | reader private KiB |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        if let Some(why) = r.skipped.as_ref().or(r.error.as_ref()) {
            let what = if r.skipped.is_some() {
                "skipped"
            } else {
                "failed"
            };
            let _ = writeln!(
                s,
                "| {} | {} | {what}: {} | | | | | | | |",
                r.system,
                r.scenario,
                why.replace('|', "/")
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.scenario,
            cell(r.delivered_fps, 1.0, 0),
            cell(r.latency_us.p50, 1.0, 1),
            cell(r.latency_us.p99, 1.0, 1),
            cell(r.latency_us.p999, 1.0, 1),
            cell(r.producer_cpu_ms_per_frame, 1e3, 2),
            cell(r.reader_cpu_ms_per_frame, 1e3, 2),
            r.lost.map_or("-".into(), |l| l.to_string()),
            cell(r.reader_private_kib, 1.0, 0),
        );
    }
    s
}

/// The `daemon` group side by side: the daemon's CPU per frame without
/// and with its source, the bare `camux` Publisher at the same shape, rate
/// and readers, their ratio, and % of a core. `None` without daemon rows.
pub fn daemon_table(rows: &[Row]) -> Option<String> {
    let daemon: Vec<&Row> = rows
        .iter()
        .filter(|r| r.group == "daemon" && r.system == "camux-daemon")
        .collect();
    if daemon.is_empty() {
        return None;
    }
    let mut s = String::from(
        "| stream | readers | daemon µs/frame, minus source | with source | source share | camux Publisher µs/frame | daemon (minus source) / camux | daemon % of a core, minus source / with | camux % of a core | p50 µs daemon / camux |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for d in daemon {
        let what = format!("{} @ {} fps", d.format, d.fps.unwrap_or(0.0));
        if let Some(why) = d.skipped.as_ref().or(d.error.as_ref()) {
            let _ = writeln!(
                s,
                "| {what} | {} | {} | | | | | | | |",
                d.readers,
                why.replace('|', "/")
            );
            continue;
        }
        let c = rows.iter().find(|r| {
            r.group == "daemon"
                && r.system == "camux"
                && r.readers == d.readers
                && r.frame_bytes == d.frame_bytes
                && r.fps == d.fps
                && r.error.is_none()
                && r.skipped.is_none()
        });
        let c_cpu = c.and_then(|c| c.producer_cpu_ms_per_frame);
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} |",
            d.readers,
            cell(d.producer_cpu_ms_per_frame, 1e3, 2),
            cell(d.producer_cpu_ms_per_frame_with_source, 1e3, 2),
            d.source_cpu_share
                .map_or("-".into(), |v| format!("{:.0} %", v * 100.0)),
            cell(c_cpu, 1e3, 2),
            cell(ratio(d.producer_cpu_ms_per_frame, c_cpu), 1.0, 2),
            cell(d.producer_cpu_percent_of_core, 1.0, 2),
            cell(d.producer_cpu_percent_of_core_with_source, 1.0, 2),
            cell(c.and_then(|c| c.producer_cpu_percent_of_core), 1.0, 2),
            cell(d.latency_us.p50, 1.0, 1),
            cell(c.and_then(|c| c.latency_us.p50), 1.0, 1),
        );
    }
    Some(s)
}

/// The lowest and highest of each row's main figures over its runs.
fn spread_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| system | scenario | runs | fps | p50 (µs) | p99 (µs) | producer µs/frame | reader µs/frame |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let r = |v: Option<(f64, f64)>, k: f64, prec: usize| {
        v.map_or("-".into(), |(lo, hi)| {
            format!("{:.prec$}-{:.prec$}", lo * k, hi * k)
        })
    };
    for row in rows {
        let Some(s) = &row.spread else { continue };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.system,
            row.scenario,
            row.runs,
            r(s.delivered_fps, 1.0, 0),
            r(s.latency_p50_us, 1.0, 1),
            r(s.latency_p99_us, 1.0, 1),
            r(s.producer_cpu_ms_per_frame, 1e3, 2),
            r(s.reader_cpu_ms_per_frame, 1e3, 2),
        );
    }
    t
}

/// Writes `dir/README.md` and its plots.
pub fn write(dir: &Path, run: &RunJson) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let m = &run.machine;
    let mut md = String::new();
    let _ = writeln!(md, "# camux bench report\n");
    let _ = writeln!(md, "Command: `{}`\n", run.command);
    let _ = writeln!(
        md,
        "Machine: {}{}{}, {} cores{}, kernel {}, {} MiB memory; rings in {}; camux {}; {}; iceoryx2 {}. Started {} (load average {}).\n",
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cpu_id.as_deref().map_or(String::new(), |id| format!(" ({id})")),
        m.caches.as_deref().map_or(String::new(), |c| format!(", caches {c}")),
        m.cores,
        if m.hypervisor { " (virtual machine)" } else { "" },
        m.kernel.as_deref().unwrap_or("?"),
        m.memory_mib.map_or("?".into(), |v| v.to_string()),
        m.shm_dir,
        m.camux_version,
        m.gstreamer.as_deref().unwrap_or("GStreamer not installed"),
        m.iceoryx2.unwrap_or("not built in"),
        m.started_utc,
        m.loadavg_at_start.map_or("?".into(), |v| format!("{v:.2}")),
    );
    let runs = run.results.iter().map(|r| r.runs).max().unwrap_or(1);
    if runs > 1 {
        let _ = writeln!(
            md,
            "Every figure (and every target below) is the median over {runs} runs of \
             its scenario, run round after round; the spread section at the end gives \
             each scenario's range.\n"
        );
    }
    let _ = writeln!(md, "## Targets\n");
    for t in &run.targets {
        let _ = writeln!(md, "- {}", t.line().trim_start());
    }
    // Plots: latency distribution per group/shape/N; CPU against N.
    let mut plots = Vec::new();
    let mut keys: Vec<(String, String, u32, Wait)> = run
        .results
        .iter()
        .filter(|r| !r.latency_cdf.is_empty() && r.mode == Mode::Paced && r.touch == Touch::Meta)
        .map(|r| (r.group.clone(), r.format.clone(), r.readers, r.wait))
        .collect();
    keys.sort();
    keys.dedup();
    for (group, format, n, wait) in keys {
        let rows: Vec<&Row> = run
            .results
            .iter()
            .filter(|r| {
                r.group == group
                    && r.format == format
                    && r.readers == n
                    && r.wait == wait
                    && r.touch == Touch::Meta
                    && !r.latency_cdf.is_empty()
            })
            .collect();
        let file = format!(
            "latency-{group}-{}-n{n}-{wait:?}.png",
            format.replace([' ', 'x'], "_")
        )
        .to_lowercase();
        let title =
            format!("{group}: {format}, paced, {n} reader(s), {wait:?}: latency distribution");
        plot_latency(&dir.join(&file), &title, &rows).map_err(|e| anyhow::anyhow!("{e}"))?;
        plots.push((title, file));
    }
    let systems = [
        "camux",
        "limit-futex",
        "iceoryx2",
        "gstreamer",
        "socket-broker",
    ];
    for (what, y, f) in [
        (
            "producer",
            "producer CPU per frame (µs)",
            (|r: &Row| r.producer_cpu_ms_per_frame) as fn(&Row) -> Option<f64>,
        ),
        ("reader", "reader CPU per frame (µs, mean)", |r: &Row| {
            r.reader_cpu_ms_per_frame
        }),
    ] {
        let series: Vec<(&str, Vec<(u32, f64)>)> = systems
            .iter()
            .map(|&s| {
                let mut pts: Vec<(u32, f64)> = run
                    .results
                    .iter()
                    .filter(|r| r.group == "latency" && r.system == s)
                    .filter_map(|r| f(r).map(|v| (r.readers, v * 1e3)))
                    .collect();
                pts.sort_by_key(|p| p.0);
                (s, pts)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let file = format!("cpu-{what}-vs-readers.png");
        let title = format!("{what} CPU per frame against readers (1920x1080 YUYV, 60 fps)");
        plot_vs_readers(&dir.join(&file), &title, y, &series)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        plots.push((title, file));
    }
    let _ = writeln!(md, "\n## Plots\n");
    for (title, file) in &plots {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    if let Some(t) = daemon_table(&run.results) {
        let _ = writeln!(
            md,
            "## The daemon's own CPU (issue 4)\n\n\
             The real `camux daemon` (all threads, schedstat) minus its synthetic \
             source's render (its `/status` `source_cpu_ms`), against the harness's \
             bare `camux` Publisher (copy-in from a buffer) at the same shape, \
             rate and readers.\n\n{t}"
        );
    }
    let mut groups: Vec<&str> = run.results.iter().map(|r| r.group.as_str()).collect();
    groups.dedup();
    for g in groups {
        let rows: Vec<&Row> = run.results.iter().filter(|r| r.group == g).collect();
        let _ = writeln!(md, "## {g}\n\n{}", table(&rows));
    }
    let notes: Vec<String> = {
        let mut v: Vec<String> = run
            .results
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("- {}: {n}", r.system)))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if !notes.is_empty() {
        let _ = writeln!(md, "## Notes\n\n{}\n", notes.join("\n"));
    }
    if runs > 1 {
        let _ = writeln!(
            md,
            "## Spread over {runs} runs\n\n{}",
            spread_table(&run.results)
        );
    }
    let _ = writeln!(
        md,
        "How each figure is taken: docs/BENCHMARKS.md, section \"camux bench\"."
    );
    std::fs::write(dir.join("README.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::spec::{Shape, System};

    fn sc() -> Scenario {
        Scenario {
            group: "latency".into(),
            system: System::Camux,
            shape: Shape::FHD,
            readers: 2,
            mode: Mode::Paced,
            fps: 60.0,
            wait: Wait::Block,
            touch: Touch::Meta,
            seconds: 1.0,
        }
    }

    /// A finished run with these figures (µs and frames/s).
    fn run(p50: f64, producer_us: f64, readers_us: [f64; 2], lost: u64) -> Row {
        Row {
            seconds: Some(1.0),
            published: Some(60),
            delivered_fps: Some(60.0 - lost as f64),
            delivered_fps_per_reader: vec![60.0, 60.0 - lost as f64],
            producer_cpu_ms_per_frame: Some(producer_us / 1e3),
            reader_cpu_ms_per_frame: Some((readers_us[0] + readers_us[1]) / 2e3),
            reader_cpu_ms_per_frame_per_reader: readers_us.iter().map(|u| u / 1e3).collect(),
            latency_us: Latency {
                p50: Some(p50),
                p99: Some(p50 * 3.0),
                p999: Some(p50 * 5.0),
                mean: Some(p50),
                max: Some(p50 * 10.0),
            },
            lost: Some(lost),
            lost_per_reader: vec![0, lost],
            latency_cdf: vec![(p50, 0.5)],
            ..Row::empty(&sc())
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 7.0]), Some(7.0));
    }

    #[test]
    fn one_run_is_kept_as_it_is() {
        let r = Row::combine(vec![run(10.0, 100.0, [20.0, 30.0], 1)]);
        assert_eq!((r.runs, r.spread), (1, None));
        assert_eq!(r.latency_us.p50, Some(10.0));
    }

    #[test]
    fn runs_combine_into_medians_with_their_range() {
        let r = Row::combine(vec![
            run(30.0, 300.0, [10.0, 40.0], 4),
            run(10.0, 100.0, [30.0, 20.0], 0),
            run(20.0, 200.0, [20.0, 60.0], 2),
        ]);
        assert_eq!(r.runs, 3);
        assert_eq!(r.latency_us.p50, Some(20.0));
        assert_eq!(r.latency_us.p99, Some(60.0));
        assert_eq!(r.latency_us.max, Some(300.0), "the largest of all runs");
        assert_eq!(r.producer_cpu_ms_per_frame, Some(0.2));
        // Per reader, element-wise: reader 0 of 10/30/20, reader 1 of 40/20/60.
        assert_eq!(r.reader_cpu_ms_per_frame_per_reader, vec![0.02, 0.04]);
        assert_eq!((r.lost, r.lost_per_reader.clone()), (Some(2), vec![0, 2]));
        assert_eq!(r.latency_cdf, vec![(20.0, 0.5)], "the median run's plot");
        let s = r.spread.expect("a spread");
        assert_eq!(s.latency_p50_us, Some((10.0, 30.0)));
        assert_eq!(s.producer_cpu_ms_per_frame, Some((0.1, 0.3)));
        assert_eq!(s.delivered_fps, Some((56.0, 60.0)));
        assert!(r.error.is_none() && r.note.is_none());
    }

    #[test]
    fn failed_runs_are_left_out_and_said() {
        let r = Row::combine(vec![
            run(10.0, 100.0, [1.0, 1.0], 0),
            Row::failed(&sc(), "producer: stuck"),
            run(30.0, 300.0, [3.0, 3.0], 0),
        ]);
        assert!(r.error.is_none());
        assert_eq!(
            r.latency_us.p50,
            Some(20.0),
            "median of the two that finished"
        );
        let note = r.note.expect("a note");
        assert!(
            note.contains("1 of 3 runs failed") && note.contains("stuck"),
            "{note}"
        );

        let all = Row::combine(vec![Row::failed(&sc(), "a"), Row::failed(&sc(), "b")]);
        assert_eq!((all.error.as_deref(), all.runs), (Some("a"), 2));
    }
}
