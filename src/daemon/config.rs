//! The daemon's config: a YAML file (in a pod, a ConfigMap) listing the
//! streams to publish, typed and validated.
//!
//! ```
//! use camux::daemon::config::{parse, SourceConfig};
//! use std::path::Path;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = parse(
//!     "streams:\n\
//!      \x20 - name: cam0\n\
//!      \x20   source: { type: synthetic, width: 640, height: 480, fps: 15 }\n",
//!     Path::new("daemon.yaml"),
//! )?;
//! assert_eq!(config.dir, Path::new("/run/camux"));
//! let cam0 = config.stream("cam0").unwrap();
//! assert_eq!(cam0.source_kind(), "synthetic");
//! assert!(matches!(cam0.source, SourceConfig::Synthetic { width: 640, .. }));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/daemon.yaml` shows every option with what it means. In short:
//!
//! ```yaml
//! dir: /run/camux            # ring files, sockets and locks
//! listen: 0.0.0.0:9470       # /metrics, /healthz, /readyz, /status
//! log_format: text           # or json
//! streams:
//!   - name: cam0             # the ring is <dir>/cam0.ring
//!     required: true         # /readyz fails while it is not publishing
//!     source: { type: synthetic, format: YUYV, width: 1280, height: 720, fps: 30 }
//!     ring: { slots: 8, hold_limit: 4, hold_timeout: 5s, heartbeat: 200ms, max_readers: 64 }
//!     access: { ring_mode: "0644", socket_mode: "0666" }
//! ```
//!
//! A source is one of `synthetic`, `v4l2`, `file` and `sensor`, told by its
//! `type`; [`SourceConfig`] lists the fields of each.
//!
//! # Errors
//!
//! [`parse`] and [`load`] reject anything they do not understand: unknown
//! fields (every mapping is closed), values of the wrong type or out of
//! range, fields that contradict each other. A [`ConfigError::Invalid`]
//! names the file, the line and column, the field path and what is
//! allowed:
//!
//! ```text
//! daemon.yaml:14:12: streams[1].source.fps: expected a frame rate above 0 (e.g. 30 or 29.97), found -3
//! daemon.yaml:9:7: streams[0].ring.slotz: unknown field `slotz`, expected one of `slots`, `max_frame_bytes`, ...
//! daemon.yaml:21:11: streams[2].name: stream name `cam0` is already used by streams[0]; ...
//! ```
//!
//! Where the line and column point:
//!
//! - a bad value: at the value;
//! - an unknown field, a repeated or conflicting source field, a field of
//!   another type of source: at its key (at its value when it came before
//!   the source's `type`);
//! - a missing field: at the start of the mapping that lacks it;
//! - a check across fields (a raw file without its format, two streams of
//!   one name, a sensor with both `record_size` and `lines`...): at the
//!   value of the field named in the error's field path, or, when that
//!   field is absent, at the nearest enclosing mapping. The YAML parser
//!   keeps no positions past the first pass, so these are found by reading
//!   the text again along the field path;
//! - an error that has no position at all (several YAML documents in one
//!   file): line 1, column 1.
//!
//! # Reloading
//!
//! Every config type is [`PartialEq`], so a supervisor reloading the file
//! restarts only the streams whose [`StreamConfig`] changed, and
//! [`Serialize`], so the config in effect can be shown (it parses back to
//! an equal config).

use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::format::{FormatError, FourCc, FrameLayout, MAX_DIMENSION, MAX_FRAME_BYTES};
use crate::ring::layout::{
    validate_name, MAX_HEARTBEAT_NS, MAX_HOLDS, MAX_READERS, MAX_SLOTS, MIN_HEARTBEAT_NS,
};
use crate::ring::Geometry;
use crate::source::sensor::{validate_content_type, MAX_RECORD_BYTES};
use crate::source::{
    FileConfig, FileKind, Framing, Pacer, RawFormat, SensorConfig, Synthetic, SyntheticConfig,
    SyntheticError,
};

/// Where rings, sockets and locks go when the config does not say:
/// `/run/camux`, a tmpfs hostPath in a pod.
pub const DEFAULT_DIR: &str = "/run/camux";

/// The HTTP address when the config does not say: `0.0.0.0:9470`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9470));

/// A sensor stream's content type when the config does not say.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The longest line of a newline-delimited sensor stream when the config
/// does not say (`max_record_bytes`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4096;

const _: () = assert!(DEFAULT_MAX_RECORD_BYTES <= MAX_RECORD_BYTES);

/// Buffers a V4L2 source queues to the driver when the config does not say.
pub const DEFAULT_V4L2_BUFFERS: u32 = 4;

/// The fewest buffers a V4L2 source may queue.
pub const MIN_V4L2_BUFFERS: u32 = 2;

/// The most buffers a V4L2 source may queue.
pub const MAX_V4L2_BUFFERS: u32 = 32;

/// The largest config file [`load`] reads (4 MiB; a ConfigMap holds at most
/// 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The longest hold timeout: a day.
const MAX_HOLD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The longest group name.
const MAX_GROUP_NAME_BYTES: usize = 32;

// ---------------------------------------------------------------------------
// The config types
// ---------------------------------------------------------------------------

/// The whole daemon config: where rings go, where HTTP listens, how to log,
/// and the streams. Made by [`parse`] or [`load`], which check everything,
/// including what spans streams (unique names).
///
/// ```
/// use camux::daemon::config::{parse, LogFormat, DEFAULT_LISTEN};
/// use std::path::Path;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let text = "log_format: json\nstreams:\n  - { name: a, source: { type: synthetic } }\n";
/// let config = parse(text, Path::new("daemon.yaml"))?;
/// assert_eq!(config.log_format, LogFormat::Json);
/// assert_eq!(config.listen, DEFAULT_LISTEN);
/// assert_eq!(config.streams.len(), 1);
/// assert!(config.stream("a").is_some() && config.stream("b").is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct DaemonConfig {
    /// Directory of the ring files, sockets and locks (default
    /// [`DEFAULT_DIR`]). `camux daemon --dir` overrides it.
    pub dir: PathBuf,
    /// Address of the HTTP endpoints (default [`DEFAULT_LISTEN`]). Written
    /// as `host:port` (`0.0.0.0:9470`, `[::]:9470`, `127.0.0.1:9470`; no
    /// host names), `:port`, or a bare port number.
    pub listen: SocketAddr,
    /// How log lines are written (default [`LogFormat::Text`]).
    pub log_format: LogFormat,
    /// The streams, at least one, with unique names.
    pub streams: Vec<StreamConfig>,
}

impl DaemonConfig {
    /// The stream named `name`.
    ///
    /// ```
    /// use camux::daemon::config::parse;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = parse("streams: [{ name: cam0, source: { type: synthetic } }]", "d.yaml".as_ref())?;
    /// assert_eq!(config.stream("cam0").map(|s| s.source_kind()), Some("synthetic"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// How the daemon writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (`text`, the default).
    #[default]
    Text,
    /// One JSON object a line (`json`), for log collectors.
    Json,
}

/// One stream: a name, a source, and how its ring is made and who may read
/// it.
///
/// Deserialized on its own, a stream is checked field by field and its
/// source as a whole; [`parse`] adds the checks across the stream's
/// sections (the ring's slots with a V4L2 source's buffers,
/// `max_frame_bytes` against the source's frames) and across streams
/// (unique names).
///
/// ```
/// use camux::daemon::config::{RingConfig, SourceConfig, StreamConfig};
/// use camux::format::FourCc;
/// let source = SourceConfig::Synthetic { format: FourCc::YUYV, width: 1280, height: 720, fps: 30.0 };
/// let stream = StreamConfig::new("cam0", source);
/// assert!(stream.required);
/// assert_eq!(stream.ring, RingConfig::default());
/// assert_eq!(stream.source_kind(), "synthetic");
/// assert_eq!(stream.max_frame_bytes(), Some(1280 * 720 * 2));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "snake_case",
    expecting = "a stream: a mapping with `name`, `source` and optionally `required`, `ring`, `access`"
)]
pub struct StreamConfig {
    /// The stream's name: 1 to 63 characters of `A-Z a-z 0-9 . _ -`, not
    /// starting with `.` (the ring is `<dir>/<name>.ring`). Unique in a
    /// config.
    #[serde(deserialize_with = "de_name")]
    pub name: String,
    /// Whether the daemon is ready (`/readyz`) only while this stream
    /// publishes (default `true`). A stream that is not required may fail
    /// (an unplugged sensor) without failing the pod.
    #[serde(default = "default_required", deserialize_with = "de_bool")]
    pub required: bool,
    /// Where the frames come from.
    pub source: SourceConfig,
    /// How the ring is made (every field has a default).
    #[serde(default)]
    pub ring: RingConfig,
    /// Who may read the stream (every field has a default).
    #[serde(default)]
    pub access: AccessConfig,
}

fn default_required() -> bool {
    true
}

impl StreamConfig {
    /// A required stream `name` from `source`, with the default ring and
    /// access.
    pub fn new(name: impl Into<String>, source: SourceConfig) -> StreamConfig {
        StreamConfig {
            name: name.into(),
            required: true,
            source,
            ring: RingConfig::default(),
            access: AccessConfig::default(),
        }
    }

    /// The source's type: `"synthetic"`, `"v4l2"`, `"file"` or `"sensor"`.
    ///
    /// ```
    /// use camux::daemon::config::{SourceConfig, StreamConfig};
    /// use camux::source::Framing;
    /// let imu = SourceConfig::Sensor {
    ///     path: "/dev/ttyUSB0".into(),
    ///     framing: Framing::Fixed(24),
    ///     content_type: "application/x-imu".into(),
    /// };
    /// assert_eq!(StreamConfig::new("imu", imu).source_kind(), "sensor");
    /// ```
    pub fn source_kind(&self) -> &'static str {
        self.source.kind()
    }

    /// The ring's slot count: [`RingConfig::slots`] for readers, plus a
    /// V4L2 source's buffers (a buffer queued to the driver may be a ring
    /// slot lent to it).
    ///
    /// ```
    /// use camux::daemon::config::parse;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let text = "streams: [{ name: cam, source: { type: v4l2, device: /dev/video0, buffers: 6 } }]";
    /// assert_eq!(parse(text, "d.yaml".as_ref())?.streams[0].slot_count(), 8 + 6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn slot_count(&self) -> u32 {
        let lent = match &self.source {
            SourceConfig::V4l2 { buffers, .. } => *buffers,
            _ => 0,
        };
        self.ring.slots.saturating_add(lent)
    }

    /// The largest frame the ring takes as far as the config tells:
    /// [`RingConfig::max_frame_bytes`] when given, else the source's
    /// [`SourceConfig::frame_bytes`]; `None` when only the opened source
    /// can tell (a V4L2 device, a Y4M file).
    pub fn max_frame_bytes(&self) -> Option<u64> {
        self.ring
            .max_frame_bytes
            .or_else(|| self.source.frame_bytes())
    }
}

/// Where a stream's frames come from: a mapping whose `type` says which
/// source it is, with that source's fields.
///
/// | `type` | fields (defaults) |
/// | --- | --- |
/// | `synthetic` | `format` (`YUYV`), `width` (1280), `height` (720), `fps` (30) |
/// | `v4l2` | `device`, `format`, `width`, `height`, `fps` (each left out: the driver's current one), `io` (`auto`, `userptr` or `mmap`), `allow_substitution` (`false`), `buffers` (4, 2 to 32) |
/// | `file` | `path`, `kind` (`auto`, `y4m` or `raw`), `format` + `width` + `height` (a raw file's frames, all three), `fps` (the file's, or 30), `loop` (`false`) |
/// | `sensor` | `path` (`-` for stdin), `record_size` (fixed-size records) or `lines: true` + `max_record_bytes` (4096), `content_type` (`application/octet-stream`) |
///
/// Formats are FourCCs (`YUYV`, `NV12`, `MJPG`, `RAW`; a shorter code is
/// padded with spaces) or aliases (`rgb24`, `i420`, `gray`, ...). A field
/// that belongs to another type of source is an error, and so are fields
/// that contradict each other (a sensor with both `record_size` and
/// `lines`, a raw file without its format, a synthetic format or size the
/// test pattern cannot render).
///
/// ```
/// use camux::daemon::config::{parse, SourceConfig};
/// use camux::source::{FileKind, RawFormat};
/// use camux::format::FourCc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let text = "streams:\n  - name: replay\n    source:\n      type: file\n      path: clip.raw\n      \
///             kind: raw\n      format: GREY\n      width: 64\n      height: 48\n      loop: true\n";
/// let config = parse(text, "daemon.yaml".as_ref())?;
/// let source = &config.streams[0].source;
/// let SourceConfig::File { kind, raw_format, looping, .. } = source else { unreachable!() };
/// assert_eq!(*kind, FileKind::Raw);
/// assert_eq!(*raw_format, Some(RawFormat::new(FourCc::GREY, 64, 48)));
/// assert!(*looping);
/// assert_eq!(source.frame_bytes(), Some(64 * 48));
/// assert_eq!(source.file_config().map(|f| f.looping), Some(true));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// `type: synthetic`: the stamped test pattern (any machine, no device).
    Synthetic {
        /// Pixel format, one of [`Synthetic::FORMATS`] (default YUYV).
        format: FourCc,
        /// Width in pixels; for RAW, bytes per record (default 1280).
        width: u32,
        /// Height in pixels; for RAW, records per frame (default 720).
        height: u32,
        /// Frames per second (default 30).
        fps: f64,
    },
    /// `type: v4l2`: a V4L2 camera (needs the `v4l2` feature at run time).
    /// The fields are those of `camux::source::v4l2::V4l2Config`.
    V4l2 {
        /// Device node: `/dev/videoN`, or better a stable
        /// `/dev/v4l/by-id/...` or `/dev/v4l/by-path/...` name, which
        /// survives replugging and reboots.
        device: PathBuf,
        /// Pixel format to require; `None` keeps the driver's.
        format: Option<FourCc>,
        /// Width to require; `None` keeps the driver's.
        width: Option<u32>,
        /// Height to require; `None` keeps the driver's.
        height: Option<u32>,
        /// Frame rate to require; `None` keeps the driver's.
        fps: Option<f64>,
        /// How frames reach the ring (default [`V4l2IoMode::Auto`]).
        io: V4l2IoMode,
        /// Accept a format the driver substituted for the one asked for
        /// (default `false`: a substitution is an error).
        allow_substitution: bool,
        /// Buffers queued to the driver ([`MIN_V4L2_BUFFERS`] to
        /// [`MAX_V4L2_BUFFERS`], default [`DEFAULT_V4L2_BUFFERS`]); the
        /// ring gets as many slots on top of [`RingConfig::slots`].
        buffers: u32,
    },
    /// `type: file`: a Y4M or raw file replayed, optionally looping (the
    /// fields of a [`FileConfig`]).
    File {
        /// The file.
        path: PathBuf,
        /// What kind of file it is (default [`FileKind::Auto`]).
        kind: FileKind,
        /// The format of a raw file's frames (`format`, `width`, `height`);
        /// needed for `kind: raw`, refused for `kind: y4m`.
        raw_format: Option<RawFormat>,
        /// Frames per second; `None` for the Y4M header's rate, or 30.
        fps: Option<f64>,
        /// `loop`: start over at the end of the file instead of stopping.
        looping: bool,
    },
    /// `type: sensor`: records from a character device, FIFO, file or
    /// stdin (the fields of a [`SensorConfig`]).
    Sensor {
        /// The device, FIFO or file; `-` for stdin.
        path: PathBuf,
        /// `record_size: N` ([`Framing::Fixed`]) or `lines: true` with
        /// `max_record_bytes` ([`Framing::Lines`]).
        framing: Framing,
        /// What the records hold, recorded in the ring header (default
        /// [`DEFAULT_CONTENT_TYPE`]).
        content_type: String,
    },
}

