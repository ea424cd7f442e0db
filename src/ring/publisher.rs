//! The producer side: create or resume a ring, publish frames by copy or by
//! loaning a slot to be filled in place.

use crate::ring::clock::mono_coarse_ns;
use crate::ring::layout::{
    validate_content_type, validate_name, Geometry, Header, LayoutError, RawMeta, StreamFormat,
    MAX_HOLDS, MAX_PLANES, USER_META_BYTES,
};
use crate::ring::mem::{
    LeaseHandle, MapError, RingMap, STATE_INIT, STATE_LIVE, STATE_STOPPED, STATE_SUPERSEDED,
};
use crate::ring::protocol::{
    freeze_for_handover, Claim, LeaseWords, ProducerCore, ReaderSlot, RingWords,
};
use crate::ring::socket::{Control, ControlConfig, Peer, ReaderEvent};
use crate::ring::{mono_ns, paths, real_ns};
use crate::sync::atomic::Ordering;
use crossbeam_channel::{Receiver, Sender};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a ring is created. Build with [`RingOptions::new`] and adjust fields.
///
/// ```
/// use camux::ring::{RingOptions, StreamFormat};
/// let dir = tempfile::tempdir()?;
/// let mut opts = RingOptions::new(dir.path(), "imu", StreamFormat::opaque(64), 64);
/// opts.slots = 256;
/// opts.content_type = Some("application/x-imu+csv".into());
/// let publisher = camux::Publisher::create(&opts)?;
/// assert_eq!(publisher.ring_path(), dir.path().join("imu.ring"));
/// assert_eq!(publisher.header().content_type.as_deref(), Some("application/x-imu+csv"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Directory of the ring, socket and lock files (`/run/camux` in a pod).
    pub dir: PathBuf,
    /// Stream name (file names derive from it).
    pub name: String,
    /// Stream format recorded in the header.
    pub format: StreamFormat,
    /// Content type recorded in the header (default `None`): a MIME-like
    /// string for non-image streams, e.g. `"application/x-imu+csv"` for IMU
    /// records published with [`FourCc::RAW`](crate::format::FourCc::RAW).
    /// 1..=63 bytes of printable ASCII without spaces (`0x21..=0x7e`);
    /// `Some("")` means none. Checked by [`Publisher::create`]
    /// ([`CreateError::Invalid`]). A producer restarted with another
    /// content type replaces the file, as for another format.
    pub content_type: Option<String>,
    /// Largest payload a frame may have.
    pub max_frame_bytes: u64,
    /// Number of slots (default 8). Readers x holds + 2 keeps the producer
    /// from ever dropping.
    pub slots: u32,
    /// Frames one reader may hold at once (1..=16, default 4).
    pub hold_limit: u32,
    /// After this long, a hold that blocks the producer is revoked (default 5 s).
    pub hold_timeout: Duration,
    /// Readers registered at once (default 64).
    pub max_readers: u32,
    /// Heartbeat interval (default 200 ms): the producer refreshes its
    /// heartbeat every half interval; readers learn of a dead or frozen
    /// producer within two intervals.
    pub heartbeat: Duration,
    /// Mode of the ring file (default 0o644: anyone who can reach the
    /// directory may read).
    pub ring_mode: u32,
    /// Mode of the socket (default 0o666: connecting needs write permission).
    pub socket_mode: u32,
    /// Wait for a running producer of the same stream to stop (standby for a
    /// rolling update) instead of failing with [`CreateError::Busy`].
    pub wait_for_lock: bool,
    /// Only readers whose uid is in this list may register (default `None`:
    /// any uid). The uid is the one `SO_PEERCRED` reports for the reader's
    /// connection (its effective uid when it connected, as seen from the
    /// producer's user namespace: a uid that namespace does not map shows
    /// as the overflow uid, usually 65534). A reader must pass every list
    /// given; `Some(vec![])` admits no one. A refused reader gets a final
    /// refusal naming its uid and the stream (for a [`Subscriber`]:
    /// [`OpenError::Handshake`] or [`RecvError::Refused`] holding
    /// [`HandshakeError::Rejected`] with code [`REJECT_FULL`]).
    ///
    /// The lists decide who may register, and so hold frames and be counted
    /// and listed as a reader; they do not make frames secret. Anyone who
    /// can open the ring file can map it and read frames without
    /// registering: for confidentiality restrict [`ring_mode`](Self::ring_mode)
    /// and the directory's permissions too (e.g. `0o640` and a group).
    ///
    /// [`Subscriber`]: crate::Subscriber
    /// [`OpenError::Handshake`]: crate::client::OpenError::Handshake
    /// [`RecvError::Refused`]: crate::client::RecvError::Refused
    /// [`HandshakeError::Rejected`]: crate::ring::socket::HandshakeError::Rejected
    /// [`REJECT_FULL`]: crate::ring::socket::REJECT_FULL
    pub allow_uids: Option<Vec<u32>>,
    /// Only readers whose gid is in this list may register (default `None`:
    /// any gid). The gid checked is the reader's primary (effective) gid as
    /// `SO_PEERCRED` reports it; supplementary groups are not considered.
    /// Otherwise as [`allow_uids`](Self::allow_uids), which a reader must
    /// pass as well if it is given.
    pub allow_gids: Option<Vec<u32>>,
    /// How [`Publisher::publish`] stores a frame's bytes (default
    /// [`CopyStores::Auto`]). Loans are filled by their owner and are not
    /// affected.
    pub copy_stores: CopyStores,
    /// Which free slot a new frame reuses (default [`SlotReuse::Auto`]).
    pub slot_reuse: SlotReuse,
}

/// Which unheld slot the producer reuses for a new frame.
///
/// A ring keeps its slots' frames until they are reused, and by default the
/// oldest frame goes first. But once every registered reader has consumed
/// a frame (each lease page says how far its reader has got), nobody will
/// ask for it again, and reusing the slot written one or two frames ago
/// keeps the producer's writes (and the readers' reads) in the caches
/// instead of cycling every slot of a large ring through memory. A frame
/// some reader has not consumed yet is still overwritten only oldest
/// first, so lag counts do not change. `docs/FORMAT.md` section 5.1 has
/// the rule and `docs/BENCHMARKS.md` the figures.
///
/// ```
/// use camux::ring::{RingOptions, SlotReuse, StreamFormat};
/// let mut opts = RingOptions::new("/run/camux", "cam0", StreamFormat::opaque(1 << 22), 1 << 22);
/// opts.slot_reuse = SlotReuse::Oldest; // keep the last `slots` frames for readers yet to come
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SlotReuse {
    /// [`Warm`](Self::Warm) for slots of at least [`STREAMING_MIN_BYTES`]
    /// (where caches matter), [`Oldest`](Self::Oldest) for smaller ones
    /// (where the extra load per reader per frame would be the cost).
    #[default]
    Auto,
    /// Always the oldest unheld slot: the ring holds the last `slots`
    /// frames, also for a reader whose handshake is still under way.
    Oldest,
    /// First the most recent frame every registered reader has consumed
    /// (never the newest frame), then the oldest.
    Warm,
}

impl SlotReuse {
    /// Every variant, in the order of their names in messages.
    pub const ALL: [SlotReuse; 3] = [SlotReuse::Auto, SlotReuse::Oldest, SlotReuse::Warm];

    /// The name configs and command lines use: `auto`, `oldest`, `warm`.
    ///
    /// ```
    /// use camux::ring::SlotReuse;
    /// assert_eq!(SlotReuse::Warm.name(), "warm");
    /// assert_eq!(SlotReuse::from_name("oldest"), Some(SlotReuse::Oldest));
    /// assert_eq!(SlotReuse::from_name("lru"), None);
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            SlotReuse::Auto => "auto",
            SlotReuse::Oldest => "oldest",
            SlotReuse::Warm => "warm",
        }
    }

    /// The variant called `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<SlotReuse> {
        SlotReuse::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a ring with slots of `slot_bytes` reuses warm slots.
    fn warm(self, slot_bytes: u64) -> bool {
        match self {
            SlotReuse::Auto => slot_bytes >= STREAMING_MIN_BYTES as u64,
            SlotReuse::Oldest => false,
            SlotReuse::Warm => true,
        }
    }
}

