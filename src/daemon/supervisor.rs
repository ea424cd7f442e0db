//! One thread per stream: take the stream's lock (standing by while
//! another daemon publishes it), open the source and the ring, publish, and
//! when the source fails retry it with capped exponential backoff and
//! jitter, while the other streams go on.
//!
//! Every state change, error and counter goes to the stream's
//! [`StreamCell`] on the [`Board`], which `/status`, `/metrics` and
//! `/readyz` read.

use crate::daemon::config::{DaemonConfig, SourceConfig, StreamConfig};
use crate::daemon::status::{Board, ReaderStatus, StreamCell, StreamState};
use crate::format::FourCc;
use crate::ring::{CreateError, PublishError, RingOptions, StreamFormat, StreamLock};
use crate::source::{Synthetic, SyntheticConfig};
use crate::{FrameInfo, Publisher};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A run that published this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How often a publishing stream's counters go to the board.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The calling thread's CPU time so far (ns), CLOCK_THREAD_CPUTIME_ID.
///
/// Linux's vDSO serves only the wall clocks (CLOCK_MONOTONIC ~35 ns here),
/// so a CPU-time clock is a real `clock_gettime` system call: ~0.1-0.3 µs
/// on bare metal, 0.77 µs a read on the 2-vCPU VM of docs/BENCHMARKS.md
/// (measured). Hence [`SourceClock`] samples.
fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// One frame in this many is timed by [`SourceClock`].
const SOURCE_SAMPLE_EVERY: u64 = 8;

/// The CPU time a stream's source spends making frames (for the stream's
/// `source_cpu_ms`), sampled: the first call and then one in
/// [`SOURCE_SAMPLE_EVERY`] is timed with the thread's CPU clock and counts
/// for that many. A source's frames cost about the same each (a render,
/// a read of one record or frame), so the estimate is unbiased, and the
/// two clock reads (~1.5 µs on the VM above) are spread to ~0.2 µs a
/// frame on the publish path.
#[derive(Debug, Default)]
struct SourceClock {
    /// Estimated CPU time so far (ns).
    ns: u64,
    calls: u64,
}

impl SourceClock {
    /// Runs `f` (a call that makes a frame), timing it if it is a sample.
    fn measure<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.calls += 1;
        if self.calls % SOURCE_SAMPLE_EVERY != 1 {
            return f();
        }
        let t0 = thread_cpu_ns();
        let out = f();
        self.ns += thread_cpu_ns().saturating_sub(t0) * SOURCE_SAMPLE_EVERY;
        out
    }
}

/// Capped exponential backoff with "equal jitter": attempt `n` waits a
/// random time in `[d/2, d]` where `d = min(cap, base * 2^n)`, so retries of
/// many streams (or nodes) spread out but never wait less than half the
/// nominal delay.
///
/// ```
/// use camux::daemon::supervisor::Backoff;
/// use std::time::Duration;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
/// let d0 = b.next_delay();
/// assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
/// for _ in 0..10 { b.next_delay(); }
/// let late = b.next_delay();
/// assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
/// b.reset();
/// assert!(b.next_delay() <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `base` up to `cap`, jitter seeded with `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter only, not security.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = nominal / 2;
        let span = (nominal - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { self.rng % (span + 1) })
    }

    /// Starts over (after a healthy run).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What a stream's failure looks like on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// Short kind (`not_found`, `busy`, `device_lost`, `ring`, `config`, ...).
    pub kind: &'static str,
    /// The message, causes included.
    pub message: String,
    /// Whether trying again later can help.
    pub retryable: bool,
}

impl StreamError {
    fn new(kind: &'static str, message: impl Into<String>, retryable: bool) -> StreamError {
        StreamError {
            kind,
            message: message.into(),
            retryable,
        }
    }

    fn ring(e: CreateError) -> StreamError {
        let retryable = matches!(
            e,
            CreateError::Busy { .. } | CreateError::NoSpace { .. } | CreateError::Io { .. }
        );
        StreamError::new("ring", e.to_string(), retryable)
    }
}

/// How a stream's run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Asked to stop.
    Stopped,
    /// The source has no more frames (a file without `loop`, a closed FIFO).
    EndOfInput,
}