impl SourceConfig {
    /// The source's `type`: `"synthetic"`, `"v4l2"`, `"file"` or `"sensor"`.
    pub fn kind(&self) -> &'static str {
        self.source_type().name()
    }

    fn source_type(&self) -> SourceType {
        match self {
            SourceConfig::Synthetic { .. } => SourceType::Synthetic,
            SourceConfig::V4l2 { .. } => SourceType::V4l2,
            SourceConfig::File { .. } => SourceType::File,
            SourceConfig::Sensor { .. } => SourceType::Sensor,
        }
    }

    /// The size of a frame as far as the config alone tells: a synthetic
    /// frame, a raw file's frame, a sensor's largest record; `None` for a
    /// V4L2 device or a file whose header gives its format (only the
    /// opened source tells).
    ///
    /// ```
    /// use camux::daemon::config::SourceConfig;
    /// use camux::format::FourCc;
    /// let synthetic = SourceConfig::Synthetic { format: FourCc::YUYV, width: 1280, height: 720, fps: 30.0 };
    /// assert_eq!(synthetic.frame_bytes(), Some(1280 * 720 * 2));
    /// ```
    pub fn frame_bytes(&self) -> Option<u64> {
        match self {
            SourceConfig::Synthetic {
                format,
                width,
                height,
                ..
            } => synthetic_layout(*format, *width, *height)
                .ok()
                .map(|l| l.frame_bytes),
            SourceConfig::V4l2 { .. } => None,
            SourceConfig::File { raw_format, .. } => raw_format
                .and_then(|r| r.layout().ok())
                .map(|l| l.frame_bytes),
            SourceConfig::Sensor { framing, .. } => Some(framing.max_record_bytes() as u64),
        }
    }

    /// The content type to record in the ring header: a sensor's
    /// `content_type`; `None` for image sources.
    pub fn content_type(&self) -> Option<&str> {
        match self {
            SourceConfig::Sensor { content_type, .. } => Some(content_type),
            _ => None,
        }
    }

    /// A synthetic source's [`SyntheticConfig`], for [`Synthetic::new`].
    ///
    /// ```
    /// use camux::daemon::config::SourceConfig;
    /// use camux::format::FourCc;
    /// use camux::source::SyntheticConfig;
    /// let imu = SourceConfig::Synthetic { format: FourCc::RAW, width: 48, height: 1, fps: 200.0 };
    /// let config = imu.synthetic_config().unwrap();
    /// assert_eq!(config, SyntheticConfig { fourcc: FourCc::RAW, width: 48, height: 1, fps: 200.0 });
    /// ```
    pub fn synthetic_config(&self) -> Option<SyntheticConfig> {
        match *self {
            SourceConfig::Synthetic {
                format,
                width,
                height,
                fps,
            } => Some(SyntheticConfig {
                width,
                height,
                fourcc: format,
                fps,
            }),
            _ => None,
        }
    }

    /// A file source's [`FileConfig`], for
    /// [`FileSource::open`](crate::source::FileSource::open).
    pub fn file_config(&self) -> Option<FileConfig> {
        match self {
            SourceConfig::File {
                path,
                kind,
                raw_format,
                fps,
                looping,
            } => Some(FileConfig {
                path: path.clone(),
                kind: *kind,
                raw_format: *raw_format,
                fps: *fps,
                looping: *looping,
            }),
            _ => None,
        }
    }

    /// A sensor source's [`SensorConfig`], for
    /// [`SensorSource::open`](crate::source::SensorSource::open).
    ///
    /// ```
    /// use camux::daemon::config::parse;
    /// use camux::source::Framing;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let text = "streams: [{ name: gps, source: { type: sensor, path: /dev/ttyUSB0, lines: true } }]";
    /// let sensor = parse(text, "d.yaml".as_ref())?.streams[0].source.sensor_config().unwrap();
    /// assert_eq!(sensor.framing, Framing::Lines { max_bytes: 4096 });
    /// assert_eq!(sensor.content_type, "application/octet-stream");
    /// # Ok(())
    /// # }
    /// ```
    pub fn sensor_config(&self) -> Option<SensorConfig> {
        match self {
            SourceConfig::Sensor {
                path,
                framing,
                content_type,
            } => Some(SensorConfig {
                path: path.clone(),
                framing: *framing,
                content_type: content_type.clone(),
            }),
            _ => None,
        }
    }

    /// A V4L2 source's [`V4l2Config`](crate::source::v4l2::V4l2Config),
    /// for [`V4l2Device::open`](crate::source::v4l2::V4l2Device::open).
    #[cfg(feature = "v4l2")]
    pub fn v4l2_config(&self) -> Option<crate::source::v4l2::V4l2Config> {
        use crate::source::v4l2::{IoMode, V4l2Config};
        match self {
            SourceConfig::V4l2 {
                device,
                format,
                width,
                height,
                fps,
                io,
                allow_substitution,
                buffers,
            } => Some(V4l2Config {
                fourcc: *format,
                width: *width,
                height: *height,
                fps: *fps,
                io: match io {
                    V4l2IoMode::Auto => IoMode::Auto,
                    V4l2IoMode::Userptr => IoMode::UserPtr,
                    V4l2IoMode::Mmap => IoMode::Mmap,
                },
                allow_substitution: *allow_substitution,
                buffers: *buffers,
                ..V4l2Config::new(device.clone())
            }),
            _ => None,
        }
    }
}

/// The layout [`Synthetic::new`] gives a synthetic source's frames.
fn synthetic_layout(fourcc: FourCc, width: u32, height: u32) -> Result<FrameLayout, FormatError> {
    if fourcc == FourCc::RAW {
        FrameLayout::opaque(fourcc, width, height, u64::from(width) * u64::from(height))
    } else {
        FrameLayout::packed(fourcc, width, height)
    }
}

/// How a V4L2 source's frames reach the ring (`io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum V4l2IoMode {
    /// `auto` (default): USERPTR if the driver takes ring slots as buffers,
    /// else MMAP.
    #[default]
    Auto,
    /// `userptr`: the driver writes straight into ring slots (no copy); an
    /// error if it cannot.
    Userptr,
    /// `mmap`: driver buffers, one copy into the ring.
    Mmap,
}

impl V4l2IoMode {
    /// `auto`, `userptr` or `mmap`.
    pub fn name(self) -> &'static str {
        match self {
            V4l2IoMode::Auto => "auto",
            V4l2IoMode::Userptr => "userptr",
            V4l2IoMode::Mmap => "mmap",
        }
    }
}

/// How a stream's ring is made. Every field has a default, the same as
/// [`RingOptions::new`](crate::ring::RingOptions::new)'s.
///
/// ```
/// use camux::daemon::config::RingConfig;
/// use std::time::Duration;
/// let ring = RingConfig::default();
/// assert_eq!((ring.slots, ring.hold_limit, ring.max_readers), (8, 4, 64));
/// assert_eq!((ring.hold_timeout, ring.heartbeat), (Duration::from_secs(5), Duration::from_millis(200)));
/// assert_eq!(ring.max_frame_bytes, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "snake_case",
    expecting = "ring options: a mapping of `slots`, `max_frame_bytes`, `hold_limit`, \
                 `hold_timeout`, `heartbeat`, `max_readers`, `copy_stores`, `slot_reuse`"
)]
pub struct RingConfig {
    /// Slots for readers (default 8, 1 to [`MAX_SLOTS`] together with a
    /// V4L2 source's buffers, which come on top). Readers × holds + 2
    /// keeps the producer from ever dropping a frame.
    #[serde(deserialize_with = "de_slots")]
    pub slots: u32,
    /// The largest frame a slot takes, in bytes (1 to 1 GiB); left out, it
    /// is the source's frame size. Give it for sources whose frames vary
    /// (MJPG) or may grow on a format change.
    #[serde(
        deserialize_with = "de_max_frame_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_frame_bytes: Option<u64>,
    /// Frames one reader may hold at once (default 4, 1 to [`MAX_HOLDS`]).
    #[serde(deserialize_with = "de_hold_limit")]
    pub hold_limit: u32,
    /// After this long, a hold that blocks the producer is revoked (default
    /// 5 s, 1 ms to 24 h). Written `5s`, `500ms`, `1.5m`, `2h` or a number
    /// of seconds.
    #[serde(deserialize_with = "de_hold_timeout", serialize_with = "ser_duration")]
    pub hold_timeout: Duration,
    /// Heartbeat interval (default 200 ms, 1 ms to 60 s): readers learn of
    /// a dead or frozen producer within two intervals.
    #[serde(deserialize_with = "de_heartbeat", serialize_with = "ser_duration")]
    pub heartbeat: Duration,
    /// Readers registered at once (default 64, 1 to [`MAX_READERS`]).
    #[serde(deserialize_with = "de_max_readers")]
    pub max_readers: u32,
    /// How a frame copied into the ring is stored (a V4L2 source in MMAP
    /// mode, a file or sensor source): `auto` (default: streaming stores
    /// for large frames in rings larger than half the last-level cache),
    /// `cached` (when every reader touches the whole frame at once) or
    /// `streaming`. See [`CopyStores`](crate::ring::CopyStores).
    #[serde(
        deserialize_with = "de_copy_stores",
        serialize_with = "ser_copy_stores"
    )]
    pub copy_stores: crate::ring::CopyStores,
    /// Which free slot a new frame reuses: `auto` (default: `warm` for
    /// slots of 256 KiB or more), `warm` (the most recent frame every
    /// reader has consumed, so writes stay in the caches) or `oldest`
    /// (keep the last `slots` frames, also for readers still connecting).
    /// See [`SlotReuse`](crate::ring::SlotReuse).
    #[serde(deserialize_with = "de_slot_reuse", serialize_with = "ser_slot_reuse")]
    pub slot_reuse: crate::ring::SlotReuse,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            slots: 8,
            max_frame_bytes: None,
            hold_limit: 4,
            hold_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_millis(200),
            max_readers: 64,
            copy_stores: crate::ring::CopyStores::Auto,
            slot_reuse: crate::ring::SlotReuse::Auto,
        }
    }
}

/// Who may read a stream. Every field has a default.
///
/// Modes are written as octal strings (`"0644"`, also unquoted `0644`, or
/// `0o644`); an integer is taken as the mode's value (`420` or YAML's
/// `0o644`), so `644` (0o1204) is refused.
///
/// ```
/// use camux::daemon::config::parse;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let text = "streams: [{ name: a, source: { type: synthetic }, \
///             access: { ring_mode: '0640', group: video, allow_uids: [1000, 1001] } }]";
/// let access = &parse(text, "d.yaml".as_ref())?.streams[0].access;
/// assert_eq!((access.ring_mode, access.socket_mode), (0o640, 0o666));
/// assert_eq!(access.group.as_deref(), Some("video"));
/// assert_eq!(access.allow_uids.as_deref(), Some(&[1000, 1001][..]));
/// assert_eq!(access.allow_gids, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "snake_case",
    expecting = "access options: a mapping of `ring_mode`, `socket_mode`, `group`, \
                 `allow_uids`, `allow_gids`"
)]
pub struct AccessConfig {
    /// Mode of the ring file (default `0644`: anyone who can reach the
    /// directory may map it read-only).
    #[serde(deserialize_with = "de_mode", serialize_with = "ser_mode")]
    pub ring_mode: u32,
    /// Mode of the socket readers register through (default `0666`:
    /// connecting needs write permission).
    #[serde(deserialize_with = "de_mode", serialize_with = "ser_mode")]
    pub socket_mode: u32,
    /// Group to own the ring file and socket: a name, resolved when the
    /// stream starts, or a gid (written `44` or `"44"`, kept as `"44"`);
    /// `None` keeps the daemon's.
    #[serde(deserialize_with = "de_group", skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only readers whose uid is listed may register (checked on the
    /// socket's peer credentials); `None`: no uid check. A reader must
    /// pass each of `allow_uids` and `allow_gids` that is given.
    #[serde(deserialize_with = "de_uids", skip_serializing_if = "Option::is_none")]
    pub allow_uids: Option<Vec<u32>>,
    /// Only readers whose gid (the peer credentials' gid, not the
    /// supplementary groups) is listed may register; `None`: no gid check.
    #[serde(deserialize_with = "de_gids", skip_serializing_if = "Option::is_none")]
    pub allow_gids: Option<Vec<u32>>,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            ring_mode: 0o644,
            socket_mode: 0o666,
            group: None,
            allow_uids: None,
            allow_gids: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a config was refused.
///
/// ```
/// use camux::daemon::config::{parse, ConfigError};
/// let text = "streams:\n  - name: cam0\n    source:\n      type: synthetic\n      fps: -3\n";
/// let err = parse(text, "daemon.yaml".as_ref()).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "daemon.yaml:5:12: streams[0].source.fps: expected a frame rate above 0 (e.g. 30 or 29.97), found -3"
/// );
/// assert_eq!((err.line(), err.column(), err.field()), (Some(5), Some(12), Some("streams[0].source.fps")));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the daemon config {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid config.
    #[error("{}:{line}:{column}: {}{message}", .file.display(), FieldPrefix(.field))]
    Invalid {
        /// The file (as given to [`load`] or [`parse`]).
        file: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1, in characters.
        column: usize,
        /// The field path, such as `streams[2].source.fps`; empty for the
        /// document as a whole (a YAML syntax error at the top, a file that
        /// is not UTF-8).
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    /// The line of an [`Invalid`](Self::Invalid) config, from 1.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Read { .. } => None,
        }
    }

    /// The column of an [`Invalid`](Self::Invalid) config, from 1.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { column, .. } => Some(*column),
            ConfigError::Read { .. } => None,
        }
    }

    /// The field path of an [`Invalid`](Self::Invalid) config (`""` for the
    /// whole document).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Read { .. } => None,
        }
    }

    /// What is wrong with an [`Invalid`](Self::Invalid) config, without the
    /// location.
    pub fn message(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { message, .. } => Some(message),
            ConfigError::Read { .. } => None,
        }
    }
}

/// `field: `, or nothing for an empty field path.
struct FieldPrefix<'a>(&'a str);

impl fmt::Display for FieldPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

// ---------------------------------------------------------------------------
// Loading and parsing
// ---------------------------------------------------------------------------

/// Reads and parses the config file at `path` (at most
/// [`MAX_CONFIG_BYTES`], UTF-8).
///
/// # Errors
/// [`ConfigError::Read`] naming `path` if it cannot be read;
/// [`ConfigError::Invalid`] for what [`parse`] refuses, a file over
/// [`MAX_CONFIG_BYTES`] or one that is not UTF-8.
///
/// ```
/// use camux::daemon::config::{load, ConfigError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("daemon.yaml");
/// std::fs::write(&path, "streams:\n  - { name: cam0, source: { type: synthetic } }\n")?;
/// assert_eq!(load(&path)?.streams[0].name, "cam0");
///
/// let missing = dir.path().join("nope.yaml");
/// let err = load(&missing).unwrap_err();
/// assert!(matches!(&err, ConfigError::Read { path, .. } if *path == missing));
/// assert!(err.to_string().contains("nope.yaml"));
/// # Ok(())
/// # }
/// ```
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let invalid = |(line, column): (usize, usize), message: String| ConfigError::Invalid {
        file: path.to_owned(),
        line,
        column,
        field: String::new(),
        message,
    };
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(
            (1, 1),
            format!(
            "the file is larger than {MAX_CONFIG_BYTES} bytes; a daemon config is a few kilobytes"
        ),
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            return Err(invalid(
                line_column(&String::from_utf8_lossy(&bytes[..at])),
                format!(
                    "the file is not UTF-8 text: byte 0x{:02x} at this place is not part of a \
                     character",
                    bytes[at]
                ),
            ));
        }
    };
    parse(&text, path)
}

