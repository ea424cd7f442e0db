//! What inference pods link: open a stream, receive frames without a copy.
//!
//! A [`Subscriber`] maps the ring file read-only, registers with the
//! producer over the stream's Unix socket for its own lease page, and hands
//! out [`Frame`] guards: metadata plus a `&[u8]` straight into the shared
//! mapping, held (not overwritten) until the guard drops. Everything read
//! from the mapping is validated first; a hostile or broken file gives an
//! error, never a panic.
//!
//! Producer restarts, rolling updates and geometry changes are handled
//! inside `recv`: the subscriber re-registers (keeping its holds), remaps a
//! replaced file, and tells the caller what happened through [`Frame::gap`],
//! [`RecvError::Stale`] and [`RecvError::FormatChanged`], none of which end
//! the stream.

#[cfg(feature = "async")]
mod asynch;
#[cfg(feature = "async")]
pub use asynch::AsyncSubscriber;

use crate::ring::layout::{LayoutError, StreamFormat, USER_META_BYTES};
use crate::ring::mem::{LeaseMap, MapError, RingMap, STATE_LIVE, STATE_SUPERSEDED};
use crate::ring::protocol::{self, Held, Hold, LeaseWords, RingWords};
use crate::ring::socket::{connect_reader, HandshakeError, REJECT_FULL, REJECT_LEASE};
use crate::ring::{mono_ns, paths, Header};
use crate::sync::atomic::{AtomicU32, Ordering};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which frames a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every frame, in order; a reader that falls behind gets
    /// [`RecvError::Lagged`] with the exact number it missed.
    #[default]
    EveryFrame,
    /// Only the newest frame at each call; frames in between are skipped
    /// on purpose (counted in [`Frame::skipped`]).
    LatestOnly,
}

/// How to open a stream.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// Ring directory (default `/run/camux`).
    pub dir: PathBuf,
    /// Stream name.
    pub stream: String,
    /// Every frame or latest only.
    pub mode: Mode,
    /// How long a handshake with the producer may take (default 2 s).
    pub handshake_timeout: Duration,
    /// How long a blocking receive polls the ring before it sleeps on the
    /// futex, when the last two frames it got were published within
    /// [`SPIN_WHEN_WAITS_UNDER`] of each other (default 100 µs; zero never
    /// polls). At 60 fps every wait is
    /// milliseconds long and a reader never polls; when frames come every
    /// microsecond or two (sensor records flat out) a reader that polls
    /// for up to 100 µs finds the next one without a sleep, a wake-up
    /// call from the producer or a context switch.
    pub spin: Duration,
}

/// A blocking receive whose last two frames were published closer together
/// than this polls for [`SubscriberOptions::spin`] before it sleeps.
pub const SPIN_WHEN_WAITS_UNDER: Duration = Duration::from_micros(50);

impl SubscriberOptions {
    /// Every-frame options for `stream` in `/run/camux`.
    pub fn new(stream: impl Into<String>) -> Self {
        SubscriberOptions {
            dir: PathBuf::from("/run/camux"),
            stream: stream.into(),
            mode: Mode::EveryFrame,
            handshake_timeout: Duration::from_secs(2),
            spin: Duration::from_micros(100),
        }
    }

