//! Prometheus exposition of the [`Board`], gathered at scrape time.
//!
//! Nothing here keeps its own counters: a [`BoardCollector`] reads every
//! stream's [`StreamStatus`] and latency [`Histogram`] when Prometheus
//! scrapes, so `/metrics` and `/status` always tell the same story. Each
//! stream is read once per scrape (one lock of its status, one of its
//! histogram), so the families of one stream in one scrape are consistent
//! with each other.
//!
//! Families (labels in braces; `stream` is the stream's name):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `camux_build_info` | gauge (1) | `version` |
//! | `camux_uptime_seconds` | gauge | |
//! | `camux_stream_up` | gauge (1 while publishing) | `stream` |
//! | `camux_stream_state` | gauge (1 for the current state) | `stream`, `state` |
//! | `camux_frames_published_total` | counter | `stream` |
//! | `camux_frames_dropped_total` | counter | `stream`, `reason` (`no_slot`, `driver`) |
//! | `camux_readers` | gauge | `stream` |
//! | `camux_holds` | gauge | `stream` |
//! | `camux_reader_lag_frames` | gauge | `stream` |
//! | `camux_holds_revoked_total` | counter | `stream` |
//! | `camux_bytes_copied_total` | counter | `stream` |
//! | `camux_stream_source_cpu_seconds_total` | counter | `stream` |
//! | `camux_source_restarts_total` | counter | `stream` |
//! | `camux_stream_fps` | gauge | `stream` |
//! | `camux_publish_latency_seconds` | histogram ([`LATENCY_BUCKETS`]) | `stream` |
//! | `camux_last_error_timestamp_seconds` | gauge (streams with an error) | `stream` |
//!
//! ```
//! use camux::daemon::metrics::Metrics;
//! use camux::daemon::status::{Board, StreamState};
//! use std::sync::Arc;
//!
//! let board = Arc::new(Board::new());
//! let cam = board.add("cam0", "synthetic", true, "/run/camux/cam0.ring".into());
//! cam.set_state(StreamState::Publishing);
//! cam.update(|s| s.published = 42);
//! cam.observe_latency(0.000_3);
//!
//! let metrics = Metrics::new(board);
//! let text = metrics.encode();
//! assert!(text.contains("camux_frames_published_total{stream=\"cam0\"} 42\n"));
//! assert!(text.contains("camux_stream_up{stream=\"cam0\"} 1\n"));
//! assert!(text.contains("camux_publish_latency_seconds_count{stream=\"cam0\"} 1\n"));
//! ```

use super::status::{Board, Histogram, StreamState, StreamStatus, LATENCY_BUCKETS};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Registry, TextEncoder};
use std::collections::HashMap;
use std::sync::Arc;

/// The `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text
/// exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: name, help, type and variable label names.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const BUILD_INFO: usize = 0;
const UPTIME: usize = 1;
const UP: usize = 2;
const STATE: usize = 3;
const PUBLISHED: usize = 4;
const DROPPED: usize = 5;
const READERS: usize = 6;
const HOLDS: usize = 7;
const LAG: usize = 8;
const REVOKED: usize = 9;
const COPIED: usize = 10;
const RESTARTS: usize = 11;
const FPS: usize = 12;
const LATENCY: usize = 13;
const LAST_ERROR: usize = 14;
const SOURCE_CPU: usize = 15;

const S: &[&str] = &["stream"];