/// The line and column (from 1) just past `prefix`.
fn line_column(prefix: &str) -> (usize, usize) {
    let line = prefix.matches('\n').count() + 1;
    let last = prefix.rfind('\n').map_or(prefix, |i| &prefix[i + 1..]);
    (line, last.chars().count() + 1)
}

/// Parses a config from `text`; `origin` is the file it came from, for
/// errors.
///
/// # Errors
/// [`ConfigError::Invalid`] with the line, column, field path and what is
/// allowed: YAML syntax, an unknown field, a value of the wrong type or out
/// of range, fields that contradict each other, no stream, two streams of
/// one name. The first error found is reported.
///
/// ```
/// use camux::daemon::config::{parse, ConfigError};
/// let text = "streams:\n  - name: cam0\n    source: { type: synthetic }\n    ring:\n      slotz: 8\n";
/// let err = parse(text, "/etc/camux/daemon.yaml".as_ref()).unwrap_err();
/// let ConfigError::Invalid { line, column, field, message, .. } = &err else { unreachable!() };
/// assert_eq!((*line, *column, field.as_str()), (5, 7, "streams[0].ring.slotz"));
/// assert!(message.starts_with("unknown field `slotz`, expected one of `slots`"), "{message}");
/// assert!(err.to_string().starts_with("/etc/camux/daemon.yaml:5:7: streams[0].ring.slotz: "));
/// ```
pub fn parse(text: &str, origin: &Path) -> Result<DaemonConfig, ConfigError> {
    if let Some(at) = too_deep(text) {
        let (line, column) = line_column(&text[..at]);
        return Err(ConfigError::Invalid {
            file: origin.to_owned(),
            line,
            column,
            field: String::new(),
            message: format!(
                "YAML syntax error: brackets nested more than {MAX_FLOW_DEPTH} deep (a daemon \
                 config needs a handful; does a bracket miss its match?)"
            ),
        });
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let doc: Document =
        serde_path_to_error::deserialize(de).map_err(|e| from_serde(text, origin, &e))?;
    let config = DaemonConfig {
        dir: doc.dir,
        listen: doc.listen,
        log_format: doc.log_format,
        streams: doc.streams,
    };
    check(&config).map_err(|p| {
        let (line, column) = locate_nearest(text, &p.path);
        ConfigError::Invalid {
            file: origin.to_owned(),
            line,
            column,
            field: path_string(&p.path),
            message: p.message,
        }
    })?;
    Ok(config)
}

/// The deepest nesting of flow collections (`[...]`, `{...}`) [`parse`]
/// lets through to the YAML parser, whose time grows with the square of
/// the depth (100 000 levels take half a minute); it refuses more than 128
/// levels anyway.
const MAX_FLOW_DEPTH: usize = 200;

/// Where the text's flow collections first nest deeper than
/// [`MAX_FLOW_DEPTH`]. Brackets in comments and quoted strings are skipped;
/// a stray quote can only make the count low, never refuse a config the
/// YAML parser would take.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for (i, c) in text.char_indices() {
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(i);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

/// The top of the file, as deserialized; [`check`] then looks across
/// streams.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "snake_case",
    expecting = "a camux daemon config: a mapping with `streams` and optionally `dir`, \
                 `listen`, `log_format`"
)]
struct Document {
    #[serde(default = "default_dir", deserialize_with = "de_dir")]
    dir: PathBuf,
    #[serde(default = "default_listen", deserialize_with = "de_listen")]
    listen: SocketAddr,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    streams: Vec<StreamConfig>,
}

fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}

/// A check across fields that failed: where, and why.
struct Problem {
    path: Vec<Seg>,
    message: String,
}

impl Problem {
    fn at(stream: usize, rest: &[&str], message: String) -> Problem {
        let mut path = vec![Seg::Key("streams".into()), Seg::Index(stream)];
        path.extend(rest.iter().map(|k| Seg::Key((*k).into())));
        Problem { path, message }
    }
}

/// The checks that span fields of a stream, or streams.
fn check(config: &DaemonConfig) -> Result<(), Problem> {
    if config.streams.is_empty() {
        return Err(Problem {
            path: vec![Seg::Key("streams".into())],
            message: "a daemon needs at least one stream: give `streams` as a list of \
                      mappings with `name` and `source`"
                .into(),
        });
    }
    for (i, stream) in config.streams.iter().enumerate() {
        if let Some(first) = config.streams[..i]
            .iter()
            .position(|s| s.name == stream.name)
        {
            return Err(Problem::at(
                i,
                &["name"],
                format!(
                    "stream name `{}` is already used by streams[{first}]; every stream needs \
                     its own name (it names the ring file)",
                    stream.name
                ),
            ));
        }
        if let SourceConfig::V4l2 { buffers, .. } = &stream.source {
            let slots = u64::from(stream.ring.slots) + u64::from(*buffers);
            if slots > u64::from(MAX_SLOTS) {
                return Err(Problem::at(
                    i,
                    &["ring", "slots"],
                    format!(
                        "{} slots plus the v4l2 source's {buffers} buffers make {slots} ring \
                         slots; at most {MAX_SLOTS}",
                        stream.ring.slots
                    ),
                ));
            }
        }
        let needed = stream.source.frame_bytes();
        if let (Some(given), Some(needed)) = (stream.ring.max_frame_bytes, needed) {
            if given < needed {
                return Err(Problem::at(
                    i,
                    &["ring", "max_frame_bytes"],
                    format!(
                        "max_frame_bytes {given} is smaller than a frame of this {} source \
                         ({needed} bytes); raise it, or leave it out to size slots from the source",
                        stream.source_kind()
                    ),
                ));
            }
        }
        if let Some(max_frame_bytes) = stream.max_frame_bytes() {
            let geometry = Geometry {
                slot_count: stream.slot_count(),
                max_frame_bytes,
                page_size: Geometry::host_page_size(),
            };
            if let Err(e) = geometry.layout() {
                return Err(Problem::at(
                    i,
                    &["ring", "slots"],
                    format!("the ring cannot be laid out: {e}; use fewer slots"),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Turning serde errors into ConfigError
// ---------------------------------------------------------------------------

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    /// A key that is not a string.
    Unknown,
}

/// `streams[2].source.fps`, as serde_path_to_error and serde_yaml_ng write
/// paths (without the latter's `.` for the root).
fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(_) | Seg::Unknown if !out.is_empty() => {
                out.push('.');
                out.push_str(seg_key(seg));
            }
            _ => out.push_str(seg_key(seg)),
        }
    }
    out
}

fn seg_key(seg: &Seg) -> &str {
    match seg {
        Seg::Key(k) => k,
        _ => "?",
    }
}

/// Marks a message of a check inside a mapping whose location is that of
/// one of its fields, not of the mapping: `[field] message`.
fn at_field(field: &str, message: impl fmt::Display) -> String {
    format!("[{field}] {message}")
}

/// Splits `[field] message`.
fn split_at_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix('[')?;
    let (field, message) = rest.split_once("] ")?;
    field
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')
        .then_some((field, message))
}

fn from_serde(
    text: &str,
    origin: &Path,
    err: &serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> ConfigError {
    use serde_path_to_error::Segment;
    let mut path: Vec<Seg> = Vec::new();
    for seg in err.path().iter() {
        match seg {
            Segment::Seq { index } => path.push(Seg::Index(*index)),
            Segment::Map { key } => path.push(Seg::Key(key.clone())),
            Segment::Enum { .. } => {}
            Segment::Unknown => path.push(Seg::Unknown),
        }
    }
    let inner = err.inner();
    let location = inner.location().map(|l| position(text, &l));
    let mut message = inner.to_string();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(at) = message.find(&suffix) {
            message.replace_range(at..at + suffix.len(), "");
        }
    }
    // serde_yaml_ng starts its message with the path of the node it was at.
    for n in (1..=path.len()).rev() {
        if let Some(rest) = message
            .strip_prefix(path_string(&path[..n]).as_str())
            .and_then(|rest| rest.strip_prefix(": "))
        {
            message = rest.to_owned();
            break;
        }
    }
    // An error of the YAML itself (syntax, an unknown anchor, several
    // documents) is one whatever the config's types: the parser was only
    // somewhere under `path` when it met it.
    let yaml_error = serde_yaml_ng::from_str::<IgnoredAny>(text).err();
    if yaml_error.is_some_and(|e| e.location().map(|l| position(text, &l)) == location) {
        while path.last() == Some(&Seg::Unknown) {
            path.pop();
        }
        message = format!("YAML syntax error: {message}");
    }
    let (line, column) = match split_at_field(&message) {
        Some((field, rest)) => {
            path.push(Seg::Key(field.to_owned()));
            message = rest.to_owned();
            locate_nearest(text, &path)
        }
        None => location.unwrap_or_else(|| locate_nearest(text, &path)),
    };
    ConfigError::Invalid {
        file: origin.to_owned(),
        line,
        column,
        field: path_string(&path),
        message,
    }
}

// ---------------------------------------------------------------------------
// Locating a field path in the text
// ---------------------------------------------------------------------------

/// What the locator's visitor "expects", so its error is told from others.
const FOUND: &str = "\u{1}camux: located\u{1}";

/// The line and column of the value at `path`, or of the nearest enclosing
/// node present; line 1, column 1 if none is.
fn locate_nearest(text: &str, path: &[Seg]) -> (usize, usize) {
    (0..=path.len())
        .rev()
        .find_map(|n| locate(text, &path[..n]))
        .unwrap_or((1, 1))
}

/// The line and column of the value at `path`: the text is deserialized
/// again, skipping everything off the path, and the node at its end is
/// refused, which makes serde_yaml_ng report its position.
fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let err = Nav(path)
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    err.location().map(|l| position(text, &l))
}

/// The line and column (from 1, the column in characters) of a location,
/// worked out from its byte index: the line libyaml reports is one too
/// many for some syntax errors (found by the `daemon_config` fuzz target:
/// an error on line 24 reported on line 25, past that line's end), its
/// byte index is right.
fn position(text: &str, l: &serde_yaml_ng::Location) -> (usize, usize) {
    let mut at = l.index().min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Nav<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Nav<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.split_first() {
            None => d.deserialize_any(Found),
            Some((Seg::Key(key), rest)) => d.deserialize_map(NavMap { key, rest }),
            Some((Seg::Index(index), rest)) => d.deserialize_seq(NavSeq {
                index: *index,
                rest,
            }),
            Some((Seg::Unknown, _)) => d.deserialize_any(IgnoredAny).map(|_| ()),
        }
    }
}

/// Refuses whatever it is given (every `visit_*` is the default, an error).
struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
}

struct NavMap<'a> {
    key: &'a str,
    rest: &'a [Seg],
}

impl<'de> Visitor<'de> for NavMap<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(self.key) {
                return map.next_value_seed(Nav(self.rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct NavSeq<'a> {
    index: usize,
    rest: &'a [Seg],
}

impl<'de> Visitor<'de> for NavSeq<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Nav(self.rest))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// A mapping key: its text if it is a string.
struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Scalar rules: each value is checked while it is deserialized, so that an
// error carries the value's position.
// ---------------------------------------------------------------------------

/// A YAML scalar as serde_yaml_ng resolved it.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl fmt::Display for Scalar<'_> {
    /// As the error messages quote it: `-3`, `"fast"`, `null`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => {
                let mut end = s.len().min(80);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let ellipsis = if end < s.len() { "..." } else { "" };
                write!(f, "{:?}{ellipsis}", &s[..end])
            }
        }
    }
}

/// Why a rule refused a scalar.
enum Reject {
    /// Not what the rule expects: "expected <expecting>, found <scalar>".
    Expected,
    /// A message of its own.
    Custom(String),
}

/// How to read one kind of value: what is expected (for messages) and the
/// check.
struct Rule<T> {
    expecting: &'static str,
    check: fn(Scalar<'_>) -> Result<T, Reject>,
}

impl<T> Clone for Rule<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Rule<T> {}

impl<T> Rule<T> {
    fn apply<E: de::Error>(self, s: Scalar<'_>) -> Result<T, E> {
        (self.check)(s).map_err(|r| {
            E::custom(match r {
                Reject::Expected => self.found(s),
                Reject::Custom(message) => message,
            })
        })
    }

    fn found(self, what: impl fmt::Display) -> String {
        format!("expected {}, found {what}", self.expecting)
    }
}

impl<'de, T> Visitor<'de> for Rule<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.apply(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.apply(Scalar::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.apply(Scalar::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        self.apply(Scalar::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<T, E> {
        match i128::try_from(v) {
            Ok(v) => self.apply(Scalar::Int(v)),
            Err(_) => Err(E::custom(self.found(v))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.apply(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.apply(Scalar::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        self.apply(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        self.apply(Scalar::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::custom(self.found("a list")))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::custom(self.found("a mapping")))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::custom(self.found("a tagged value")))
    }
}

impl<'de, T> DeserializeSeed<'de> for Rule<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

/// `fn $name(d) -> Result<$ty, _>` reading with `$rule`, for
/// `#[serde(deserialize_with)]`; `some` wraps the value in `Some`.
macro_rules! de_with {
    ($name:ident, some $rule:ident, $ty:ty) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            $rule.deserialize(d).map(Some)
        }
    };
    ($name:ident, $rule:ident, $ty:ty) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            $rule.deserialize(d)
        }
    };
}

/// A whole number in `lo..=hi`.
fn int_in(s: Scalar<'_>, lo: u64, hi: u64) -> Result<u64, Reject> {
    match s {
        Scalar::Int(i) if i >= i128::from(lo) && i <= i128::from(hi) => Ok(i as u64),
        _ => Err(Reject::Expected),
    }
}

/// A string, not empty.
fn text(s: Scalar<'_>) -> Result<&str, Reject> {
    match s {
        Scalar::Str(t) if !t.is_empty() && !t.contains('\0') => Ok(t),
        _ => Err(Reject::Expected),
    }
}

const BOOL: Rule<bool> = Rule {
    expecting: "true or false",
    check: |s| match s {
        Scalar::Bool(b) => Ok(b),
        _ => Err(Reject::Expected),
    },
};

const NAME: Rule<String> = Rule {
    expecting: "a stream name: 1 to 63 characters of A-Z a-z 0-9 . _ - not starting with '.'",
    check: |s| {
        let name = match s {
            Scalar::Str(t) => t.to_owned(),
            Scalar::Int(i) => i.to_string(),
            _ => return Err(Reject::Expected),
        };
        validate_name(&name).map_err(Reject::Custom)?;
        Ok(name)
    },
};

const DIR: Rule<PathBuf> = Rule {
    expecting: "a directory path such as /run/camux",
    check: |s| text(s).map(PathBuf::from),
};

const LISTEN: Rule<SocketAddr> = Rule {
    expecting: "an address and port such as 0.0.0.0:9470, [::]:9470 or 127.0.0.1:9470 \
                (no host names), :9470, or a port number",
    check: |s| match s {
        Scalar::Int(port) => u16::try_from(port)
            .map(|port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))
            .map_err(|_| Reject::Expected),
        Scalar::Str(t) => match t.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map(|port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))
                .map_err(|_| Reject::Expected),
            None => t.parse().map_err(|_| Reject::Expected),
        },
        _ => Err(Reject::Expected),
    },
};

