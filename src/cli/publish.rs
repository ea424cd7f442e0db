//! `camux publish`: a standalone producer of one stream (test pattern,
//! V4L2 camera, file replay or sensor records).

use super::common::{parse_duration, parse_fps, SourceArgs, DEFAULT_DIR};
use super::{json, signal, Status};
use anyhow::Context;
use camux::format::FourCc;
use camux::ring::{CopyStores, Origin, PublishError, RingOptions, SlotReuse, StreamFormat};
use camux::source::sensor::{validate_content_type, MAX_RECORD_BYTES};
use camux::source::{
    FileConfig, FileError, FileKind, FileSource, Framing, Pacer, RawFormat, Record, SensorConfig,
    SensorError, SensorSource, SensorStats, Synthetic,
};
use camux::{FrameInfo, Published, Publisher};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Publish one stream into a ring: a synthetic test pattern (the default), a
V4L2 camera (--v4l2), a recorded file (--file) or a sensor's records
(--sensor). The daemon does the same for every stream of its config.

Creates <DIR>/<STREAM>.ring (or resumes it if a previous producer left one
of the same geometry: sequence numbers continue), serves readers on
<DIR>/<STREAM>.sock, and publishes frames. When every slot is held by
readers a frame is dropped and counted, never waited for.

Sources:
  (none)         a moving test pattern, every frame stamped with its seq and
                 a checksum so `camux tail --verify` can check it arrived
                 whole; rendered straight into the ring slot (zero copy).
                 --format/--width/--height/--fps choose it (default YUYV
                 1280x720 at 30 fps).
  --v4l2 DEVICE  a V4L2 capture device (/dev/video0, or better a stable
                 /dev/v4l/by-id/... name). --format/--width/--height/--fps
                 are what to require; what is not given keeps the driver's
                 setting. A driver that substitutes something else is an
                 error naming both, unless --allow-substitution. --io:
                 userptr (the driver writes into ring slots: no copy), mmap
                 (one copy per frame), auto (userptr if the driver takes
                 it). The ring gets --slots slots for readers plus --buffers
                 for the driver. Needs a build with the v4l2 feature.
  --file PATH    replay a recording: Y4M (its header gives the format, size
                 and rate) or raw frames back to back, which say nothing of
                 their format: give --format/--width/--height. Paced at the
                 Y4M rate (or 30 fps), --fps to override, --flat for none.
                 Stops at the end of the file, or starts over with --loop.
                 A partial frame at the end is reported and never published.
                 Frames are read straight into ring slots (one copy, from
                 the page cache). --file-kind forces y4m or raw.
  --sensor PATH  records from a character device (/dev/ttyUSB0), a FIFO, a
                 file, or - for stdin, each record one frame, published as
                 it arrives: --record-size N for binary records of N bytes,
                 --lines for text lines (at most --max-record-bytes long,
                 default 4096: longer and empty lines are skipped and
                 counted; a record cut short at the end is dropped).
                 --content-type names what the records hold (default
                 application/octet-stream); readers find it in the ring
                 header. Stops at the end of the stream (every writer of a
                 FIFO closed it). A FIFO opens, and the ready line comes,
                 once a writer opens it. Records are read on a thread of
                 their own and copied into the ring once.

A reader gets only the frames published while it is registered, and not
those still unread when the producer stops. --wait-readers N holds the
first frame back until N readers are registered; --linger S keeps the ring
live at the end (end of file or stream, --frames, --seconds) until every
reader has left, at most S. Together they let a reader get a whole --flat
replay.

Prints one JSON line to stdout once readers can connect:
  {\"event\":\"ready\",\"ring\":\"<path>\",\"origin\":\"created\"|\"resumed\"|\"replaced\",\"epoch\":N,\"next_seq\":N,\"source\":...}
(a camera adds device, io, io_reason and the negotiated format; a file
path, kind, format and fps; a sensor path, framing and content_type) and
one when it stops (after --frames or --seconds, at the end of a file or
stream, or on SIGTERM/SIGINT):
  {\"event\":\"stopped\",\"published\":N,\"dropped\":N,\"revoked\":N,...}
(a camera adds driver_drops, bytes_copied_per_frame and cpu_us_per_frame;
a file frames, loops, partial_frames and bytes_copied; a sensor records,
oversized, empty, truncated, bytes_read and bytes_copied; all three an
error, null unless it failed).
The ring is then marked stopped; readers wait for a successor.

Exit status: 0 when stopped, 1 on an error (another producer holds the
stream, no space for the ring, bad geometry, a missing, busy or lost
device, a substituted format, an unreadable file or sensor, fewer than
--wait-readers readers in time), 2 on a usage error.

Examples:
  camux publish --dir /tmp/camux --stream cam0 &
  camux publish --dir /tmp/camux --stream imu --format RAW --width 48 --height 1 --fps 200
  camux publish --dir /tmp/camux --stream cam0 --frames 300 --flat
  camux publish --dir /tmp/camux --stream cam0 --format GREY --width 640 --height 480 --qr hello
  camux publish --dir /tmp/camux --stream cam0 --wait-lock   # standby for a rolling update
  camux publish --stream cam0 --v4l2 /dev/video0 --format YUYV --width 640 --height 480 --fps 25
  camux publish --stream cam0 --v4l2 /dev/v4l/by-id/usb-Logitech-video-index0 --io mmap
  camux publish --stream cam0 --file clip.y4m --loop
  camux publish --stream cam0 --file frames.yuyv --format YUYV --width 640 --height 480 --fps 15
  camux publish --stream cam0 --file clip.y4m --flat --wait-readers 1 --linger 10s
  camux publish --stream imu --sensor /dev/ttyUSB0 --lines --content-type text/csv
  camux publish --stream keys --sensor /dev/input/event3 --record-size 24
  my-gps-reader | camux publish --stream gps --sensor - --lines --content-type text/x-nmea";

/// How frames reach the ring from a V4L2 device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IoArg {
    /// USERPTR if the driver accepts ring slots, else MMAP + copy.
    #[default]
    Auto,
    /// The driver writes into ring slots: no copy.
    Userptr,
    /// The driver's buffers, copied into the ring once per frame.
    Mmap,
}

/// How `--file` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FileKindArg {
    /// Y4M if the file starts with "YUV4MPEG2 ", raw otherwise.
    #[default]
    Auto,
    /// A Y4M (YUV4MPEG2) stream.
    Y4m,
    /// Raw frames back to back, of --format, --width and --height.
    Raw,
}