/// Every family, indexed by the constants above.
const FAMILIES: [Family; 16] = [
    Family {
        name: "camux_build_info",
        help: "Always 1; the version label says which camux is running.",
        kind: MetricType::GAUGE,
        labels: &["version"],
    },
    Family {
        name: "camux_uptime_seconds",
        help: "Seconds since the daemon started.",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    Family {
        name: "camux_stream_up",
        help: "1 while the stream publishes frames, else 0.",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_stream_state",
        help: "1 for the stream's current state, 0 for the others.",
        kind: MetricType::GAUGE,
        labels: &["stream", "state"],
    },
    Family {
        name: "camux_frames_published_total",
        help: "Frames published into the stream's ring.",
        kind: MetricType::COUNTER,
        labels: S,
    },
    Family {
        name: "camux_frames_dropped_total",
        help: "Frames dropped, by reason: no_slot (readers held every slot) or driver (gaps in the driver's sequence).",
        kind: MetricType::COUNTER,
        labels: &["stream", "reason"],
    },
    Family {
        name: "camux_readers",
        help: "Readers registered on the stream's ring now.",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_holds",
        help: "Frames readers hold now (all readers).",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_reader_lag_frames",
        help: "How many frames the oldest held frame is behind the head (0 when nothing is held).",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_holds_revoked_total",
        help: "Reader holds revoked after the hold timeout.",
        kind: MetricType::COUNTER,
        labels: S,
    },
    Family {
        name: "camux_bytes_copied_total",
        help: "Bytes copied on the way into the ring (0 for zero-copy sources).",
        kind: MetricType::COUNTER,
        labels: S,
    },
    Family {
        name: "camux_source_restarts_total",
        help: "Times the stream's source was restarted after a failure.",
        kind: MetricType::COUNTER,
        labels: S,
    },
    Family {
        name: "camux_stream_fps",
        help: "Frames per second published over the last measurement window.",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_publish_latency_seconds",
        help: "Time from capture (or publish start) to the frame's commit into the ring.",
        kind: MetricType::HISTOGRAM,
        labels: S,
    },
    Family {
        name: "camux_last_error_timestamp_seconds",
        help: "When the stream's last error happened (seconds since the Unix epoch); absent while it has had none.",
        kind: MetricType::GAUGE,
        labels: S,
    },
    Family {
        name: "camux_stream_source_cpu_seconds_total",
        help: "CPU time the stream's source spent making frames (synthetic render, file read, sensor record read; not V4L2), by thread CPU clock.",
        kind: MetricType::COUNTER,
        labels: S,
    },
];

/// A [`Collector`] that reads a [`Board`] at every `collect`: register it
/// in any [`Registry`] (or use [`Metrics`], which does).
///
/// ```
/// use camux::daemon::metrics::BoardCollector;
/// use camux::daemon::status::Board;
/// use std::sync::Arc;
///
/// let board = Arc::new(Board::new());
/// board.add("imu", "sensor", false, "/run/camux/imu.ring".into());
/// let registry = prometheus::Registry::new();
/// registry.register(Box::new(BoardCollector::new(board))).unwrap();
/// let families = registry.gather();
/// assert!(families.iter().any(|f| f.name() == "camux_stream_state"));
/// ```
pub struct BoardCollector {
    board: Arc<Board>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for BoardCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardCollector")
            .field("board", &self.board)
            .finish_non_exhaustive()
    }
}

impl BoardCollector {
    /// A collector of `board`'s streams.
    pub fn new(board: Arc<Board>) -> BoardCollector {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_string(),
                    f.help.to_string(),
                    f.labels.iter().map(|l| l.to_string()).collect(),
                    HashMap::new(),
                )
                // The names and help texts are constants, checked by a test.
                .expect("valid metric descriptor")
            })
            .collect();
        BoardCollector { board, descs }
    }
}