const SLOTS: Rule<u32> = Rule {
    expecting: "a slot count from 1 to 4096",
    check: |s| int_in(s, 1, MAX_SLOTS.into()).map(|v| v as u32),
};

const MAX_FRAME: Rule<u64> = Rule {
    expecting: "a frame size in bytes from 1 to 1073741824 (1 GiB)",
    check: |s| int_in(s, 1, MAX_FRAME_BYTES),
};

const HOLD_LIMIT: Rule<u32> = Rule {
    expecting: "a hold limit (frames one reader may hold at once) from 1 to 16",
    check: |s| int_in(s, 1, MAX_HOLDS.into()).map(|v| v as u32),
};

const MAX_READERS_RULE: Rule<u32> = Rule {
    expecting: "a reader count from 1 to 1024",
    check: |s| int_in(s, 1, MAX_READERS.into()).map(|v| v as u32),
};

const HOLD_TIMEOUT: Rule<Duration> = Rule {
    expecting: "a duration from 1ms to 24h, written 5s, 500ms, 1.5m, 2h or a number of seconds",
    check: |s| {
        duration(s)
            .filter(|d| (Duration::from_millis(1)..=MAX_HOLD_TIMEOUT).contains(d))
            .ok_or(Reject::Expected)
    },
};

const HEARTBEAT: Rule<Duration> = Rule {
    expecting: "a heartbeat interval from 1ms to 60s, written 200ms, 1s, 0.5 (seconds)",
    check: |s| {
        duration(s)
            .filter(|d| {
                (Duration::from_nanos(MIN_HEARTBEAT_NS)..=Duration::from_nanos(MAX_HEARTBEAT_NS))
                    .contains(d)
            })
            .ok_or(Reject::Expected)
    },
};

const MODE: Rule<u32> = Rule {
    expecting: "a file mode in octal from 0000 to 0777, such as \"0644\"",
    check: |s| match s {
        Scalar::Str(t) => {
            let digits = t.strip_prefix("0o").unwrap_or(t);
            if digits.is_empty()
                || digits.len() > 4
                || !digits.bytes().all(|b| matches!(b, b'0'..=b'7'))
            {
                return Err(Reject::Expected);
            }
            u32::from_str_radix(digits, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or(Reject::Expected)
        }
        Scalar::Int(i) if (0..=0o777).contains(&i) => Ok(i as u32),
        Scalar::Int(i) if i > 0o777 && i <= i128::from(u32::MAX) => Err(Reject::Custom(format!(
            "expected a file mode from 0000 to 0777, found the integer {i}, which is 0o{i:o}: \
             write modes as octal strings such as \"0644\""
        ))),
        _ => Err(Reject::Expected),
    },
};

const GROUP: Rule<String> = Rule {
    expecting: "a group name (1 to 32 characters of A-Z a-z 0-9 . _ -, not starting with '-') \
                or a numeric gid",
    check: |s| match s {
        Scalar::Int(i) => u32::try_from(i)
            .ok()
            .filter(|&g| g != u32::MAX)
            .map(|gid| gid.to_string())
            .ok_or(Reject::Expected),
        Scalar::Str(t)
            if !t.is_empty()
                && t.len() <= MAX_GROUP_NAME_BYTES
                && !t.starts_with('-')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            Ok(t.to_owned())
        }
        _ => Err(Reject::Expected),
    },
};

const UID: Rule<u32> = Rule {
    expecting: "a numeric uid from 0 to 4294967294",
    check: |s| int_in(s, 0, u64::from(u32::MAX) - 1).map(|v| v as u32),
};

const GID: Rule<u32> = Rule {
    expecting: "a numeric gid from 0 to 4294967294",
    check: |s| int_in(s, 0, u64::from(u32::MAX) - 1).map(|v| v as u32),
};

const FPS: Rule<f64> = Rule {
    expecting: "a frame rate above 0 (e.g. 30 or 29.97)",
    check: |s| {
        let fps = match s {
            Scalar::Int(i) => i as f64,
            Scalar::Float(x) => x,
            _ => return Err(Reject::Expected),
        };
        if !(fps.is_finite() && fps > 0.0) {
            return Err(Reject::Expected);
        }
        Pacer::new(fps).map(|_| fps).map_err(|_| {
            Reject::Custom(format!(
                "expected a frame rate from one frame a day (0.0000116) to 1000000000, found {s}"
            ))
        })
    },
};

const FOURCC: Rule<FourCc> = Rule {
    expecting: "a pixel format: a FourCC such as YUYV, NV12, MJPG or RAW, or an alias such as \
                rgb24, i420 or gray",
    check: |s| {
        let t = text(s)?;
        t.parse::<FourCc>()
            .or_else(|e| {
                // YAML drops trailing spaces of a plain scalar: `RAW` is
                // `RAW `. Only codes look like codes: `yuv` is a typo.
                if t.len() < 4
                    && t.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                {
                    format!("{t:<4}").parse::<FourCc>().map_err(|_| e)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Reject::Custom(e.to_string()))
    },
};

const DIMENSION: Rule<u32> = Rule {
    expecting: "a size in pixels from 1 to 16384",
    check: |s| int_in(s, 1, MAX_DIMENSION.into()).map(|v| v as u32),
};

const BUFFERS: Rule<u32> = Rule {
    expecting: "a buffer count from 2 to 32",
    check: |s| int_in(s, MIN_V4L2_BUFFERS.into(), MAX_V4L2_BUFFERS.into()).map(|v| v as u32),
};

const RECORD_BYTES: Rule<usize> = Rule {
    expecting: "a record size in bytes from 1 to 16384",
    check: |s| int_in(s, 1, MAX_RECORD_BYTES as u64).map(|v| v as usize),
};

const DEVICE: Rule<PathBuf> = Rule {
    expecting: "a device path such as /dev/video0 or /dev/v4l/by-id/usb-...-video-index0",
    check: |s| text(s).map(PathBuf::from),
};

const FILE_PATH: Rule<PathBuf> = Rule {
    expecting: "a file path",
    check: |s| text(s).map(PathBuf::from),
};

const SENSOR_PATH: Rule<PathBuf> = Rule {
    expecting: "a path to a character device, FIFO or file, or - for stdin",
    check: |s| text(s).map(PathBuf::from),
};

const CONTENT_TYPE: Rule<String> = Rule {
    expecting: "a content type such as application/x-imu+csv",
    check: |s| {
        let t = match s {
            Scalar::Str(t) => t,
            _ => return Err(Reject::Expected),
        };
        validate_content_type(t)
            .map(|()| t.to_owned())
            .map_err(|e| Reject::Custom(e.to_string()))
    },
};

const IO: Rule<V4l2IoMode> = Rule {
    expecting: "one of auto, userptr, mmap",
    check: |s| match s {
        Scalar::Str("auto") => Ok(V4l2IoMode::Auto),
        Scalar::Str("userptr") => Ok(V4l2IoMode::Userptr),
        Scalar::Str("mmap") => Ok(V4l2IoMode::Mmap),
        _ => Err(Reject::Expected),
    },
};

const COPY_STORES: Rule<crate::ring::CopyStores> = Rule {
    expecting: "one of auto, cached, streaming",
    check: |s| match s {
        Scalar::Str(name) => crate::ring::CopyStores::from_name(name).ok_or(Reject::Expected),
        _ => Err(Reject::Expected),
    },
};

const SLOT_REUSE: Rule<crate::ring::SlotReuse> = Rule {
    expecting: "one of auto, oldest, warm",
    check: |s| match s {
        Scalar::Str(name) => crate::ring::SlotReuse::from_name(name).ok_or(Reject::Expected),
        _ => Err(Reject::Expected),
    },
};

const FILE_KIND: Rule<FileKind> = Rule {
    expecting: "one of auto, y4m, raw",
    check: |s| match s {
        Scalar::Str("auto") => Ok(FileKind::Auto),
        Scalar::Str("y4m") => Ok(FileKind::Y4m),
        Scalar::Str("raw") => Ok(FileKind::Raw),
        _ => Err(Reject::Expected),
    },
};

const SOURCE_TYPE: Rule<SourceType> = Rule {
    expecting: "a source type: one of synthetic, v4l2, file, sensor",
    check: |s| {
        match s {
        Scalar::Str(t) => SourceType::ALL
            .into_iter()
            .find(|k| k.name() == t)
            .ok_or_else(|| {
                Reject::Custom(format!(
                    "unknown source type `{t}`, expected one of `synthetic`, `v4l2`, `file`, `sensor`"
                ))
            }),
        _ => Err(Reject::Expected),
    }
    },
};

de_with!(de_name, NAME, String);
de_with!(de_bool, BOOL, bool);
de_with!(de_dir, DIR, PathBuf);
de_with!(de_listen, LISTEN, SocketAddr);
de_with!(de_slots, SLOTS, u32);
de_with!(de_max_frame_bytes, some MAX_FRAME, u64);
de_with!(de_hold_limit, HOLD_LIMIT, u32);
de_with!(de_hold_timeout, HOLD_TIMEOUT, Duration);
de_with!(de_heartbeat, HEARTBEAT, Duration);
de_with!(de_max_readers, MAX_READERS_RULE, u32);
de_with!(de_copy_stores, COPY_STORES, crate::ring::CopyStores);
de_with!(de_slot_reuse, SLOT_REUSE, crate::ring::SlotReuse);
de_with!(de_mode, MODE, u32);
de_with!(de_group, some GROUP, String);

fn de_uids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
    d.deserialize_any(IdList {
        what: "uid",
        rule: UID,
    })
    .map(Some)
}

fn de_gids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
    d.deserialize_any(IdList {
        what: "gid",
        rule: GID,
    })
    .map(Some)
}

/// A non-empty list of uids or gids.
struct IdList {
    what: &'static str,
    rule: Rule<u32>,
}

impl IdList {
    fn refuse(&self, found: &str) -> String {
        format!(
            "expected a list of numeric {}s such as [1000, 1001], found {found}",
            self.what
        )
    }
}

impl<'de> Visitor<'de> for IdList {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of numeric {}s such as [1000, 1001]", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element_seed(self.rule)? {
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(de::Error::custom(format!(
                "an empty list of {0}s would let no reader in; leave allow_{0}s out to check no {0}",
                self.what
            )));
        }
        Ok(ids)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<u32>, A::Error> {
        Err(de::Error::custom(self.refuse("a mapping")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u32>, E> {
        Err(E::custom(self.refuse(&Scalar::Str(v).to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<u32>, E> {
        Err(E::custom(self.refuse(&v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<u32>, E> {
        Err(E::custom(self.refuse(&v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<u32>, E> {
        Err(E::custom(self.refuse("null")))
    }
}

/// A duration: a number of seconds (`5`, `2.5`), or a number with a unit
/// `ns`, `us`, `ms`, `s`, `m` or `h` (`500ms`, `1.5m`); above zero.
fn duration(s: Scalar<'_>) -> Option<Duration> {
    let (number, nanos_per_unit) = match s {
        Scalar::Int(i) => return u64::try_from(i).ok().map(Duration::from_secs),
        Scalar::Float(x) => return Duration::try_from_secs_f64(x).ok(),
        Scalar::Str(t) => {
            let t = t.trim();
            [
                ("ns", 1),
                ("us", 1_000),
                ("µs", 1_000),
                ("ms", 1_000_000),
                ("s", 1_000_000_000),
                ("m", 60_000_000_000),
                ("h", 3_600_000_000_000u64),
            ]
            .iter()
            .find_map(|&(unit, n)| t.strip_suffix(unit).map(|rest| (rest.trim_end(), n)))
            .unwrap_or((t, 1_000_000_000))
        }
        _ => return None,
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(nanos_per_unit).map(Duration::from_nanos);
    }
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * nanos_per_unit as f64 / 1e9).ok()
}

// ---------------------------------------------------------------------------
// Serialization helpers
// ---------------------------------------------------------------------------

/// `5s`, `200ms`, `250us` or `7ns`: the largest unit that is exact.
fn duration_text(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, n) in [("h", 3_600_000_000_000u128), ("m", 60_000_000_000)] {
        if nanos >= n && nanos.is_multiple_of(n) {
            return format!("{}{unit}", nanos / n);
        }
    }
    for (unit, n) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos.is_multiple_of(n) {
            return format!("{}{unit}", nanos / n);
        }
    }
    format!("{nanos}ns")
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(*d))
}

fn ser_copy_stores<S: Serializer>(c: &crate::ring::CopyStores, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

fn ser_slot_reuse<S: Serializer>(c: &crate::ring::SlotReuse, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

fn ser_mode<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// A FourCC as the config writes it: `YUYV`, `RAW` (trailing spaces
/// dropped).
fn fourcc_text(fourcc: FourCc) -> String {
    fourcc.to_string().trim_end().to_owned()
}

impl Serialize for SourceConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.kind())?;
        match self {
            SourceConfig::Synthetic {
                format,
                width,
                height,
                fps,
            } => {
                m.serialize_entry("format", &fourcc_text(*format))?;
                m.serialize_entry("width", width)?;
                m.serialize_entry("height", height)?;
                m.serialize_entry("fps", fps)?;
            }
            SourceConfig::V4l2 {
                device,
                format,
                width,
                height,
                fps,
                io,
                allow_substitution,
                buffers,
            } => {
                m.serialize_entry("device", device)?;
                if let Some(format) = format {
                    m.serialize_entry("format", &fourcc_text(*format))?;
                }
                if let Some(width) = width {
                    m.serialize_entry("width", width)?;
                }
                if let Some(height) = height {
                    m.serialize_entry("height", height)?;
                }
                if let Some(fps) = fps {
                    m.serialize_entry("fps", fps)?;
                }
                m.serialize_entry("io", io.name())?;
                m.serialize_entry("allow_substitution", allow_substitution)?;
                m.serialize_entry("buffers", buffers)?;
            }
            SourceConfig::File {
                path,
                kind,
                raw_format,
                fps,
                looping,
            } => {
                m.serialize_entry("path", path)?;
                m.serialize_entry("kind", &kind.to_string())?;
                if let Some(raw) = raw_format {
                    m.serialize_entry("format", &fourcc_text(raw.fourcc))?;
                    m.serialize_entry("width", &raw.width)?;
                    m.serialize_entry("height", &raw.height)?;
                }
                if let Some(fps) = fps {
                    m.serialize_entry("fps", fps)?;
                }
                m.serialize_entry("loop", looping)?;
            }
            SourceConfig::Sensor {
                path,
                framing,
                content_type,
            } => {
                m.serialize_entry("path", path)?;
                match *framing {
                    Framing::Fixed(n) => m.serialize_entry("record_size", &n)?,
                    Framing::Lines { max_bytes } => {
                        m.serialize_entry("lines", &true)?;
                        m.serialize_entry("max_record_bytes", &max_bytes)?;
                    }
                }
                m.serialize_entry("content_type", content_type)?;
            }
        }
        m.end()
    }
}

// ---------------------------------------------------------------------------
// Deserializing a source
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceType {
    Synthetic,
    V4l2,
    File,
    Sensor,
}

impl SourceType {
    const ALL: [SourceType; 4] = [
        SourceType::Synthetic,
        SourceType::V4l2,
        SourceType::File,
        SourceType::Sensor,
    ];

    fn name(self) -> &'static str {
        match self {
            SourceType::Synthetic => "synthetic",
            SourceType::V4l2 => "v4l2",
            SourceType::File => "file",
            SourceType::Sensor => "sensor",
        }
    }

    /// The fields a source of this type has, `type` first.
    fn fields(self) -> &'static [&'static str] {
        match self {
            SourceType::Synthetic => &["type", "format", "width", "height", "fps"],
            SourceType::V4l2 => &[
                "type",
                "device",
                "format",
                "width",
                "height",
                "fps",
                "io",
                "allow_substitution",
                "buffers",
            ],
            SourceType::File => &[
                "type", "path", "kind", "format", "width", "height", "fps", "loop",
            ],
            SourceType::Sensor => &[
                "type",
                "path",
                "record_size",
                "lines",
                "max_record_bytes",
                "content_type",
            ],
        }
    }

    fn has(self, key: Key) -> bool {
        self.fields().contains(&key.name())
    }
}

/// Every field of any source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Type,
    Format,
    Width,
    Height,
    Fps,
    Device,
    Io,
    AllowSubstitution,
    Buffers,
    Path,
    Kind,
    Loop,
    RecordSize,
    Lines,
    MaxRecordBytes,
    ContentType,
}

impl Key {
    const ALL: [Key; 16] = [
        Key::Type,
        Key::Format,
        Key::Width,
        Key::Height,
        Key::Fps,
        Key::Device,
        Key::Io,
        Key::AllowSubstitution,
        Key::Buffers,
        Key::Path,
        Key::Kind,
        Key::Loop,
        Key::RecordSize,
        Key::Lines,
        Key::MaxRecordBytes,
        Key::ContentType,
    ];

    /// Every field name, for "unknown field" before `type` is known.
    const NAMES: &'static [&'static str] = &[
        "type",
        "format",
        "width",
        "height",
        "fps",
        "device",
        "io",
        "allow_substitution",
        "buffers",
        "path",
        "kind",
        "loop",
        "record_size",
        "lines",
        "max_record_bytes",
        "content_type",
    ];

    fn name(self) -> &'static str {
        Key::NAMES[Key::ALL.iter().position(|&k| k == self).unwrap_or(0)]
    }

    /// Keys that cannot be given together with this one.
    fn conflicts(self) -> &'static [Key] {
        match self {
            Key::RecordSize => &[Key::Lines, Key::MaxRecordBytes],
            Key::Lines | Key::MaxRecordBytes => &[Key::RecordSize],
            _ => &[],
        }
    }
}

/// "unknown field `record_size` for a synthetic source, ..."
fn not_of_type(ty: SourceType, key: Key) -> String {
    let fields: Vec<String> = ty.fields().iter().map(|f| format!("`{f}`")).collect();
    let owners: Vec<&str> = SourceType::ALL
        .into_iter()
        .filter(|t| t.has(key))
        .map(SourceType::name)
        .collect();
    format!(
        "unknown field `{}` for a {} source, expected one of {} (`{}` is a field of {} sources)",
        key.name(),
        ty.name(),
        fields.join(", "),
        key.name(),
        owners.join(" and ")
    )
}

fn conflict_message(a: Key, b: Key) -> String {
    let pair = |k: Key| matches!(k, Key::RecordSize | Key::Lines);
    if pair(a) && pair(b) {
        "give either `record_size` (fixed-size records) or `lines: true` (newline-delimited \
         records), not both"
            .into()
    } else {
        "`max_record_bytes` bounds newline-delimited records (`lines: true`); fixed-size \
         records are `record_size` bytes"
            .into()
    }
}

/// A source field name, refused at its key when it is unknown, belongs to
/// another type of source (if `type` came first), is repeated or conflicts
/// with one already given.
struct KeySeed<'a> {
    ty: Option<SourceType>,
    seen: &'a [Key],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a source field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        let Some(key) = Key::ALL.into_iter().find(|k| k.name() == v) else {
            return Err(E::unknown_field(
                v,
                self.ty.map_or(Key::NAMES, SourceType::fields),
            ));
        };
        if self.seen.contains(&key) {
            return Err(E::duplicate_field(key.name()));
        }
        if let Some(ty) = self.ty {
            if !ty.has(key) {
                return Err(E::custom(not_of_type(ty, key)));
            }
        }
        if let Some(&other) = key.conflicts().iter().find(|k| self.seen.contains(k)) {
            return Err(E::custom(conflict_message(other, key)));
        }
        Ok(key)
    }
}