impl From<FileKindArg> for FileKind {
    fn from(kind: FileKindArg) -> FileKind {
        match kind {
            FileKindArg::Auto => FileKind::Auto,
            FileKindArg::Y4m => FileKind::Y4m,
            FileKindArg::Raw => FileKind::Raw,
        }
    }
}

/// The content type of sensor records when `--content-type` is not given.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The longest `--lines` record when `--max-record-bytes` is not given.
pub const DEFAULT_MAX_LINE_BYTES: usize = 4096;

/// Parses a record size: 1 to [`MAX_RECORD_BYTES`] bytes.
fn parse_record_bytes(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_RECORD_BYTES).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a record size: give a number of bytes from 1 to {MAX_RECORD_BYTES}"
        )),
    }
}

/// Parses a content type (see [`validate_content_type`]).
fn parse_content_type(s: &str) -> Result<String, String> {
    validate_content_type(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// The options of the `--file` and `--sensor` sources (part of
/// [`PublishArgs`]; `--file` and `--sensor` are in its `input` group with
/// `--v4l2`).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct InputArgs {
    /// Replay this recording instead of the test pattern: Y4M (the header
    /// gives format, size and rate) or raw frames back to back (give
    /// --format, --width and --height).
    #[arg(long, value_name = "PATH", group = "input")]
    pub file: Option<PathBuf>,
    /// With --file: start over from the first frame at the end of the file
    /// instead of stopping.
    #[arg(long = "loop", requires = "file")]
    pub looping: bool,
    /// With --file: what kind of file it is.
    #[arg(
        long,
        value_enum,
        value_name = "KIND",
        default_value_t = FileKindArg::Auto,
        requires = "file"
    )]
    pub file_kind: FileKindArg,
    /// Publish the records of a sensor instead of the test pattern, one
    /// record per frame: a character device (/dev/ttyUSB0), a FIFO, a file,
    /// or - for stdin. Needs --record-size or --lines.
    #[arg(long, value_name = "PATH", group = "input", requires = "framing")]
    pub sensor: Option<PathBuf>,
    /// With --sensor: binary records of exactly N bytes (1..=16384), e.g. 24
    /// for the struct input_event of /dev/input/event*.
    #[arg(
        long,
        value_name = "N",
        group = "framing",
        requires = "sensor",
        value_parser = parse_record_bytes
    )]
    pub record_size: Option<usize>,
    /// With --sensor: newline-delimited text records, without the \n (or
    /// \r\n). Empty lines and lines over --max-record-bytes are skipped
    /// and counted.
    #[arg(long, group = "framing", requires = "sensor")]
    pub lines: bool,
    /// With --sensor --lines: the longest line, in bytes without the
    /// newline (1..=16384; default 4096). Each ring slot holds this much.
    #[arg(
        long,
        value_name = "N",
        requires = "sensor",
        conflicts_with = "record_size",
        value_parser = parse_record_bytes
    )]
    pub max_record_bytes: Option<usize>,
    /// With --sensor: what the records hold, MIME-like (printable ASCII, no
    /// spaces, at most 63 bytes), e.g. application/x-imu+csv; recorded in the
    /// ring header for readers [default: application/octet-stream].
    #[arg(
        long,
        value_name = "TYPE",
        requires = "sensor",
        value_parser = parse_content_type
    )]
    pub content_type: Option<String>,
}

/// Publish a stream into a ring: a test pattern, a V4L2 camera, a file or a sensor.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct PublishArgs {
    /// Directory of the stream's ring, socket and lock files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Stream name: the files are <DIR>/<NAME>.ring, .sock and .lock.
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// Capture from this V4L2 device instead of the test pattern.
    #[arg(long, value_name = "DEVICE", group = "input")]
    pub v4l2: Option<PathBuf>,
    /// The --file and --sensor options (boxed: inline, they would make
    /// every `Command` as large as this).
    #[command(flatten)]
    pub input: Box<InputArgs>,
    /// Pixel format: YUYV, UYVY, NV12, NV21, YU12, GREY, RGB3, BGR3, RAW (test
    /// pattern, default YUYV; the frames of a raw --file) or any FourCC a
    /// camera offers (MJPG, H264...).
    #[arg(long, value_name = "F", conflicts_with = "sensor")]
    pub format: Option<FourCc>,
    /// Frame width in pixels (test pattern default 1280; for RAW: bytes per record).
    #[arg(long, value_name = "W", conflicts_with = "sensor")]
    pub width: Option<u32>,
    /// Frame height in pixels (test pattern default 720; for RAW: records per frame).
    #[arg(long, value_name = "H", conflicts_with = "sensor")]
    pub height: Option<u32>,
    /// Frames per second, fractions allowed: 0.5, 29.97 (test pattern default
    /// 30; a --file plays at its Y4M rate, else 30, unless this is given).
    #[arg(long, value_name = "F", value_parser = parse_fps, conflicts_with = "sensor")]
    pub fps: Option<f64>,
    /// V4L2 streaming I/O.
    #[arg(long, value_enum, default_value_t = IoArg::Auto, requires = "v4l2")]
    pub io: IoArg,
    /// Accept the format, size or rate a V4L2 driver chose instead of the one asked for.
    #[arg(long, requires = "v4l2")]
    pub allow_substitution: bool,
    /// Buffers queued to the V4L2 driver (2..=32); the ring gets this many extra slots.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "v4l2")]
    pub buffers: u32,
    /// Frame slots in the ring for readers (readers × holds + 2 never drop).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub slots: u32,
    /// Frames one reader may hold at once (1..=16).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub hold_limit: u32,
    /// A hold that blocks the producer for longer than this is revoked.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub hold_timeout_ms: u64,
    /// Stop after publishing N frames (dropped frames do not count).
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m).
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Publish flat out, unpaced (--fps is then only recorded in the header).
    #[arg(long, conflicts_with_all = ["v4l2", "sensor"])]
    pub flat: bool,
    /// Hold the first frame back until N readers are registered, so that
    /// they get every frame (a --flat replay is over in a moment). Not with
    /// --v4l2.
    #[arg(long, value_name = "N", conflicts_with = "v4l2")]
    pub wait_readers: Option<u32>,
    /// How long --wait-readers waits; fewer readers by then is an error
    /// (seconds, or with a unit: 500ms, 2m).
    #[arg(
        long,
        value_name = "S",
        value_parser = parse_duration,
        default_value = "30s",
        requires = "wait_readers"
    )]
    pub wait_readers_timeout: Duration,
    /// When the input is over (end of the file or stream, --frames,
    /// --seconds; not on SIGTERM), keep the ring live until every reader
    /// has left, at most this long: a reader does not get the frames it has
    /// not taken when the producer stops. Not with --v4l2.
    #[arg(long, value_name = "S", value_parser = parse_duration, conflicts_with = "v4l2")]
    pub linger: Option<Duration>,
    /// If another producer publishes the stream, wait for it to stop
    /// (standby for a rolling update) instead of failing.
    #[arg(long)]
    pub wait_lock: bool,
    /// Render each synthetic frame into a private buffer and publish it by
    /// copy (Publisher::publish, as the daemon's V4L2 MMAP fallback does),
    /// instead of rendering straight into a loaned slot. The buffer is the
    /// same every frame, so the render stays in cache; the copy into the
    /// ring uses the library's default stores.
    #[arg(long, conflicts_with_all = ["v4l2", "file", "sensor"])]
    pub copy: bool,
    /// How frames are copied into the ring (--copy, --file, --sensor and the
    /// V4L2 MMAP path; a render into a loaned slot is not a copy): auto
    /// streams frames of 256 KiB or more past the caches when the ring is
    /// larger than half the last-level cache; cached and streaming force
    /// either. The daemon's `ring.copy_stores`.
    #[arg(
        long,
        value_name = "STORES",
        default_value = "auto",
        value_parser = PossibleValuesParser::new(CopyStores::ALL.map(CopyStores::name))
            .map(|s| CopyStores::from_name(&s).expect("one of the possible values"))
    )]
    pub copy_stores: CopyStores,
    /// Which free slot a new frame goes into: warm reuses a slot every
    /// reader has consumed, newest first, so it is still in the caches;
    /// oldest always takes the oldest frame (keeps the last `--slots`
    /// frames for readers that join late); auto is warm for slots of
    /// 256 KiB or more. The daemon's `ring.slot_reuse`.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "auto",
        value_parser = PossibleValuesParser::new(SlotReuse::ALL.map(SlotReuse::name))
            .map(|s| SlotReuse::from_name(&s).expect("one of the possible values"))
    )]
    pub slot_reuse: SlotReuse,
    /// Test pattern: draw a QR code carrying TEXT in the bottom-right corner
    /// of every frame (examples/qr.rs decodes it); the stamp still verifies.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["v4l2", "file", "sensor"])]
    pub qr: Option<String>,
}