/// The stop signal of one stream's thread: dropping the sender stops it,
/// and wakes any wait on it at once.
#[derive(Debug, Clone)]
struct Stop(Receiver<()>);

impl Stop {
    fn requested(&self) -> bool {
        matches!(
            self.0.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Waits `d` unless a stop comes first; true if stopped.
    fn wait(&self, d: Duration) -> bool {
        matches!(self.0.recv_timeout(d), Err(RecvTimeoutError::Disconnected))
    }
}

/// What a stream's thread tells the thread that may join it: whether it
/// is blocked in `flock` as a standby. Its exit drops the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// About to block waiting for the stream's lock.
    Standby,
    /// Got the lock (or stopped waiting for it).
    LeftStandby,
}

struct Running {
    config: StreamConfig,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    phase: Receiver<Phase>,
}

impl Running {
    fn stop(&mut self) {
        self.stop.take();
    }

    /// Joins the thread, unless it stands by for the lock (blocked in
    /// `flock`: it notices the stop when it gets the lock and releases it
    /// at once; a shutdown does not wait for another daemon to stop).
    /// Decided by the thread's own reports, not a look at its state, so a
    /// thread about to block is not joined by mistake.
    fn join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        loop {
            let standby = match self.phase.recv() {
                Ok(Phase::Standby) => true,
                Ok(Phase::LeftStandby) => false,
                // The thread ended: nothing more will come.
                Err(_) => {
                    let _ = thread.join();
                    return;
                }
            };
            // Reports may be queued: act on the latest.
            if standby && self.phase.is_empty() {
                return; // detached
            }
        }
    }
}

/// What [`Supervisor::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Streams started.
    pub added: Vec<String>,
    /// Streams restarted because their config changed.
    pub restarted: Vec<String>,
    /// Streams stopped because the config no longer has them.
    pub removed: Vec<String>,
    /// Streams left running untouched.
    pub unchanged: Vec<String>,
}

/// Runs every stream of a config.
pub struct Supervisor {
    board: Arc<Board>,
    dir: PathBuf,
    running: BTreeMap<String, Running>,
}

impl Supervisor {
    /// A supervisor that publishes into `dir` and reports on `board`.
    pub fn new(board: Arc<Board>, dir: PathBuf) -> Supervisor {
        Supervisor {
            board,
            dir,
            running: BTreeMap::new(),
        }
    }