impl Collector for BoardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // One read of each stream: every family below shows the same moment.
        let streams: Vec<(StreamStatus, Histogram)> = self
            .board
            .cells()
            .iter()
            .map(|c| (c.get(), c.latency()))
            .collect();
        let mut out: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();

        out[BUILD_INFO].push(gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1.0));
        out[UPTIME].push(gauge(&[], self.board.uptime().as_secs_f64()));

        for (s, latency) in &streams {
            let name = s.name.as_str();
            let l = [("stream", name)];
            let up = s.state == StreamState::Publishing;
            out[UP].push(gauge(&l, f64::from(u8::from(up))));
            for state in StreamState::ALL {
                let on = state == s.state;
                out[STATE].push(gauge(
                    &[("stream", name), ("state", state.name())],
                    f64::from(u8::from(on)),
                ));
            }
            out[PUBLISHED].push(counter(&l, s.published));
            for (reason, n) in [("no_slot", s.dropped_no_slot), ("driver", s.driver_drops)] {
                out[DROPPED].push(counter(&[("stream", name), ("reason", reason)], n));
            }
            out[READERS].push(gauge(&l, f64::from(s.readers)));
            out[HOLDS].push(gauge(&l, f64::from(s.holds)));
            out[LAG].push(gauge(&l, s.reader_lag_frames as f64));
            out[REVOKED].push(counter(&l, s.revoked));
            out[COPIED].push(counter(&l, s.bytes_copied));
            out[SOURCE_CPU].push(counter_f64(&l, s.source_cpu_ms / 1e3));
            out[RESTARTS].push(counter(&l, s.restarts));
            out[FPS].push(gauge(&l, s.fps));
            out[LATENCY].push(histogram(&l, latency));
            if let Some(e) = &s.last_error {
                out[LAST_ERROR].push(gauge(&l, e.at_unix_ms as f64 / 1000.0));
            }
        }

        FAMILIES
            .iter()
            .zip(out)
            .filter(|(_, metrics)| !metrics.is_empty())
            .map(|(f, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.name.to_string());
                mf.set_help(f.help.to_string());
                mf.set_field_type(f.kind);
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn labelled(labels: &[(&str, &str)]) -> proto::Metric {
    let pairs = labels
        .iter()
        .map(|(k, v)| {
            let mut p = proto::LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect();
    proto::Metric::from_label(pairs)
}

fn gauge(labels: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut m = labelled(labels);
    let mut g = proto::Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

fn counter(labels: &[(&str, &str)], v: u64) -> proto::Metric {
    counter_f64(labels, v as f64)
}

fn counter_f64(labels: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut m = labelled(labels);
    let mut c = proto::Counter::default();
    c.set_value(v);
    m.set_counter(c);
    m
}

/// The board keeps per-bucket counts; Prometheus wants them cumulative.
/// The encoder adds the `+Inf` bucket (the sample count).
fn histogram(labels: &[(&str, &str)], h: &Histogram) -> proto::Metric {
    let mut m = labelled(labels);
    let mut cumulative = 0;
    let buckets = LATENCY_BUCKETS
        .iter()
        .zip(h.counts)
        .map(|(&bound, n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut ph = proto::Histogram::default();
    ph.set_bucket(buckets);
    ph.set_sample_count(h.count);
    ph.set_sample_sum(h.sum);
    m.set_histogram(ph);
    m
}

/// A [`Registry`] with a [`BoardCollector`] in it, and its text encoding:
/// what `/metrics` serves.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry exporting `board`.
    pub fn new(board: Arc<Board>) -> Metrics {
        let registry = Registry::new();
        registry
            .register(Box::new(BoardCollector::new(board)))
            // A fresh registry has nothing to conflict with.
            .expect("registering the board collector");
        Metrics { registry }
    }

    /// The registry, to register more collectors in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Gathers every collector now and encodes the result in the text
    /// format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut text = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut text) {
            // Only an empty family or name fails, and gather() drops empty
            // families: a bug, but one that should not take /metrics down.
            text.push_str(&format!("# camux: encoding metrics failed: {e}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric}: not a scalar: {other:?}"),
            })
    }

    #[test]
    fn descriptors_are_valid_and_unique() {
        let board = Arc::new(Board::new());
        let c = BoardCollector::new(board);
        assert_eq!(c.desc().len(), FAMILIES.len());
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        for f in &FAMILIES {
            assert!(f.name.starts_with("camux_"), "{}", f.name);
            let counter = matches!(f.kind, MetricType::COUNTER);
            assert_eq!(counter, f.name.ends_with("_total"), "{}", f.name);
        }
    }

    #[test]
    fn an_empty_board_exports_daemon_families_only() {
        let m = Metrics::new(Arc::new(Board::new()));
        let scrape = parse(&m.encode());
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            value(&scrape, "camux_build_info", &[("version", v)]),
            Some(1.0)
        );
        assert!(value(&scrape, "camux_uptime_seconds", &[]).unwrap() >= 0.0);
        assert!(value(&scrape, "camux_stream_up", &[("stream", "x")]).is_none());
    }

    #[test]
    fn values_equal_the_board() {
        let board = Arc::new(Board::new());
        let a = board.add("a", "synthetic", true, "a.ring".into());
        let b = board.add("b", "v4l2", false, "b.ring".into());
        a.set_state(StreamState::Publishing);
        a.update(|s| {
            s.published = 1000;
            s.dropped_no_slot = 3;
            s.driver_drops = 2;
            s.readers = 4;
            s.holds = 5;
            s.reader_lag_frames = 6;
            s.revoked = 7;
            s.bytes_copied = 1 << 40;
            s.restarts = 1;
            s.fps = 29.97;
            s.source_cpu_ms = 1500.0;
        });
        for secs in [0.000_005, 0.000_02, 0.000_02, 0.003, 5.0] {
            a.observe_latency(secs);
        }
        b.set_error(
            "not_found",
            "no /dev/video9".into(),
            true,
            StreamState::Retrying,
        );
        let at = b.get().last_error.unwrap().at_unix_ms;

        let scrape = parse(&Metrics::new(board).encode());
        let get = |m: &str, l: &[(&str, &str)]| value(&scrape, m, l);
        let sa = [("stream", "a")];
        let sb = [("stream", "b")];
        assert_eq!(get("camux_stream_up", &sa), Some(1.0));
        assert_eq!(get("camux_stream_up", &sb), Some(0.0));
        for state in StreamState::ALL {
            let on = |s| f64::from(u8::from(state == s));
            let la = [("stream", "a"), ("state", state.name())];
            let lb = [("stream", "b"), ("state", state.name())];
            assert_eq!(
                get("camux_stream_state", &la),
                Some(on(StreamState::Publishing))
            );
            assert_eq!(
                get("camux_stream_state", &lb),
                Some(on(StreamState::Retrying))
            );
        }
        assert_eq!(get("camux_frames_published_total", &sa), Some(1000.0));
        assert_eq!(get("camux_frames_published_total", &sb), Some(0.0));
        let dropped = |reason| {
            get(
                "camux_frames_dropped_total",
                &[("stream", "a"), ("reason", reason)],
            )
        };
        assert_eq!(
            (dropped("no_slot"), dropped("driver")),
            (Some(3.0), Some(2.0))
        );
        assert_eq!(get("camux_readers", &sa), Some(4.0));
        assert_eq!(get("camux_holds", &sa), Some(5.0));
        assert_eq!(get("camux_reader_lag_frames", &sa), Some(6.0));
        assert_eq!(get("camux_holds_revoked_total", &sa), Some(7.0));
        assert_eq!(
            get("camux_bytes_copied_total", &sa),
            Some((1u64 << 40) as f64)
        );
        assert_eq!(get("camux_source_restarts_total", &sa), Some(1.0));
        assert_eq!(get("camux_stream_fps", &sa), Some(29.97));
        assert_eq!(get("camux_stream_source_cpu_seconds_total", &sa), Some(1.5));
        assert_eq!(get("camux_stream_source_cpu_seconds_total", &sb), Some(0.0));
        assert_eq!(get("camux_last_error_timestamp_seconds", &sa), None);
        assert_eq!(
            get("camux_last_error_timestamp_seconds", &sb),
            Some(at as f64 / 1000.0)
        );

        // The histogram: cumulative buckets, +Inf equal to the count.
        let h = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "camux_publish_latency_seconds" && s.labels.get("stream") == Some("a")
            })
            .expect("histogram for a");
        let Value::Histogram(buckets) = &h.value else {
            panic!("{h:?}")
        };
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        let le = |bound: f64| buckets.iter().find(|b| b.less_than == bound).unwrap().count;
        assert_eq!(le(1e-5), 1.0);
        assert_eq!(le(2.5e-5), 3.0);
        assert_eq!(le(2.5e-3), 3.0);
        assert_eq!(le(5e-3), 4.0);
        assert_eq!(le(1.0), 4.0);
        assert_eq!(le(f64::INFINITY), 5.0);
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        assert_eq!(get("camux_publish_latency_seconds_count", &sa), Some(5.0));
        let sum = get("camux_publish_latency_seconds_sum", &sa).unwrap();
        assert!((sum - 5.003_045).abs() < 1e-9, "{sum}");
        assert_eq!(get("camux_publish_latency_seconds_count", &sb), Some(0.0));

        // Every family is there, with its help text.
        for f in &FAMILIES {
            assert_eq!(
                scrape.docs.get(f.name).map(String::as_str),
                Some(f.help),
                "{}",
                f.name
            );
        }
    }
}