impl PublishArgs {
    /// The test pattern these arguments describe (defaults: YUYV 1280x720 at 30 fps).
    pub fn synthetic(&self) -> anyhow::Result<Synthetic> {
        SourceArgs {
            width: self.width.unwrap_or(1280),
            height: self.height.unwrap_or(720),
            fps: self.fps.unwrap_or(30.0),
            format: self.format.unwrap_or(FourCc::YUYV),
        }
        .synthetic()
        .and_then(|source| match &self.qr {
            Some(text) => source
                .with_qr(text)
                .with_context(|| format!("--qr {text:?}")),
            None => Ok(source),
        })
    }

    /// Sets the ring options these arguments control on `opts`.
    fn apply(&self, opts: &mut RingOptions) {
        opts.hold_limit = self.hold_limit;
        opts.hold_timeout = Duration::from_millis(self.hold_timeout_ms);
        opts.wait_for_lock = self.wait_lock;
        opts.copy_stores = self.copy_stores;
        opts.slot_reuse = self.slot_reuse;
    }

    /// Whether the run is over (frames or time) or was asked to stop.
    fn done(&self, published: u64, deadline: Option<Instant>) -> bool {
        self.frames.is_some_and(|n| published >= n)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || signal::stop_requested()
    }

    /// The format of a raw `--file`: `None` unless all of --format, --width
    /// and --height are given.
    fn raw_format(&self) -> Option<RawFormat> {
        Some(RawFormat::new(self.format?, self.width?, self.height?))
    }

    /// How `--sensor` input splits into records.
    fn framing(&self) -> Framing {
        match self.input.record_size {
            Some(n) => Framing::Fixed(n),
            None => Framing::Lines {
                max_bytes: self
                    .input
                    .max_record_bytes
                    .unwrap_or(DEFAULT_MAX_LINE_BYTES),
            },
        }
    }
}

/// The longest a wait in a command loop lasts before it looks at the stop
/// flag (a signal interrupts no wait on a channel).
const SLICE: Duration = Duration::from_millis(100);

/// `--wait-readers`: waits until that many readers are registered. `Ok(false)`
/// if a stop was requested meanwhile; an error if they are not all there
/// within `--wait-readers-timeout`.
fn await_readers(args: &PublishArgs, publisher: &mut Publisher) -> anyhow::Result<bool> {
    let Some(want) = args.wait_readers else {
        return Ok(true);
    };
    let start = Instant::now();
    loop {
        if signal::stop_requested() {
            return Ok(false);
        }
        let left = args.wait_readers_timeout.saturating_sub(start.elapsed());
        let got = publisher.wait_readers(want, left.min(SLICE));
        if got >= want {
            return Ok(true);
        }
        if left.is_zero() {
            anyhow::bail!(
                "only {got} of {want} readers registered within {:?} (--wait-readers {want}; \
                 --wait-readers-timeout to wait longer)",
                args.wait_readers_timeout
            );
        }
    }
}

/// `--linger`: once the input is over, keeps the ring live until every
/// reader has left (or the time is up, or a stop is requested), so readers
/// can take the last frames.
fn linger(args: &PublishArgs, publisher: &mut Publisher) {
    let Some(limit) = args.linger else {
        return;
    };
    let start = Instant::now();
    while !signal::stop_requested() {
        let readers = publisher.poll_readers();
        if readers == 0 {
            return;
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            eprintln!(
                "camux publish: {readers} reader(s) still registered after --linger {limit:?}; stopping"
            );
            return;
        }
        // Takes in registrations and departures until the slice is over (a
        // reader that leaves is seen within one slice).
        publisher.wait_readers(u32::MAX, left.min(SLICE));
    }
}