    /// Makes the running streams match `config`: starts new ones, restarts
    /// those whose config changed, stops removed ones, and leaves the rest
    /// alone (their readers see nothing).
    pub fn apply(&mut self, config: &DaemonConfig) -> Applied {
        let mut applied = Applied::default();
        let wanted: BTreeMap<&str, &StreamConfig> = config
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            match wanted.get(name.as_str()) {
                Some(new) if self.running[&name].config == **new => applied.unchanged.push(name),
                Some(_) => {
                    self.stop_one(&name);
                    applied.restarted.push(name);
                }
                None => {
                    self.stop_one(&name);
                    self.board.remove(&name);
                    applied.removed.push(name);
                }
            }
        }
        for (name, cfg) in wanted {
            if !self.running.contains_key(name) {
                self.start_one(cfg.clone());
                if !applied.restarted.iter().any(|n| n == name) {
                    applied.added.push(name.to_string());
                }
            }
        }
        applied
    }

    fn start_one(&mut self, config: StreamConfig) {
        let (ring, _, _) = crate::ring::paths(&self.dir, &config.name);
        let cell = self
            .board
            .add(&config.name, config.source_kind(), config.required, ring);
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let stop = Stop(rx);
        let (phase_tx, phase) = crossbeam_channel::unbounded::<Phase>();
        let dir = self.dir.clone();
        let thread_cell = cell.clone();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name(format!("stream-{}", config.name))
            .spawn(move || supervise(thread_config, dir, thread_cell, stop, phase_tx))
            .expect("cannot spawn a stream thread");
        self.running.insert(
            config.name.clone(),
            Running {
                config,
                stop: Some(tx),
                thread: Some(thread),
                phase,
            },
        );
    }

    fn stop_one(&mut self, name: &str) {
        if let Some(mut r) = self.running.remove(name) {
            r.stop();
            r.join();
        }
    }

    /// Stops every stream (each marks its ring stopped, so a standby daemon
    /// takes over) and waits for them, but not for those standing by.
    pub fn shutdown(&mut self) {
        for r in self.running.values_mut() {
            r.stop();
        }
        for r in self.running.values_mut() {
            r.join();
        }
        self.running.clear();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A stream's thread: attempts with backoff until stopped.
fn supervise(
    config: StreamConfig,
    dir: PathBuf,
    cell: Arc<StreamCell>,
    stop: Stop,
    phase: Sender<Phase>,
) {
    let seed = config.name.bytes().fold(crate::ring::mono_ns(), |h, b| {
        h.rotate_left(5) ^ u64::from(b)
    });
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP, seed);
    let mut attempt = 0u64;
    while !stop.requested() {
        if attempt > 0 {
            cell.update(|s| s.restarts += 1);
        }
        attempt += 1;
        cell.update(|s| s.retry_in_ms = None);
        cell.set_state(StreamState::Starting);
        let started = Instant::now();
        let outcome = match take_lock(&dir, &config.name, &cell, &stop, &phase) {
            Ok(Some(lock)) => run_contained(&config, &dir, lock, &cell, &stop),
            Ok(None) => Ok(Ended::Stopped),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Ended::Stopped) => break,
            Ok(Ended::EndOfInput) => {
                cell.set_state(StreamState::Stopped);
                return;
            }
            Err(e) => {
                let state = if e.retryable {
                    StreamState::Retrying
                } else {
                    StreamState::Stopped
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                if e.retryable {
                    tracing::warn!(stream = %config.name, kind = e.kind, error = %e.message,
                        retry_in_ms = delay.as_millis() as u64, "source failed; retrying");
                } else {
                    tracing::error!(stream = %config.name, kind = e.kind, error = %e.message,
                        "source failed; not retrying");
                }
                cell.set_error(e.kind, e.message, e.retryable, state);
                if !e.retryable {
                    return;
                }
                cell.update(|s| s.retry_in_ms = Some(delay.as_millis() as u64));
                if stop.wait(delay) {
                    break;
                }
            }
        }
    }
    cell.update(|s| s.retry_in_ms = None);
    cell.set_state(StreamState::Stopped);
}

/// Takes the stream's lock; stands by (state Standby) while another
/// daemon holds it. `None`: stopped while standing by.
fn take_lock(
    dir: &Path,
    name: &str,
    cell: &StreamCell,
    stop: &Stop,
    phase: &Sender<Phase>,
) -> Result<Option<StreamLock>, StreamError> {
    match StreamLock::acquire(dir, name, false) {
        Ok(lock) => return Ok(Some(lock)),
        Err(CreateError::Busy { .. }) => {}
        Err(e) => return Err(StreamError::ring(e)),
    }
    // Told before blocking, so a shutdown knows not to wait for us; and
    // told again (however we leave) by the guard.
    let _ = phase.send(Phase::Standby);
    struct Left<'a>(&'a Sender<Phase>);
    impl Drop for Left<'_> {
        fn drop(&mut self) {
            let _ = self.0.send(Phase::LeftStandby);
        }
    }
    let _left = Left(phase);
    cell.set_state(StreamState::Standby);
    tracing::info!(
        stream = name,
        "another producer publishes this stream; standing by"
    );
    loop {
        match StreamLock::acquire(dir, name, true) {
            Ok(lock) if stop.requested() => {
                drop(lock);
                return Ok(None);
            }
            Ok(lock) => {
                cell.set_state(StreamState::Starting);
                return Ok(Some(lock));
            }
            // A signal interrupted the wait: look at the stop flag, wait on.
            Err(CreateError::Io { .. }) if !stop.requested() => continue,
            Err(_) if stop.requested() => return Ok(None),
            Err(e) => return Err(StreamError::ring(e)),
        }
    }
}