    /// Sets the ring directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The stream name is not a valid file name.
    #[error("{0}")]
    InvalidName(String),
    /// No ring file: the producer has not created it (or the directory is not mounted).
    #[error("no ring at {path}: is the camux daemon publishing stream {stream:?} on this node, and is its directory mounted here?")]
    NotFound {
        /// The ring path.
        path: PathBuf,
        /// The stream.
        stream: String,
    },
    /// The ring file exists but is not a valid ring.
    #[error("{path}: {source}")]
    Format {
        /// The ring path.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: LayoutError,
    },
    /// An OS error on the ring file.
    #[error("{path}: {source}")]
    Io {
        /// The ring path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The producer refused to register us.
    #[error(transparent)]
    Handshake(HandshakeError),
}

/// Why `recv` returned without a frame. Only [`RecvError::is_fatal`] errors
/// end a stream; the others report an event and the next call continues.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// This every-frame reader fell behind: exactly this many frames were
    /// overwritten before it could read them. The next call returns the
    /// oldest frame still in the ring.
    #[error("lagged: {0} frames missed")]
    Lagged(u64),
    /// Nothing arrived within the timeout.
    #[error("timed out")]
    Timeout,
    /// `try_recv`: no frame is ready.
    #[error("no frame ready")]
    Empty,
    /// The producer has given no sign of life for `since` (more than 1.5
    /// heartbeat intervals; it refreshes every half interval, and a waiting
    /// reader checks every half interval, so this comes within two
    /// intervals of its last sign of life). Reported once; keep calling to
    /// wait for its return.
    #[error("producer stale: no heartbeat for {since:?}")]
    Stale {
        /// Time since the last heartbeat.
        since: Duration,
    },
    /// The ring was replaced by one of another format or geometry; the
    /// subscriber has remapped it, and the next call returns new frames.
    #[error("stream format changed")]
    FormatChanged {
        /// The format before.
        old: StreamFormat,
        /// The format now.
        new: StreamFormat,
    },
    /// Every hold entry is in use: drop some frames first.
    #[error("hold limit reached: this reader already holds {limit} frames")]
    HoldLimit {
        /// The limit the producer set.
        limit: u32,
    },
    /// The ring holds data that breaks the format (a bug or a hostile writer).
    #[error("corrupt ring: {0}")]
    Corrupt(#[source] LayoutError),
    /// The producer refused this reader for good (too many readers).
    #[error(transparent)]
    Refused(HandshakeError),
    /// The replaced ring could not be reopened.
    #[error(transparent)]
    Reopen(OpenError),
}

impl RecvError {
    /// Whether the error ends the stream (the caller should stop or reopen).
    pub fn is_fatal(&self) -> bool {
        matches!(self, RecvError::Corrupt(_) | RecvError::Refused(_))
    }
}

/// Metadata of a received frame (validated against the ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Ring sequence number (continues across producer restarts).
    pub seq: u64,
    /// Capture time, CLOCK_MONOTONIC ns.
    pub capture_mono_ns: u64,
    /// Capture time, CLOCK_REALTIME ns.
    pub capture_real_ns: u64,
    /// Publish time, CLOCK_MONOTONIC ns.
    pub publish_mono_ns: u64,
    /// Publish time, CLOCK_REALTIME ns.
    pub publish_real_ns: u64,
    /// Payload length in bytes.
    pub len: usize,
    /// The driver's frame counter.
    pub driver_seq: u64,
    /// The frame's format (FourCC, size, strides).
    pub format: StreamFormat,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// V4L2 field order.
    pub field: u32,
    /// Epoch of the producer that published it.
    pub epoch: u32,
    user_len: usize,
    user: [u8; USER_META_BYTES],
}

impl FrameMeta {
    /// The user metadata bytes.
    pub fn user(&self) -> &[u8] {
        &self.user[..self.user_len]
    }
}

/// A discontinuity just before a frame: the producer restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The new producer's epoch.
    pub epoch: u32,
    /// The stream's silence before this frame: from the previous producer's
    /// last heartbeat to this frame's publication.
    pub downtime: Duration,
}

/// Frames this reader's lease page can hold, with the free entries.
pub(crate) struct ReaderLease {
    map: LeaseMap,
    /// Bit i set: hold entry i is free. Taken only by the subscriber (one
    /// thread, `&mut`), given back by frames from any thread.
    free: AtomicU32,
    /// The connection to the producer that scans this page. It lives as long
    /// as the page: frames that outlive their subscriber stay protected, and
    /// the producer sees EOF (and releases the holds) when the last goes.
    sock: Mutex<Option<OwnedFd>>,
}

impl ReaderLease {
    fn new(map: LeaseMap) -> Arc<Self> {
        Arc::new(ReaderLease {
            map,
            free: AtomicU32::new(u32::MAX),
            sock: Mutex::new(None),
        })
    }

    fn set_connection(&self, sock: OwnedFd) {
        *self.sock.lock().unwrap_or_else(|p| p.into_inner()) = Some(sock);
    }

    fn take(&self, limit: u32) -> Option<usize> {
        let mask = if limit >= 32 {
            u32::MAX
        } else {
            (1 << limit) - 1
        };
        // Acquire pairs with the Release in `give`.
        let free = self.free.load(Ordering::Acquire) & mask;
        if free == 0 {
            return None;
        }
        let i = free.trailing_zeros();
        self.free.fetch_and(!(1 << i), Ordering::AcqRel);
        Some(i as usize)
    }

    fn give(&self, i: usize) {
        self.free.fetch_or(1 << i, Ordering::Release);
    }
}

