//! What every stream of the daemon is doing: the one place the supervisor
//! writes and `/status`, `/metrics` and `/readyz` read, so the three never
//! disagree.
//!
//! ```
//! use camux::daemon::status::{Board, StreamState};
//! let board = Board::new();
//! let cell = board.add("cam0", "synthetic", true, "/run/camux/cam0.ring".into());
//! cell.update(|s| {
//!     s.state = StreamState::Publishing;
//!     s.published += 1;
//! });
//! let snapshot = board.snapshot();
//! assert_eq!(snapshot[0].name, "cam0");
//! assert_eq!(snapshot[0].published, 1);
//! assert!(board.ready().is_ok());
//! ```

use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Opening its source and ring.
    Starting,
    /// Waiting for the stream's lock: another daemon publishes it (this one
    /// takes over when that one stops: rolling update).
    Standby,
    /// Publishing frames.
    Publishing,
    /// Source open, but no frame for longer than expected.
    Stalled,
    /// The source failed; waiting for the next attempt.
    Retrying,
    /// Stopped (shutdown, removed from the config, or a fatal error).
    Stopped,
}

impl StreamState {
    /// The state's name as `/status` and metrics spell it.
    pub fn name(self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Standby => "standby",
            StreamState::Publishing => "publishing",
            StreamState::Stalled => "stalled",
            StreamState::Retrying => "retrying",
            StreamState::Stopped => "stopped",
        }
    }

    /// All states, for metrics that export one series per state.
    pub const ALL: [StreamState; 6] = [
        StreamState::Starting,
        StreamState::Standby,
        StreamState::Publishing,
        StreamState::Stalled,
        StreamState::Retrying,
        StreamState::Stopped,
    ];
}

/// The last error a stream's source or ring reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// The message, with its causes.
    pub message: String,
    /// A short machine-readable kind (`not_found`, `busy`, `device_lost`, ...).
    pub kind: String,
    /// When it happened (ms since the Unix epoch).
    pub at_unix_ms: u64,
    /// Whether the supervisor retries after it.
    pub retryable: bool,
}

/// One stream's state and counters. Counters count this daemon's work on
/// the stream since the daemon started (across source restarts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    /// Stream name.
    pub name: String,
    /// Source kind: `synthetic`, `v4l2`, `file` or `sensor`.
    pub source: String,
    /// Whether `/readyz` waits for this stream.
    pub required: bool,
    /// Current state.
    pub state: StreamState,
    /// When it entered the state (ms since the Unix epoch).
    pub state_since_unix_ms: u64,
    /// The ring file.
    pub ring: PathBuf,
    /// The published format (`YUYV 640x480 @ 25 fps`), once known.
    pub format: Option<String>,
    /// V4L2 io mode in use (`userptr`, `mmap`), for camera streams.
    pub io_mode: Option<String>,
    /// Frames published.
    pub published: u64,
    /// Frames dropped because readers held every slot.
    pub dropped_no_slot: u64,
    /// Frames the driver dropped (gaps in its sequence).
    pub driver_drops: u64,
    /// Holds revoked after the hold timeout.
    pub revoked: u64,
    /// Bytes copied on the way into the ring (0 for zero-copy sources).
    pub bytes_copied: u64,
    /// CPU time (ms) the stream's source spent making frames, by the
    /// calling thread's CLOCK_THREAD_CPUTIME_ID around each call: rendering
    /// a synthetic frame into the loaned slot, reading a file frame,
    /// reading and framing a sensor record (on the sensor's reader thread).
    /// Not V4L2: there the frame is the driver's, and the dequeue is the
    /// publishing work. What the daemon spends beyond it is its own cost
    /// (`camux bench --groups daemon` subtracts it).
    pub source_cpu_ms: f64,
    /// Readers registered now.
    pub readers: u32,
    /// Frames readers hold now (all readers).
    pub holds: u32,
    /// Each registered reader, identified by its socket's peer credentials.
    pub reader_list: Vec<ReaderStatus>,
    /// How far the slowest holder is behind: head minus the oldest frame
    /// a reader holds (0 when nothing is held).
    pub reader_lag_frames: u64,
    /// The latest published seq.
    pub head: u64,
    /// The ring's producer epoch.
    pub epoch: u32,
    /// Frames per second over the last measurement window.
    pub fps: f64,
    /// Times the source was (re)started after a failure.
    pub restarts: u64,
    /// Time until the next attempt, while retrying.
    pub retry_in_ms: Option<u64>,
    /// The last error, if any (kept after recovery, with its time).
    pub last_error: Option<LastError>,
}