/// Every field of a source as given, each checked on its own.
#[derive(Default)]
struct SourceFields {
    format: Option<FourCc>,
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<f64>,
    device: Option<PathBuf>,
    io: Option<V4l2IoMode>,
    allow_substitution: Option<bool>,
    buffers: Option<u32>,
    path: Option<PathBuf>,
    kind: Option<FileKind>,
    looping: Option<bool>,
    record_size: Option<usize>,
    lines: Option<bool>,
    max_record_bytes: Option<usize>,
    content_type: Option<String>,
}

/// A check across a source's fields that failed: the field to point at,
/// and why.
type FieldProblem = (&'static str, String);

impl SourceFields {
    fn build(self, ty: SourceType) -> Result<SourceConfig, FieldProblem> {
        match ty {
            SourceType::Synthetic => {
                let defaults = SyntheticConfig::default();
                let config = SyntheticConfig {
                    width: self.width.unwrap_or(defaults.width),
                    height: self.height.unwrap_or(defaults.height),
                    fourcc: self.format.unwrap_or(defaults.fourcc),
                    fps: self.fps.unwrap_or(defaults.fps),
                };
                let SyntheticConfig {
                    width,
                    height,
                    fourcc,
                    fps,
                } = config;
                Synthetic::new(config).map_err(|e| {
                    let field = match &e {
                        SyntheticError::Unsupported { .. } => "format",
                        SyntheticError::Format(f) => format_error_field(f),
                        SyntheticError::TooSmall { .. } => "width",
                        SyntheticError::Rate(_) => "fps",
                    };
                    (field, e.to_string())
                })?;
                Ok(SourceConfig::Synthetic {
                    format: fourcc,
                    width,
                    height,
                    fps,
                })
            }
            SourceType::V4l2 => {
                let device = self
                    .device
                    .ok_or(("device", needs("v4l2", "device", DEVICE)))?;
                if let (Some(fourcc), Some(width), Some(height)) =
                    (self.format, self.width, self.height)
                {
                    if !fourcc.is_opaque() {
                        if let Err(e) = FrameLayout::packed(fourcc, width, height) {
                            if !matches!(e, FormatError::Unsupported { .. }) {
                                return Err((format_error_field(&e), e.to_string()));
                            }
                        }
                    }
                }
                Ok(SourceConfig::V4l2 {
                    device,
                    format: self.format,
                    width: self.width,
                    height: self.height,
                    fps: self.fps,
                    io: self.io.unwrap_or_default(),
                    allow_substitution: self.allow_substitution.unwrap_or(false),
                    buffers: self.buffers.unwrap_or(DEFAULT_V4L2_BUFFERS),
                })
            }
            SourceType::File => {
                let path = self
                    .path
                    .ok_or(("path", needs("file", "path", FILE_PATH)))?;
                let kind = self.kind.unwrap_or_default();
                let given = [
                    ("format", self.format.is_some()),
                    ("width", self.width.is_some()),
                    ("height", self.height.is_some()),
                ];
                let raw_format = match (self.format, self.width, self.height) {
                    (Some(fourcc), Some(width), Some(height)) => {
                        Some(RawFormat::new(fourcc, width, height))
                    }
                    _ => {
                        if let Some(&(present, _)) = given.iter().find(|(_, g)| *g) {
                            let missing: Vec<String> = given
                                .iter()
                                .filter(|(_, g)| !g)
                                .map(|(f, _)| format!("`{f}`"))
                                .collect();
                            return Err((
                                present,
                                format!(
                                    "a raw file's frames need `format`, `width` and `height` \
                                     together; {} missing",
                                    missing.join(" and ")
                                ),
                            ));
                        }
                        None
                    }
                };
                match (kind, raw_format) {
                    (FileKind::Raw, None) => {
                        return Err((
                            "kind",
                            "a raw file needs `format`, `width` and `height`: its frames are \
                             back to back with no header"
                                .into(),
                        ))
                    }
                    (FileKind::Y4m, Some(_)) => {
                        return Err((
                            "format",
                            "a y4m file's header gives its format and size: leave out \
                             `format`, `width` and `height`, or set `kind: raw`"
                                .into(),
                        ))
                    }
                    (_, Some(raw)) => {
                        if let Err(e) = raw.layout() {
                            let message = match &e {
                                FormatError::NeedsMaxBytes { fourcc } => format!(
                                    "{} frames have no fixed size, so a raw file of them cannot \
                                     be split into frames: give an uncompressed format (YUYV, \
                                     NV12, GREY, RGB3, ...) or RAW for records of width x height \
                                     bytes",
                                    fourcc_text(*fourcc)
                                ),
                                e => e.to_string(),
                            };
                            return Err((format_error_field(&e), message));
                        }
                    }
                    _ => {}
                }
                Ok(SourceConfig::File {
                    path,
                    kind,
                    raw_format,
                    fps: self.fps,
                    looping: self.looping.unwrap_or(false),
                })
            }
            SourceType::Sensor => {
                let path = self
                    .path
                    .ok_or(("path", needs("sensor", "path", SENSOR_PATH)))?;
                let framing = match (self.record_size, self.lines) {
                    (Some(n), _) => Framing::Fixed(n),
                    (None, Some(true)) => Framing::Lines {
                        max_bytes: self.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES),
                    },
                    (None, lines) => {
                        return Err((
                            if lines.is_some() {
                                "lines"
                            } else {
                                "record_size"
                            },
                            "a sensor source needs `record_size: N` (fixed-size records of N \
                             bytes) or `lines: true` (newline-delimited records)"
                                .into(),
                        ))
                    }
                };
                Ok(SourceConfig::Sensor {
                    path,
                    framing,
                    content_type: self
                        .content_type
                        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
                })
            }
        }
    }
}

/// "a v4l2 source needs `device`: a device path such as ..."
fn needs<T>(ty: &str, field: &str, rule: Rule<T>) -> String {
    format!("a {ty} source needs `{field}`: {}", rule.expecting)
}

/// The field a [`FormatError`] is about.
fn format_error_field(e: &FormatError) -> &'static str {
    match e {
        FormatError::OddHeight { .. } => "height",
        FormatError::ZeroDimension { width: 0, .. }
        | FormatError::DimensionTooLarge { .. }
        | FormatError::OddWidth { .. }
        | FormatError::TooLarge { .. } => "width",
        FormatError::ZeroDimension { .. } => "height",
        _ => "format",
    }
}

struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = SourceConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a source: a mapping with `type` (synthetic, v4l2, file or sensor) and its fields",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceConfig, A::Error> {
        let mut seen: Vec<Key> = Vec::new();
        let mut ty: Option<SourceType> = None;
        let mut f = SourceFields::default();
        while let Some(key) = map.next_key_seed(KeySeed { ty, seen: &seen })? {
            seen.push(key);
            match key {
                Key::Type => ty = Some(map.next_value_seed(SOURCE_TYPE)?),
                Key::Format => f.format = Some(map.next_value_seed(FOURCC)?),
                Key::Width => f.width = Some(map.next_value_seed(DIMENSION)?),
                Key::Height => f.height = Some(map.next_value_seed(DIMENSION)?),
                Key::Fps => f.fps = Some(map.next_value_seed(FPS)?),
                Key::Device => f.device = Some(map.next_value_seed(DEVICE)?),
                Key::Io => f.io = Some(map.next_value_seed(IO)?),
                Key::AllowSubstitution => f.allow_substitution = Some(map.next_value_seed(BOOL)?),
                Key::Buffers => f.buffers = Some(map.next_value_seed(BUFFERS)?),
                Key::Path => {
                    // The rule depends on the type, which may come later;
                    // both path rules accept the same strings.
                    let rule = if ty == Some(SourceType::Sensor) {
                        SENSOR_PATH
                    } else {
                        FILE_PATH
                    };
                    f.path = Some(map.next_value_seed(rule)?);
                }
                Key::Kind => f.kind = Some(map.next_value_seed(FILE_KIND)?),
                Key::Loop => f.looping = Some(map.next_value_seed(BOOL)?),
                Key::RecordSize => f.record_size = Some(map.next_value_seed(RECORD_BYTES)?),
                Key::Lines => f.lines = Some(map.next_value_seed(BOOL)?),
                Key::MaxRecordBytes => {
                    f.max_record_bytes = Some(map.next_value_seed(RECORD_BYTES)?)
                }
                Key::ContentType => f.content_type = Some(map.next_value_seed(CONTENT_TYPE)?),
            }
        }
        let Some(ty) = ty else {
            return Err(de::Error::custom(
                "a source needs `type`: one of `synthetic`, `v4l2`, `file`, `sensor`",
            ));
        };
        // Fields that came before `type` and do not belong to it.
        if let Some(&key) = seen.iter().find(|&&k| !ty.has(k)) {
            return Err(de::Error::custom(at_field(
                key.name(),
                not_of_type(ty, key),
            )));
        }
        if f.max_record_bytes.is_some() && f.lines == Some(false) {
            return Err(de::Error::custom(at_field(
                "max_record_bytes",
                "`max_record_bytes` bounds newline-delimited records: it needs `lines: true`",
            )));
        }
        f.build(ty)
            .map_err(|(field, message)| de::Error::custom(at_field(field, message)))
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    /// A mapping with `type` and that type's fields (see [`SourceConfig`]).
    /// Each value is checked as it is read; checks across fields are made
    /// at the end of the mapping, with the field to blame written
    /// `[field] ` at the start of the message ([`parse`] turns that into a
    /// field path and a position).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SourceConfig, D::Error> {
        d.deserialize_map(SourceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{RingOptions, StreamFormat};
    use crate::Publisher;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const EXAMPLE: &str = include_str!("../../examples/daemon.yaml");

    fn origin() -> &'static Path {
        Path::new("daemon.yaml")
    }

    fn ok(text: &str) -> DaemonConfig {
        parse(text, origin()).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    /// The parts of a refusal.
    #[derive(Debug)]
    struct Bad {
        line: usize,
        column: usize,
        field: String,
        message: String,
        display: String,
    }

    impl Bad {
        fn at(&self) -> (usize, usize) {
            (self.line, self.column)
        }
    }

    /// Parses `text`, which must be refused; checks the display is
    /// `file:line:column: field: message`.
    fn bad(text: &str) -> Bad {
        let e = match parse(text, origin()) {
            Ok(c) => panic!("accepted: {c:?}\n---\n{text}"),
            Err(e) => e,
        };
        let display = e.to_string();
        let ConfigError::Invalid {
            file,
            line,
            column,
            field,
            message,
        } = e
        else {
            panic!("{display}")
        };
        assert_eq!(file, origin());
        let expected = if field.is_empty() {
            format!("daemon.yaml:{line}:{column}: {message}")
        } else {
            format!("daemon.yaml:{line}:{column}: {field}: {message}")
        };
        assert_eq!(display, expected);
        assert!(!message.contains('\u{1}'), "{message}");
        Bad {
            line,
            column,
            field,
            message,
            display,
        }
    }

    /// Line and column (from 1) of the `n`-th (from 0) `needle` in `text`.
    fn nth(text: &str, needle: &str, n: usize) -> (usize, usize) {
        let (at, _) = text
            .match_indices(needle)
            .nth(n)
            .unwrap_or_else(|| panic!("no {needle:?} #{n} in\n{text}"));
        line_column(&text[..at])
    }

    fn at(text: &str, needle: &str) -> (usize, usize) {
        nth(text, needle, 0)
    }

    /// Where the value of `key: value` starts.
    fn value_at(text: &str, key_value: &str) -> (usize, usize) {
        let (line, column) = at(text, key_value);
        let key = key_value.split_once(": ").expect("key: value").0;
        (line, column + key.len() + 2)
    }

    /// A config of one stream `cam0` whose source is `source` (lines
    /// indented 6) followed by `rest` (lines indented 4).
    fn one(source: &str, rest: &str) -> String {
        format!("streams:\n  - name: cam0\n    source:\n{source}{rest}")
    }

    const SYNTHETIC: &str = "      type: synthetic\n";

    // ---- defaults ----------------------------------------------------------

    #[test]
    fn defaults() {
        let c = ok(&one(SYNTHETIC, ""));
        assert_eq!(c.dir, Path::new("/run/camux"));
        assert_eq!(c.listen, "0.0.0.0:9470".parse().unwrap());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.streams.len(), 1);
        let s = &c.streams[0];
        assert_eq!(s.name, "cam0");
        assert!(s.required);
        assert_eq!(
            s.source,
            SourceConfig::Synthetic {
                format: FourCc::YUYV,
                width: 1280,
                height: 720,
                fps: 30.0
            }
        );
        assert_eq!(s.ring, RingConfig::default());
        assert_eq!(s.access, AccessConfig::default());
        assert_eq!(s.ring.max_frame_bytes, None);
        assert_eq!(s.max_frame_bytes(), Some(1280 * 720 * 2));
        assert_eq!(s.slot_count(), 8);
        assert_eq!(s, &StreamConfig::new("cam0", s.source.clone()));

        // The ring and access defaults are the publisher's.
        let o = RingOptions::new("/x", "x", StreamFormat::opaque(1), 1);
        let r = &s.ring;
        assert_eq!(
            (
                r.slots,
                r.hold_limit,
                r.hold_timeout,
                r.heartbeat,
                r.max_readers
            ),
            (
                o.slots,
                o.hold_limit,
                o.hold_timeout,
                o.heartbeat,
                o.max_readers
            )
        );
        assert_eq!(
            (s.access.ring_mode, s.access.socket_mode),
            (o.ring_mode, o.socket_mode)
        );
        assert_eq!(
            (s.access.group.as_ref(), s.access.allow_uids.as_ref()),
            (None, None)
        );
        // And the synthetic source's are the test pattern's.
        assert_eq!(
            s.source.synthetic_config(),
            Some(SyntheticConfig::default())
        );
    }

    #[test]
    fn source_defaults() {
        let v4l2 = ok(&one("      type: v4l2\n      device: /dev/video0\n", ""));
        assert_eq!(
            v4l2.streams[0].source,
            SourceConfig::V4l2 {
                device: "/dev/video0".into(),
                format: None,
                width: None,
                height: None,
                fps: None,
                io: V4l2IoMode::Auto,
                allow_substitution: false,
                buffers: 4,
            }
        );
        assert_eq!(v4l2.streams[0].slot_count(), 12);
        assert_eq!(v4l2.streams[0].max_frame_bytes(), None);

        let file = ok(&one("      type: file\n      path: clip.y4m\n", ""));
        assert_eq!(
            file.streams[0].source.file_config(),
            Some(FileConfig::new("clip.y4m"))
        );

        let gps = ok(&one(
            "      type: sensor\n      path: /dev/ttyUSB0\n      lines: true\n",
            "",
        ));
        assert_eq!(
            gps.streams[0].source.sensor_config(),
            Some(SensorConfig::new(
                "/dev/ttyUSB0",
                Framing::Lines { max_bytes: 4096 },
                "application/octet-stream"
            ))
        );
        assert_eq!(
            gps.streams[0].source.content_type(),
            Some("application/octet-stream")
        );
        assert_eq!(gps.streams[0].max_frame_bytes(), Some(4096));

        let events = ok(&one(
            "      type: sensor\n      path: '-'\n      record_size: 24\n",
            "",
        ));
        assert_eq!(
            events.streams[0].source,
            SourceConfig::Sensor {
                path: "-".into(),
                framing: Framing::Fixed(24),
                content_type: DEFAULT_CONTENT_TYPE.into(),
            }
        );
        assert_eq!(events.streams[0].source_kind(), "sensor");
        assert_eq!(events.streams[0].source.synthetic_config(), None);
    }

    // ---- a full config -----------------------------------------------------

    const FULL: &str = r#"# every option, none at its default