/// How [`Publisher::publish`] writes a frame's bytes into its slot.
///
/// When a ring's slots are larger than the caches can keep, a cached copy
/// reads every cold destination line before writing it (read for
/// ownership) and, frame after frame, evicts what the readers' receives use
/// (the ring's control words, the descriptors, the lease words). Streaming
/// (non-temporal) stores write around the caches instead. The cost moves to
/// readers that touch the payload right after it is published: they read it
/// from memory, not from the last-level cache. `docs/BENCHMARKS.md` has the
/// figures both ways.
///
/// ```
/// use camux::ring::{CopyStores, RingOptions, StreamFormat};
/// let mut opts = RingOptions::new("/run/camux", "cam0", StreamFormat::opaque(1 << 22), 1 << 22);
/// opts.copy_stores = CopyStores::Cached; // readers touch every byte at once
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CopyStores {
    /// Streaming stores for frames of at least [`STREAMING_MIN_BYTES`] when
    /// the ring's payload area (slots x slot size) is larger than half the
    /// CPU's last-level cache (read from sysfs when the publisher is
    /// created; 16 MiB assumed if it cannot be read); cached stores
    /// otherwise. A 1920x1080 YUYV ring of 8 slots (32 MiB) streams on a
    /// 32 MiB cache; a 640x480 one (4.7 MiB) does not.
    #[default]
    Auto,
    /// Always cached stores (a plain `memcpy`).
    Cached,
    /// Always streaming stores (where the CPU has them: x86_64; a plain copy
    /// elsewhere).
    Streaming,
}

/// The smallest frame [`CopyStores::Auto`] writes with streaming stores:
/// 256 KiB.
pub const STREAMING_MIN_BYTES: usize = 256 << 10;

/// Last-level cache size assumed when sysfs does not tell.
const DEFAULT_LLC_BYTES: u64 = 16 << 20;

/// The largest cache of CPU 0, from
/// `/sys/devices/system/cpu/cpu0/cache/index*/size` ("32768K", "2M").
fn last_level_cache_bytes() -> Option<u64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let size = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
        parse_cache_size(size.trim())
    })
    .max()
}

/// How many frames back a reused slot's previous frame may be for a copy
/// into it to find its lines still in a last-level cache of `llc_bytes`:
/// the source, the destination and the frames written since must fit in
/// two thirds of it. On the 32 MiB cache of the machine in
/// docs/BENCHMARKS.md a cached copy of 4 MiB into a slot written 1-3
/// frames ago took a third of the time of a streaming one; at 8 MiB the
/// two were level, at 12 MiB streaming won.
fn warm_within(slot_bytes: u64, llc_bytes: u64) -> u64 {
    (llc_bytes / 3 * 2 / slot_bytes.max(1)).saturating_sub(2)
}

/// "32768K" -> 32 MiB; "2M"; "512" (bytes).
fn parse_cache_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

impl CopyStores {
    /// Every variant, in the order of their names in messages.
    pub const ALL: [CopyStores; 3] = [CopyStores::Auto, CopyStores::Cached, CopyStores::Streaming];

    /// The name configs and command lines use: `auto`, `cached`,
    /// `streaming`.
    ///
    /// ```
    /// use camux::ring::CopyStores;
    /// assert_eq!(CopyStores::Cached.name(), "cached");
    /// assert_eq!(CopyStores::from_name("streaming"), Some(CopyStores::Streaming));
    /// assert_eq!(CopyStores::from_name("fast"), None);
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            CopyStores::Auto => "auto",
            CopyStores::Cached => "cached",
            CopyStores::Streaming => "streaming",
        }
    }

    /// The variant called `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<CopyStores> {
        CopyStores::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The smallest frame written with streaming stores in a ring whose
    /// payload area is `ring_payload_bytes`, on a CPU whose last-level cache
    /// is `llc_bytes` (`usize::MAX`: none).
    fn streaming_from(self, ring_payload_bytes: u64, llc_bytes: u64) -> usize {
        match self {
            CopyStores::Auto if ring_payload_bytes > llc_bytes / 2 => STREAMING_MIN_BYTES,
            CopyStores::Auto | CopyStores::Cached => usize::MAX,
            CopyStores::Streaming => 0,
        }
    }
}

impl RingOptions {
    /// Options with the defaults for a stream `name` in `dir`.
    pub fn new(
        dir: impl Into<PathBuf>,
        name: impl Into<String>,
        format: StreamFormat,
        max_frame_bytes: u64,
    ) -> Self {
        RingOptions {
            dir: dir.into(),
            name: name.into(),
            format,
            content_type: None,
            max_frame_bytes,
            slots: 8,
            hold_limit: 4,
            hold_timeout: Duration::from_secs(5),
            max_readers: 64,
            heartbeat: Duration::from_millis(200),
            ring_mode: 0o644,
            socket_mode: 0o666,
            wait_for_lock: false,
            allow_uids: None,
            allow_gids: None,
            copy_stores: CopyStores::Auto,
            slot_reuse: SlotReuse::Auto,
        }
    }

    fn header(&self, ring_id: u64) -> Result<Header, CreateError> {
        let layout = Geometry {
            slot_count: self.slots,
            max_frame_bytes: self.max_frame_bytes,
            page_size: Geometry::host_page_size(),
        }
        .layout()
        .map_err(CreateError::Geometry)?;
        let content_type = match self.content_type.as_deref() {
            None | Some("") => None,
            Some(ct) => {
                validate_content_type(ct).map_err(CreateError::Invalid)?;
                Some(ct.to_owned())
            }
        };
        if self.format.num_planes as usize > MAX_PLANES {
            return Err(CreateError::Invalid(format!(
                "format has {} planes; at most {MAX_PLANES}",
                self.format.num_planes
            )));
        }
        if self.hold_limit == 0 || self.hold_limit > MAX_HOLDS {
            return Err(CreateError::Invalid(format!(
                "hold limit {} outside 1..={MAX_HOLDS}",
                self.hold_limit
            )));
        }
        if self.max_readers == 0 || self.max_readers > 1024 {
            return Err(CreateError::Invalid(format!(
                "max readers {} outside 1..=1024",
                self.max_readers
            )));
        }
        if self.heartbeat < Duration::from_millis(1) || self.heartbeat > Duration::from_secs(60) {
            return Err(CreateError::Invalid(format!(
                "heartbeat {:?} outside 1ms..=60s",
                self.heartbeat
            )));
        }
        Ok(Header {
            layout,
            ring_id,
            created_real_ns: real_ns(),
            heartbeat_interval_ns: self.heartbeat.as_nanos() as u64,
            hold_limit: self.hold_limit,
            max_readers: self.max_readers,
            format: self.format,
            name: self.name.clone(),
            content_type,
        })
    }
}

/// Why a ring could not be created or resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// An option is out of range.
    #[error("invalid ring options: {0}")]
    Invalid(String),
    /// The geometry cannot be laid out.
    #[error(transparent)]
    Geometry(LayoutError),
    /// Another producer publishes this stream (its lock is held).
    #[error("stream is already published by another producer (lock {path} is held); stop it, or wait for it (standby)")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// The file system cannot hold the ring (tmpfs full or too small).
    #[error("no space for the ring: {path} needs {need} bytes; enlarge the tmpfs (or the pod's memory limit) or use fewer/smaller slots")]
    NoSpace {
        /// The file being created.
        path: PathBuf,
        /// Bytes needed.
        need: u64,
    },
    /// Any other I/O failure, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Why a frame was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is larger than a slot.
    #[error("frame of {len} bytes exceeds the slot size of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: u64,
        /// Slot capacity.
        max: u64,
    },
    /// More user metadata than a frame carries.
    #[error("user metadata of {len} bytes exceeds {max}")]
    UserMetaTooLarge {
        /// Bytes given.
        len: usize,
        /// [`USER_META_BYTES`].
        max: usize,
    },
    /// Every slot is held by readers, loaned, or (just after a restart)
    /// kept for readers of the previous producer: the frame was dropped and
    /// counted.
    #[error("every slot is held by readers, loaned, or kept for returning readers; frame dropped")]
    NoFreeSlot,
    /// A per-frame format with more planes than the metadata carries.
    #[error("frame format has {planes} planes; at most {max}")]
    TooManyPlanes {
        /// Planes given.
        planes: u32,
        /// [`MAX_PLANES`].
        max: u32,
    },
    /// The loan belongs to another ring (a publisher that was re-created).
    #[error("loan belongs to another ring")]
    ForeignLoan,
    /// The publisher's registration (control) thread has ended, which only
    /// a bug in it can cause: new readers could not register and a crashed
    /// reader's holds would not be released. Every publish, loan and claim
    /// fails from then on; drop the publisher and create it again (readers
    /// carry on as across a producer restart). The daemon does this by
    /// itself: the stream restarts.
    #[error(
        "the ring's registration thread has stopped (new readers cannot register); \
         the publisher must be re-created"
    )]
    ControlStopped,
}