/// One registered reader, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderStatus {
    /// The producer's id for the registration.
    pub id: u32,
    /// PID (`SO_PEERCRED`, in the daemon's PID namespace; 0 if not visible there).
    pub pid: u32,
    /// Effective uid (`SO_PEERCRED`).
    pub uid: u32,
    /// Primary gid (`SO_PEERCRED`).
    pub gid: u32,
    /// Frames it holds now.
    pub holds: u32,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publish-to-ring latency buckets (seconds): 10 µs .. 1 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 1e-1, 1.0,
];

/// A fixed-bucket histogram (Prometheus semantics: cumulative at export).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket of [`LATENCY_BUCKETS`] (not cumulative), plus
    /// one for +Inf.
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observations (seconds).
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation of `secs` seconds.
    ///
    /// ```
    /// use camux::daemon::status::Histogram;
    /// let mut h = Histogram::default();
    /// h.observe(0.000_02);
    /// h.observe(3.0);
    /// assert_eq!((h.count, h.counts[1], h.counts[12]), (2, 1, 1));
    /// ```
    pub fn observe(&mut self, secs: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// One stream's shared record.
#[derive(Debug)]
pub struct StreamCell {
    status: Mutex<StreamStatus>,
    latency: Mutex<Histogram>,
}

impl StreamCell {
    /// Changes the status under its lock.
    pub fn update(&self, f: impl FnOnce(&mut StreamStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Moves to `state` (noting when), if it is not already there.
    pub fn set_state(&self, state: StreamState) {
        self.update(|s| {
            if s.state != state {
                s.state = state;
                s.state_since_unix_ms = unix_ms();
            }
        });
    }

    /// Records an error and the state it leads to.
    pub fn set_error(&self, kind: &str, message: String, retryable: bool, state: StreamState) {
        self.update(|s| {
            s.last_error = Some(LastError {
                message,
                kind: kind.to_string(),
                at_unix_ms: unix_ms(),
                retryable,
            });
            if s.state != state {
                s.state = state;
                s.state_since_unix_ms = unix_ms();
            }
        });
    }

    /// A copy of the status.
    pub fn get(&self) -> StreamStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a publish latency (capture or publish start to commit).
    pub fn observe_latency(&self, secs: f64) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(secs);
    }

    /// A copy of the latency histogram.
    pub fn latency(&self) -> Histogram {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Every stream of the daemon, plus the daemon's own liveness.
#[derive(Debug)]
pub struct Board {
    streams: RwLock<Vec<Arc<StreamCell>>>,
    started: Instant,
    /// Last time the daemon's main loop went round (for `/healthz`).
    tick: Mutex<Instant>,
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

/// Why the daemon is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// Required streams that are neither publishing nor standing by, with their state.
    pub streams: Vec<(String, StreamState)>,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .streams
            .iter()
            .map(|(n, s)| format!("{n}: {}", s.name()))
            .collect();
        write!(f, "required streams not publishing: {}", list.join(", "))
    }
}

impl Board {
    /// An empty board.
    pub fn new() -> Board {
        Board {
            streams: RwLock::new(Vec::new()),
            started: Instant::now(),
            tick: Mutex::new(Instant::now()),
        }
    }

    /// Adds (or, if a stream of that name exists, replaces) a stream in
    /// state [`StreamState::Starting`] and returns its cell.
    pub fn add(&self, name: &str, source: &str, required: bool, ring: PathBuf) -> Arc<StreamCell> {
        let cell = Arc::new(StreamCell {
            status: Mutex::new(StreamStatus {
                name: name.to_string(),
                source: source.to_string(),
                required,
                state: StreamState::Starting,
                state_since_unix_ms: unix_ms(),
                ring,
                format: None,
                io_mode: None,
                published: 0,
                dropped_no_slot: 0,
                driver_drops: 0,
                revoked: 0,
                bytes_copied: 0,
                source_cpu_ms: 0.0,
                readers: 0,
                holds: 0,
                reader_list: Vec::new(),
                reader_lag_frames: 0,
                head: 0,
                epoch: 0,
                fps: 0.0,
                restarts: 0,
                retry_in_ms: None,
                last_error: None,
            }),
            latency: Mutex::new(Histogram::default()),
        });
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        streams.retain(|c| c.get().name != name);
        streams.push(cell.clone());
        streams.sort_by_key(|c| c.get().name);
        cell
    }

    /// Removes a stream (after its supervisor stopped).
    pub fn remove(&self, name: &str) {
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c.get().name != name);
    }

    /// The cells, in name order.
    pub fn cells(&self) -> Vec<Arc<StreamCell>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stream's status, in name order.
    pub fn snapshot(&self) -> Vec<StreamStatus> {
        self.cells().iter().map(|c| c.get()).collect()
    }

    /// Ready when every required stream publishes, or stands by to take
    /// over from another daemon (a rolling update's new pod is ready before
    /// the old one stops).
    pub fn ready(&self) -> Result<(), NotReady> {
        let streams: Vec<(String, StreamState)> = self
            .snapshot()
            .into_iter()
            .filter(|s| s.required)
            .filter(|s| !matches!(s.state, StreamState::Publishing | StreamState::Standby))
            .map(|s| (s.name, s.state))
            .collect();
        if streams.is_empty() {
            Ok(())
        } else {
            Err(NotReady { streams })
        }
    }

    /// Notes that the daemon's main loop went round.
    pub fn tick(&self) {
        *self.tick.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long since the main loop last went round.
    pub fn since_tick(&self) -> Duration {
        self.tick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_required_streams() {
        let b = Board::new();
        let a = b.add("a", "synthetic", true, "a.ring".into());
        let opt = b.add("b", "v4l2", false, "b.ring".into());
        let err = b.ready().unwrap_err();
        assert_eq!(err.streams, vec![("a".to_string(), StreamState::Starting)]);
        assert!(err.to_string().contains("a: starting"), "{err}");
        a.set_state(StreamState::Publishing);
        opt.set_error("not_found", "no device".into(), true, StreamState::Retrying);
        assert_eq!(b.ready(), Ok(()), "an optional stream does not count");
        a.set_state(StreamState::Standby);
        assert_eq!(b.ready(), Ok(()), "standing by is ready");
        a.set_state(StreamState::Stalled);
        assert!(b.ready().is_err());
        let s = opt.get();
        assert_eq!(
            s.last_error.as_ref().map(|e| e.kind.as_str()),
            Some("not_found")
        );
        assert_eq!(s.state, StreamState::Retrying);
    }

    #[test]
    fn adding_a_name_again_replaces_it_and_order_is_by_name() {
        let b = Board::new();
        b.add("z", "synthetic", true, "z.ring".into());
        b.add("a", "synthetic", true, "a.ring".into());
        let again = b.add("z", "file", false, "z.ring".into());
        again.update(|s| s.published = 7);
        let names: Vec<String> = b.snapshot().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "z"]);
        assert_eq!(b.snapshot()[1].source, "file");
        b.remove("a");
        assert_eq!(b.snapshot().len(), 1);
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(1e-5); // on the bound: that bucket
        h.observe(0.0);
        h.observe(f64::INFINITY);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[LATENCY_BUCKETS.len()], 1);
        assert_eq!(h.count, 3);
    }
}