/// Stops: drops the publisher (the ring is marked stopped and the lock
/// released before we say so), prints the stopped line with `extra` (and
/// an `error` field when `extra` has fields or the run failed), and
/// returns how the run ended.
fn finish(
    publisher: Publisher,
    out: &mut impl std::io::Write,
    extra: serde_json::Value,
    failure: Option<anyhow::Error>,
) -> anyhow::Result<Status> {
    let stats = publisher.stats();
    drop(publisher);
    let mut extra = fields(extra);
    if failure.is_some() || !extra.is_empty() {
        let error = failure.as_ref().map(|e| format!("{e:#}"));
        extra.insert("error".into(), error.into());
    }
    json::emit(
        out,
        &stopped(
            stats.published,
            stats.dropped,
            stats.revoked,
            serde_json::Value::Object(extra),
        ),
    )?;
    match failure {
        Some(e) => Err(e),
        None => Ok(Status::Success),
    }
}

#[derive(Serialize)]
struct Ready<'a> {
    event: &'static str,
    ring: &'a str,
    origin: &'static str,
    epoch: u32,
    next_seq: u64,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Stopped {
    event: &'static str,
    published: u64,
    dropped: u64,
    revoked: u64,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// An object's fields, for the `extra` of a ready or stopped line.
fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Creates the publisher and prints the ready line (with `extra` fields).
/// `None`: a stop was requested while waiting for the lock (the stopped
/// line is printed).
fn open_publisher(
    args: &PublishArgs,
    opts: &RingOptions,
    out: &mut impl std::io::Write,
    extra: serde_json::Value,
) -> anyhow::Result<Option<Publisher>> {
    let Some(publisher) = create_publisher(args, opts)? else {
        json::emit(out, &stopped(0, 0, 0, serde_json::Value::Null))?;
        return Ok(None);
    };
    emit_ready(&publisher, out, extra)?;
    Ok(Some(publisher))
}

/// Creates the publisher without printing the ready line (a source that
/// sets up after the ring exists prints it with [`emit_ready`]). `None`:
/// SIGTERM while in standby (--wait-lock) interrupted the wait for the lock.
fn create_publisher(args: &PublishArgs, opts: &RingOptions) -> anyhow::Result<Option<Publisher>> {
    match Publisher::create(opts) {
        Ok(p) => {
            if let Origin::Replaced { reason } = p.origin() {
                if !reason.is_empty() {
                    eprintln!("camux publish: replaced the existing ring: {reason}");
                }
            }
            Ok(Some(p))
        }
        Err(_) if signal::stop_requested() => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot publish stream {:?} in {}",
                args.stream,
                args.dir.display()
            )
        }),
    }
}

fn emit_ready(
    publisher: &Publisher,
    out: &mut impl std::io::Write,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let ring = publisher.ring_path().display().to_string();
    json::emit(
        out,
        &Ready {
            event: "ready",
            ring: &ring,
            origin: origin_name(publisher.origin()),
            epoch: publisher.stats().epoch,
            next_seq: publisher.next_seq(),
            extra: fields(extra),
        },
    )?;
    Ok(())
}

fn stopped(published: u64, dropped: u64, revoked: u64, extra: serde_json::Value) -> Stopped {
    Stopped {
        event: "stopped",
        published,
        dropped,
        revoked,
        extra: fields(extra),
    }
}

/// CPU time (user + system) the calling thread has used, in ns: the
/// scheduler's exact run time, not tick samples as getrusage gives on most
/// kernels (which say little about a thread that runs 1 ms per frame).
#[cfg_attr(not(feature = "v4l2"), allow(dead_code))]
fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64
    })
}

/// The `origin` word of the ready line.
pub fn origin_name(origin: &Origin) -> &'static str {
    match origin {
        Origin::Created => "created",
        Origin::Resumed { .. } => "resumed",
        Origin::Replaced { .. } => "replaced",
    }
}

/// The ring options for publishing `source` as `stream` in `dir`.
pub fn ring_options(source: &Synthetic, dir: &std::path::Path, stream: &str) -> RingOptions {
    let format = StreamFormat::from_layout(source.layout(), source.config().fps);
    RingOptions::new(dir, stream, format, source.frame_bytes() as u64)
}

/// Loans a slot, renders frame `publisher.next_seq()` into it and commits
/// it (no copy). `Ok(None)` when every slot was held: the frame is dropped,
/// and the publisher has counted it.
pub fn publish_one(
    publisher: &mut Publisher,
    source: &Synthetic,
    info: &FrameInfo<'_>,
) -> anyhow::Result<Option<u64>> {
    let mut loan = match publisher.loan() {
        Ok(loan) => loan,
        Err(PublishError::NoFreeSlot) => return Ok(None),
        Err(e) => return Err(e).context("cannot loan a slot"),
    };
    // The stamp must carry the seq the ring gives the frame: after a restart
    // the ring resumes numbering, and readers check the two agree.
    let seq = publisher.next_seq();
    let len = match source.render(seq, loan.as_mut_slice()) {
        Ok(len) => len,
        Err(e) => {
            publisher.abandon(loan);
            return Err(e).context("cannot render into the slot");
        }
    };
    let got = publisher
        .commit(loan, len, info)
        .context("cannot commit the frame")?;
    debug_assert_eq!(got, seq);
    Ok(Some(got))
}

/// Renders frame `publisher.next_seq()` into `buf` and publishes a copy of
/// it (`Publisher::publish`). `Ok(None)` when every slot was held.
pub fn publish_copy(
    publisher: &mut Publisher,
    source: &Synthetic,
    info: &FrameInfo<'_>,
    buf: &mut [u8],
) -> anyhow::Result<Option<u64>> {
    let seq = publisher.next_seq();
    let len = source.render(seq, buf).context("cannot render the frame")?;
    match publisher
        .publish(info, &buf[..len])
        .context("cannot publish the frame")?
    {
        Published::Seq(got) => {
            debug_assert_eq!(got, seq);
            Ok(Some(got))
        }
        Published::Dropped => Ok(None),
    }
}

/// Runs `camux publish`.
pub fn run(args: PublishArgs) -> anyhow::Result<Status> {
    signal::install()?;
    if let Some(device) = args.v4l2.clone() {
        return run_v4l2(&args, device);
    }
    if let Some(path) = args.input.file.clone() {
        return run_file(&args, &path);
    }
    if let Some(path) = args.input.sensor.clone() {
        return run_sensor(&args, &path);
    }
    run_synthetic(&args)
}