/// Per-frame metadata the caller supplies; what it leaves at default is
/// filled in (publish time; format from the ring).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameInfo<'a> {
    /// When the frame was captured (CLOCK_MONOTONIC ns); 0 = now.
    pub capture_mono_ns: u64,
    /// When the frame was captured (CLOCK_REALTIME ns); 0 = now.
    pub capture_real_ns: u64,
    /// The driver's own frame counter (V4L2 `sequence`).
    pub driver_seq: u64,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// V4L2 field order (0 = none).
    pub field: u32,
    /// Overrides the ring's format for this frame (variable formats).
    pub format: Option<StreamFormat>,
    /// Up to [`USER_META_BYTES`] of user metadata.
    pub user: &'a [u8],
}

/// The frame is a key frame (compressed formats).
pub const FLAG_KEYFRAME: u32 = 1;
/// The driver reported an error for this frame (its data may be damaged).
pub const FLAG_ERROR: u32 = 2;

/// What happened to a published frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Published with this sequence number.
    Seq(u64),
    /// Dropped: every slot was held (counted in the header).
    Dropped,
}

/// A slot loaned out to be filled in place (the V4L2 USERPTR path queues
/// its pages to the driver). Give it back with [`Publisher::commit`] or
/// [`Publisher::abandon`]; a loan dropped otherwise is abandoned at the next
/// publish.
pub struct Loan {
    ring: Arc<RingMap>,
    claim: Option<Claim>,
    lost: Sender<Claim>,
    /// The stream lock: a successor cannot take the ring over (and reset
    /// this slot) while a driver may still be writing into it.
    _lock: Arc<Flock<File>>,
}

impl Loan {
    /// The slot index.
    pub fn slot(&self) -> u32 {
        self.claim.as_ref().expect("live loan").slot()
    }

    /// Capacity of the slot in bytes (the ring's max frame size).
    pub fn capacity(&self) -> usize {
        self.ring.layout().geometry.max_frame_bytes as usize
    }

    /// Start of the slot's payload: page aligned, [`capacity`](Self::capacity)
    /// bytes, valid while the loan lives. For handing to a driver.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ring.payload_ptr(self.slot())
    }

    /// The slot's payload as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.ring
            .claimed_payload(self.claim.as_mut().expect("live loan"))
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            let _ = self.lost.send(claim);
        }
    }
}

/// A registered reader, as [`Publisher::readers_info`] reports it (for
/// status pages and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderInfo {
    /// The id the producer gave this registration (non-zero; a reader that
    /// reconnects gets a new one).
    pub id: u32,
    /// The reader's PID, from `SO_PEERCRED` when it connected, in the
    /// producer's PID namespace: 0 if its process is not visible there (a
    /// reader in another pod, say). Not what the reader claims in its hello.
    pub pid: u32,
    /// The reader's effective uid when it connected (`SO_PEERCRED`, in the
    /// producer's user namespace).
    pub uid: u32,
    /// The reader's primary (effective) gid when it connected
    /// (`SO_PEERCRED`; supplementary groups are not reported).
    pub gid: u32,
    /// Frames it holds right now: its hold entries that name a frame that
    /// was published (entries are written by the reader and not trusted).
    pub holds: u32,
    /// How many frames it may hold at once.
    pub hold_limit: u32,
}

/// Counters of a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublisherStats {
    /// Frames published by this publisher.
    pub published: u64,
    /// Payload bytes this publisher copied into the ring: the length of
    /// every frame published with [`Publisher::publish`], plus what
    /// [`Publisher::count_copied`] added; a committed [`Loan`] adds nothing.
    pub bytes_copied: u64,
    /// Frames dropped because every slot was held.
    pub dropped: u64,
    /// Holds revoked after the hold timeout.
    pub revoked: u64,
    /// Readers currently registered.
    pub readers: u32,
    /// This producer's epoch.
    pub epoch: u32,
    /// The latest published seq.
    pub head: u64,
}

impl PublisherStats {
    /// Bytes copied per published frame in this publisher's epoch
    /// (`bytes_copied / published`; 0 before the first frame): the frame size
    /// for a producer that publishes by copy, 0 for one that is zero-copy.
    ///
    /// ```
    /// use camux::ring::{RingOptions, StreamFormat};
    /// use camux::{FrameInfo, Publisher};
    /// let dir = tempfile::tempdir()?;
    /// let mut p = Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(64), 64))?;
    /// assert_eq!(p.stats().copied_per_frame(), 0.0);
    /// p.publish(&FrameInfo::default(), &[0; 40])?; // copied: 40 bytes
    /// let loan = p.loan()?;
    /// p.commit(loan, 64, &FrameInfo::default())?; // zero-copy: 0 bytes
    /// assert_eq!(p.stats().bytes_copied, 40);
    /// assert_eq!(p.stats().copied_per_frame(), 20.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copied_per_frame(&self) -> f64 {
        if self.published == 0 {
            0.0
        } else {
            self.bytes_copied as f64 / self.published as f64
        }
    }
}

/// How the publisher came by its ring file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No ring existed: a new file.
    Created,
    /// A ring with the same geometry existed: resumed, sequence continues.
    Resumed {
        /// The last seq the previous producer published.
        head: u64,
    },
    /// A ring of another geometry (or an unreadable file) was replaced by a new
    /// file via atomic rename; readers of the old one are told.
    Replaced {
        /// Why the old file could not be resumed.
        reason: String,
    },
}

/// The single producer of one stream.
///
/// ```
/// use camux::ring::{RingOptions, StreamFormat};
/// use camux::{FrameInfo, Published, Publisher};
/// let dir = tempfile::tempdir()?;
/// let mut p = Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(64), 64))?;
/// assert_eq!(p.publish(&FrameInfo::default(), b"hello")?, Published::Seq(1));
/// let mut loan = p.loan()?;
/// loan.as_mut_slice()[..5].copy_from_slice(b"world");
/// assert_eq!(p.commit(loan, 5, &FrameInfo::default())?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Publisher {
    ring: Arc<RingMap>,
    core: ProducerCore,
    readers: Vec<ReaderSlot<LeaseHandle>>,
    /// Who each registered reader is, by id (for [`Publisher::readers_info`];
    /// kept out of `readers`, which the frame path scans).
    peers: Vec<(u32, Peer)>,
    events: Receiver<ReaderEvent>,
    lost_tx: Sender<Claim>,
    lost_rx: Receiver<Claim>,
    control: Option<Control>,
    hold_timeout_ns: u64,
    epoch: u32,
    origin: Origin,
    /// Readers of the previous producer still expected back (quarantine).
    awaiting: u32,
    stats: PublisherStats,
    ring_path: PathBuf,
    sock_path: PathBuf,
    lock: Arc<Flock<File>>,
    /// Frames of at least this many bytes are copied with streaming stores.
    streaming_from: usize,
    /// With [`CopyStores::Auto`]: a slot whose previous frame is at most
    /// this many frames older than the head is still in the caches, and is
    /// written with cached stores whatever its size (0: never).
    warm_within: u64,
    /// The seq the slot of the last claim held before (0: empty).
    reused_seq: u64,
    /// The control thread has ended (its event channel disconnected).
    control_lost: bool,
}