/// A received frame: its metadata and its bytes in the shared mapping.
///
/// While the guard lives the producer does not overwrite the slot, unless
/// the hold outlives the ring's hold timeout: then the producer may revoke
/// it, and [`Frame::is_intact`] says so (check it after long processing if
/// your results must match the bytes). Dropping the guard releases the hold.
pub struct Frame {
    meta: FrameMeta,
    ring: Arc<RingMap>,
    lease: Arc<ReaderLease>,
    entry: usize,
    pub(crate) held: Held,
    gap: Option<Gap>,
    skipped: u64,
}

impl Frame {
    /// The frame's metadata.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.meta.seq
    }

    /// The payload, in the shared mapping (no copy).
    pub fn payload(&self) -> &[u8] {
        // `meta.len` <= max_frame_bytes was validated at receipt; the hold
        // lasts until `self` drops (the revocation caveat is the type's doc).
        self.ring.held_payload(&self.held, self.meta.len)
    }

    /// Whether the frame is still exactly as published (not revoked). A
    /// seqlock check: one fence and one load.
    pub fn is_intact(&self) -> bool {
        protocol::still_intact(&*self.ring, self.held.slot(), self.meta.seq)
    }

    /// Set on the first frame after a producer restart.
    pub fn gap(&self) -> Option<Gap> {
        self.gap
    }

    /// Latest-only mode: frames published since the previous one returned
    /// that this call skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Nanoseconds from publish to now (CLOCK_MONOTONIC is node-wide).
    pub fn age_ns(&self) -> u64 {
        mono_ns().saturating_sub(self.meta.publish_mono_ns)
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("meta", &self.meta)
            .field("slot", &self.held.slot())
            .field("gap", &self.gap)
            .finish()
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        protocol::release(self.lease.map.hold(self.entry));
        self.lease.give(self.entry);
    }
}

/// A registration with the producer of the current epoch.
struct Registration {
    lease: Arc<ReaderLease>,
    id: u32,
    hold_limit: u32,
    epoch: u32,
}

/// The mapping and lease an async waiter thread sleeps on.
pub(crate) type WaitHandles = (Arc<RingMap>, Option<Arc<ReaderLease>>);

/// A reader of one stream.
///
/// ```no_run
/// use camux::{RecvError, Subscriber};
/// let mut sub = Subscriber::open("/run/camux", "cam0")?;
/// loop {
///     match sub.recv() {
///         Ok(frame) => println!("{} {} bytes", frame.seq(), frame.payload().len()),
///         Err(RecvError::Lagged(n)) => eprintln!("missed {n} frames"),
///         Err(e) if e.is_fatal() => return Err(e.into()),
///         Err(e) => eprintln!("{e}"),
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscriber {
    opts: SubscriberOptions,
    ring_path: PathBuf,
    sock_path: PathBuf,
    ring: Arc<RingMap>,
    /// (device, inode) of the mapped file, to notice a replacement cheaply.
    ino: (u64, u64),
    reg: Option<Registration>,
    /// A lease page kept from an earlier registration (with its hold
    /// limit), to bring back to the next producer.
    kept: Option<(Arc<ReaderLease>, u32)>,
    /// Every-frame: the next seq wanted. Latest-only: one past the last returned.
    next: u64,
    last_epoch: Option<u32>,
    stale_reported: bool,
    watch: Option<Arc<Mutex<WaitHandles>>>,
    /// The last two frames were published within `SPIN_WHEN_WAITS_UNDER`
    /// of each other: poll before the next sleep.
    spin_next: bool,
    /// Publish stamp of the last frame returned.
    last_publish_ns: u64,
}

fn open_ring(path: &Path, stream: &str) -> Result<(RingMap, (u64, u64)), OpenError> {
    // O_NONBLOCK: a FIFO planted at the path must not hang the open; a ring
    // is a regular file, checked below.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                OpenError::NotFound {
                    path: path.to_owned(),
                    stream: stream.to_owned(),
                }
            } else {
                OpenError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
    let meta = f.metadata().map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(OpenError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a ring is a file on a tmpfs)",
            ),
        });
    }
    let ino = (meta.dev(), meta.ino());
    let ring = RingMap::open(&f, false).map_err(|e| match e {
        MapError::Io(source) => OpenError::Io {
            path: path.to_owned(),
            source,
        },
        MapError::Layout(source) => OpenError::Format {
            path: path.to_owned(),
            source,
        },
    })?;
    Ok((ring, ino))
}