dir: /var/run/camux-test
listen: "127.0.0.1:9999"
log_format: json
streams:
  - name: cam0
    required: false
    source:
      type: synthetic
      format: NV12
      width: 320
      height: 240
      fps: 29.97
    ring:
      slots: 16
      max_frame_bytes: 200000
      hold_limit: 2
      hold_timeout: 1.5m
      heartbeat: 50ms
      max_readers: 8
      copy_stores: streaming
      slot_reuse: oldest
    access:
      ring_mode: "0640"
      socket_mode: 0o660
      group: video
      allow_uids: [1000, 1001]
      allow_gids: [44]
  - name: front
    source:
      type: v4l2
      device: /dev/v4l/by-path/platform-xhci-hcd.0-usb-0:1:1.0-video-index0
      format: mjpeg
      width: 1920
      height: 1080
      fps: 30
      io: userptr
      allow_substitution: true
      buffers: 6
    ring: { max_frame_bytes: 4194304 }
    access: { group: 44 }
  - name: replay
    source: { type: file, path: clips/a.raw, kind: raw, format: RAW, width: 48, height: 2, fps: 100, loop: true }
  - name: gps
    source: { type: sensor, path: "-", lines: true, max_record_bytes: 512, content_type: text/x-nmea }
  - name: events
    source: { path: /dev/input/event3, record_size: 24, type: sensor }