impl Publisher {
    /// Creates the ring `opts.dir/<name>.ring`, or resumes it if a previous
    /// producer left one with the same geometry, then starts accepting
    /// readers on `<name>.sock`.
    pub fn create(opts: &RingOptions) -> Result<Publisher, CreateError> {
        let lock = StreamLock::acquire(&opts.dir, &opts.name, opts.wait_for_lock)?;
        Publisher::create_locked(opts, lock)
    }

    /// [`create`](Self::create) with the stream's lock already taken: a
    /// daemon takes the lock first (standing by while another daemon
    /// publishes), and only then opens the camera, whose negotiated format
    /// decides the ring's geometry. `opts.wait_for_lock` is not used.
    ///
    /// ```
    /// use camux::ring::{RingOptions, StreamFormat, StreamLock};
    /// let dir = tempfile::tempdir()?;
    /// let lock = StreamLock::acquire(dir.path(), "cam0", false)?;
    /// // ... open the device, learn the frame size ...
    /// let opts = RingOptions::new(dir.path(), "cam0", StreamFormat::opaque(64), 64);
    /// let publisher = camux::Publisher::create_locked(&opts, lock)?;
    /// # drop(publisher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_locked(opts: &RingOptions, lock: StreamLock) -> Result<Publisher, CreateError> {
        if lock.dir != opts.dir || lock.name != opts.name {
            return Err(CreateError::Invalid(format!(
                "the lock is for stream {:?} in {}, not {:?} in {}",
                lock.name,
                lock.dir.display(),
                opts.name,
                opts.dir.display()
            )));
        }
        let lock = lock.lock;
        validate_name(&opts.name).map_err(CreateError::Invalid)?;
        let want = opts.header(random_id())?;
        let (ring_path, sock_path, _) = paths(&opts.dir, &opts.name);

        let (ring, origin) = match open_existing(&ring_path) {
            Ok(old) if compatible(&old.header, &want) => {
                let head = old.head().load(Ordering::Acquire);
                (old, Origin::Resumed { head })
            }
            found => {
                let (old, reason) = match found {
                    Ok(old) => {
                        let reason = describe_difference(&old.header, &want);
                        (Some(old), reason)
                    }
                    Err(None) => (None, String::new()),
                    Err(Some(e)) => (None, format!("existing file unusable: {e}")),
                };
                // Sequence numbers continue across the change, and the stream's
                // last sign of life carries over: both must be in the new file
                // before it is renamed into place, since a reader that finds it
                // on disk follows it at once (with head 0 it would restart at
                // seq 1 and report the whole history as lagged; with heartbeat
                // 0, a producer stale since boot).
                let carried = Carried {
                    head: old.as_ref().map_or(0, |o| o.head().load(Ordering::Acquire)),
                    heartbeat_ns: old
                        .as_ref()
                        .map_or_else(mono_ns, |o| o.live().heartbeat_ns.load(Ordering::Relaxed)),
                };
                let ring = create_file(&opts.dir, &ring_path, opts.ring_mode, want, carried)?;
                let origin = match old {
                    Some(old) => {
                        // Tell readers of the old file; they remap on their own.
                        old.live().state.store(STATE_SUPERSEDED, Ordering::Release);
                        old.live().notify.fetch_add(1, Ordering::Release);
                        old.wake_all();
                        Origin::Replaced { reason }
                    }
                    None if reason.is_empty() => Origin::Created,
                    None => Origin::Replaced { reason },
                };
                (ring, origin)
            }
        };
        let ring = Arc::new(ring);
        let live = ring.live();
        let prev_state = live.state.swap(STATE_INIT, Ordering::AcqRel);
        let mut core = ProducerCore::resume(&*ring);
        let now = mono_ns();
        let awaiting = if matches!(origin, Origin::Resumed { .. }) {
            let before = live.readers.load(Ordering::Relaxed).min(opts.max_readers);
            if before > 0 {
                // Readers of the previous producer may still hold frames we
                // cannot see until they reconnect with their lease pages.
                // After a clean stop we know which: keep exactly those until
                // their readers are back, at most the hold timeout. After a
                // crash any published slot may be held, and some readers
                // may have died with the producer: keep them all, but only
                // for two heartbeat intervals (readers waiting in `recv` are
                // back within milliseconds; one still busy after that may
                // find its frame revoked, which `Frame::is_intact` reports).
                if prev_state == STATE_STOPPED {
                    let until = now.saturating_add(opts.hold_timeout.as_nanos() as u64);
                    core.quarantine(until, |s| ring.held_at_handover(s));
                } else {
                    let until = now.saturating_add(2 * opts.heartbeat.as_nanos() as u64);
                    core.quarantine(until, |_| true);
                }
            }
            before
        } else {
            0
        };
        ring.write_handover(&[]);
        live.readers.store(0, Ordering::Relaxed);
        let prev_beat = live.heartbeat_ns.load(Ordering::Relaxed);
        live.prev_heartbeat_ns.store(prev_beat, Ordering::Relaxed);
        live.epoch_started_ns.store(now, Ordering::Relaxed);
        live.heartbeat_ns.store(now, Ordering::Relaxed);
        live.producer_pid
            .store(std::process::id(), Ordering::Relaxed);
        let epoch = live.epoch.fetch_add(1, Ordering::AcqRel).wrapping_add(1);