/// Ring options for a stream from its config and the source's format.
fn ring_options(
    config: &StreamConfig,
    dir: &Path,
    format: StreamFormat,
    frame_bytes: u64,
    extra_slots: u32,
) -> Result<RingOptions, StreamError> {
    let r = &config.ring;
    let max = match r.max_frame_bytes {
        Some(m) if m < frame_bytes => {
            return Err(StreamError::new(
                "config",
                format!(
                    "stream {}: ring.max_frame_bytes {m} is smaller than the source's frames of {frame_bytes} bytes",
                    config.name
                ),
                false,
            ))
        }
        Some(m) => m,
        None => frame_bytes,
    };
    let mut opts = RingOptions::new(dir, config.name.as_str(), format, max);
    opts.slots = r.slots.saturating_add(extra_slots);
    opts.hold_limit = r.hold_limit;
    opts.hold_timeout = r.hold_timeout;
    opts.copy_stores = r.copy_stores;
    opts.slot_reuse = r.slot_reuse;
    opts.heartbeat = r.heartbeat;
    opts.max_readers = r.max_readers;
    opts.ring_mode = config.access.ring_mode;
    opts.socket_mode = config.access.socket_mode;
    opts.allow_uids = config.access.allow_uids.clone();
    opts.allow_gids = config.access.allow_gids.clone();
    Ok(opts)
}

fn create(
    opts: &RingOptions,
    lock: StreamLock,
    config: &StreamConfig,
) -> Result<Publisher, StreamError> {
    let p = Publisher::create_locked(opts, lock).map_err(StreamError::ring)?;
    if let Some(group) = &config.access.group {
        chgrp(&opts.dir, &opts.name, group)?;
    }
    Ok(p)
}

/// Gives the ring and socket files to `group` (a name or a number), so
/// that group's readers can open them with the configured modes.
fn chgrp(dir: &Path, name: &str, group: &str) -> Result<(), StreamError> {
    let gid = match group.parse::<u32>() {
        Ok(n) => nix::unistd::Gid::from_raw(n),
        Err(_) => match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => g.gid,
            _ => {
                return Err(StreamError::new(
                    "config",
                    format!("access.group {group:?}: no such group on this node"),
                    false,
                ))
            }
        },
    };
    let (ring, sock, _) = crate::ring::paths(dir, name);
    for path in [&ring, &sock] {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| {
            StreamError::new(
                "ring",
                format!("cannot give {} to group {group}: {e}", path.display()),
                true,
            )
        })?;
    }
    Ok(())
}

/// Counters a run keeps and flushes to the board now and then.
struct Flusher {
    name: String,
    /// Reader ids seen at the last flush (to log arrivals and departures).
    known: Vec<u32>,
    last: Instant,
    window_start: Instant,
    window_frames: u64,
    base: PublisherCounters,
    /// The source's CPU in this run so far (ns): the run loop adds to it
    /// around each call that makes a frame.
    source: SourceClock,
}

/// The board counts a stream's totals across runs; a run adds its own.
#[derive(Clone, Copy, Default)]
struct PublisherCounters {
    published: u64,
    dropped: u64,
    revoked: u64,
    bytes_copied: u64,
    driver_drops: u64,
    source_cpu_ms: f64,
}

impl Flusher {
    fn new(cell: &StreamCell) -> Flusher {
        let s = cell.get();
        Flusher {
            name: s.name.clone(),
            known: Vec::new(),
            last: Instant::now(),
            window_start: Instant::now(),
            window_frames: 0,
            base: PublisherCounters {
                published: s.published,
                dropped: s.dropped_no_slot,
                revoked: s.revoked,
                bytes_copied: s.bytes_copied,
                driver_drops: s.driver_drops,
                source_cpu_ms: s.source_cpu_ms,
            },
            source: SourceClock::default(),
        }
    }