"#;

    fn full() -> DaemonConfig {
        DaemonConfig {
            dir: "/var/run/camux-test".into(),
            listen: "127.0.0.1:9999".parse().unwrap(),
            log_format: LogFormat::Json,
            streams: vec![
                StreamConfig {
                    name: "cam0".into(),
                    required: false,
                    source: SourceConfig::Synthetic {
                        format: FourCc::NV12,
                        width: 320,
                        height: 240,
                        fps: 29.97,
                    },
                    ring: RingConfig {
                        slots: 16,
                        max_frame_bytes: Some(200_000),
                        hold_limit: 2,
                        hold_timeout: Duration::from_secs(90),
                        heartbeat: Duration::from_millis(50),
                        max_readers: 8,
                        copy_stores: crate::ring::CopyStores::Streaming,
                        slot_reuse: crate::ring::SlotReuse::Oldest,
                    },
                    access: AccessConfig {
                        ring_mode: 0o640,
                        socket_mode: 0o660,
                        group: Some("video".into()),
                        allow_uids: Some(vec![1000, 1001]),
                        allow_gids: Some(vec![44]),
                    },
                },
                StreamConfig {
                    ring: RingConfig {
                        max_frame_bytes: Some(4 << 20),
                        ..RingConfig::default()
                    },
                    access: AccessConfig {
                        group: Some("44".into()),
                        ..AccessConfig::default()
                    },
                    ..StreamConfig::new(
                        "front",
                        SourceConfig::V4l2 {
                            device: "/dev/v4l/by-path/platform-xhci-hcd.0-usb-0:1:1.0-video-index0"
                                .into(),
                            format: Some(FourCc::MJPG),
                            width: Some(1920),
                            height: Some(1080),
                            fps: Some(30.0),
                            io: V4l2IoMode::Userptr,
                            allow_substitution: true,
                            buffers: 6,
                        },
                    )
                },
                StreamConfig::new(
                    "replay",
                    SourceConfig::File {
                        path: "clips/a.raw".into(),
                        kind: FileKind::Raw,
                        raw_format: Some(RawFormat::new(FourCc::RAW, 48, 2)),
                        fps: Some(100.0),
                        looping: true,
                    },
                ),
                StreamConfig::new(
                    "gps",
                    SourceConfig::Sensor {
                        path: "-".into(),
                        framing: Framing::Lines { max_bytes: 512 },
                        content_type: "text/x-nmea".into(),
                    },
                ),
                StreamConfig::new(
                    "events",
                    SourceConfig::Sensor {
                        path: "/dev/input/event3".into(),
                        framing: Framing::Fixed(24),
                        content_type: DEFAULT_CONTENT_TYPE.into(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn full_config_round_trip() {
        let config = ok(FULL);
        assert_eq!(config, full());
        let kinds: Vec<&str> = config.streams.iter().map(|s| s.source_kind()).collect();
        assert_eq!(kinds, ["synthetic", "v4l2", "file", "sensor", "sensor"]);
        assert_eq!(config.stream("front").map(|s| s.slot_count()), Some(8 + 6));
        assert_eq!(
            config.stream("replay").and_then(|s| s.max_frame_bytes()),
            Some(96)
        );
        assert_eq!(config.stream("nope"), None);

        // What is serialized parses back to the same config.
        let text = serde_yaml_ng::to_string(&config).unwrap();
        assert_eq!(ok(&text), config, "{text}");
        for shown in [
            "hold_timeout: 90s",
            "heartbeat: 50ms",
            "ring_mode: '0640'",
            "format: RAW",
            "loop: true",
        ] {
            assert!(text.contains(shown), "{shown} in\n{text}");
        }
        // As does the JSON form (for /status).
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(ok(&json), config, "{json}");
    }

    /// Found by the `daemon_config` fuzz target (fuzz/regressions/): for
    /// this syntax error libyaml reports the line after the right one,
    /// past that line's end; the location now comes from the byte index.
    #[test]
    fn a_syntax_error_after_a_quoted_scalar_is_located_on_its_own_line() {
        // The fuzzer's input, kept as found: U+FFFD characters after a
        // quoted scalar on line 24, column 28.
        let found = include_bytes!(
            "../../fuzz/regressions/daemon_config/crash-1cad7f554b76f41506885854f0fed8c1b5039f1a"
        );
        let text = String::from_utf8_lossy(found);
        let raw = serde_yaml_ng::from_str::<IgnoredAny>(&text).unwrap_err();
        let raw = raw.location().unwrap();
        assert_eq!(
            (raw.line(), raw.column()),
            (25, 28),
            "libyaml's own report (the quirk)"
        );
        let err = parse(&text, Path::new("d.yaml")).unwrap_err();
        assert_eq!((err.line(), err.column()), (Some(24), Some(28)), "{err}");
        crate::fuzzing::daemon_config(found);
    }

    #[test]
    fn hot_reload_sees_which_stream_changed() {
        let old = ok(FULL);
        let new = ok(&FULL.replace("buffers: 6", "buffers: 8"));
        let changed: Vec<&str> = old
            .streams
            .iter()
            .zip(&new.streams)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.name.as_str())
            .collect();
        assert_eq!(changed, ["front"]);
    }

    // ---- mistakes ----------------------------------------------------------

    #[test]
    fn unknown_field() {
        let text = one(SYNTHETIC, "    ring:\n      slotz: 8\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "slotz"));
        assert_eq!(e.field, "streams[0].ring.slotz");
        assert_eq!(
            e.message,
            "unknown field `slotz`, expected one of `slots`, `max_frame_bytes`, `hold_limit`, \
             `hold_timeout`, `heartbeat`, `max_readers`, `copy_stores`, `slot_reuse`"
        );
        assert!(e
            .display
            .starts_with("daemon.yaml:6:7: streams[0].ring.slotz: unknown field"));

        let text = "streams: [{ name: a, source: { type: synthetic } }]\nstream: []\n";
        let e = bad(text);
        assert_eq!((e.at(), e.field.as_str()), ((2, 1), "stream"));
        assert!(e
            .message
            .contains("expected one of `dir`, `listen`, `log_format`, `streams`"));

        let text = one("      type: synthetic\n      fpz: 3\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "fpz"), "streams[0].source.fpz")
        );
        assert_eq!(
            e.message,
            "unknown field `fpz`, expected one of `type`, `format`, `width`, `height`, `fps`"
        );
    }

    #[test]
    fn wrong_type() {
        let text =
            "streams:\n  - name: cam0\n    source: { type: synthetic }\n  - name: cam1\n    \
                    source:\n      type: synthetic\n      fps: fast\n";
        let e = bad(text);
        assert_eq!(e.at(), at(text, "fast"));
        assert_eq!(e.field, "streams[1].source.fps");
        assert_eq!(
            e.message,
            "expected a frame rate above 0 (e.g. 30 or 29.97), found \"fast\""
        );

        let text = one(SYNTHETIC, "    required: yes\n");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "yes"), "streams[0].required")
        );
        assert_eq!(e.message, "expected true or false, found \"yes\"");

        let text = one(SYNTHETIC, "    ring:\n      slots: [8]\n");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "[8]"), "streams[0].ring.slots")
        );
        assert_eq!(
            e.message,
            "expected a slot count from 1 to 4096, found a list"
        );

        let text = one("      type: synthetic\n      width:\n", "");
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].source.width");
        assert_eq!(
            e.message,
            "expected a size in pixels from 1 to 16384, found null"
        );

        let text = "streams: 3\n";
        let e = bad(text);
        assert_eq!((e.at(), e.field.as_str()), ((1, 10), "streams"));
        assert!(e.message.contains("expected a sequence"), "{}", e.message);

        let e = bad("- streams\n");
        assert_eq!((e.at(), e.field.as_str()), ((1, 1), ""));
        assert!(
            e.message.contains("expected a camux daemon config"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_documented_message() {
        let text =
            "streams:\n  - name: cam0\n    source: { type: synthetic }\n  - name: cam1\n    \
                    source:\n      type: synthetic\n      fps: -3\n";
        let (line, column) = at(text, "-3");
        assert_eq!(
            bad(text).display,
            format!(
                "daemon.yaml:{line}:{column}: streams[1].source.fps: expected a frame rate above 0 \
                 (e.g. 30 or 29.97), found -3"
            )
        );
    }

    #[test]
    fn out_of_range() {
        let text = one(SYNTHETIC, "    ring:\n      hold_limit: 40\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "40"));
        assert_eq!(e.field, "streams[0].ring.hold_limit");
        assert_eq!(
            e.message,
            "expected a hold limit (frames one reader may hold at once) from 1 to 16, found 40"
        );

        for (ring, field, found) in [
            ("slots: 0", "slots", "0"),
            ("slots: 5000", "slots", "5000"),
            ("max_readers: 2000", "max_readers", "2000"),
            (
                "max_frame_bytes: 2000000000",
                "max_frame_bytes",
                "2000000000",
            ),
            ("heartbeat: 90s", "heartbeat", "\"90s\""),
            ("heartbeat: 0.5ms", "heartbeat", "\"0.5ms\""),
            ("hold_timeout: 0", "hold_timeout", "0"),
            (
                "slots: 99999999999999999999999999",
                "slots",
                "99999999999999999999999999",
            ),
        ] {
            let text = one(SYNTHETIC, &format!("    ring:\n      {ring}\n"));
            let e = bad(&text);
            assert_eq!(e.at(), value_at(&text, ring), "{ring}");
            assert_eq!(e.field, format!("streams[0].ring.{field}"));
            assert!(
                e.message.ends_with(&format!(", found {found}")),
                "{}",
                e.message
            );
        }

        let text = one(
            "      type: v4l2\n      device: /dev/video0\n      buffers: 64\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "64"), "streams[0].source.buffers")
        );
        assert_eq!(e.message, "expected a buffer count from 2 to 32, found 64");

        let text = one("      type: synthetic\n      fps: 1e12\n", "");
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].source.fps");
        assert!(e.message.contains("one frame a day"), "{}", e.message);
    }

    #[test]
    fn bad_stream_name() {
        let text = "streams:\n  - name: \"../x\"\n    source: { type: synthetic }\n";
        let e = bad(text);
        assert_eq!(e.at(), at(text, "\"../x\""));
        assert_eq!(e.field, "streams[0].name");
        assert_eq!(
            e.message,
            "stream name \"../x\" must be 1..=63 characters of A-Z a-z 0-9 . _ - and not start with '.'"
        );
        let text = "streams:\n  - source: { type: synthetic }\n";
        let e = bad(text);
        assert_eq!((e.at(), e.field.as_str()), ((2, 5), "streams[0]"));
        assert_eq!(e.message, "missing field `name`");
        // A number is a name.
        assert_eq!(
            ok("streams: [{ name: 7, source: { type: synthetic } }]").streams[0].name,
            "7"
        );
    }

    #[test]
    fn duplicate_stream_names() {
        let text =
            "streams:\n  - name: cam0\n    source: { type: synthetic }\n  - name: cam1\n    \
                    source: { type: synthetic }\n  - name: cam0\n    source: { type: synthetic }\n";
        let e = bad(text);
        assert_eq!(e.at(), nth(text, "cam0", 1));
        assert_eq!(e.field, "streams[2].name");
        assert!(
            e.message
                .starts_with("stream name `cam0` is already used by streams[0]"),
            "{}",
            e.message
        );
        // Flow style, anchors: the position is still the second name's.
        let text = "streams:\n  - &a { name: cam0, source: { type: synthetic } }\n  - { source: { type: synthetic }, name: cam0 }\n";
        let e = bad(text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (nth(text, "cam0", 1), "streams[1].name")
        );
    }

    #[test]
    fn unknown_source_type() {
        let text = one("      type: camera\n", "");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "camera"));
        assert_eq!(e.field, "streams[0].source.type");
        assert_eq!(
            e.message,
            "unknown source type `camera`, expected one of `synthetic`, `v4l2`, `file`, `sensor`"
        );
        let text = one("      width: 640\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "width"), "streams[0].source")
        );
        assert_eq!(
            e.message,
            "a source needs `type`: one of `synthetic`, `v4l2`, `file`, `sensor`"
        );
        let text = "streams:\n  - name: cam0\n";
        let e = bad(text);
        assert_eq!(
            (e.at(), e.field.as_str(), e.message.as_str()),
            ((2, 5), "streams[0]", "missing field `source`")
        );
    }

    #[test]
    fn field_of_another_source_type() {
        // `type` first: refused at the key.
        let text = one("      type: synthetic\n      record_size: 24\n", "");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "record_size"));
        assert_eq!(e.field, "streams[0].source.record_size");
        assert_eq!(
            e.message,
            "unknown field `record_size` for a synthetic source, expected one of `type`, `format`, \
             `width`, `height`, `fps` (`record_size` is a field of sensor sources)"
        );
        // `type` last: refused at the end of the mapping, at the field's value.
        let text = one(
            "      device: /dev/video0\n      fps: 30\n      type: file\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "/dev/video0"));
        assert_eq!(e.field, "streams[0].source.device");
        assert!(
            e.message
                .starts_with("unknown field `device` for a file source"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("(`device` is a field of v4l2 sources)"),
            "{}",
            e.message
        );

        let text = one(
            "      type: sensor\n      path: /dev/ttyS0\n      lines: true\n      fps: 5\n",
            "",
        );
        let e = bad(&text);
        assert!(e
            .message
            .ends_with("(`fps` is a field of synthetic and v4l2 and file sources)"));

        let text = one("      type: synthetic\n      fps: 5\n      fps: 6\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (nth(&text, "fps", 1), "streams[0].source.fps")
        );
        assert_eq!(e.message, "duplicate field `fps`");
    }

    #[test]
    fn sensor_with_record_size_and_lines() {
        let text = one(
            "      type: sensor\n      path: /dev/ttyUSB0\n      record_size: 24\n      lines: true\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "lines"));
        assert_eq!(e.field, "streams[0].source.lines");
        assert_eq!(
            e.message,
            "give either `record_size` (fixed-size records) or `lines: true` (newline-delimited \
             records), not both"
        );
        let text = one(
            "      type: sensor\n      path: /dev/ttyUSB0\n      lines: true\n      record_size: 24\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "record_size"), "streams[0].source.record_size")
        );

        let text = one("      type: sensor\n      path: /dev/ttyUSB0\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "type"), "streams[0].source.record_size")
        );
        assert!(
            e.message
                .starts_with("a sensor source needs `record_size: N`"),
            "{}",
            e.message
        );

        let text = one(
            "      type: sensor\n      path: /dev/ttyUSB0\n      lines: false\n      max_record_bytes: 80\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "80"), "streams[0].source.max_record_bytes")
        );

        let text = one(
            "      type: sensor\n      path: /dev/ttyUSB0\n      lines: true\n      content_type: text/csv; charset=utf-8\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "text/csv"), "streams[0].source.content_type")
        );
        assert!(
            e.message.contains("printable ASCII without spaces"),
            "{}",
            e.message
        );
    }

    #[test]
    fn raw_file_without_format() {
        let text = one(
            "      type: file\n      path: clip.raw\n      kind: raw\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(e.at(), value_at(&text, "kind: raw"));
        assert_eq!(e.field, "streams[0].source.kind");
        assert_eq!(
            e.message,
            "a raw file needs `format`, `width` and `height`: its frames are back to back with no header"
        );

        let text = one(
            "      type: file\n      path: clip.raw\n      format: NV12\n      width: 64\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "NV12"), "streams[0].source.format")
        );
        assert!(e.message.ends_with("`height` missing"), "{}", e.message);

        let text = one(
            "      type: file\n      path: clip.y4m\n      kind: y4m\n      format: NV12\n      width: 64\n      height: 48\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].source.format");
        assert!(
            e.message
                .starts_with("a y4m file's header gives its format"),
            "{}",
            e.message
        );

        let text = one(
            "      type: file\n      path: clip.raw\n      format: MJPG\n      width: 64\n      height: 48\n",
            "",
        );
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].source.format");
        assert!(
            e.message.starts_with("MJPG frames have no fixed size"),
            "{}",
            e.message
        );

        let text = one("      type: file\n", "");
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].source.path");
        assert_eq!(e.message, "a file source needs `path`: a file path");
    }

    #[test]
    fn synthetic_source_it_cannot_render() {
        let text = one("      type: synthetic\n      width: 641\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "641"), "streams[0].source.width")
        );
        assert_eq!(e.message, "YUYV needs an even width, got 641");

        let text = one("      type: synthetic\n      format: MJPG\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "MJPG"), "streams[0].source.format")
        );
        assert!(
            e.message.starts_with("the synthetic source cannot render"),
            "{}",
            e.message
        );

        let text = one(
            "      type: synthetic\n      format: NV12\n      height: 719\n",
            "",
        );
        assert_eq!(bad(&text).field, "streams[0].source.height");

        let text = one("      type: synthetic\n      format: yuv\n", "");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "yuv"), "streams[0].source.format")
        );
        assert!(e.message.contains("rgb24"), "{}", e.message);
    }

    #[test]
    fn slot_reuse_is_read_and_checked() {
        let text = one(SYNTHETIC, "    ring:\n      slot_reuse: oldest\n");
        let cfg = parse(&text, "daemon.yaml".as_ref()).unwrap();
        assert_eq!(
            cfg.streams[0].ring.slot_reuse,
            crate::ring::SlotReuse::Oldest
        );
        let text = one(SYNTHETIC, "    ring:\n      slot_reuse: lru\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "lru"));
        assert_eq!(e.field, "streams[0].ring.slot_reuse");
        assert_eq!(
            e.message,
            "expected one of auto, oldest, warm, found \"lru\""
        );
    }

    #[test]
    fn copy_stores_is_read_and_checked() {
        let text = one(SYNTHETIC, "    ring:\n      copy_stores: cached\n");
        let cfg = parse(&text, "daemon.yaml".as_ref()).unwrap();
        assert_eq!(
            cfg.streams[0].ring.copy_stores,
            crate::ring::CopyStores::Cached
        );
        let text = one(SYNTHETIC, "    ring:\n      copy_stores: nontemporal\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "nontemporal"));
        assert_eq!(e.field, "streams[0].ring.copy_stores");
        assert_eq!(
            e.message,
            "expected one of auto, cached, streaming, found \"nontemporal\""
        );
        assert_eq!(
            RingConfig::default().copy_stores,
            crate::ring::CopyStores::Auto
        );
    }

    #[test]
    fn bad_duration() {
        let text = one(SYNTHETIC, "    ring:\n      hold_timeout: 5 parsecs\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "5 parsecs"));
        assert_eq!(e.field, "streams[0].ring.hold_timeout");
        assert_eq!(
            e.message,
            "expected a duration from 1ms to 24h, written 5s, 500ms, 1.5m, 2h or a number of \
             seconds, found \"5 parsecs\""
        );
    }

    #[test]
    fn bad_mode() {
        let text = one(SYNTHETIC, "    access:\n      ring_mode: \"0999\"\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "\"0999\""));
        assert_eq!(e.field, "streams[0].access.ring_mode");
        assert_eq!(
            e.message,
            "expected a file mode in octal from 0000 to 0777, such as \"0644\", found \"0999\""
        );
        let text = one(SYNTHETIC, "    access:\n      socket_mode: 644\n");
        let e = bad(&text);
        assert_eq!(e.field, "streams[0].access.socket_mode");
        assert!(
            e.message.contains("the integer 644, which is 0o1204"),
            "{}",
            e.message
        );
        for bad_mode in [
            "\"07777\"",
            "\"\"",
            "rw-r--r--",
            "-1",
            "true",
            "'+644'",
            "' 644'",
        ] {
            let text = one(
                SYNTHETIC,
                &format!("    access:\n      ring_mode: {bad_mode}\n"),
            );
            assert_eq!(
                bad(&text).field,
                "streams[0].access.ring_mode",
                "{bad_mode}"
            );
        }
        for (mode, value) in [
            ("\"0644\"", 0o644),
            ("0644", 0o644),
            ("'640'", 0o640),
            ("0o600", 0o600),
            ("\"0o755\"", 0o755),
            ("420", 0o644),
            ("0", 0),
        ] {
            let text = one(
                SYNTHETIC,
                &format!("    access:\n      ring_mode: {mode}\n"),
            );
            assert_eq!(ok(&text).streams[0].access.ring_mode, value, "{mode}");
        }
    }

    #[test]
    fn no_streams() {
        let text = "dir: /tmp/camux\nstreams: []\n";
        let e = bad(text);
        assert_eq!(e.at(), at(text, "[]"));
        assert_eq!(e.field, "streams");
        assert!(
            e.message.starts_with("a daemon needs at least one stream"),
            "{}",
            e.message
        );
        for text in ["", "# nothing\n", "dir: /tmp/camux\n", "streams:\n"] {
            let e = bad(text);
            assert_eq!(e.field, "streams", "{text:?}");
            assert!(e.message.starts_with("a daemon needs at least one stream"));
            assert!(e.line >= 1 && e.column >= 1);
        }
    }

    #[test]
    fn yaml_syntax_error() {
        let text = "streams:\n  - name: cam0\n    source:\n      type: synthetic\n     fps: 3\n";
        let e = bad(text);
        assert_eq!((e.at(), e.field.as_str()), ((5, 6), "streams[0]"));
        assert_eq!(
            e.message,
            "YAML syntax error: did not find expected key, while parsing a block mapping at line 2 \
             column 5"
        );

        let text = "streams: [{ name: cam0, source: { type: synthetic }\n";
        let e = bad(text);
        assert!(e.line >= 1 && e.line <= 2, "{e:?}");
        assert!(!e.message.is_empty());

        // A mistake before a syntax error is reported as itself.
        let text = "streams:\n  - name: a\n    source: { fpz: 1\n";
        let e = bad(text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(text, "fpz"), "streams[0].source.fpz")
        );
        assert!(
            e.message.starts_with("unknown field `fpz`"),
            "{}",
            e.message
        );

        let e = bad("streams: *nothing\n");
        assert_eq!(e.at(), (1, 10));
        assert!(e.message.contains("unknown anchor"), "{}", e.message);

        let e = bad("streams: []\n---\nstreams: []\n");
        assert_eq!(e.at(), (1, 1));
        assert!(
            e.message.contains("more than one document"),
            "{}",
            e.message
        );
    }

    #[test]
    fn cross_field_ring_checks() {
        let text = one(
            "      type: v4l2\n      device: /dev/video0\n      buffers: 8\n",
            "    ring:\n      slots: 4090\n",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "4090"), "streams[0].ring.slots")
        );
        assert_eq!(
            e.message,
            "4090 slots plus the v4l2 source's 8 buffers make 4098 ring slots; at most 4096"
        );

        let text = one(SYNTHETIC, "    ring:\n      max_frame_bytes: 1000\n");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "1000"), "streams[0].ring.max_frame_bytes")
        );
        assert!(
            e.message.starts_with("max_frame_bytes 1000 is smaller than a frame of this synthetic source (1843200 bytes)"),
            "{}",
            e.message
        );

        let text = one(
            "      type: synthetic\n      format: RGB3\n      width: 16384\n      height: 16384\n",
            "    ring:\n      slots: 4096\n",
        );
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "4096"), "streams[0].ring.slots")
        );
        assert!(
            e.message.starts_with("the ring cannot be laid out"),
            "{}",
            e.message
        );
    }

    #[test]
    fn top_level_values() {
        let base = "streams: [{ name: a, source: { type: synthetic } }]\n";
        for (listen, addr) in [
            ("9471", "0.0.0.0:9471"),
            ("':9472'", "0.0.0.0:9472"),
            ("'[::]:9470'", "[::]:9470"),
            ("127.0.0.1:80", "127.0.0.1:80"),
        ] {
            let c = ok(&format!("listen: {listen}\n{base}"));
            assert_eq!(c.listen, addr.parse().unwrap(), "{listen}");
        }
        let text = format!("listen: localhost:9470\n{base}");
        let e = bad(&text);
        assert_eq!((e.at(), e.field.as_str()), ((1, 9), "listen"));
        assert!(
            e.message.ends_with("found \"localhost:9470\""),
            "{}",
            e.message
        );

        let text = format!("log_format: xml\n{base}");
        let e = bad(&text);
        assert_eq!((e.at(), e.field.as_str()), ((1, 13), "log_format"));
        assert!(
            e.message
                .contains("unknown variant `xml`, expected `text` or `json`"),
            "{}",
            e.message
        );

        let text = format!("dir: ''\n{base}");
        assert_eq!(bad(&text).field, "dir");
    }

    #[test]
    fn access_values() {
        let text = one(SYNTHETIC, "    access:\n      allow_uids: []\n");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "[]"), "streams[0].access.allow_uids")
        );
        assert!(
            e.message.contains("would let no reader in"),
            "{}",
            e.message
        );

        let text = one(SYNTHETIC, "    access:\n      allow_gids: [44, -1]\n");
        let e = bad(&text);
        assert_eq!(e.at(), at(&text, "-1"));
        assert_eq!(
            e.message,
            "expected a numeric gid from 0 to 4294967294, found -1"
        );

        let text = one(SYNTHETIC, "    access:\n      allow_uids: 1000\n");
        let e = bad(&text);
        assert_eq!(
            e.message,
            "expected a list of numeric uids such as [1000, 1001], found 1000"
        );

        let text = one(SYNTHETIC, "    access:\n      group: video group\n");
        let e = bad(&text);
        assert_eq!(
            (e.at(), e.field.as_str()),
            (at(&text, "video group"), "streams[0].access.group")
        );

        for (group, name) in [
            ("video", "video"),
            ("44", "44"),
            ("'44'", "44"),
            ("render_2", "render_2"),
        ] {
            let text = one(SYNTHETIC, &format!("    access:\n      group: {group}\n"));
            assert_eq!(ok(&text).streams[0].access.group.as_deref(), Some(name));
        }
    }

    #[test]
    fn formats_parse_with_aliases_and_padding() {
        for (format, fourcc) in [
            ("RAW", FourCc::RAW),
            ("raw", FourCc::RAW),
            ("'RAW '", FourCc::RAW),
            ("GREY", FourCc::GREY),
            ("gray", FourCc::GREY),
            ("i420", FourCc::YU12),
            ("rgb24", FourCc::RGB3),
        ] {
            let text = one(
                &format!("      type: synthetic\n      format: {format}\n      width: 64\n      height: 64\n"),
                "",
            );
            let SourceConfig::Synthetic { format: got, .. } = ok(&text).streams[0].source else {
                unreachable!()
            };
            assert_eq!(got, fourcc, "{format}");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, d) in [
            ("5", Duration::from_secs(5)),
            ("2.5", ms(2500)),
            ("2.5s", ms(2500)),
            ("500ms", ms(500)),
            ("500 ms", ms(500)),
            ("1.5m", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
        ] {
            assert_eq!(duration(Scalar::Str(text)), Some(d), "{text}");
        }
        assert_eq!(duration(Scalar::Int(3)), Some(Duration::from_secs(3)));
        assert_eq!(duration(Scalar::Float(0.25)), Some(ms(250)));
        for text in [
            "",
            "s",
            "ms",
            "5 parsecs",
            "-1s",
            "1e3s",
            "abc",
            "5sec",
            "1..5s",
            ".",
            "5 s s",
        ] {
            assert_eq!(duration(Scalar::Str(text)), None, "{text:?}");
        }
        assert_eq!(duration(Scalar::Int(-1)), None);
        assert_eq!(duration(Scalar::Float(f64::NAN)), None);
        assert_eq!(duration(Scalar::Bool(true)), None);
        for d in [
            Duration::from_secs(5),
            ms(200),
            Duration::from_secs(90),
            Duration::from_secs(7200),
            Duration::from_micros(1500),
            Duration::from_nanos(1_000_000_001),
        ] {
            assert_eq!(duration(Scalar::Str(&duration_text(d))), Some(d), "{d:?}");
        }
        assert_eq!(duration_text(ms(200)), "200ms");
        assert_eq!(duration_text(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn rule_texts_name_the_limits() {
        assert!(SLOTS.expecting.contains(&format!("1 to {MAX_SLOTS}")));
        assert!(HOLD_LIMIT.expecting.contains(&format!("1 to {MAX_HOLDS}")));
        assert!(MAX_READERS_RULE
            .expecting
            .contains(&format!("1 to {MAX_READERS}")));
        assert!(DIMENSION
            .expecting
            .contains(&format!("1 to {MAX_DIMENSION}")));
        assert!(RECORD_BYTES
            .expecting
            .contains(&format!("1 to {MAX_RECORD_BYTES}")));
        assert!(BUFFERS
            .expecting
            .contains(&format!("{MIN_V4L2_BUFFERS} to {MAX_V4L2_BUFFERS}")));
        assert!(MAX_FRAME
            .expecting
            .contains(&format!("1 to {MAX_FRAME_BYTES}")));
        assert_eq!(
            Duration::from_nanos(MIN_HEARTBEAT_NS),
            Duration::from_millis(1)
        );
        assert_eq!(
            Duration::from_nanos(MAX_HEARTBEAT_NS),
            Duration::from_secs(60)
        );
        assert!(HEARTBEAT.expecting.contains("1ms to 60s"));
    }

    #[test]
    fn path_strings() {
        let path = [
            Seg::Key("streams".into()),
            Seg::Index(2),
            Seg::Key("source".into()),
            Seg::Key("fps".into()),
        ];
        assert_eq!(path_string(&path), "streams[2].source.fps");
        assert_eq!(path_string(&[]), "");
        assert_eq!(path_string(&[Seg::Key("a".into()), Seg::Unknown]), "a.?");
        assert_eq!(
            split_at_field("[kind] a raw file"),
            Some(("kind", "a raw file"))
        );
        assert_eq!(split_at_field("[not a field] x"), None);
    }

    // ---- load --------------------------------------------------------------

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let e = load(&missing).unwrap_err();
        assert!(matches!(&e, ConfigError::Read { path, .. } if *path == missing));
        assert!(e.to_string().starts_with(&format!(
            "cannot read the daemon config {}: ",
            missing.display()
        )));
        assert_eq!(
            (e.line(), e.column(), e.field(), e.message()),
            (None, None, None, None)
        );

        let e = load(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Read { path, .. } if path == dir.path()),
            "{e}"
        );

        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"streams:\n  - name: caf\xe9\n").unwrap();
        let e = load(&latin1).unwrap_err();
        assert_eq!(
            (e.line(), e.column(), e.field()),
            (Some(2), Some(14), Some(""))
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2:14: the file is not UTF-8", latin1.display())),
            "{e}"
        );

        let huge = dir.path().join("huge.yaml");
        std::fs::write(&huge, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let e = load(&huge).unwrap_err();
        assert!(e.message().unwrap().contains("larger than"), "{e}");

        let good = dir.path().join("daemon.yaml");
        std::fs::write(&good, FULL).unwrap();
        assert_eq!(load(&good).unwrap(), full());
        let e = {
            std::fs::write(&good, FULL.replace("fps: 29.97", "fps: 0")).unwrap();
            load(&good).unwrap_err()
        };
        assert!(
            e.to_string().starts_with(&format!(
                "{}:13:12: streams[0].source.fps: ",
                good.display()
            )),
            "{e}"
        );
    }

    // ---- the example -------------------------------------------------------

    /// The example with every commented-out option (`# key: value`, not
    /// `## prose`) put back.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| {
                let body = line.trim_start();
                match body.strip_prefix("# ") {
                    Some(yaml) => format!("{}{yaml}\n", &line[..line.len() - body.len()]),
                    None => format!("{line}\n"),
                }
            })
            .collect()
    }

    #[test]
    fn the_example_parses_and_runs() {
        let c = ok(EXAMPLE);
        assert_eq!(c.dir, Path::new(DEFAULT_DIR));
        assert_eq!(c.listen, DEFAULT_LISTEN);
        let streams: Vec<(&str, bool, Option<SyntheticConfig>)> = c
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s.required, s.source.synthetic_config()))
            .collect();
        let synthetic = |fourcc, width, height, fps| {
            Some(SyntheticConfig {
                width,
                height,
                fourcc,
                fps,
            })
        };
        assert_eq!(
            streams,
            [
                ("cam0", true, synthetic(FourCc::YUYV, 1280, 720, 30.0)),
                ("cam1", true, synthetic(FourCc::NV12, 640, 480, 15.0)),
                ("imu", false, synthetic(FourCc::RAW, 48, 1, 200.0)),
            ]
        );
        // Every stream can be made as configured: its source and its ring.
        let dir = tempfile::tempdir().unwrap();
        for s in &c.streams {
            let cfg = s.source.synthetic_config().unwrap();
            let source = Synthetic::new(cfg).unwrap();
            assert_eq!(s.max_frame_bytes(), Some(source.frame_bytes() as u64));
            let mut opts = RingOptions::new(
                dir.path(),
                s.name.clone(),
                StreamFormat::from_layout(source.layout(), cfg.fps),
                source.frame_bytes() as u64,
            );
            opts.slots = s.slot_count();
            opts.hold_limit = s.ring.hold_limit;
            opts.hold_timeout = s.ring.hold_timeout;
            opts.heartbeat = s.ring.heartbeat;
            opts.max_readers = s.ring.max_readers;
            opts.ring_mode = s.access.ring_mode;
            opts.socket_mode = s.access.socket_mode;
            let publisher = Publisher::create(&opts).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert_eq!(
                publisher.ring_path(),
                dir.path().join(format!("{}.ring", s.name))
            );
        }
    }

    #[test]
    fn the_examples_commented_out_options_parse_too() {
        let text = uncommented(EXAMPLE);
        let c = ok(&text);
        let kinds: Vec<(&str, &str)> = c
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s.source_kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("cam0", "synthetic"),
                ("cam1", "synthetic"),
                ("imu", "synthetic"),
                ("front", "v4l2"),
                ("replay", "file"),
                ("gps", "sensor"),
                ("buttons", "sensor"),
            ]
        );
        let cam0 = c.stream("cam0").unwrap();
        assert_eq!(cam0.ring.max_frame_bytes, Some(1280 * 720 * 2));
        assert_eq!(cam0.access.group.as_deref(), Some("video"));
        assert_eq!(cam0.access.allow_uids.as_deref(), Some(&[1000][..]));
        assert_eq!(cam0.access.allow_gids.as_deref(), Some(&[44][..]));
        // Every option appears.
        let mut options: Vec<&str> =
            vec!["dir", "listen", "log_format", "streams", "name", "required"];
        options.extend([
            "slots",
            "max_frame_bytes",
            "hold_limit",
            "hold_timeout",
            "heartbeat",
            "max_readers",
        ]);
        options.extend([
            "ring_mode",
            "socket_mode",
            "group",
            "allow_uids",
            "allow_gids",
        ]);
        options.extend(Key::NAMES);
        for option in options {
            assert!(
                text.lines().any(|l| l
                    .trim_start()
                    .trim_start_matches("- ")
                    .starts_with(&format!("{option}:"))
                    || l.contains(&format!("{{ {option}:"))
                    || l.contains(&format!(", {option}:"))),
                "{option} is not in examples/daemon.yaml"
            );
        }
    }

    #[test]
    fn more_refusals() {
        for (source, field, message) in [
            (
                "{ type: v4l2 }",
                "source.device",
                "a v4l2 source needs `device`: a device path",
            ),
            (
                "{ type: v4l2, device: '' }",
                "source.device",
                "expected a device path",
            ),
            (
                "{ type: v4l2, device: /dev/video0, format: NV12, width: 3, height: 2 }",
                "source.width",
                "NV12 needs an even width, got 3",
            ),
            (
                "{ type: v4l2, device: /dev/video0, io: dma }",
                "source.io",
                "expected one of auto, userptr, mmap, found \"dma\"",
            ),
            (
                "{ type: file, path: x, kind: mp4 }",
                "source.kind",
                "expected one of auto, y4m, raw, found \"mp4\"",
            ),
            (
                "{ type: synthetic, width: 4, height: 4, format: GREY }",
                "source.width",
                "a synthetic frame of 16 bytes is too small",
            ),
            (
                "{ type: sensor, path: /x, record_size: 0 }",
                "source.record_size",
                "from 1 to 16384, found 0",
            ),
            (
                "{ type: sensor, path: /x, lines: true, content_type: '' }",
                "source.content_type",
                "the content type is empty",
            ),
            ("5", "source", "expected a source: a mapping with `type`"),
            (
                "{ type: 5 }",
                "source.type",
                "expected a source type: one of synthetic, v4l2, file, sensor, found 5",
            ),
            (
                "{ 1: x, type: synthetic }",
                "source.1",
                "unknown field `1`, expected one of `type`, `format`",
            ),
        ] {
            let text = format!("streams:\n  - name: a\n    source: {source}\n");
            let e = bad(&text);
            assert_eq!(e.field, format!("streams[0].{field}"), "{source}");
            assert!(e.message.contains(message), "{source}: {}", e.message);
            assert_eq!(e.line, 3, "{source}");
        }
    }

    // ---- arbitrary input ---------------------------------------------------

    /// `parse` is total: a config, or an error with a position in the text.
    fn parse_is_total(text: &str) {
        match parse(text, origin()) {
            Ok(config) => {
                let again = serde_yaml_ng::to_string(&config).unwrap();
                assert_eq!(ok(&again), config, "{again}");
            }
            Err(ConfigError::Invalid {
                line,
                column,
                ref message,
                ..
            }) => {
                assert!(line >= 1 && column >= 1, "{line}:{column}");
                assert!(line <= text.lines().count() + 1, "line {line} of {text:?}");
                assert!(!message.is_empty());
                assert!(!message.contains('\u{1}'), "{message}");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        for text in [
            format!("streams: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
            format!("streams:\n  - name: a\n    source: {}\n", "{a: ".repeat(10_000)),
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
             c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
             e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
             streams: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                .to_owned(),
        ] {
            let t0 = std::time::Instant::now();
            let e = bad(&text);
            assert!(e.line >= 1, "{e:?}");
            assert!(t0.elapsed() < Duration::from_secs(5), "{:?}: {}", t0.elapsed(), e.display);
        }
        let text = format!("streams: {}\n", "[".repeat(300));
        let e = bad(&text);
        assert_eq!((e.at(), e.field.as_str()), ((1, 10 + MAX_FLOW_DEPTH), ""));
        assert!(e
            .message
            .starts_with("YAML syntax error: brackets nested more than 200 deep"));
        // Brackets in quotes and comments do not count.
        let text = format!(
            "# {0}\nstreams:\n  - name: a # {0}\n    source: {{ type: file, path: '{0}' }}\n    \
             access: {{ group: \"x\\\"{0}\" }}\n",
            "[".repeat(300)
        );
        assert_eq!(too_deep(&text), None);
        assert_eq!(bad(&text).field, "streams[0].access.group");
    }

    const TOKENS: &[&str] = &[
        ":",
        " ",
        "\n",
        "- ",
        "-",
        "[",
        "]",
        "{",
        "}",
        "'",
        "\"",
        "#",
        "&a ",
        "*a",
        "!x ",
        "~",
        "0",
        "-1",
        "99999999999999999999999",
        "1e999",
        ".nan",
        "true",
        "\t",
        "? ",
        "|",
        ">",
        "<<: ",
        "---\n",
        "\u{e9}",
        "type: v4l2",
        "lines: true",
        "record_size: 8",
        "kind: raw",
        "name: cam0",
        "format: MJPG",
        "buffers: 32",
        "slots: 4096",
    ];

    fn mutate(base: &str, edits: &[(Index, usize, Index)]) -> String {
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        for (at, op, with) in edits {
            if lines.is_empty() {
                lines.push(String::new());
            }
            let n = at.index(lines.len());
            match op {
                0 => {
                    let chars: Vec<char> = lines[n].chars().collect();
                    if !chars.is_empty() {
                        let i = with.index(chars.len());
                        lines[n] = chars[..i].iter().chain(&chars[i + 1..]).collect();
                    }
                }
                1 => {
                    let chars: Vec<char> = lines[n].chars().collect();
                    let i = with.index(chars.len() + 1);
                    let token = TOKENS[with.index(TOKENS.len())];
                    lines[n] = chars[..i].iter().collect::<String>()
                        + token
                        + &chars[i..].iter().collect::<String>();
                }
                2 => {
                    let line = lines[n].clone();
                    lines.insert(with.index(lines.len() + 1), line);
                }
                3 => {
                    lines.remove(n);
                }
                4 => {
                    let m = with.index(lines.len());
                    lines.swap(n, m);
                }
                _ => {
                    if let Some((key, _)) = lines[n].split_once(": ") {
                        lines[n] = format!("{key}: {}", TOKENS[with.index(TOKENS.len())]);
                    }
                }
            }
        }
        lines.join("\n") + "\n"
    }

    proptest! {
        // PROPTEST_CASES (default 256) sets how many cases each runs.
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn parse_never_panics_on_any_text(text in "\\PC{0,300}") {
            parse_is_total(&text);
        }

        #[test]
        fn parse_never_panics_on_yamlish_text(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)) {
            parse_is_total(&tokens.concat());
        }

        #[test]
        fn parse_never_panics_on_edited_configs(
            base in proptest::sample::select(vec![FULL, EXAMPLE]),
            edits in proptest::collection::vec((any::<Index>(), 0usize..6, any::<Index>()), 1..5),
        ) {
            parse_is_total(&mutate(base, &edits));
        }
    }
}