        let (tx, events) = crossbeam_channel::unbounded();
        let control = Control::start(
            &sock_path,
            opts.socket_mode,
            ring.clone(),
            ControlConfig {
                hold_limit: opts.hold_limit,
                max_readers: opts.max_readers,
                heartbeat: opts.heartbeat,
                handshake_timeout: Duration::from_secs(1),
                allow_uids: opts.allow_uids.clone(),
                allow_gids: opts.allow_gids.clone(),
            },
            tx,
        )
        .map_err(io_at(&sock_path))?;
        // SYNC: Release pairs with readers' Acquire of the state: the epoch and
        // everything above are visible once they see LIVE. The notify bump
        // and wake reach readers sleeping through the restart.
        live.state.store(STATE_LIVE, Ordering::Release);
        live.notify.fetch_add(1, Ordering::Release);
        ring.wake_all();
        let (lost_tx, lost_rx) = crossbeam_channel::unbounded();
        let layout = ring.layout();
        let llc = last_level_cache_bytes().unwrap_or(DEFAULT_LLC_BYTES);
        let streaming_from = opts.copy_stores.streaming_from(
            layout
                .slot_stride
                .saturating_mul(u64::from(layout.geometry.slot_count)),
            llc,
        );
        let warm = opts.slot_reuse.warm(layout.slot_stride);
        core.set_warm_reuse(warm);
        let warm_within = if warm && opts.copy_stores == CopyStores::Auto {
            warm_within(layout.slot_stride, llc)
        } else {
            0
        };
        Ok(Publisher {
            stats: PublisherStats::default(),
            ring,
            core,
            readers: Vec::new(),
            peers: Vec::new(),
            events,
            lost_tx,
            lost_rx,
            control: Some(control),
            hold_timeout_ns: opts.hold_timeout.as_nanos().min(u64::MAX as u128) as u64,
            epoch,
            origin,
            awaiting,
            ring_path,
            sock_path,
            lock,
            streaming_from,
            warm_within,
            reused_seq: 0,
            control_lost: false,
        })
    }

    /// Whether [`publish`](Self::publish) writes a frame of `len` bytes with
    /// streaming stores ([`RingOptions::copy_stores`]) into a slot that is
    /// not warm. (With [`CopyStores::Auto`] and warm slot reuse, a slot
    /// whose previous frame was written a few frames ago, so that its lines
    /// are likely still cached, is written with cached stores instead:
    /// `docs/FORMAT.md` 5.1.)
    ///
    /// ```
    /// use camux::ring::{CopyStores, RingOptions, StreamFormat};
    /// use camux::Publisher;
    /// let dir = tempfile::tempdir()?;
    /// let mut opts = RingOptions::new(dir.path(), "s", StreamFormat::opaque(64), 64);
    /// assert!(!Publisher::create(&opts)?.streams(64)); // a small ring: cached
    /// opts.name = "t".into();
    /// opts.copy_stores = CopyStores::Streaming;
    /// assert!(Publisher::create(&opts)?.streams(64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn streams(&self, len: usize) -> bool {
        len >= self.streaming_from
    }

    /// Whether the slot just claimed held a frame recent enough that its
    /// lines are likely still cached ([`warm_within`]), so that a cached
    /// copy into it beats streaming stores.
    fn reused_warm_slot(&self) -> bool {
        let head = self.core.next_seq().saturating_sub(1);
        self.reused_seq != 0 && head.saturating_sub(self.reused_seq) <= self.warm_within
    }

    /// Path of the ring file.
    pub fn ring_path(&self) -> &Path {
        &self.ring_path
    }

    /// How this publisher came by its file.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The ring's header (geometry, format).
    pub fn header(&self) -> &Header {
        &self.ring.header
    }

    /// Counters.
    pub fn stats(&self) -> PublisherStats {
        // Readers, epoch and head are derived, not kept twice.
        PublisherStats {
            readers: self.readers.len() as u32,
            epoch: self.epoch,
            head: self.core.next_seq().saturating_sub(1),
            ..self.stats
        }
    }

    /// The seq the next published frame gets.
    pub fn next_seq(&self) -> u64 {
        self.core.next_seq()
    }

    /// Takes in reader registrations and returned loans (cheap when idle:
    /// two channel polls).
    fn apply_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(ev) => self.apply_event(ev),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                // The control thread holds the only sender: it has ended.
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.control_lost = true;
                    break;
                }
            }
        }
        while let Ok(claim) = self.lost_rx.try_recv() {
            self.core.abandon(&*self.ring, claim);
        }
    }

    fn apply_event(&mut self, ev: ReaderEvent) {
        match ev {
            ReaderEvent::Added {
                id,
                lease,
                hold_limit,
                adopted,
                peer,
            } => {
                self.peers.push((id, peer));
                lease.mark_registered(id);
                if adopted && self.awaiting > 0 {
                    self.awaiting -= 1;
                    if self.awaiting == 0 {
                        self.core.lift_quarantine();
                    }
                }
                self.readers
                    .push(ReaderSlot::new(id, LeaseHandle::new(lease), hold_limit));
                // The new reader may be asleep waiting for its registration.
                self.ring.live().notify.fetch_add(1, Ordering::Release);
                self.ring.wake_all();
            }
            ReaderEvent::Removed { id } => {
                self.readers.retain(|r| r.id != id);
                self.peers.retain(|(p, _)| *p != id);
            }
        }
    }

    fn claim(&mut self) -> Result<Claim, PublishError> {
        self.apply_events();
        if self.control_lost {
            return Err(PublishError::ControlStopped);
        }
        // Only for the hold timeout and the quarantine deadline (seconds and
        // hundreds of ms): the coarse clock is plenty and far cheaper.
        let now = mono_coarse_ns();
        let (claim, report) =
            self.core
                .claim(&*self.ring, &mut self.readers, now, self.hold_timeout_ns);
        self.reused_seq = report.reused_seq;
        if report.revoked > 0 {
            self.stats.revoked += u64::from(report.revoked);
            self.ring
                .live()
                .revoked
                .fetch_add(report.revoked.into(), Ordering::Relaxed);
        }
        claim.ok_or_else(|| {
            self.stats.dropped += 1;
            self.ring.live().dropped.fetch_add(1, Ordering::Relaxed);
            PublishError::NoFreeSlot
        })
    }

    fn check_user(info: &FrameInfo<'_>) -> Result<(), PublishError> {
        if info.user.len() > USER_META_BYTES {
            return Err(PublishError::UserMetaTooLarge {
                len: info.user.len(),
                max: USER_META_BYTES,
            });
        }
        if let Some(f) = &info.format {
            if f.num_planes as usize > MAX_PLANES {
                return Err(PublishError::TooManyPlanes {
                    planes: f.num_planes,
                    max: MAX_PLANES as u32,
                });
            }
        }
        Ok(())
    }

    /// The metadata of the frame about to be committed; the publish time is
    /// taken here, after the payload is in place. `info.user` was checked by
    /// [`check_user`](Self::check_user).
    fn meta(&self, info: &FrameInfo<'_>, len: usize) -> RawMeta {
        let user = &info.user[..info.user.len().min(USER_META_BYTES)];
        let f = info.format.unwrap_or(self.ring.header.format);
        let (mono, real) = (mono_ns(), real_ns());
        let mut m = RawMeta {
            seq: self.core.next_seq(),
            capture_mono_ns: if info.capture_mono_ns == 0 {
                mono
            } else {
                info.capture_mono_ns
            },
            capture_real_ns: if info.capture_real_ns == 0 {
                real
            } else {
                info.capture_real_ns
            },
            publish_mono_ns: mono,
            publish_real_ns: real,
            payload_len: len as u64,
            driver_seq: info.driver_seq,
            fourcc: f.fourcc.0,
            width: f.width,
            height: f.height,
            flags: info.flags,
            field: info.field,
            num_planes: f.num_planes,
            epoch: self.epoch,
            user_len: user.len() as u32,
            strides: f.strides,
            plane_offsets: f.plane_offsets,
            user: [0; USER_META_BYTES],
        };
        m.user[..user.len()].copy_from_slice(user);
        m
    }

    /// Commits a claimed slot whose payload is in place; `copied` is how
    /// many of its bytes the producer copied there (0 for a loan).
    fn finish(&mut self, mut claim: Claim, meta: &RawMeta, copied: u64) -> u64 {
        self.ring.write_meta(&mut claim, meta);
        let (seq, wake) = self.core.commit(&*self.ring, &self.readers, claim);
        self.add_copied(copied);
        let live = self.ring.live();
        // Only this producer writes it: no locked RMW on the frame path.
        let published = live.published.load(Ordering::Relaxed);
        // Wrapping: a hostile writer may have left any value there.
        live.published
            .store(published.wrapping_add(1), Ordering::Relaxed);
        live.heartbeat_ns
            .store(meta.publish_mono_ns, Ordering::Relaxed);
        if wake {
            self.ring.wake_all();
        }
        self.stats.published += 1;
        seq
    }

    /// Adds `bytes` to the copy counters, in the file and in the stats.
    fn add_copied(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let live = self.ring.live();
        // Only the publishing thread writes it (`&mut self`): a plain load
        // and store, no locked RMW on the frame path. Wrapping: a hostile
        // file may start it anywhere.
        let total = live.bytes_copied.load(Ordering::Relaxed);
        live.bytes_copied
            .store(total.wrapping_add(bytes), Ordering::Relaxed);
        self.stats.bytes_copied = self.stats.bytes_copied.saturating_add(bytes);
    }

    /// Counts `bytes` as copied into the ring by this producer, for a caller
    /// that fills a [`Loan`] by copying into it itself (a converter that
    /// writes YUYV into the slot from a driver's MMAP buffer, say) rather
    /// than letting a driver write it in place. [`publish`](Self::publish)
    /// counts its payload on its own and [`commit`](Self::commit) counts
    /// nothing, so a zero-copy producer never calls this. The count shows in
    /// [`PublisherStats::bytes_copied`] and in the ring's live words
    /// (`camux inspect`).
    ///
    /// ```
    /// use camux::ring::{RingOptions, StreamFormat};
    /// use camux::{FrameInfo, Publisher};
    /// let dir = tempfile::tempdir()?;
    /// let mut p = Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(64), 64))?;
    /// let mut loan = p.loan()?;
    /// let converted = [7u8; 48]; // what a converter produced
    /// loan.as_mut_slice()[..48].copy_from_slice(&converted);
    /// p.count_copied(48);
    /// p.commit(loan, 48, &FrameInfo::default())?;
    /// assert_eq!(p.stats().bytes_copied, 48);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn count_copied(&mut self, bytes: u64) {
        self.add_copied(bytes);
    }

    /// Publishes a copy of `payload`. Never blocks on readers: if every slot
    /// is held the frame is dropped, counted, and [`Published::Dropped`]
    /// returned. A published frame adds `payload.len()` to the bytes-copied
    /// counters ([`PublisherStats::bytes_copied`]); a dropped one adds
    /// nothing.
    pub fn publish(
        &mut self,
        info: &FrameInfo<'_>,
        payload: &[u8],
    ) -> Result<Published, PublishError> {
        let max = self.ring.layout().geometry.max_frame_bytes;
        if payload.len() as u64 > max {
            return Err(PublishError::TooLarge {
                len: payload.len() as u64,
                max,
            });
        }
        Self::check_user(info)?;
        let mut claim = match self.claim() {
            Ok(c) => c,
            Err(PublishError::NoFreeSlot) => return Ok(Published::Dropped),
            Err(e) => return Err(e),
        };
        let streaming = self.streams(payload.len()) && !self.reused_warm_slot();
        self.ring.write_payload(&mut claim, payload, streaming);
        let meta = self.meta(info, payload.len());
        Ok(Published::Seq(self.finish(
            claim,
            &meta,
            payload.len() as u64,
        )))
    }

    /// Loans the oldest free slot to be filled in place. Several loans may be
    /// out at once (a driver's queue); loaned slots count as held.
    pub fn loan(&mut self) -> Result<Loan, PublishError> {
        let claim = self.claim()?;
        Ok(Loan {
            ring: self.ring.clone(),
            claim: Some(claim),
            lost: self.lost_tx.clone(),
            _lock: self.lock.clone(),
        })
    }

    /// Publishes the first `len` bytes of a loaned slot. Returns the seq.
    /// Counts no bytes as copied (the payload was written in place); a
    /// caller that copied into the loan itself says so with
    /// [`count_copied`](Self::count_copied).
    pub fn commit(
        &mut self,
        mut loan: Loan,
        len: usize,
        info: &FrameInfo<'_>,
    ) -> Result<u64, PublishError> {
        if !Arc::ptr_eq(&loan.ring, &self.ring) {
            return Err(PublishError::ForeignLoan);
        }
        let max = self.ring.layout().geometry.max_frame_bytes;
        if len as u64 > max {
            self.abandon(loan);
            return Err(PublishError::TooLarge {
                len: len as u64,
                max,
            });
        }
        if let Err(e) = Self::check_user(info) {
            self.abandon(loan);
            return Err(e);
        }
        let meta = self.meta(info, len);
        let claim = loan.claim.take().expect("live loan");
        Ok(self.finish(claim, &meta, 0))
    }

    /// Gives a loaned slot back without publishing.
    /// A loan of another publisher goes back to its own publisher (its
    /// drop does that).
    pub fn abandon(&mut self, mut loan: Loan) {
        if Arc::ptr_eq(&loan.ring, &self.ring) {
            if let Some(claim) = loan.claim.take() {
                self.core.abandon(&*self.ring, claim);
            }
        }
    }

    /// Takes in pending reader registrations and returns how many readers
    /// are registered. Publishing does this on its own before every frame.
    pub fn poll_readers(&mut self) -> u32 {
        self.apply_events();
        self.readers.len() as u32
    }

    /// Blocks until at least `n` readers are registered, or `timeout`
    /// passes; returns the number registered. For tools and tests that must
    /// not publish before their readers are in.
    pub fn wait_readers(&mut self, n: u32, timeout: Duration) -> u32 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.apply_events();
            if self.readers.len() as u32 >= n {
                return self.readers.len() as u32;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return self.readers.len() as u32;
            }
            // A registration arrives on the channel: wait on it, not a timer.
            match self.events.recv_timeout(left) {
                Ok(ev) => self.apply_event(ev),
                Err(_) => return self.readers.len() as u32,
            }
        }
    }

    /// Frames readers hold right now, and the oldest of them: a scan of
    /// every reader's hold entries, for status reports (not the frame
    /// path). Entries are written by untrusted readers: only values naming
    /// a frame that was published count.
    ///
    /// ```
    /// use camux::ring::{RingOptions, StreamFormat};
    /// let dir = tempfile::tempdir()?;
    /// let p = camux::Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(8), 8))?;
    /// assert_eq!(p.holds(), (0, None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn holds(&self) -> (u32, Option<u64>) {
        let head = self.core.next_seq().saturating_sub(1);
        let mut count = 0;
        let mut oldest: Option<u64> = None;
        for r in &self.readers {
            for v in held(r, head) {
                count += 1;
                oldest = Some(oldest.map_or(v, |o| o.min(v)));
            }
        }
        (count, oldest)
    }

    /// The registered readers: who they are (`SO_PEERCRED` when they
    /// connected) and how many frames each holds now, in registration
    /// order. For status reports and logs, not the frame path. Like
    /// [`stats`](Self::stats) it shows the registrations taken in so far:
    /// publishing takes new ones in, and so do
    /// [`poll_readers`](Self::poll_readers) and
    /// [`wait_readers`](Self::wait_readers).
    ///
    /// ```
    /// use camux::ring::{RingOptions, StreamFormat};
    /// use camux::Subscriber;
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let mut p = camux::Publisher::create(&RingOptions::new(dir.path(), "s", StreamFormat::opaque(8), 8))?;
    /// assert!(p.readers_info().is_empty());
    /// let _sub = Subscriber::open(dir.path(), "s")?;
    /// p.wait_readers(1, Duration::from_secs(5));
    /// let info = p.readers_info();
    /// assert_eq!(info.len(), 1);
    /// assert_eq!(info[0].pid, std::process::id());
    /// assert_eq!((info[0].holds, info[0].hold_limit), (0, 4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn readers_info(&self) -> Vec<ReaderInfo> {
        let head = self.core.next_seq().saturating_sub(1);
        self.readers
            .iter()
            .map(|r| {
                // Every registration arrives with its peer (same event).
                let peer = self
                    .peers
                    .iter()
                    .find(|(id, _)| *id == r.id)
                    .map(|(_, p)| *p)
                    .unwrap_or(Peer {
                        pid: 0,
                        uid: u32::MAX,
                        gid: u32::MAX,
                    });
                ReaderInfo {
                    id: r.id,
                    pid: peer.pid,
                    uid: peer.uid,
                    gid: peer.gid,
                    holds: held(r, head).count() as u32,
                    hold_limit: r.hold_limit as u32,
                }
            })
            .collect()
    }

    /// Refreshes the heartbeat now (the control thread also does it on its own).
    pub fn heartbeat(&self) {
        self.ring
            .live()
            .heartbeat_ns
            .store(mono_ns(), Ordering::Relaxed);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Hand over: take in the last registrations, stop new holds, and
        // record the ones readers have, so a successor leaves those frames
        // alone until the readers are back with it.
        self.apply_events();
        let held = freeze_for_handover(&*self.ring, &self.core, &self.readers);
        self.ring.write_handover(&held);
        // Stop serving (readers' connections close: they will reconnect to a
        // successor), then say so in the ring and wake everyone.
        self.control.take();
        let _ = std::fs::remove_file(&self.sock_path);
        let live = self.ring.live();
        live.state.store(STATE_STOPPED, Ordering::Release);
        live.notify.fetch_add(1, Ordering::Release);
        self.ring.wake_all();
        // The lock is released when `_lock` closes, after this.
    }
}