    /// Flushes if due (or `force`): counters, source CPU, readers, holds, fps.
    fn flush(&mut self, cell: &StreamCell, p: &mut Publisher, driver_drops: u64, force: bool) {
        if !force && self.last.elapsed() < FLUSH_EVERY {
            return;
        }
        self.last = Instant::now();
        let readers = p.poll_readers();
        let st = p.stats();
        let (holds, oldest) = p.holds();
        let list: Vec<ReaderStatus> = p
            .readers_info()
            .into_iter()
            .map(|r| ReaderStatus {
                id: r.id,
                pid: r.pid,
                uid: r.uid,
                gid: r.gid,
                holds: r.holds,
            })
            .collect();
        let name = &self.name;
        for r in list.iter().filter(|r| !self.known.contains(&r.id)) {
            tracing::info!(stream = %name, reader = r.id, pid = r.pid, uid = r.uid, gid = r.gid, "reader registered");
        }
        for id in self
            .known
            .iter()
            .filter(|id| !list.iter().any(|r| r.id == **id))
        {
            tracing::info!(stream = %name, reader = id, "reader left");
        }
        self.known = list.iter().map(|r| r.id).collect();
        let window = self.window_start.elapsed();
        let frames_now = st.published;
        let b = self.base;
        let source_ms = self.source.ns as f64 / 1e6;
        cell.update(|s| {
            s.published = b.published + st.published;
            s.dropped_no_slot = b.dropped + st.dropped;
            s.revoked = b.revoked + st.revoked;
            s.bytes_copied = b.bytes_copied + st.bytes_copied;
            s.driver_drops = b.driver_drops + driver_drops;
            s.source_cpu_ms = b.source_cpu_ms + source_ms;
            s.readers = readers;
            s.holds = holds;
            s.reader_list = list;
            s.reader_lag_frames = oldest.map_or(0, |o| st.head.saturating_sub(o));
            s.head = st.head;
            s.epoch = st.epoch;
            if window >= Duration::from_secs(1) {
                s.fps = (frames_now - self.window_frames) as f64 / window.as_secs_f64();
            }
        });
        if window >= Duration::from_secs(1) {
            self.window_start = Instant::now();
            self.window_frames = frames_now;
        }
    }
}

/// Notes on the board and in the log that the stream publishes.
fn publishing(cell: &StreamCell, p: &Publisher, format: String, io: Option<&str>) {
    let st = p.stats();
    tracing::info!(stream = %cell.get().name, %format, io, epoch = st.epoch,
        next_seq = p.next_seq(), ring = %p.ring_path().display(), "publishing");
    cell.update(|s| {
        s.format = Some(format);
        s.io_mode = io.map(str::to_string);
        s.epoch = st.epoch;
    });
    cell.set_state(StreamState::Publishing);
}

fn describe(format: &StreamFormat) -> String {
    let fps = if format.fps_den > 0 {
        format!(
            " @ {} fps",
            f64::from(format.fps_num) / f64::from(format.fps_den)
        )
    } else {
        String::new()
    };
    format!("{} {}x{}{fps}", format.fourcc, format.width, format.height)
}

/// [`run_source`], with a panic in it contained to this stream: the
/// unwinding drops the publisher (its ring is marked stopped, its lock
/// released, so a standby daemon may take over) and the panic becomes a
/// retryable `panic` error, retried with backoff like any failing source,
/// while the other streams go on. (This is why the release profiles keep
/// `panic = "unwind"`.)
fn run_contained(
    config: &StreamConfig,
    dir: &Path,
    lock: StreamLock,
    cell: &StreamCell,
    stop: &Stop,
) -> Result<Ended, StreamError> {
    contained(|| run_source(config, dir, lock, cell, stop))
}

/// Runs `f`, turning a panic into a retryable `panic` [`StreamError`].
fn contained(f: impl FnOnce() -> Result<Ended, StreamError>) -> Result<Ended, StreamError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(StreamError::new(
            "panic",
            format!("the stream's thread panicked (a camux bug, please report it): {what}"),
            true,
        ))
    })
}