fn run_synthetic(args: &PublishArgs) -> anyhow::Result<Status> {
    let source = args.synthetic()?;
    let mut opts = ring_options(&source, &args.dir, &args.stream);
    opts.slots = args.slots;
    args.apply(&mut opts);
    let mut out = std::io::stdout().lock();
    let extra = match source.qr_text() {
        Some(text) => serde_json::json!({ "source": "synthetic", "qr": text }),
        None => serde_json::json!({ "source": "synthetic" }),
    };
    let Some(mut publisher) = open_publisher(args, &opts, &mut out, extra)? else {
        return Ok(Status::Success);
    };
    match await_readers(args, &mut publisher) {
        Ok(true) => {}
        Ok(false) => return finish(publisher, &mut out, serde_json::Value::Null, None),
        Err(e) => return finish(publisher, &mut out, serde_json::Value::Null, Some(e)),
    }
    let mut pacer = if args.flat {
        Pacer::unpaced()
    } else {
        source.pacer()
    };
    let deadline = args.seconds.map(|s| Instant::now() + s);
    let mut published = 0u64;
    let mut captured = 0u64;
    let mut failure = None;
    let mut copy_buf = args.copy.then(|| vec![0u8; source.frame_bytes()]);
    while !args.done(published, deadline) {
        pacer.wait();
        // Checked again after the sleep, which may have passed the deadline.
        if args.done(published, deadline) {
            break;
        }
        captured += 1;
        let info = super::common::captured_now(captured);
        let one = match &mut copy_buf {
            Some(buf) => publish_copy(&mut publisher, &source, &info, buf),
            None => publish_one(&mut publisher, &source, &info),
        };
        match one {
            Ok(Some(_)) => published += 1,
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        linger(args, &mut publisher);
    }
    finish(publisher, &mut out, serde_json::Value::Null, failure)
}

/// How one tick of a file replay went.
enum Replayed {
    /// A frame was published.
    Published,
    /// Every slot was held: the file's frame was read and dropped (as a
    /// camera drops one), and the publisher counted it. (Counted before
    /// the read: a tick that finds the ring full and the file at its end
    /// counts one drop too many.)
    Dropped,
    /// The end of the file (of a file that does not loop).
    End,
}

/// What `--file` replay error to show: a raw file without its format is
/// told in the command line's terms; other errors name the file already.
fn file_open_error(args: &PublishArgs, err: FileError) -> anyhow::Error {
    match err {
        FileError::NeedsRawFormat { path, forced } => {
            let why = if forced {
                "--file-kind raw was given"
            } else {
                "it does not start with \"YUV4MPEG2 \" (it is not Y4M)"
            };
            let missing: Vec<&str> = [
                ("--format", args.format.is_none()),
                ("--width", args.width.is_none()),
                ("--height", args.height.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            let give = match missing.as_slice() {
                [one] => format!("{one} too"),
                [a, b] => format!("{a} and {b} too"),
                _ => "--format, --width and --height".to_owned(),
            };
            anyhow::anyhow!(
                "cannot replay {}: {why}, so it is read as raw frames back to back, and a raw \
                 file does not say what its frames are: give {give} (e.g. --format YUYV \
                 --width 640 --height 480; for RAW records --width is bytes per record)",
                path.display()
            )
        }
        // The message names the file and the cause already (and says the
        // cause again as its source: not chained, or `{:#}` says it twice).
        err => anyhow::anyhow!("cannot replay --file: {err}"),
    }
}

/// Reads the file's next frame straight into a loaned slot and publishes
/// it (one copy, from the page cache, counted as such). A partial frame at
/// the end is reported once on stderr and never published; the source
/// then carries on as at the end of the file (stops, or starts over).
fn replay_one(
    publisher: &mut Publisher,
    source: &mut FileSource,
    scratch: &mut Vec<u8>,
    partial: &mut u64,
) -> anyhow::Result<Replayed> {
    // The capture time is the tick's, before the read.
    let info = super::common::captured_now(source.frames_read());
    let mut loan = match publisher.loan() {
        Ok(loan) => Some(loan),
        Err(PublishError::NoFreeSlot) => None,
        Err(e) => return Err(e).context("cannot loan a slot"),
    };
    loop {
        let buf = match &mut loan {
            Some(loan) => loan.as_mut_slice(),
            None => {
                scratch.resize(source.frame_bytes(), 0);
                scratch.as_mut_slice()
            }
        };
        match source.next_frame(buf) {
            Ok(Some(read)) => {
                let Some(loan) = loan else {
                    return Ok(Replayed::Dropped);
                };
                publisher.count_copied(read.len as u64);
                publisher
                    .commit(loan, read.len, &info)
                    .context("cannot commit the frame")?;
                return Ok(Replayed::Published);
            }
            Ok(None) => {
                if let Some(loan) = loan {
                    publisher.abandon(loan);
                }
                return Ok(Replayed::End);
            }
            Err(e @ FileError::PartialFrame { .. }) => {
                *partial += 1;
                if *partial == 1 {
                    let then = if source.is_looping() {
                        "; starting over (reported once)"
                    } else {
                        "; stopping"
                    };
                    eprintln!("camux publish: {e}: not published{then}");
                }
                // The slot may hold part of it: read the next frame over it.
            }
            Err(e) => {
                if let Some(loan) = loan {
                    publisher.abandon(loan);
                }
                return Err(anyhow::anyhow!("cannot replay --file: {e}"));
            }
        }
    }
}

fn run_file(args: &PublishArgs, path: &Path) -> anyhow::Result<Status> {
    let config = FileConfig {
        kind: args.input.file_kind.into(),
        raw_format: args.raw_format(),
        fps: args.fps,
        looping: args.input.looping,
        ..FileConfig::new(path)
    };
    let mut source = FileSource::open(&config).map_err(|e| file_open_error(args, e))?;
    let layout = *source.layout();
    if source.kind() == FileKind::Y4m {
        let differs = args.format.is_some_and(|f| f != layout.fourcc)
            || args.width.is_some_and(|w| w != layout.width)
            || args.height.is_some_and(|h| h != layout.height);
        if differs {
            eprintln!(
                "camux publish: {} is Y4M: its header says {} {}x{}, which is what is \
                 published (--format/--width/--height are for raw files)",
                path.display(),
                layout.fourcc,
                layout.width,
                layout.height
            );
        }
    }
    let format = StreamFormat::from_layout(&layout, source.fps());
    let mut opts = RingOptions::new(&args.dir, &args.stream, format, layout.frame_bytes);
    opts.slots = args.slots;
    args.apply(&mut opts);
    let mut out = std::io::stdout().lock();
    let extra = serde_json::json!({
        "source": "file",
        "path": path.display().to_string(),
        "kind": source.kind().to_string(),
        "format": {
            "fourcc": layout.fourcc.to_string(),
            "width": layout.width,
            "height": layout.height,
            "frame_bytes": layout.frame_bytes,
        },
        "fps": source.fps(),
        "loop": source.is_looping(),
        "flat": args.flat,
    });
    let Some(mut publisher) = open_publisher(args, &opts, &mut out, extra)? else {
        return Ok(Status::Success);
    };
    // A stop requested meanwhile is seen by `done` below.
    let mut failure = await_readers(args, &mut publisher).err();
    let mut pacer = if args.flat {
        Pacer::unpaced()
    } else {
        source.pacer()
    };
    let deadline = args.seconds.map(|s| Instant::now() + s);
    let (mut published, mut partial) = (0u64, 0u64);
    let mut scratch = Vec::new();
    let mut end_of_file = false;
    while failure.is_none() && !args.done(published, deadline) {
        pacer.wait();
        // Checked again after the sleep, which may have passed the deadline.
        if args.done(published, deadline) {
            break;
        }
        match replay_one(&mut publisher, &mut source, &mut scratch, &mut partial) {
            Ok(Replayed::Published) => published += 1,
            Ok(Replayed::Dropped) => {}
            Ok(Replayed::End) => {
                end_of_file = true;
                break;
            }
            Err(e) => failure = Some(e),
        }
    }
    if failure.is_none() && !signal::stop_requested() {
        linger(args, &mut publisher);
    }
    let extra = serde_json::json!({
        "frames": source.frames_read(),
        "loops": source.loops(),
        "partial_frames": partial,
        "end_of_file": end_of_file,
        "bytes_copied": publisher.stats().bytes_copied,
    });
    finish(publisher, &mut out, extra, failure)
}

/// What the sensor thread hands the publishing thread.
enum SensorMsg {
    /// The input is open.
    Opened,
    /// A record: its bytes are `buf[..record.len]` (give `buf` back).
    Record {
        buf: Vec<u8>,
        record: Record,
        stats: SensorStats,
    },
    /// The end of the stream.
    End { stats: SensorStats },
    /// Opening or reading failed; nothing more comes.
    Failed {
        error: SensorError,
        stats: SensorStats,
    },
}

/// Records queued between the sensor thread and the publishing thread
/// before the sensor thread waits (and the sensor's own buffer fills).
const SENSOR_QUEUE: usize = 64;

/// Opens the sensor and reads its records on a thread of its own: a read
/// (or a FIFO's open) blocks until the sensor says something and the
/// library retries an interrupted one, so on the publishing thread a quiet
/// sensor would keep SIGTERM and --seconds from ever being seen. `pool`
/// brings spent buffers back.
fn read_sensor(config: SensorConfig, tx: SyncSender<SensorMsg>, pool: Receiver<Vec<u8>>) {
    let mut source = match SensorSource::open(&config) {
        Ok(source) => source,
        Err(error) => {
            let _ = tx.send(SensorMsg::Failed {
                error,
                stats: SensorStats::default(),
            });
            return;
        }
    };
    if tx.send(SensorMsg::Opened).is_err() {
        return;
    }
    let max = source.max_record_bytes();
    loop {
        let mut buf = pool.try_recv().unwrap_or_else(|_| vec![0; max]);
        let msg = match source.next_record(&mut buf) {
            Ok(Some(record)) => SensorMsg::Record {
                buf,
                record,
                stats: source.stats(),
            },
            Ok(None) => SensorMsg::End {
                stats: source.stats(),
            },
            Err(error) => SensorMsg::Failed {
                error,
                stats: source.stats(),
            },
        };
        let more = matches!(msg, SensorMsg::Record { .. });
        if tx.send(msg).is_err() || !more {
            return;
        }
    }
}

/// Waits for the sensor thread to open the input. `Ok(false)`: a stop was
/// requested first (the thread is left blocked; the process is ending).
fn await_open(rx: &Receiver<SensorMsg>, path: &Path) -> anyhow::Result<bool> {
    let mut told = false;
    loop {
        if signal::stop_requested() {
            return Ok(false);
        }
        match rx.recv_timeout(SLICE) {
            Ok(SensorMsg::Opened) => return Ok(true),
            Ok(SensorMsg::Failed { error, .. }) => {
                anyhow::bail!("cannot publish --sensor: {error}")
            }
            Ok(_) => unreachable!("the sensor thread sends Opened first"),
            Err(RecvTimeoutError::Timeout) if !told => {
                told = true;
                let fifo = std::fs::metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_fifo()
                });
                if fifo {
                    eprintln!(
                        "camux publish: waiting for a writer to open the FIFO {}",
                        path.display()
                    );
                } else {
                    eprintln!("camux publish: waiting for {} to open", path.display());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the sensor thread ended before opening {}", path.display())
            }
        }
    }
}

fn run_sensor(args: &PublishArgs, path: &Path) -> anyhow::Result<Status> {
    let framing = args.framing();
    let content_type = args
        .input
        .content_type
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
    let config = SensorConfig::new(path, framing, content_type.clone());
    let (tx, rx) = mpsc::sync_channel(SENSOR_QUEUE);
    let (pool_tx, pool_rx): (Sender<Vec<u8>>, _) = mpsc::channel();
    std::thread::Builder::new()
        .name("sensor".into())
        .spawn(move || read_sensor(config, tx, pool_rx))
        .context("cannot start the sensor thread")?;
    let mut out = std::io::stdout().lock();
    if !await_open(&rx, path)? {
        json::emit(&mut out, &stopped(0, 0, 0, serde_json::Value::Null))?;
        return Ok(Status::Success);
    }
    let max = framing.max_record_bytes();
    // Records are opaque bytes of at most `max`: RAW, width `max`, height 1.
    // (max is at most MAX_RECORD_BYTES, 16 KiB.)
    let mut opts = RingOptions::new(
        &args.dir,
        &args.stream,
        StreamFormat::opaque(max as u32),
        max as u64,
    );
    opts.content_type = Some(content_type.clone());
    opts.slots = args.slots;
    args.apply(&mut opts);
    let extra = serde_json::json!({
        "source": "sensor",
        "path": path.display().to_string(),
        "framing": framing.to_string(),
        "max_record_bytes": max,
        "content_type": content_type,
    });
    let Some(mut publisher) = open_publisher(args, &opts, &mut out, extra)? else {
        return Ok(Status::Success);
    };
    // A stop requested meanwhile is seen by `done` below.
    let mut failure = await_readers(args, &mut publisher).err();
    let deadline = args.seconds.map(|s| Instant::now() + s);
    let mut published = 0u64;
    let mut stats = SensorStats::default();
    let mut end_of_stream = false;
    while failure.is_none() && !args.done(published, deadline) {
        let wait = deadline.map_or(SLICE, |d| {
            d.saturating_duration_since(Instant::now()).min(SLICE)
        });
        match rx.recv_timeout(wait) {
            Ok(SensorMsg::Record {
                buf,
                record,
                stats: now,
            }) => {
                stats = now;
                let info = FrameInfo {
                    capture_mono_ns: record.mono_ns,
                    capture_real_ns: record.real_ns,
                    driver_seq: record.seq,
                    ..FrameInfo::default()
                };
                // A copy into the slot, counted in bytes_copied.
                match publisher.publish(&info, &buf[..record.len]) {
                    Ok(Published::Seq(_)) => published += 1,
                    Ok(Published::Dropped) => {}
                    Err(e) => {
                        failure = Some(anyhow::Error::new(e).context("cannot publish a record"))
                    }
                }
                let _ = pool_tx.send(buf);
            }
            Ok(SensorMsg::End { stats: now }) => {
                stats = now;
                end_of_stream = true;
                break;
            }
            Ok(SensorMsg::Failed { error, stats: now }) => {
                stats = now;
                failure = Some(anyhow::anyhow!("cannot publish --sensor: {error}"));
            }
            Ok(SensorMsg::Opened) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                failure = Some(anyhow::anyhow!("the sensor thread ended unexpectedly"));
            }
        }
    }
    if failure.is_none() && !signal::stop_requested() {
        linger(args, &mut publisher);
    }
    let f = stats.framer;
    let extra = serde_json::json!({
        "records": f.records,
        "oversized": f.oversized,
        "empty": f.empty,
        "truncated": f.truncated,
        "bytes_read": stats.bytes_read,
        "end_of_stream": end_of_stream,
        "bytes_copied": publisher.stats().bytes_copied,
    });
    finish(publisher, &mut out, extra, failure)
}

#[cfg(not(feature = "v4l2"))]
fn run_v4l2(_args: &PublishArgs, _device: PathBuf) -> anyhow::Result<Status> {
    anyhow::bail!("{}", super::NO_V4L2)
}

#[cfg(feature = "v4l2")]
fn run_v4l2(args: &PublishArgs, device: PathBuf) -> anyhow::Result<Status> {
    use camux::source::v4l2::{Capture, IoMode, V4l2Config, V4l2Device, V4l2Error};
    let io = match args.io {
        IoArg::Auto => IoMode::Auto,
        IoArg::Userptr => IoMode::UserPtr,
        IoArg::Mmap => IoMode::Mmap,
    };
    let config = V4l2Config {
        fourcc: args.format,
        width: args.width,
        height: args.height,
        fps: args.fps,
        io,
        allow_substitution: args.allow_substitution,
        buffers: args.buffers,
        ..V4l2Config::new(device)
    };
    let dev = V4l2Device::open(&config)?;
    let n = *dev.negotiated();
    let mut opts = dev.ring_options(&args.dir, &args.stream, args.slots);
    args.apply(&mut opts);
    let mut out = std::io::stdout().lock();
    // The ring exists before streaming starts: USERPTR queues its slots.
    let Some(mut publisher) = create_publisher(args, &opts)? else {
        json::emit(&mut out, &stopped(0, 0, 0, serde_json::Value::Null))?;
        return Ok(Status::Success);
    };
    let mut capture = Capture::start(dev, &mut publisher, io)?;
    let (mode, why) = capture.io_choice();
    eprintln!(
        "camux publish: {}: {} {}x{} in {} mode ({why})",
        config.device.display(),
        n.fourcc,
        n.width,
        n.height,
        mode
    );
    let id = capture.device().identity().clone();
    let extra = serde_json::json!({
        "source": "v4l2",
        "device": config.device,
        "driver": id.driver,
        "card": id.card,
        "io": mode.name(),
        "io_reason": why,
        "format": {
            "fourcc": n.fourcc.to_string(),
            "width": n.width,
            "height": n.height,
            "bytesperline": n.bytesperline,
            "sizeimage": n.sizeimage,
            "fps": n.interval.map(|i| i.fps()),
            "compressed": n.compressed,
        },
    });
    emit_ready(&publisher, &mut out, extra)?;
    let deadline = args.seconds.map(|s| Instant::now() + s);
    // A stall is reported after this long without a frame (the stream goes on).
    let stall_after = n.stall_after();
    let cpu_start = thread_cpu_ns();
    // Steady state starts once every slot has been through the driver: in
    // USERPTR mode a slot's first trip pins its pages (a one-time cost).
    let warmup = u64::from(publisher.header().layout.geometry.slot_count) * 2;
    let mut steady_start: Option<(u64, u64)> = None;
    let mut last_frame = Instant::now();
    let mut stall_reported = false;
    let mut failure = None;
    while !args.done(capture.stats().published, deadline) {
        // Short slices: a SIGTERM between the flag check and poll() is
        // seen within one slice.
        match capture.next(&mut publisher, Duration::from_millis(250)) {
            Ok(_) => {
                last_frame = Instant::now();
                stall_reported = false;
                if steady_start.is_none() && capture.stats().frames == warmup {
                    steady_start = Some((thread_cpu_ns(), warmup));
                }
            }
            Err(V4l2Error::Stalled { .. }) => {
                if !stall_reported && last_frame.elapsed() >= stall_after {
                    eprintln!(
                        "camux publish: {}: no frame for {:.1} s",
                        config.device.display(),
                        last_frame.elapsed().as_secs_f64()
                    );
                    stall_reported = true;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let cpu_end = thread_cpu_ns();
    let cpu = cpu_end.saturating_sub(cpu_start);
    let cs = capture.stats();
    capture.stop(&mut publisher);
    let stats = publisher.stats();
    drop(publisher);
    let per_frame = |v: u64| {
        if cs.frames == 0 {
            0.0
        } else {
            v as f64 / cs.frames as f64
        }
    };
    let extra = serde_json::json!({
        "frames": cs.frames,
        "driver_drops": cs.driver_drops,
        "dropped_no_slot": cs.dropped_no_slot,
        "error_frames": cs.error_frames,
        "bytes_copied": stats.bytes_copied,
        "bytes_copied_per_frame": per_frame(stats.bytes_copied),
        "cpu_us_per_frame": per_frame(cpu) / 1e3,
        // After the warm-up (null when the run was too short for one).
        "steady_cpu_us_per_frame": steady_start
            .filter(|&(_, at)| cs.frames > at)
            .map(|(ns, at)| (cpu_end.saturating_sub(ns)) as f64 / (cs.frames - at) as f64 / 1e3),
        "io": mode.name(),
        "error": failure.as_ref().map(|e| e.to_string()),
        "error_kind": failure.as_ref().map(|e| e.kind()),
    });
    json::emit(
        &mut out,
        &stopped(stats.published, stats.dropped, stats.revoked, extra),
    )?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(Status::Success),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<PublishArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["camux", "publish", "--stream", "s"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Publish(p) => Ok(p),
            _ => panic!("not publish"),
        }
    }

    #[test]
    fn file_arguments() {
        let p = parse(&["--file", "clip.y4m"]).unwrap();
        assert_eq!(p.input.file, Some(PathBuf::from("clip.y4m")));
        assert_eq!(
            (p.input.looping, p.input.file_kind, p.raw_format()),
            (false, FileKindArg::Auto, None)
        );
        let p = parse(&[
            "--file",
            "f.raw",
            "--loop",
            "--file-kind",
            "raw",
            "--format",
            "grey",
            "--width",
            "8",
            "--height",
            "4",
        ])
        .unwrap();
        assert!(p.input.looping);
        assert_eq!(FileKind::from(p.input.file_kind), FileKind::Raw);
        assert_eq!(p.raw_format(), Some(RawFormat::new(FourCc::GREY, 8, 4)));
        // Part of a format is no format (the error then says what is missing).
        let p = parse(&["--file", "f.raw", "--format", "GREY", "--width", "8"]).unwrap();
        assert_eq!(p.raw_format(), None);
    }

    #[test]
    fn sensor_arguments() {
        let p = parse(&["--sensor", "-", "--lines"]).unwrap();
        assert_eq!(p.input.sensor, Some(PathBuf::from("-")));
        assert_eq!(
            p.framing(),
            Framing::Lines {
                max_bytes: DEFAULT_MAX_LINE_BYTES
            }
        );
        assert_eq!(p.input.content_type, None);
        let p = parse(&[
            "--sensor",
            "/dev/ttyUSB0",
            "--lines",
            "--max-record-bytes",
            "80",
            "--content-type",
            "text/x-nmea",
        ])
        .unwrap();
        assert_eq!(p.framing(), Framing::Lines { max_bytes: 80 });
        assert_eq!(p.input.content_type.as_deref(), Some("text/x-nmea"));
        let p = parse(&["--sensor", "/dev/input/event0", "--record-size", "24"]).unwrap();
        assert_eq!(p.framing(), Framing::Fixed(24));
        assert!(validate_content_type(DEFAULT_CONTENT_TYPE).is_ok());
    }

    #[test]
    fn waiting_and_lingering() {
        let p = parse(&["--wait-readers", "2", "--linger", "5s"]).unwrap();
        assert_eq!(p.wait_readers, Some(2));
        assert_eq!(p.wait_readers_timeout, Duration::from_secs(30));
        assert_eq!(p.linger, Some(Duration::from_secs(5)));
        let p = parse(&["--wait-readers", "1", "--wait-readers-timeout", "500ms"]).unwrap();
        assert_eq!(p.wait_readers_timeout, Duration::from_millis(500));
        assert_eq!(parse(&[]).unwrap().linger, None);
    }

    #[test]
    fn sources_and_their_options_are_usage_errors_apart() {
        use clap::error::ErrorKind;
        for args in [
            &["--file", "a", "--v4l2", "/dev/video0"][..],
            &["--file", "a", "--sensor", "b", "--lines"],
            &["--sensor", "b", "--lines", "--v4l2", "/dev/video0"],
            &["--record-size", "8"],
            &["--lines"],
            &["--max-record-bytes", "8"],
            &["--content-type", "text/csv"],
            &["--loop"],
            &["--file-kind", "y4m"],
            &["--sensor", "b"],
            &["--sensor", "b", "--lines", "--record-size", "8"],
            &[
                "--sensor",
                "b",
                "--record-size",
                "8",
                "--max-record-bytes",
                "8",
            ],
            &["--sensor", "b", "--lines", "--format", "YUYV"],
            &["--sensor", "b", "--lines", "--fps", "5"],
            &["--sensor", "b", "--lines", "--flat"],
            &["--sensor", "b", "--record-size", "0"],
            &["--sensor", "b", "--record-size", "16385"],
            &["--sensor", "b", "--lines", "--content-type", "a b"],
            &["--wait-readers-timeout", "5"],
            &["--v4l2", "/dev/video0", "--wait-readers", "1"],
            &["--v4l2", "/dev/video0", "--linger", "1"],
        ] {
            let e = parse(args).expect_err(&format!("{args:?} parsed"));
            assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn a_raw_file_without_its_format_says_what_to_give() {
        let p = parse(&["--file", "f.raw", "--width", "8"]).unwrap();
        let err = |forced| FileError::NeedsRawFormat {
            path: "f.raw".into(),
            forced,
        };
        let text = file_open_error(&p, err(false)).to_string();
        for part in ["f.raw", "not Y4M", "give --format and --height too"] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        let p = parse(&["--file", "f.raw"]).unwrap();
        let text = file_open_error(&p, err(true)).to_string();
        for part in ["--file-kind raw", "give --format, --width and --height"] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        assert!(!text.contains("FileConfig"), "{text}");
    }

    #[test]
    fn the_help_names_every_source() {
        for part in [
            "--file PATH",
            "--sensor PATH",
            "--wait-readers",
            "--linger",
            "--loop",
        ] {
            assert!(LONG_ABOUT.contains(part), "{part}");
        }
    }
}