/// The seqs reader `r` holds that name a published frame (`1..=head`): its
/// entries are written by the reader, so others are ignored.
fn held(r: &ReaderSlot<LeaseHandle>, head: u64) -> impl Iterator<Item = u64> + '_ {
    r.lease.holds()[..r.hold_limit]
        .iter()
        .map(|h| h.load(Ordering::Relaxed))
        .filter(move |&v| v != 0 && v <= head)
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        b = (real_ns() ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    u64::from_le_bytes(b) | 1
}

/// The lock that makes one process the producer of a stream
/// (`<dir>/<name>.lock`, an exclusive `flock`). Held until dropped, or until
/// the [`Publisher`] made with it is; the kernel releases it if the process
/// dies, so a crash hands the stream over as well.
///
/// ```
/// use camux::ring::StreamLock;
/// let dir = tempfile::tempdir()?;
/// let first = StreamLock::acquire(dir.path(), "cam0", false)?;
/// assert!(StreamLock::acquire(dir.path(), "cam0", false).is_err(), "busy");
/// drop(first);
/// let _second = StreamLock::acquire(dir.path(), "cam0", false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StreamLock {
    dir: PathBuf,
    name: String,
    lock: Arc<Flock<File>>,
}

impl StreamLock {
    /// Takes the lock of stream `name` in `dir` (creating the directory if
    /// needed). With `wait`, blocks until the current producer stops (a
    /// standby); without, fails with [`CreateError::Busy`]. A signal
    /// interrupts the wait with an I/O error.
    pub fn acquire(dir: &Path, name: &str, wait: bool) -> Result<StreamLock, CreateError> {
        validate_name(name).map_err(CreateError::Invalid)?;
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let (_, _, lock_path) = paths(dir, name);
        Ok(StreamLock {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            lock: Arc::new(take_lock(&lock_path, wait)?),
        })
    }
}