impl Subscriber {
    /// Opens `stream` in `dir` in every-frame mode.
    pub fn open(dir: impl AsRef<Path>, stream: &str) -> Result<Subscriber, OpenError> {
        Self::with_options(SubscriberOptions::new(stream).dir(dir.as_ref()))
    }

    /// Opens a stream as `opts` say. The ring must exist; the producer need
    /// not be running (the subscriber registers once it is).
    pub fn with_options(opts: SubscriberOptions) -> Result<Subscriber, OpenError> {
        crate::ring::layout::validate_name(&opts.stream).map_err(OpenError::InvalidName)?;
        let (ring_path, sock_path, _) = paths(&opts.dir, &opts.stream);
        let (ring, ino) = open_ring(&ring_path, &opts.stream)?;
        let ring = Arc::new(ring);
        let head = ring.head().load(Ordering::Acquire);
        let next = match opts.mode {
            Mode::EveryFrame => head.saturating_add(1),
            // The newest frame now is the first one returned; `skipped`
            // counts only what is published after opening.
            Mode::LatestOnly => head.max(1),
        };
        let mut sub = Subscriber {
            opts,
            ring_path,
            sock_path,
            ring,
            ino,
            reg: None,
            kept: None,
            next,
            last_epoch: None,
            stale_reported: false,
            watch: None,
            spin_next: false,
            last_publish_ns: 0,
        };
        match sub.register() {
            Err(RecvError::Refused(e)) => Err(OpenError::Handshake(e)),
            _ => Ok(sub),
        }
    }

    /// The ring's header as this subscriber mapped it.
    pub fn header(&self) -> &Header {
        &self.ring.header
    }

    /// The stream's format.
    pub fn format(&self) -> StreamFormat {
        self.ring.header.format
    }

    /// The stream's content type (`"application/x-imu+csv"` for IMU
    /// records, say), or `None` if the producer recorded none (image
    /// streams, and every ring written before the field existed).
    pub fn content_type(&self) -> Option<&str> {
        self.ring.header.content_type.as_deref()
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.opts.mode
    }

    /// Whether the subscriber is registered with a live producer that
    /// scans its holds (it can receive frames now).
    pub fn is_connected(&self) -> bool {
        self.reg
            .as_ref()
            .is_some_and(|r| r.lease.map.is_registered(r.id))
    }

    /// How many of this reader's holds the producer revoked because they
    /// outlived the hold timeout (a count in the reader's lease page).
    pub fn revoked(&self) -> u32 {
        self.reg
            .as_ref()
            .map(|r| &r.lease)
            .or(self.kept.as_ref().map(|(l, _)| l))
            .map_or(0, |l| l.map.revoked().load(Ordering::Relaxed))
    }

    /// Blocks until a frame or an event. It sleeps on the ring's futex;
    /// when frames have been coming microseconds apart it first polls for
    /// a moment ([`SubscriberOptions::spin`]).
    pub fn recv(&mut self) -> Result<Frame, RecvError> {
        self.recv_until(None, true)
    }

