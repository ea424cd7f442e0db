//! A read-only look at a ring file, for `camux inspect` and for tests.

use crate::ring::layout::{Header, LayoutError};
use crate::ring::mem::{
    MapError, RingMap, STATE_INIT, STATE_LIVE, STATE_STOPPED, STATE_SUPERSEDED,
};
use crate::ring::mono_ns;
use crate::ring::protocol::{published_seq, RingWords, STAMP_WRITING};
use crate::sync::atomic::Ordering;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Never written (or reset after a crash mid-write).
    Empty,
    /// Owned by the producer (being written, or loaned to a driver).
    Writing,
    /// A published frame.
    Published(u64),
    /// A stamp value the protocol never writes (corrupt ring).
    Invalid(u64),
}

/// One slot, as seen at the time of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// Slot index.
    pub slot: u32,
    /// The raw stamp word.
    pub stamp: u64,
    /// The stamp decoded.
    pub state: SlotState,
    /// Payload length its metadata records.
    pub len: u64,
    /// Publish time its metadata records (CLOCK_MONOTONIC ns).
    pub publish_mono_ns: u64,
}

/// The header and live state of a ring.
#[derive(Debug, Clone)]
pub struct RingSnapshot {
    /// The file.
    pub path: PathBuf,
    /// Its validated header.
    pub header: Header,
    /// `STATE_*` value.
    pub state: u32,
    /// Producer epoch.
    pub epoch: u32,
    /// Producer PID (in its PID namespace).
    pub producer_pid: u32,
    /// Registered readers.
    pub readers: u32,
    /// Latest published seq.
    pub head: u64,
    /// Time since the last heartbeat.
    pub heartbeat_age: Duration,
    /// Frames published (all epochs).
    pub published: u64,
    /// Frames dropped because every slot was held.
    pub dropped: u64,
    /// Holds revoked after the hold timeout.
    pub revoked: u64,
    /// Payload bytes the producers copied into slots (all epochs; 0 in files
    /// written before the counter existed, and for a zero-copy producer).
    pub bytes_copied: u64,
    /// The slots.
    pub slots: Vec<SlotSnapshot>,
}

impl RingSnapshot {
    /// Bytes copied per published frame over the file's life
    /// (`bytes_copied / published`; 0 when nothing was published).
    ///
    /// ```
    /// use camux::ring::{inspect, RingOptions, StreamFormat};
    /// let dir = tempfile::tempdir()?;
    /// let mut p = camux::Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(8), 64))?;
    /// p.publish(&Default::default(), &[0; 10])?;
    /// p.publish(&Default::default(), &[0; 30])?;
    /// let snap = inspect::snapshot(p.ring_path())?;
    /// assert_eq!((snap.bytes_copied, snap.copied_per_frame()), (40, 20.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copied_per_frame(&self) -> f64 {
        if self.published == 0 {
            0.0
        } else {
            self.bytes_copied as f64 / self.published as f64
        }
    }

    /// The producer state as a word.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            STATE_INIT => "init",
            STATE_LIVE => "live",
            STATE_STOPPED => "stopped",
            STATE_SUPERSEDED => "superseded",
            _ => "invalid",
        }
    }
}

/// Why a ring could not be inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid ring.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: LayoutError,
    },
}

/// Maps `path` read-only and reads its header, live words and slots.
///
/// ```
/// use camux::ring::{inspect, RingOptions, StreamFormat};
/// let dir = tempfile::tempdir()?;
/// let mut p = camux::Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(8), 64))?;
/// p.publish(&Default::default(), b"abc")?;
/// let snap = inspect::snapshot(p.ring_path())?;
/// assert_eq!((snap.head, snap.state_name()), (1, "live"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn snapshot(path: &Path) -> Result<RingSnapshot, InspectError> {
    let io = |source| InspectError::Io {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC) // a FIFO must not hang us
        .open(path)
        .map_err(io)?;
    let ring = RingMap::open(&f, false).map_err(|e| match e {
        MapError::Io(e) => io(e),
        MapError::Layout(source) => InspectError::Format {
            path: path.to_owned(),
            source,
        },
    })?;
    let live = ring.live();
    let slots = (0..ring.slot_count())
        .map(|s| {
            let stamp = ring.stamp(s).load(Ordering::Acquire);
            let state = match (stamp, published_seq(stamp)) {
                (0, _) => SlotState::Empty,
                (STAMP_WRITING, _) => SlotState::Writing,
                (_, Some(seq)) => SlotState::Published(seq),
                (v, None) => SlotState::Invalid(v),
            };
            let meta = ring.read_meta(s);
            SlotSnapshot {
                slot: s,
                stamp,
                state,
                len: meta.payload_len,
                publish_mono_ns: meta.publish_mono_ns,
            }
        })
        .collect();
    Ok(RingSnapshot {
        path: path.to_owned(),
        header: ring.header.clone(),
        state: live.state.load(Ordering::Acquire),
        epoch: live.epoch.load(Ordering::Relaxed),
        producer_pid: live.producer_pid.load(Ordering::Relaxed),
        readers: live.readers.load(Ordering::Relaxed),
        head: live.head.load(Ordering::Acquire),
        heartbeat_age: Duration::from_nanos(
            mono_ns().saturating_sub(live.heartbeat_ns.load(Ordering::Relaxed)),
        ),
        published: live.published.load(Ordering::Relaxed),
        dropped: live.dropped.load(Ordering::Relaxed),
        revoked: live.revoked.load(Ordering::Relaxed),
        bytes_copied: live.bytes_copied.load(Ordering::Relaxed),
        slots,
    })
}