fn take_lock(path: &Path, wait: bool) -> Result<Flock<File>, CreateError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_at(path))?;
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    Flock::lock(f, arg).map_err(|(_, e)| match e {
        nix::errno::Errno::EWOULDBLOCK => CreateError::Busy {
            path: path.to_owned(),
        },
        e => io_at(path)(e.into()),
    })
}

/// Opens an existing ring for writing; `Err(None)` if there is none.
fn open_existing(path: &Path) -> Result<RingMap, Option<String>> {
    // O_NONBLOCK: something other than a ring (a FIFO) at the path must not
    // hang us; mapping it then fails and the file is replaced.
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    RingMap::open(&f, true).map_err(|e| match e {
        MapError::Io(e) => Some(e.to_string()),
        MapError::Layout(e) => Some(e.to_string()),
    })
}

/// Whether a ring can be resumed as is. The nominal frame rate is left out:
/// a producer restarted at another rate keeps its readers (the header keeps
/// the rate the ring was created with).
fn compatible(have: &Header, want: &Header) -> bool {
    let layout_only = |f: &StreamFormat| StreamFormat {
        fps_num: 0,
        fps_den: 0,
        ..*f
    };
    have.layout == want.layout
        && layout_only(&have.format) == layout_only(&want.format)
        && have.hold_limit == want.hold_limit
        && have.max_readers == want.max_readers
        && have.heartbeat_interval_ns == want.heartbeat_interval_ns
        && have.name == want.name
        && have.content_type == want.content_type
}

fn describe_difference(have: &Header, want: &Header) -> String {
    if have.format != want.format {
        format!(
            "format changed from {} {}x{} to {} {}x{}",
            have.format.fourcc,
            have.format.width,
            have.format.height,
            want.format.fourcc,
            want.format.width,
            want.format.height
        )
    } else if have.content_type != want.content_type {
        let show = |c: &Option<String>| c.as_deref().unwrap_or("none").to_owned();
        format!(
            "content type changed from {} to {}",
            show(&have.content_type),
            show(&want.content_type)
        )
    } else if have.layout != want.layout {
        format!(
            "geometry changed from {} slots of {} bytes to {} slots of {} bytes",
            have.layout.geometry.slot_count,
            have.layout.geometry.max_frame_bytes,
            want.layout.geometry.slot_count,
            want.layout.geometry.max_frame_bytes
        )
    } else {
        "ring options (hold limit, readers, heartbeat) changed".into()
    }
}

/// What a new file takes over from the one it replaces.
struct Carried {
    /// The last seq published (0 for a first file).
    head: u64,
    /// The last heartbeat (now, for a first file).
    heartbeat_ns: u64,
}