    /// Blocks at most `timeout` ([`RecvError::Timeout`] after).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Frame, RecvError> {
        self.recv_until(Some(Instant::now() + timeout), true)
    }

    /// Returns a frame if one is ready ([`RecvError::Empty`] otherwise).
    pub fn try_recv(&mut self) -> Result<Frame, RecvError> {
        self.recv_until(None, false)
    }

    /// The newest frame now, skipping any older unread ones (in either
    /// mode); `Ok(None)` if nothing newer than the last frame returned.
    pub fn latest(&mut self) -> Result<Option<Frame>, RecvError> {
        let mode = self.opts.mode;
        self.opts.mode = Mode::LatestOnly;
        let r = self.recv_until(None, false);
        self.opts.mode = mode;
        match r {
            Ok(f) => Ok(Some(f)),
            Err(RecvError::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_until(&mut self, deadline: Option<Instant>, block: bool) -> Result<Frame, RecvError> {
        loop {
            // Read the futex word before looking for frames, so a publish
            // after the look changes it and the wait below returns at once.
            let seen = self.ring.notify().load(Ordering::Acquire);
            self.register()?;
            if let Some(frame) = self.try_frame()? {
                self.stale_reported = false;
                // Poll before the next sleep if frames are coming closer
                // together than SPIN_WHEN_WAITS_UNDER. Judged from the
                // producer's publish stamps, not from how long our own
                // wait took, which on a busy machine includes the time
                // spent waiting for a CPU after the wake-up. (Untrusted
                // values: they only steer this choice.)
                let published = frame.meta.publish_mono_ns;
                self.spin_next = !self.opts.spin.is_zero()
                    && published.saturating_sub(self.last_publish_ns)
                        < SPIN_WHEN_WAITS_UNDER.as_nanos() as u64;
                self.last_publish_ns = published;
                return Ok(frame);
            }
            self.check_producer()?;
            if !block {
                return Err(RecvError::Empty);
            }
            // Wake at least every half interval: a dead producer is then
            // noticed within two intervals of its last heartbeat.
            let beat = self.ring.header.heartbeat_interval() / 2;
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(RecvError::Timeout);
                    }
                    left.min(beat)
                }
                None => beat,
            };
            let began = Instant::now();
            let mut wait = wait;
            if self.spin_next {
                if self.poll_for_change(seen, began, self.opts.spin.min(wait)) {
                    continue;
                }
                // The poll spent part of the wait (and the top of the loop
                // reports a deadline that has passed).
                wait = wait.saturating_sub(began.elapsed());
                if wait.is_zero() {
                    continue;
                }
            }
            match &self.reg {
                Some(reg) => {
                    let waiting = reg.lease.map.waiting();
                    if protocol::prepare_wait(&*self.ring, waiting, seen) {
                        self.ring.wait(seen, wait);
                    }
                    waiting.store(0, Ordering::Relaxed);
                }
                // No producer to set a flag for: producers wake every
                // sleeper when they start; the heartbeat bounds the wait.
                None => self.ring.wait(seen, wait),
            }
        }
    }

    /// Polls the futex word for up to `budget` from `began`: true once it
    /// moved from `seen` (a publish or a state change: look again), false
    /// if it did not (go to sleep).
    fn poll_for_change(&self, seen: u32, began: Instant, budget: Duration) -> bool {
        let notify = self.ring.notify();
        let mut polls = 0u32;
        loop {
            // Relaxed: a change only sends us back to the top of the loop,
            // whose Acquire load of the word and the head's Acquire in
            // `try_hold` order everything we then read.
            if notify.load(Ordering::Relaxed) != seen {
                return true;
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(32) && began.elapsed() >= budget {
                return false;
            }
        }
    }

    /// (Re-)registers with the producer when needed. Ok even if no producer
    /// is there; only a definitive refusal is an error.
    fn register(&mut self) -> Result<(), RecvError> {
        let live = self.ring.live();
        // SYNC: Acquire pairs with the producer's Release of STATE_LIVE, after
        // its epoch store.
        let state = live.state.load(Ordering::Acquire);
        let epoch = live.epoch.load(Ordering::Acquire);
        if let Some(reg) = &self.reg {
            if reg.epoch == epoch && state == STATE_LIVE {
                return Ok(());
            }
            // Our producer is gone: keep the page to bring to its successor.
            let reg = self.reg.take().expect("checked");
            self.kept = Some((reg.lease, reg.hold_limit));
        }
        if state != STATE_LIVE {
            return Ok(());
        }
        let adopt = self.kept.as_ref().map(|(l, _)| &l.map);
        match connect_reader(
            &self.sock_path,
            adopt,
            self.ring.header.ring_id,
            self.opts.handshake_timeout,
        ) {
            Ok((sock, welcome, page)) => {
                if welcome.ring_id != self.ring.header.ring_id {
                    // The socket serves a newer file; `check_producer` remaps.
                    return Ok(());
                }
                let lease = match page {
                    Some(map) => ReaderLease::new(map),
                    None => self.kept.take().expect("adopted our page").0,
                };
                self.kept = None;
                lease.set_connection(sock);
                lease.map.say_consumed(self.next);
                self.reg = Some(Registration {
                    lease,
                    id: welcome.reader_id,
                    hold_limit: welcome.hold_limit,
                    epoch: welcome.epoch,
                });
                self.update_watch();
                Ok(())
            }
            Err(HandshakeError::Rejected { code, message }) if code == REJECT_FULL => {
                Err(RecvError::Refused(HandshakeError::Rejected {
                    code,
                    message,
                }))
            }
            Err(HandshakeError::Rejected { code, .. }) if code == REJECT_LEASE => {
                // The new producer would not take our old page: start afresh
                // (frames still held in it stay readable but unprotected).
                self.kept = None;
                Ok(())
            }
            // No producer yet, or one mid-restart: try again on the next call.
            Err(_) => Ok(()),
        }
    }

    fn update_watch(&self) {
        if let Some(w) = &self.watch {
            let lease = self.reg.as_ref().map(|r| r.lease.clone());
            *w.lock().unwrap_or_else(|p| p.into_inner()) = (self.ring.clone(), lease);
        }
    }

    /// The handles an async waiter sleeps on, kept current across reconnects.
    #[cfg(feature = "async")]
    pub(crate) fn watch(&mut self) -> Arc<Mutex<WaitHandles>> {
        let w = self
            .watch
            .get_or_insert_with(|| Arc::new(Mutex::new((self.ring.clone(), None))));
        let w = w.clone();
        self.update_watch();
        w
    }

    /// One attempt at the next frame.
    fn try_frame(&mut self) -> Result<Option<Frame>, RecvError> {
        let (lease, limit) = match &self.reg {
            Some(reg) if reg.lease.map.is_registered(reg.id) => (reg.lease.clone(), reg.hold_limit),
            // A superseded file has no writer left (its successor holds the
            // lock and writes a new file): its frames can be drained safely.
            // (Looked at only off the registered fast path.)
            _ if self.ring.live().state.load(Ordering::Acquire) == STATE_SUPERSEDED => {
                match &self.kept {
                    Some((l, limit)) => (l.clone(), *limit),
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let entry = lease.take(limit).ok_or(RecvError::HoldLimit { limit })?;
        let hold = lease.map.hold(entry);
        let before = self.next;
        let got = match self.opts.mode {
            Mode::EveryFrame => self.step_every(hold),
            Mode::LatestOnly => self.step_latest(hold),
        };
        if self.next != before {
            lease.map.say_consumed(self.next);
        }
        let (held, seq, skipped) = match got {
            Ok(Some(x)) => x,
            Ok(None) => {
                lease.give(entry);
                return Ok(None);
            }
            Err(e) => {
                lease.give(entry);
                return Err(e);
            }
        };
        let raw = self.ring.read_meta(held.slot());
        if let Err(e) = raw.validate(seq, self.ring.layout()) {
            protocol::release(hold);
            lease.give(entry);
            return Err(RecvError::Corrupt(e));
        }
        let gap = match self.last_epoch {
            Some(e) if e != raw.epoch => {
                let live = self.ring.live();
                let down = raw
                    .publish_mono_ns
                    .saturating_sub(live.prev_heartbeat_ns.load(Ordering::Relaxed));
                Some(Gap {
                    epoch: raw.epoch,
                    downtime: Duration::from_nanos(down),
                })
            }
            _ => None,
        };
        self.last_epoch = Some(raw.epoch);
        let format = StreamFormat {
            fourcc: crate::format::FourCc(raw.fourcc),
            width: raw.width,
            height: raw.height,
            num_planes: raw.num_planes,
            strides: raw.strides,
            plane_offsets: raw.plane_offsets,
            ..self.ring.header.format
        };
        Ok(Some(Frame {
            meta: FrameMeta {
                seq,
                capture_mono_ns: raw.capture_mono_ns,
                capture_real_ns: raw.capture_real_ns,
                publish_mono_ns: raw.publish_mono_ns,
                publish_real_ns: raw.publish_real_ns,
                len: raw.payload_len as usize,
                driver_seq: raw.driver_seq,
                format,
                flags: raw.flags,
                field: raw.field,
                epoch: raw.epoch,
                user_len: raw.user_len as usize,
                user: raw.user,
            },
            ring: self.ring.clone(),
            lease,
            entry,
            held,
            gap,
            skipped,
        }))
    }

    fn step_every(
        &mut self,
        hold: &crate::sync::atomic::AtomicU64,
    ) -> Result<Option<(Held, u64, u64)>, RecvError> {
        let seq = self.next;
        match protocol::try_hold(&*self.ring, hold, seq) {
            Hold::Held(held) => {
                self.next = seq.saturating_add(1);
                Ok(Some((held, seq, 0)))
            }
            // Busy: the producer is deciding about this slot or handing
            // over; the next notification tells.
            Hold::NotYet | Hold::Busy => Ok(None),
            Hold::Gone => {
                if let Some(slot) = protocol::bad_index(&*self.ring, seq) {
                    self.next = seq.saturating_add(1);
                    return Err(self.corrupt_index(slot));
                }
                // Fell behind: resume at the oldest frame still there. Every
                // seq between was overwritten and is counted, so received +
                // lagged is exact. `None` only if the head went backwards
                // (a corrupt ring): skip just this frame. Saturating: the
                // head and stamps are untrusted.
                let resume = protocol::oldest_from(&*self.ring, seq.saturating_add(1))
                    .unwrap_or(seq.saturating_add(1));
                self.next = resume;
                Err(RecvError::Lagged(resume.saturating_sub(seq)))
            }
        }
    }

    /// The error for an index entry naming `slot`, which the ring lacks.
    fn corrupt_index(&self, slot: u32) -> RecvError {
        RecvError::Corrupt(LayoutError::BadField {
            field: "index entry",
            found: slot.into(),
            expected: format!("a slot below {}", self.ring.slot_count()),
        })
    }

    fn step_latest(
        &mut self,
        hold: &crate::sync::atomic::AtomicU64,
    ) -> Result<Option<(Held, u64, u64)>, RecvError> {
        // A few tries: the head can move on between the load and the hold.
        for _ in 0..8 {
            let head = self.ring.head().load(Ordering::Acquire);
            if head == 0 || head < self.next {
                return Ok(None);
            }
            match protocol::try_hold(&*self.ring, hold, head) {
                Hold::Held(held) => {
                    let skipped = head - self.next;
                    self.next = head.saturating_add(1);
                    return Ok(Some((held, head, skipped)));
                }
                Hold::Busy => return Ok(None),
                Hold::Gone | Hold::NotYet => {
                    if let Some(slot) = protocol::bad_index(&*self.ring, head) {
                        self.next = head.saturating_add(1);
                        return Err(self.corrupt_index(slot));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Reports a stale producer (once) and follows a replaced file.
    fn check_producer(&mut self) -> Result<(), RecvError> {
        let live = self.ring.live();
        let state = live.state.load(Ordering::Acquire);
        let beat = self.ring.header.heartbeat_interval();
        let age = Duration::from_nanos(
            mono_ns().saturating_sub(live.heartbeat_ns.load(Ordering::Relaxed)),
        );
        // A successor that found this file unreadable replaces it without
        // marking it; a silent producer is the cue to look at the path.
        let silent = self.reg.is_none() || age > beat;
        if state == STATE_SUPERSEDED || (silent && self.replaced_on_disk()) {
            return self.follow_replacement();
        }
        // The producer refreshes at least every half interval; 1.5 intervals
        // of silence leave a full interval of slack for scheduling delays.
        let stale = age > beat * 3 / 2;
        if stale && !self.stale_reported {
            self.stale_reported = true;
            return Err(RecvError::Stale { since: age });
        }
        if !stale {
            self.stale_reported = false;
        }
        Ok(())
    }

    /// Whether the path now names another file (a `stat`, so only called
    /// while the producer is silent, off the frame path).
    fn replaced_on_disk(&self) -> bool {
        std::fs::metadata(&self.ring_path)
            .map(|m| (m.dev(), m.ino()) != self.ino)
            .unwrap_or(false)
    }

    fn follow_replacement(&mut self) -> Result<(), RecvError> {
        let (new, ino) = match open_ring(&self.ring_path, &self.opts.stream) {
            Ok(r) => r,
            // The successor may still be renaming its file into place.
            Err(OpenError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(RecvError::Reopen(e)),
        };
        self.ino = ino;
        if new.header.ring_id == self.ring.header.ring_id {
            return Ok(());
        }
        let old = self.ring.header.format;
        let newf = new.header.format;
        let head = new.head().load(Ordering::Acquire);
        self.ring = Arc::new(new);
        if let Some(reg) = self.reg.take() {
            self.kept = Some((reg.lease, reg.hold_limit));
        }
        // Continue with the new file's next frame (its numbering continues
        // the old file's, so nothing is silently skipped in between).
        self.next = match self.opts.mode {
            Mode::EveryFrame => self.next.max(1).min(head.saturating_add(1)),
            Mode::LatestOnly => 1,
        };
        self.update_watch();
        self.register()?;
        if old == newf {
            // Only the geometry (slot count or size) changed: nothing the
            // caller needs to act on.
            return Ok(());
        }
        Err(RecvError::FormatChanged { old, new: newf })
    }
}