fn run_source(
    config: &StreamConfig,
    dir: &Path,
    lock: StreamLock,
    cell: &StreamCell,
    stop: &Stop,
) -> Result<Ended, StreamError> {
    match &config.source {
        SourceConfig::Synthetic {
            format,
            width,
            height,
            fps,
        } => run_synthetic(
            config, dir, lock, cell, stop, *format, *width, *height, *fps,
        ),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2 { .. } => v4l2::run(config, dir, lock, cell, stop),
        #[cfg(not(feature = "v4l2"))]
        SourceConfig::V4l2 { .. } => Err(StreamError::new(
            "unsupported",
            "this camux was built without V4L2 support (cargo feature v4l2)",
            false,
        )),
        SourceConfig::File { .. } => run_file(config, dir, lock, cell, stop),
        SourceConfig::Sensor { .. } => run_sensor(config, dir, lock, cell, stop),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_synthetic(
    config: &StreamConfig,
    dir: &Path,
    lock: StreamLock,
    cell: &StreamCell,
    stop: &Stop,
    fourcc: FourCc,
    width: u32,
    height: u32,
    fps: f64,
) -> Result<Ended, StreamError> {
    let source = Synthetic::new(SyntheticConfig {
        width,
        height,
        fourcc,
        fps,
    })
    .map_err(|e| StreamError::new("config", e.to_string(), false))?;
    let format = StreamFormat::from_layout(source.layout(), fps);
    let opts = ring_options(config, dir, format, source.frame_bytes() as u64, 0)?;
    let mut p = create(&opts, lock, config)?;
    publishing(cell, &p, describe(&format), None);
    let mut pacer = source.pacer();
    let mut flusher = Flusher::new(cell);
    let mut captured = 0u64;
    while !stop.requested() {
        // A stop ends the wait at once, even at 1 fps.
        if pacer.wait_or(|d| stop.wait(d)).is_none() {
            break;
        }
        captured += 1;
        let t0 = Instant::now();
        let info = FrameInfo {
            driver_seq: captured,
            ..FrameInfo::default()
        };
        match p.loan() {
            Ok(mut loan) => {
                let seq = p.next_seq();
                let len = flusher
                    .source
                    .measure(|| source.render(seq, loan.as_mut_slice()))
                    .map_err(|e| StreamError::new("source", e.to_string(), true))?;
                p.commit(loan, len, &info)
                    .map_err(|e| StreamError::new("ring", e.to_string(), true))?;
                cell.observe_latency(t0.elapsed().as_secs_f64());
            }
            Err(PublishError::NoFreeSlot) => {}
            Err(e) => return Err(StreamError::new("ring", e.to_string(), true)),
        }
        flusher.flush(cell, &mut p, 0, false);
    }
    flusher.flush(cell, &mut p, 0, true);
    Ok(Ended::Stopped)
}

fn run_file(
    config: &StreamConfig,
    dir: &Path,
    lock: StreamLock,
    cell: &StreamCell,
    stop: &Stop,
) -> Result<Ended, StreamError> {
    use crate::source::file::{FileConfig, FileError, FileSource};
    let file_config: FileConfig = config.source.file_config().expect("a file source");
    let mut source = FileSource::open(&file_config).map_err(|e| {
        let kind = match &e {
            FileError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "not_found"
            }
            _ => "source",
        };
        StreamError::new(kind, e.to_string(), true)
    })?;
    let format = StreamFormat::from_layout(source.layout(), source.fps());
    let opts = ring_options(config, dir, format, source.frame_bytes() as u64, 0)?;
    let mut p = create(&opts, lock, config)?;
    publishing(cell, &p, describe(&format), None);
    let mut pacer = source.pacer();
    let mut flusher = Flusher::new(cell);
    let mut scratch = Vec::new();
    while !stop.requested() {
        // A stop ends the wait at once, even at 1 fps.
        if pacer.wait_or(|d| stop.wait(d)).is_none() {
            break;
        }
        let t0 = Instant::now();
        let read = match p.loan() {
            Ok(mut loan) => match flusher
                .source
                .measure(|| source.next_frame(loan.as_mut_slice()))
            {
                Ok(Some(r)) => {
                    p.count_copied(r.len as u64);
                    p.commit(loan, r.len, &FrameInfo::default())
                        .map_err(|e| StreamError::new("ring", e.to_string(), true))?;
                    cell.observe_latency(t0.elapsed().as_secs_f64());
                    true
                }
                Ok(None) => {
                    p.abandon(loan);
                    false
                }
                Err(e) => {
                    p.abandon(loan);
                    return Err(StreamError::new("source", e.to_string(), true));
                }
            },
            // Every slot held: read the frame anyway (the file's clock goes
            // on, as a camera's would) and drop it.
            Err(PublishError::NoFreeSlot) => {
                scratch.resize(source.frame_bytes(), 0);
                flusher
                    .source
                    .measure(|| source.next_frame(&mut scratch))
                    .map_err(|e| StreamError::new("source", e.to_string(), true))?
                    .is_some()
            }
            Err(e) => return Err(StreamError::new("ring", e.to_string(), true)),
        };
        flusher.flush(cell, &mut p, 0, false);
        if !read {
            flusher.flush(cell, &mut p, 0, true);
            return Ok(Ended::EndOfInput);
        }
    }
    flusher.flush(cell, &mut p, 0, true);
    Ok(Ended::Stopped)
}

/// Records come from a thread that blocks in `read` (a quiet serial port
/// or FIFO must not keep the stream from stopping); it is detached on stop
/// and ends with its input or the process.
fn run_sensor(
    config: &StreamConfig,
    dir: &Path,
    lock: StreamLock,
    cell: &StreamCell,
    stop: &Stop,
) -> Result<Ended, StreamError> {
    use crate::source::sensor::{SensorError, SensorSource};
    let sensor_config = config.source.sensor_config().expect("a sensor source");
    let content_type = sensor_config.content_type.clone();
    let max = sensor_config.framing.max_record_bytes();
    /// A record, and the CPU (ns) the reader thread spent reading and
    /// framing it.
    type Msg = Result<(Vec<u8>, crate::source::sensor::Record, u64), String>;
    let (tx, rx) = crossbeam_channel::bounded::<Msg>(64);
    let (open_tx, open_rx) = crossbeam_channel::bounded::<Result<(), (&'static str, String)>>(1);
    std::thread::Builder::new()
        .name(format!("sensor-{}", config.name))
        .spawn(move || {
            let mut source = match SensorSource::open(&sensor_config) {
                Ok(s) => {
                    let _ = open_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let kind = match &e {
                        SensorError::Open { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            "not_found"
                        }
                        _ => "source",
                    };
                    let _ = open_tx.send(Err((kind, e.to_string())));
                    return;
                }
            };
            let mut buf = vec![0u8; max];
            let mut clock = SourceClock::default();
            loop {
                // Thread CPU: time blocked in read() waiting for input is
                // not counted, only the reading and framing.
                let before = clock.ns;
                let record = clock.measure(|| source.next_record(&mut buf));
                let cpu = clock.ns - before;
                match record {
                    Ok(Some(r)) => {
                        if tx.send(Ok((buf[..r.len].to_vec(), r, cpu))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        })
        .map_err(|e| {
            StreamError::new(
                "source",
                format!("cannot start the sensor reader: {e}"),
                true,
            )
        })?;
    // Opening a FIFO blocks until a writer comes: wait for that or a stop.
    loop {
        match open_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(())) => break,
            Ok(Err((kind, message))) => return Err(StreamError::new(kind, message, true)),
            Err(RecvTimeoutError::Timeout) if stop.requested() => return Ok(Ended::Stopped),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(StreamError::new("source", "the sensor reader ended", true))
            }
        }
    }
    let mut format = StreamFormat::opaque(max as u32);
    format.fps_num = 0;
    let mut opts = ring_options(config, dir, format, max as u64, 0)?;
    opts.content_type = Some(content_type.clone());
    let mut p = create(&opts, lock, config)?;
    publishing(
        cell,
        &p,
        format!("records up to {max} bytes ({content_type})"),
        None,
    );
    let mut flusher = Flusher::new(cell);
    loop {
        if stop.requested() {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok((bytes, r, cpu))) => {
                flusher.source.ns += cpu;
                let t0 = Instant::now();
                let info = FrameInfo {
                    capture_mono_ns: r.mono_ns,
                    capture_real_ns: r.real_ns,
                    driver_seq: r.seq,
                    ..FrameInfo::default()
                };
                match p.publish(&info, &bytes) {
                    Ok(_) => cell.observe_latency(t0.elapsed().as_secs_f64()),
                    Err(e) => return Err(StreamError::new("ring", e.to_string(), true)),
                }
            }
            Ok(Err(message)) => return Err(StreamError::new("source", message, true)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                flusher.flush(cell, &mut p, 0, true);
                return Ok(Ended::EndOfInput);
            }
        }
        flusher.flush(cell, &mut p, 0, false);
    }
    flusher.flush(cell, &mut p, 0, true);
    Ok(Ended::Stopped)
}

#[cfg(feature = "v4l2")]
mod v4l2 {
    use super::*;
    use crate::source::v4l2::{Capture, Captured, V4l2Device, V4l2Error};

    fn error(e: V4l2Error) -> StreamError {
        StreamError::new(e.kind(), e.to_string(), e.is_retryable())
    }

    pub(super) fn run(
        config: &StreamConfig,
        dir: &Path,
        lock: StreamLock,
        cell: &StreamCell,
        stop: &Stop,
    ) -> Result<Ended, StreamError> {
        let v4l2_config = config.source.v4l2_config().expect("a v4l2 source");
        let device = V4l2Device::open(&v4l2_config).map_err(error)?;
        let n = *device.negotiated();
        let format = n.stream_format();
        let opts = ring_options(
            config,
            dir,
            format,
            u64::from(n.sizeimage),
            v4l2_config.buffers,
        )?;
        let mut p = create(&opts, lock, config)?;
        let mut capture = Capture::start(device, &mut p, v4l2_config.io).map_err(error)?;
        let (mode, why) = capture.io_choice();
        tracing::info!(stream = %config.name, io = mode.name(), why, "V4L2 io mode");
        publishing(cell, &p, describe(&format), Some(mode.name()));
        let stall_after = n.stall_after();
        let mut flusher = Flusher::new(cell);
        let mut last_frame = Instant::now();
        let mut stalled = false;
        let result = loop {
            if stop.requested() {
                break Ok(Ended::Stopped);
            }
            match capture.next(&mut p, Duration::from_millis(250)) {
                Ok(captured) => {
                    // Capture (the driver's timestamp) to commit.
                    let driver = match captured {
                        Captured::Published { driver, .. } | Captured::Dropped { driver } => driver,
                    };
                    let at = driver.frame_info(0).capture_mono_ns;
                    let now = crate::ring::mono_ns();
                    if at > 0 && at <= now && matches!(captured, Captured::Published { .. }) {
                        cell.observe_latency((now - at) as f64 / 1e9);
                    }
                    last_frame = Instant::now();
                    if stalled {
                        stalled = false;
                        cell.set_state(StreamState::Publishing);
                    }
                }
                Err(V4l2Error::Stalled { .. }) => {
                    if !stalled && last_frame.elapsed() >= stall_after {
                        stalled = true;
                        cell.set_state(StreamState::Stalled);
                    }
                }
                Err(e) => break Err(error(e)),
            }
            flusher.flush(cell, &mut p, capture.stats().driver_drops, false);
        };
        flusher.flush(cell, &mut p, capture.stats().driver_drops, true);
        capture.stop(&mut p);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_clock_times_the_first_frame_and_one_in_eight() {
        let mut clock = SourceClock::default();
        let work = || (0..200_000u64).fold(0u64, |a, k| a.wrapping_add(std::hint::black_box(k)));
        let mut timed = Vec::new();
        for i in 0..17u64 {
            let before = clock.ns;
            assert_eq!(
                clock.measure(work),
                work(),
                "the closure's value comes back"
            );
            if clock.ns != before {
                timed.push(i);
            }
        }
        assert_eq!(timed, [0, 8, 16], "sampled calls");
    }

    #[test]
    fn a_panic_in_a_stream_becomes_a_retryable_error() {
        let err = contained(|| panic!("slot {} out of range", 7)).unwrap_err();
        assert_eq!((err.kind, err.retryable), ("panic", true));
        assert!(
            err.message.contains("slot 7 out of range"),
            "{}",
            err.message
        );
        let err = contained(|| std::panic::panic_any(42u8)).unwrap_err();
        assert!(err.message.contains("without a message"), "{}", err.message);
        assert_eq!(contained(|| Ok(Ended::Stopped)), Ok(Ended::Stopped));
    }
}