/// Creates the ring under a temporary name, reserves its pages, writes the
/// header and the `carried` live words, and renames it into place.
fn create_file(
    dir: &Path,
    path: &Path,
    mode: u32,
    header: Header,
    carried: Carried,
) -> Result<RingMap, CreateError> {
    let tmp = dir.join(format!(".{}.ring.{}.tmp", header.name, std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let cleanup = |e: CreateError| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    let need = header.layout.file_bytes;
    // Reserve every page now: a full tmpfs is an error here, not a SIGBUS later.
    if let Err(e) =
        nix::fcntl::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, need as libc::off_t)
    {
        return Err(cleanup(
            if e == nix::errno::Errno::ENOSPC || e == nix::errno::Errno::EFBIG {
                CreateError::NoSpace {
                    path: path.to_owned(),
                    need,
                }
            } else {
                io_at(&tmp)(e.into())
            },
        ));
    }
    // The umask may have narrowed the mode; readers need what was asked.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| cleanup(io_at(&tmp)(e)))?;
    let ring = RingMap::init(&f, header).map_err(|e| {
        cleanup(match e {
            MapError::Io(e) => io_at(&tmp)(e),
            MapError::Layout(e) => CreateError::Geometry(e),
        })
    })?;
    // SYNC: Release pairs with a reader's Acquire of the head (at open and
    // when following a replacement); the rename below publishes the file.
    ring.head().store(carried.head, Ordering::Release);
    ring.live()
        .heartbeat_ns
        .store(carried.heartbeat_ns, Ordering::Relaxed);
    std::fs::rename(&tmp, path).map_err(|e| cleanup(io_at(path)(e)))?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> RingOptions {
        RingOptions::new(dir, "t", StreamFormat::opaque(64), 4096)
    }

    /// A control thread that ends (here: stopped; a panic in it ends it
    /// the same way) is noticed at the next claim, and every publish fails
    /// from then on instead of going on without registrations.
    #[test]
    fn an_ended_control_thread_fails_publishing() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        p.publish(&FrameInfo::default(), b"x").unwrap();
        drop(p.control.take());
        for _ in 0..2 {
            assert_eq!(
                p.publish(&FrameInfo::default(), b"x"),
                Err(PublishError::ControlStopped)
            );
            assert!(matches!(p.loan(), Err(PublishError::ControlStopped)));
        }
        assert_eq!(p.stats().published, 1);
        assert_eq!(p.stats().dropped, 0, "a refused frame is not a drop");
    }

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("1G"), Some(1 << 30));
        for bad in ["", "K", "12Q", "-1K", "99999999999999999999G"] {
            assert_eq!(parse_cache_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn auto_streams_only_rings_larger_than_half_the_cache() {
        let llc = 32 << 20;
        // 8 slots of 1920x1080 YUYV: 32 MiB > 16 MiB.
        let fhd = 8 * (1920 * 1080 * 2 + 4096);
        assert_eq!(
            CopyStores::Auto.streaming_from(fhd, llc),
            STREAMING_MIN_BYTES
        );
        // 8 slots of 640x480: 4.7 MiB fit.
        assert_eq!(
            CopyStores::Auto.streaming_from(8 * 614_400, llc),
            usize::MAX
        );
        assert_eq!(CopyStores::Cached.streaming_from(fhd, llc), usize::MAX);
        assert_eq!(CopyStores::Streaming.streaming_from(4096, llc), 0);
    }

    /// Every length around the 64-byte blocks and the tail, both store
    /// kinds: the slot holds exactly the bytes given, nothing past them
    /// changes, and readers see them.
    #[test]
    fn streaming_and_cached_copies_write_exactly_the_payload() {
        for stores in [CopyStores::Streaming, CopyStores::Cached] {
            let dir = tempfile::tempdir().unwrap();
            let mut o = opts(dir.path());
            o.max_frame_bytes = 3 * 4096;
            o.copy_stores = stores;
            let mut p = Publisher::create(&o).unwrap();
            assert_eq!(p.streams(1), stores == CopyStores::Streaming);
            let mut sub = crate::Subscriber::open(dir.path(), "t").unwrap();
            assert_eq!(p.wait_readers(1, Duration::from_secs(5)), 1);
            let lens = (0..=130).chain([4095, 4096, 4097, 8191, 3 * 4096 - 1, 3 * 4096]);
            for (i, len) in lens.enumerate() {
                // Fill all 8 slots with a marker, then publish `len` bytes
                // into the oldest of them.
                let fill = vec![0xEE; 3 * 4096];
                for _ in 0..8 {
                    p.publish(&FrameInfo::default(), &fill).unwrap();
                }
                let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
                for _ in 0..8 {
                    sub.try_recv().unwrap();
                }
                let seq = match p.publish(&FrameInfo::default(), &data).unwrap() {
                    Published::Seq(s) => s,
                    other => panic!("{other:?}"),
                };
                let f = sub.try_recv().unwrap();
                assert_eq!(f.seq(), seq);
                assert_eq!(f.payload(), &data[..], "{stores:?} len {len}");
                // The frame is held; 3 * 4096 is the slot capacity.
                let whole = p.ring.held_payload(&f.held, 3 * 4096);
                assert!(
                    whole[len..].iter().all(|&b| b == 0xEE),
                    "{stores:?} len {len}: wrote past the payload"
                );
            }
        }
    }

    #[test]
    fn second_producer_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let _p = Publisher::create(&opts(dir.path())).unwrap();
        assert!(matches!(
            Publisher::create(&opts(dir.path())),
            Err(CreateError::Busy { .. })
        ));
    }

    #[test]
    fn resume_continues_sequence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut p = Publisher::create(&opts(dir.path())).unwrap();
            for _ in 0..5 {
                p.publish(&FrameInfo::default(), b"x").unwrap();
            }
        }
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        assert_eq!(p.origin(), &Origin::Resumed { head: 5 });
        assert_eq!(
            p.publish(&FrameInfo::default(), b"y").unwrap(),
            Published::Seq(6)
        );
        assert_eq!(p.stats().epoch, 2);
    }

    #[test]
    fn geometry_change_replaces_file_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut p = Publisher::create(&opts(dir.path())).unwrap();
            p.publish(&FrameInfo::default(), b"x").unwrap();
        }
        let mut o = opts(dir.path());
        o.max_frame_bytes = 8192;
        let mut p = Publisher::create(&o).unwrap();
        assert!(matches!(p.origin(), Origin::Replaced { .. }));
        assert_eq!(
            p.publish(&FrameInfo::default(), b"y").unwrap(),
            Published::Seq(2)
        );
    }

    #[test]
    fn too_large_and_loans() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.slots = 2;
        let mut p = Publisher::create(&o).unwrap();
        assert!(matches!(
            p.publish(&FrameInfo::default(), &[0; 4097]),
            Err(PublishError::TooLarge { .. })
        ));
        let a = p.loan().unwrap();
        let b = p.loan().unwrap();
        assert_eq!(p.loan().err(), Some(PublishError::NoFreeSlot));
        assert_eq!(
            p.publish(&FrameInfo::default(), b"z").unwrap(),
            Published::Dropped
        );
        drop(a); // a dropped loan comes back at the next claim
        p.abandon(b);
        assert!(matches!(
            p.publish(&FrameInfo::default(), b"z").unwrap(),
            Published::Seq(_)
        ));
        assert_eq!(p.stats().dropped, 2);
    }

    /// The file's bytes-copied word, as a reader sees it.
    fn file_copied(p: &Publisher) -> u64 {
        p.ring.live().bytes_copied.load(Ordering::Relaxed)
    }

    #[test]
    fn publish_by_copy_counts_the_payload() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (0, 0));
        p.publish(&FrameInfo::default(), &[1; 100]).unwrap();
        p.publish(&FrameInfo::default(), &[2; 28]).unwrap();
        p.publish(&FrameInfo::default(), &[]).unwrap();
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (128, 128));
        assert_eq!(p.stats().published, 3);
        assert!((p.stats().copied_per_frame() - 128.0 / 3.0).abs() < 1e-9);
        // Refused frames copy nothing.
        assert!(p.publish(&FrameInfo::default(), &[0; 4097]).is_err());
        assert_eq!(file_copied(&p), 128);
    }

    #[test]
    fn loan_and_commit_count_nothing_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        for _ in 0..3 {
            let mut loan = p.loan().unwrap();
            loan.as_mut_slice()[..4000].fill(9);
            p.commit(loan, 4000, &FrameInfo::default()).unwrap();
        }
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (0, 0));
        assert_eq!(p.stats().copied_per_frame(), 0.0);
        // A converter that copied into its loan says so.
        let loan = p.loan().unwrap();
        p.count_copied(1000);
        p.commit(loan, 1000, &FrameInfo::default()).unwrap();
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (1000, 1000));
        assert_eq!(p.stats().copied_per_frame(), 250.0);
        // An abandoned loan and a dropped frame copy nothing.
        let loan = p.loan().unwrap();
        p.abandon(loan);
        let loans: Vec<Loan> = (0..8).map(|_| p.loan().unwrap()).collect();
        assert_eq!(
            p.publish(&FrameInfo::default(), &[0; 100]).unwrap(),
            Published::Dropped
        );
        assert_eq!(file_copied(&p), 1000);
        drop(loans);
    }

    #[test]
    fn bytes_copied_continue_across_epochs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut p = Publisher::create(&opts(dir.path())).unwrap();
            p.publish(&FrameInfo::default(), &[0; 300]).unwrap();
        }
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        assert!(matches!(p.origin(), Origin::Resumed { .. }));
        // The file counts all epochs; the stats only this publisher's.
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (0, 300));
        p.publish(&FrameInfo::default(), &[0; 50]).unwrap();
        assert_eq!((p.stats().bytes_copied, file_copied(&p)), (50, 350));
        assert_eq!(p.stats().copied_per_frame(), 50.0);
    }

    #[test]
    fn content_type_is_recorded_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.content_type = Some("application/x-imu+csv".into());
        let p = Publisher::create(&o).unwrap();
        assert_eq!(
            p.header().content_type.as_deref(),
            Some("application/x-imu+csv")
        );
        drop(p);
        // Empty means none.
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.content_type = Some(String::new());
        assert_eq!(Publisher::create(&o).unwrap().header().content_type, None);
        for bad in ["text/csv; charset=utf-8", "caf\u{e9}", "a\nb"] {
            let mut o = opts(dir.path());
            o.content_type = Some(bad.into());
            let e = Publisher::create(&o).err().unwrap();
            assert!(matches!(e, CreateError::Invalid(_)), "{e:?}");
            let e = e.to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("printable ASCII"), "{e}");
        }
        let mut o = opts(dir.path());
        o.content_type = Some("x".repeat(64));
        let e = Publisher::create(&o).err().unwrap().to_string();
        assert!(e.contains("64 bytes") && e.contains("1..=63"), "{e}");
    }

    #[test]
    fn content_type_change_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.content_type = Some("application/x-imu+csv".into());
        let first = Publisher::create(&o).unwrap().header().ring_id;
        // Same content type: resumed.
        let p = Publisher::create(&o).unwrap();
        assert!(matches!(p.origin(), Origin::Resumed { .. }));
        assert_eq!(p.header().ring_id, first);
        drop(p);
        // Another one, or none: a new file.
        for (ct, was) in [
            (Some("application/x-gps+nmea"), "application/x-imu+csv"),
            (None, "application/x-gps+nmea"),
        ] {
            o.content_type = ct.map(str::to_owned);
            let p = Publisher::create(&o).unwrap();
            match p.origin() {
                Origin::Replaced { reason } => {
                    assert!(
                        reason.contains("content type") && reason.contains(was),
                        "{reason}"
                    )
                }
                other => panic!("{other:?}"),
            }
            assert_ne!(p.header().ring_id, first);
            assert_eq!(p.header().content_type.as_deref(), ct);
        }
    }

    #[test]
    fn invalid_options_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.name = "../etc".into();
        let e = Publisher::create(&o).err().unwrap().to_string();
        assert!(e.contains("stream name"), "{e}");
        let mut o = opts(dir.path());
        o.hold_limit = 99;
        let e = Publisher::create(&o).err().unwrap().to_string();
        assert!(e.contains("hold limit 99"), "{e}");
    }
}
