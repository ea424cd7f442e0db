//! `camux record`: write what a stream carries into files that ordinary
//! tools read, with a JSON sidecar of every frame's metadata.
//!
//! The container follows from the stream's format ([`Container::for_format`]):
//! Y4M for raw YUV and grey (packed YUYV/UYVY converted to planar 4:2:2,
//! semi-planar NV12/NV21 to planar 4:2:0), the concatenated frames for MJPG
//! (an MJPEG stream) and H264 (an Annex B elementary stream), and the
//! camux raw recording format (docs/RECORDING.md) for anything else.
//!
//! Every file is written under a hidden temporary name in the directory of
//! its final name and renamed into place once complete, container first and
//! sidecar last: a file under its final name is always whole, and its
//! sidecar's presence says so. A write that fails (a full disk) removes the
//! segment being written and says which complete files were kept.

use super::common::{parse_duration, DEFAULT_DIR};
use super::json::{self, FormatJson};
use super::{signal, Status};
use anyhow::Context;
use camux::format::FourCc;
use camux::ring::StreamFormat;
use camux::source::y4m::{Colourspace, Ratio, Y4mError, Y4mHeader, Y4mWriter};
use camux::{Frame, Mode, RecvError, Subscriber, SubscriberOptions};
use clap::Args;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Record a stream into files that ordinary tools read, with a JSON sidecar.

Reads every frame of <DIR>/<STREAM>.ring in order (as `camux tail` does)
and writes it, in the container the stream's format calls for:
  YU12 (I420), 422P, 444P, GREY   Y4M as is (.y4m; ffmpeg, ffprobe, mpv, x264 read it)
  NV12, NV21                      Y4M 4:2:0, chroma de-interleaved to planes
  YUYV, UYVY                      Y4M 4:2:2 (C422), converted to planes
  MJPG                            an MJPEG stream: the JPEG frames back to back
                                  (.mjpeg; ffprobe -f mjpeg, ffmpeg -f mjpeg -i)
  H264                            an Annex B elementary stream (.h264)
  anything else (RGB3, RAW...)    the camux raw recording format (.camuxrec,
                                  docs/RECORDING.md): a header, then each frame
                                  with its seq and length
Rows padded by the driver (a stride wider than the picture) are written
without the padding. If --out has no extension the container's is added; an
extension that names another container is an error.

Next to each file goes PATH.json, the sidecar: the stream and its format,
then every frame recorded (seq, capture and publish time on CLOCK_MONOTONIC
and CLOCK_REALTIME, payload length, driver seq, flags, offset in the file),
the gaps seen (frames missed by falling behind: lagged; producer restarts;
a silent producer: stale; frames that do not match their format:
malformed, skipped) and a summary.

Files are written under a hidden temporary name (.NAME.PID.partial) in the
same directory and renamed into place when complete, the sidecar last: a
file under its final name is whole. A write error (a full disk) removes the
file being written, keeps the complete ones and says which they are.

--segment S splits the recording into files of S of stream time each (by
capture timestamp), numbered before the extension: clip-0000.y4m,
clip-0001.y4m..., each with its own sidecar, each renamed into place when
it closes, for an upload job to pick up while the recording goes on.

It stops after --frames frames, after --seconds (from the start), on
SIGTERM/SIGINT (the files are completed), after --timeout-ms without a frame
(status 1), or at a format change (status 1: what was recorded is kept).
A terminal gets a progress line on stderr. A summary ends the output:
frames, gaps, bytes, duration and effective frame rate.

--json prints JSON lines: {\"event\":\"segment\",\"path\":..,\"sidecar\":..,
\"frames\":N,\"bytes\":N,\"first_seq\":N,\"last_seq\":N} for each file
completed, {\"event\":\"lagged\",\"missed\":N}, {\"event\":\"restart\",..},
{\"event\":\"stale\",..}, and last {\"event\":\"summary\",\"frames\":N,..}.

Exit status: 0 ok, 1 error (nothing to record, timeout, full disk, format
change, an unwritable --out), 2 usage error.

Examples:
  camux record --dir /tmp/camux cam0 --seconds 10 --out /data/cam0.y4m
  camux record cam0 --frames 300 --out clip          # extension from the format
  camux record cam0 --seconds 3600 --segment 5m --out /data/cam0 --json
  ffprobe /data/cam0.y4m; ffprobe -f mjpeg /data/cam1.mjpeg";

/// Record a stream into files that ordinary tools read, with a JSON sidecar.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(group(clap::ArgGroup::new("length").required(true).args(["seconds", "frames"]).multiple(true)))]
pub struct RecordArgs {
    /// Directory of the stream's files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Stream name (reads <DIR>/<STREAM>.ring).
    pub stream: String,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m, 1h).
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Stop after recording N frames.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
    /// Where to write: PATH (and PATH.json); the container's extension is
    /// added if PATH has none.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Split into files of S of stream time each: PATH-0000.EXT, PATH-0001.EXT...
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub segment: Option<Duration>,
    /// Exit with status 1 when no frame arrives for MS milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How long one wait for a frame may last before the stop flag is checked.
const POLL: Duration = Duration::from_millis(50);

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Version of the sidecar JSON and of the raw recording format.
pub const RECORDING_VERSION: u32 = 1;

/// The first bytes of a camux raw recording.
pub const RAW_MAGIC: &[u8; 8] = b"CAMUXREC";

/// How frames of one format are converted for a Y4M file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planar {
    /// Planes copied as they are (YU12, 422P, 444P, GREY).
    Copy,
    /// NV12 (`cr_first` false) or NV21: chroma pairs split into two planes.
    ChromaPairs {
        /// NV21: V before U in each pair.
        cr_first: bool,
    },
    /// YUYV or UYVY: pixel pairs split into Y, U and V planes (4:2:2).
    Packed {
        /// Byte index of Y0, U, Y1 and V in each 4-byte pixel pair.
        order: [usize; 4],
    },
}

/// The file format a stream is recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// YUV4MPEG2, with the colour space and the conversion to it.
    Y4m {
        /// The `C` tag of the header.
        colourspace: Colourspace,
        /// How a frame becomes Y4M planes.
        planar: Planar,
    },
    /// The payloads back to back (MJPEG stream, H264 elementary stream).
    Concat {
        /// The format (MJPG or H264).
        fourcc: FourCc,
    },
    /// The camux raw recording format (docs/RECORDING.md).
    Raw,
}

impl Container {
    /// The container for frames of `fourcc`.
    ///
    /// ```text
    /// YU12, 422P, 444P, GREY -> Y4M as is; NV12/NV21 -> Y4M 4:2:0;
    /// YUYV/UYVY -> Y4M 4:2:2; MJPG, H264 -> concatenated; else raw
    /// ```
    pub fn for_format(fourcc: FourCc) -> Container {
        let y4m = |colourspace, planar| Container::Y4m {
            colourspace,
            planar,
        };
        match fourcc {
            FourCc::YU12 => y4m(Colourspace::Yuv420Mpeg2, Planar::Copy),
            FourCc::YU16 => y4m(Colourspace::Yuv422, Planar::Copy),
            FourCc::YU24 => y4m(Colourspace::Yuv444, Planar::Copy),
            FourCc::GREY => y4m(Colourspace::Mono, Planar::Copy),
            FourCc::NV12 | FourCc::NV21 => y4m(
                Colourspace::Yuv420Mpeg2,
                Planar::ChromaPairs {
                    cr_first: fourcc == FourCc::NV21,
                },
            ),
            FourCc::YUYV => y4m(
                Colourspace::Yuv422,
                Planar::Packed {
                    order: [0, 1, 2, 3],
                },
            ),
            FourCc::UYVY => y4m(
                Colourspace::Yuv422,
                Planar::Packed {
                    order: [1, 0, 3, 2],
                },
            ),
            FourCc::MJPG | FourCc::H264 => Container::Concat { fourcc },
            _ => Container::Raw,
        }
    }

    /// Its name in the sidecar and the summary: `y4m`, `mjpeg`, `h264`, `camuxrec`.
    pub fn name(self) -> &'static str {
        match self {
            Container::Y4m { .. } => "y4m",
            Container::Concat {
                fourcc: FourCc::MJPG,
            } => "mjpeg",
            Container::Concat { .. } => "h264",
            Container::Raw => "camuxrec",
        }
    }

    /// The extension its files get, and the others accepted in `--out`.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Container::Y4m { .. } => &["y4m"],
            Container::Concat {
                fourcc: FourCc::MJPG,
            } => &["mjpeg", "mjpg"],
            Container::Concat { .. } => &["h264", "264"],
            Container::Raw => &["camuxrec"],
        }
    }
}

/// Where a plane of `format` lies in a payload: (offset, stride). Plane
/// `i` past the planes the format lists follows the previous one, with
/// the stride the tight layout has relative to plane 0 (a single-planar
/// V4L2 NV12 or YU12 buffer lists one stride for all its planes).
fn plane_at(format: &StreamFormat, i: usize) -> (usize, usize) {
    let n = format.num_planes as usize;
    if i < n.min(format.strides.len()) {
        return (format.plane_offsets[i] as usize, format.strides[i] as usize);
    }
    let h = format.height as usize;
    let stride0 = format.strides[0] as usize;
    match (format.fourcc, i) {
        (FourCc::NV12 | FourCc::NV21, 1) => (plane_at(format, 0).0 + stride0 * h, stride0),
        (FourCc::YU12, 1) => (plane_at(format, 0).0 + stride0 * h, stride0 / 2),
        (FourCc::YU12, 2) => (plane_at(format, 1).0 + stride0 / 2 * (h / 2), stride0 / 2),
        (FourCc::YU16, 1) => (plane_at(format, 0).0 + stride0 * h, stride0 / 2),
        (FourCc::YU16, 2) => (plane_at(format, 1).0 + stride0 / 2 * h, stride0 / 2),
        (FourCc::YU24, _) => (plane_at(format, i - 1).0 + stride0 * h, stride0),
        _ => (0, stride0),
    }
}

/// Row `r` of a plane, `bytes` long, or an error naming what is missing.
fn row(
    payload: &[u8],
    (offset, stride): (usize, usize),
    plane: usize,
    r: usize,
    bytes: usize,
) -> Result<&[u8], String> {
    let start = offset + r * stride;
    payload.get(start..start + bytes).ok_or_else(|| {
        format!(
            "plane {plane} row {r} needs bytes {start}..{} but the payload has {}",
            start + bytes,
            payload.len()
        )
    })
}

/// Converts one frame of `format` into Y4M planes in `out` (cleared first).
///
/// # Errors
/// A payload shorter than its format says, or a stride narrower than a row.
pub fn to_y4m(
    planar: Planar,
    format: &StreamFormat,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    let (w, h) = (format.width as usize, format.height as usize);
    match planar {
        Planar::Copy => {
            let (cw, ch) = match format.fourcc {
                FourCc::YU12 => (w / 2, h / 2),
                FourCc::YU16 => (w / 2, h),
                FourCc::YU24 => (w, h),
                _ => (0, 0), // GREY
            };
            let planes = if cw == 0 { 1 } else { 3 };
            for p in 0..planes {
                let (pw, ph) = if p == 0 { (w, h) } else { (cw, ch) };
                let at = plane_at(format, p);
                for r in 0..ph {
                    out.extend_from_slice(row(payload, at, p, r, pw)?);
                }
            }
        }
        Planar::ChromaPairs { cr_first } => {
            let y = plane_at(format, 0);
            for r in 0..h {
                out.extend_from_slice(row(payload, y, 0, r, w)?);
            }
            let c = plane_at(format, 1);
            let (cw, ch) = (w / 2, h / 2);
            let base = out.len();
            out.resize(base + 2 * cw * ch, 0);
            let (u, v) = out[base..].split_at_mut(cw * ch);
            let (first, second) = if cr_first { (v, u) } else { (u, v) };
            for r in 0..ch {
                let pairs = row(payload, c, 1, r, 2 * cw)?;
                for (x, pair) in pairs.chunks_exact(2).enumerate() {
                    first[r * cw + x] = pair[0];
                    second[r * cw + x] = pair[1];
                }
            }
        }
        Planar::Packed { order } => {
            let at = plane_at(format, 0);
            let cw = w / 2;
            out.resize(w * h + 2 * cw * h, 0);
            let (y, chroma) = out.split_at_mut(w * h);
            let (u, v) = chroma.split_at_mut(cw * h);
            for r in 0..h {
                let src = row(payload, at, 0, r, 2 * w)?;
                for (x, px) in src.chunks_exact(4).enumerate() {
                    y[r * w + 2 * x] = px[order[0]];
                    u[r * cw + x] = px[order[1]];
                    y[r * w + 2 * x + 1] = px[order[2]];
                    v[r * cw + x] = px[order[3]];
                }
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` lay frames out alike (the rate aside).
fn same_layout(a: &StreamFormat, b: &StreamFormat) -> bool {
    (
        a.fourcc,
        a.width,
        a.height,
        a.num_planes,
        a.strides,
        a.plane_offsets,
    ) == (
        b.fourcc,
        b.width,
        b.height,
        b.num_planes,
        b.strides,
        b.plane_offsets,
    )
}

/// The Y4M frame rate of `format`: its nominal rate, or 30 if it has none
/// (the sidecar's timestamps are the truth either way).
fn y4m_rate(format: &StreamFormat) -> (Ratio, bool) {
    if format.fps_num > 0 && format.fps_den > 0 {
        let gcd = |mut a: u32, mut b: u32| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let g = gcd(format.fps_num, format.fps_den);
        (Ratio::new(format.fps_num / g, format.fps_den / g), true)
    } else {
        (Ratio::new(30, 1), false)
    }
}

/// The final path of segment `index` (`None`: no segments) of `out`, whose
/// extension is checked against the container's.
///
/// # Errors
/// An extension of another container, or a path with no file name.
pub fn segment_path(
    out: &Path,
    container: Container,
    index: Option<u32>,
) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--out {}: give a file name (UTF-8)", out.display()))?;
    let exts = container.extensions();
    let (stem, ext) = match out.extension().and_then(|e| e.to_str()) {
        Some(ext) if exts.contains(&ext.to_ascii_lowercase().as_str()) => {
            (&name[..name.len() - ext.len() - 1], ext)
        }
        Some(ext) => anyhow::bail!(
            "--out {}: the stream is recorded as {} (.{}), not .{ext}: use --out with .{} or \
             no extension (it is then added)",
            out.display(),
            container.name(),
            exts[0],
            exts[0]
        ),
        None => (name, exts[0]),
    };
    let file = match index {
        Some(i) => format!("{stem}-{i:04}.{ext}"),
        None => format!("{stem}.{ext}"),
    };
    Ok(out.with_file_name(file))
}

/// The sidecar of the file at `path`: `path` with `.json` appended.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// The hidden temporary name `path` is written under, in its directory.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// One frame's line in the sidecar.
#[derive(Debug, Serialize)]
struct FrameEntry {
    seq: u64,
    capture_mono_ns: u64,
    capture_real_ns: u64,
    publish_mono_ns: u64,
    publish_real_ns: u64,
    len: usize,
    driver_seq: u64,
    epoch: u32,
    flags: u32,
    /// Offset of the frame's data in the container file.
    offset: u64,
}

/// A discontinuity, as the sidecar and `--json` report it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Gap {
    /// This reader fell behind: `missed` frames were overwritten unread.
    Lagged {
        missed: u64,
        /// The last seq recorded before, if any.
        after_seq: Option<u64>,
    },
    /// The producer restarted before frame `seq`.
    Restart {
        seq: u64,
        epoch: u32,
        downtime_ms: f64,
    },
    /// No heartbeat from the producer for `since_ms`.
    Stale {
        since_ms: f64,
        after_seq: Option<u64>,
    },
    /// Frame `seq` does not match its format and was not recorded.
    Malformed { seq: u64, error: String },
}

/// What one closed file holds.
#[derive(Debug, Clone, Serialize)]
struct SegmentDone {
    path: String,
    sidecar: String,
    frames: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
}

/// The output writer of a segment.
enum Sink {
    Y4m(Y4mWriter<BufWriter<File>>),
    Plain(BufWriter<File>),
}

/// A file being written, under its temporary name.
struct Segment {
    path: PathBuf,
    partial: PathBuf,
    sidecar_partial: PathBuf,
    /// `None` once finished.
    sink: Option<Sink>,
    /// `None` once finished.
    sidecar: Option<BufWriter<File>>,
    container: Container,
    format: StreamFormat,
    /// Bytes written to the container so far.
    bytes: u64,
    frames: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    gaps: Vec<Gap>,
    /// Start of this segment's time window (capture time, ns).
    window_start: u64,
}

/// Maps an I/O error on `path` to an error that names it.
fn io_at(e: std::io::Error, what: &str, path: &Path) -> anyhow::Error {
    anyhow::Error::from(e).context(format!("cannot {what} {}", path.display()))
}

impl Segment {
    fn create(
        path: PathBuf,
        stream: &str,
        container: Container,
        format: StreamFormat,
        content_type: Option<&str>,
        window_start: u64,
    ) -> anyhow::Result<Segment> {
        if path.exists() {
            anyhow::bail!(
                "{} exists already: camux record never replaces a recording; remove it or \
                 choose another --out",
                path.display()
            );
        }
        let partial = partial_path(&path);
        let sidecar_final = sidecar_path(&path);
        let sidecar_partial = partial_path(&sidecar_final);
        let open = |p: &Path| {
            File::create(p).map_err(|e| {
                io_at(e, "create the recording's temporary file", p).context(format!(
                    "--out {} must be in a directory this user can write",
                    path.display()
                ))
            })
        };
        let file = BufWriter::with_capacity(1 << 20, open(&partial)?);
        let sidecar_file = match open(&sidecar_partial) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let mut segment = Segment {
            path,
            partial,
            sidecar_partial,
            sink: Some(Sink::Plain(file)),
            sidecar: Some(BufWriter::new(sidecar_file)),
            container,
            format,
            bytes: 0,
            frames: 0,
            first_seq: None,
            last_seq: 0,
            gaps: Vec::new(),
            window_start,
        };
        if let Err(e) = segment.start(stream, content_type) {
            segment.discard();
            return Err(e);
        }
        Ok(segment)
    }

    /// Writes the container's header and the sidecar's opening.
    fn start(&mut self, stream: &str, content_type: Option<&str>) -> anyhow::Result<()> {
        let format = self.format;
        let mut recorded_as = serde_json::json!({ "container": self.container.name() });
        match self.container {
            Container::Y4m { colourspace, .. } => {
                let (rate, known) = y4m_rate(&format);
                let header = Y4mHeader::new(format.width, format.height, rate, colourspace);
                self.bytes = header.encode()?.len() as u64;
                let Some(Sink::Plain(file)) = self.sink.take() else {
                    unreachable!("a new segment writes plainly")
                };
                let writer = Y4mWriter::new(file, header)
                    .map_err(|e| anyhow::Error::from(e).context(self.writing()))?;
                self.sink = Some(Sink::Y4m(writer));
                recorded_as["colourspace"] = colourspace.tag().into();
                recorded_as["rate"] = rate.to_string().into();
                recorded_as["rate_known"] = known.into();
            }
            Container::Raw => {
                let header = serde_json::json!({
                    "stream": stream,
                    "format": FormatJson::from(&format),
                    "fps_num": format.fps_num,
                    "fps_den": format.fps_den,
                    "content_type": content_type,
                });
                let text = serde_json::to_vec(&header)?;
                let mut head = Vec::with_capacity(16 + text.len());
                head.extend_from_slice(RAW_MAGIC);
                head.extend_from_slice(&RECORDING_VERSION.to_le_bytes());
                head.extend_from_slice(&(text.len() as u32).to_le_bytes());
                head.extend_from_slice(&text);
                self.write_plain(&head)?;
            }
            Container::Concat { .. } => {}
        }
        let opening = serde_json::json!({
            "version": RECORDING_VERSION,
            "stream": stream,
            "file": self.path.file_name().map(|n| n.to_string_lossy()),
            "format": FormatJson::from(&format),
            "content_type": content_type,
            "recorded_as": recorded_as,
        });
        // The object is left open: the frames follow as they come.
        let mut text = serde_json::to_string(&opening)?;
        text.pop();
        text.push_str(",\"frames\":[");
        self.sidecar_write(text.as_bytes())
    }

    /// What is being written, for error messages.
    fn writing(&self) -> String {
        format!("cannot write {}", self.partial.display())
    }

    fn sidecar_write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let sidecar = self.sidecar.as_mut().expect("open until finished");
        sidecar
            .write_all(bytes)
            .map_err(|e| io_at(e, "write", &self.sidecar_partial))
    }

    fn write_plain(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let Some(Sink::Plain(file)) = &mut self.sink else {
            unreachable!("plain writes go to plain files")
        };
        if let Err(e) = file.write_all(bytes) {
            return Err(io_at(e, "write", &self.partial));
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes one frame (already converted for Y4M: `converted`).
    fn write(&mut self, frame: &Frame, converted: &[u8]) -> anyhow::Result<()> {
        let meta = frame.meta();
        let offset;
        match &mut self.sink {
            Some(Sink::Y4m(writer)) => {
                offset = self.bytes + 6; // after "FRAME\n"
                match writer.write_frame(converted) {
                    Ok(()) => {}
                    Err(Y4mError::Io(e)) => return Err(io_at(e, "write", &self.partial)),
                    Err(e) => return Err(anyhow::Error::from(e).context(self.writing())),
                }
                self.bytes += 6 + converted.len() as u64;
            }
            _ => {
                if self.container == Container::Raw {
                    let mut head = [0u8; 16];
                    head[..8].copy_from_slice(&meta.seq.to_le_bytes());
                    head[8..12].copy_from_slice(&(meta.len as u32).to_le_bytes());
                    self.write_plain(&head)?;
                }
                offset = self.bytes;
                self.write_plain(frame.payload())?;
            }
        }
        let entry = FrameEntry {
            seq: meta.seq,
            capture_mono_ns: meta.capture_mono_ns,
            capture_real_ns: meta.capture_real_ns,
            publish_mono_ns: meta.publish_mono_ns,
            publish_real_ns: meta.publish_real_ns,
            len: meta.len,
            driver_seq: meta.driver_seq,
            epoch: meta.epoch,
            flags: meta.flags,
            offset,
        };
        let sep = if self.frames == 0 { "\n" } else { ",\n" };
        let line = serde_json::to_string(&entry)?;
        self.sidecar_write(sep.as_bytes())?;
        self.sidecar_write(line.as_bytes())?;
        self.frames += 1;
        self.first_seq.get_or_insert(meta.seq);
        self.last_seq = meta.seq;
        Ok(())
    }

    /// Completes both files, syncs them and renames them into place,
    /// container first, sidecar last.
    fn finish(mut self, summary: &serde_json::Value) -> anyhow::Result<SegmentDone> {
        let result = (|| -> anyhow::Result<()> {
            let file = match self.sink.take().expect("open until finished") {
                Sink::Y4m(w) => w.into_inner(),
                Sink::Plain(f) => f,
            };
            let file = file
                .into_inner()
                .map_err(|e| io_at(e.into_error(), "write", &self.partial))?;
            file.sync_all()
                .map_err(|e| io_at(e, "write", &self.partial))?;
            let tail = format!(
                "\n],\"gaps\":{},\"summary\":{}}}\n",
                serde_json::to_string(&self.gaps)?,
                summary
            );
            self.sidecar_write(tail.as_bytes())?;
            let sidecar = self.sidecar.take().expect("open until finished");
            let sidecar = sidecar
                .into_inner()
                .map_err(|e| io_at(e.into_error(), "write", &self.sidecar_partial))?;
            sidecar
                .sync_all()
                .map_err(|e| io_at(e, "write", &self.sidecar_partial))?;
            std::fs::rename(&self.partial, &self.path)
                .map_err(|e| io_at(e, "rename into place", &self.path))?;
            let sidecar_final = sidecar_path(&self.path);
            std::fs::rename(&self.sidecar_partial, &sidecar_final)
                .map_err(|e| io_at(e, "rename into place", &sidecar_final))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(SegmentDone {
                path: self.path.display().to_string(),
                sidecar: sidecar_path(&self.path).display().to_string(),
                frames: self.frames,
                bytes: self.bytes,
                first_seq: self.first_seq.unwrap_or(0),
                last_seq: self.last_seq,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                self.discard();
                Err(e)
            }
        }
    }

    /// Removes both temporary files.
    fn discard(&self) {
        let _ = std::fs::remove_file(&self.partial);
        let _ = std::fs::remove_file(&self.sidecar_partial);
    }
}

/// Whether `err` is a full disk (ENOSPC or EDQUOT).
fn is_disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
    })
}

/// What `record` counted, printed last.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Frames recorded.
    pub frames: u64,
    /// Files completed.
    pub segments: u64,
    /// Gaps seen: lagged events, producer restarts, stale periods, malformed frames.
    pub gaps: u64,
    /// Frames missed because the recorder fell behind.
    pub lagged: u64,
    /// Producer restarts.
    pub restarts: u64,
    /// Frames skipped because they did not match their format.
    pub malformed: u64,
    /// Bytes written to the containers (sidecars not counted).
    pub bytes: u64,
    /// Capture time from the first frame to the last, seconds.
    pub duration_s: f64,
    /// Frames per second over that time (`null` with fewer than two frames).
    pub effective_fps: Option<f64>,
    /// The container.
    pub container: String,
    /// Every file completed, in order.
    pub files: Vec<String>,
    /// Why the recording ended: `frames`, `seconds`, `signal`, `timeout`,
    /// `format_changed`, `error`.
    pub ended: String,
}

/// Output: JSON lines or text, and the progress line on a terminal.
struct Out {
    json: bool,
    progress: bool,
    drawn: bool,
}

impl Out {
    fn event<T: Serialize>(&mut self, value: &T, text: &str) -> anyhow::Result<()> {
        self.clear_progress();
        let mut out = std::io::stdout().lock();
        if self.json {
            json::emit(&mut out, value)?;
        } else {
            json::line(&mut out, text)?;
        }
        Ok(())
    }

    fn progress(&mut self, stream: &str, s: &Summary, open_bytes: u64, started: Instant) {
        if !self.progress {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rrecording {stream}: {} frames, {:.1} MB, {:.1} s, {} files, {} frames missed ",
            s.frames,
            (s.bytes + open_bytes) as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            s.segments,
            s.lagged
        );
        let _ = err.flush();
        self.drawn = true;
    }

    fn clear_progress(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

/// The text of the files kept, for error messages.
fn kept_text(files: &[String]) -> String {
    match files {
        [] => "no complete file was kept".to_owned(),
        [one] => format!("kept the complete file {one}"),
        many => format!(
            "kept {} complete files: {} .. {}",
            many.len(),
            many[0],
            many[many.len() - 1]
        ),
    }
}

/// Runs `camux record`.
pub fn run(args: RecordArgs) -> anyhow::Result<Status> {
    signal::install()?;
    let started = Instant::now();
    let mut sub = Subscriber::with_options(
        SubscriberOptions::new(args.stream.as_str())
            .dir(&args.dir)
            .mode(Mode::EveryFrame),
    )
    .with_context(|| {
        format!(
            "cannot open stream {:?} in {}",
            args.stream,
            args.dir.display()
        )
    })?;
    let format = sub.format();
    let content_type = sub.content_type().map(str::to_owned);
    let container = Container::for_format(format.fourcc);
    let index = |i: u32| args.segment.map(|_| i);
    // Check --out before the first frame: a bad extension is a usage error
    // best told at once.
    segment_path(&args.out, container, index(0))?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            anyhow::bail!(
                "--out {}: the directory {} does not exist",
                args.out.display(),
                dir.display()
            );
        }
    }
    let mut out = Out {
        json: args.json,
        progress: std::io::stderr().is_terminal(),
        drawn: false,
    };
    let mut summary = Summary {
        container: container.name().to_owned(),
        ..Summary::default()
    };
    let deadline = args.seconds.map(|s| started + s);
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let segment_ns = args.segment.map(|s| s.as_nanos().max(1) as u64);
    let mut segment: Option<Segment> = None;
    let mut next_index = 0u32;
    let mut first_capture: Option<u64> = None;
    let mut last_capture = 0u64;
    let mut last_frame = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_seq: Option<u64> = None;
    let mut pending_gaps: Vec<Gap> = Vec::new();
    let mut converted = Vec::new();
    let mut open_bytes = 0u64;
    let mut write_failed = false;
    let mut failure: Option<anyhow::Error> = None;

    let ended = loop {
        if signal::stop_requested() {
            break "signal";
        }
        if args.frames.is_some_and(|n| summary.frames >= n) {
            break "frames";
        }
        let mut wait = POLL;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break "seconds";
            }
            wait = wait.min(left);
        }
        if let Some(limit) = idle_limit {
            let left = limit.saturating_sub(last_frame.elapsed());
            if left.is_zero() {
                failure = Some(anyhow::anyhow!(
                    "no frame from stream {:?} for {} ms (--timeout-ms)",
                    args.stream,
                    limit.as_millis()
                ));
                break "timeout";
            }
            wait = wait.min(left);
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            out.progress(&args.stream, &summary, open_bytes, started);
            last_progress = Instant::now();
        }
        let frame = match sub.recv_timeout(wait) {
            Ok(frame) => frame,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Lagged(missed)) => {
                summary.lagged += missed;
                let gap = Gap::Lagged {
                    missed,
                    after_seq: last_seq,
                };
                out.event(
                    &serde_json::json!({ "event": "lagged", "missed": missed }),
                    &format!(
                        "lagged: {missed} frames missed (the disk or this machine is too slow)"
                    ),
                )?;
                pending_gaps.push(gap);
                continue;
            }
            Err(RecvError::Stale { since }) => {
                let since_ms = since.as_secs_f64() * 1e3;
                out.event(
                    &serde_json::json!({ "event": "stale", "since_ms": since_ms }),
                    &format!("stale: no heartbeat from the producer for {since_ms:.0} ms"),
                )?;
                pending_gaps.push(Gap::Stale {
                    since_ms,
                    after_seq: last_seq,
                });
                continue;
            }
            Err(RecvError::FormatChanged { old, new }) => {
                failure = Some(anyhow::anyhow!(
                    "the stream's format changed from {} to {}: the recording stops here; \
                     record again for the new format",
                    json::format_human(&old),
                    json::format_human(&new)
                ));
                break "format_changed";
            }
            Err(e) if e.is_fatal() => {
                failure = Some(anyhow::Error::from(e).context("the stream failed"));
                break "error";
            }
            Err(e) => {
                out.event(
                    &serde_json::json!({ "event": "error", "error": e.to_string() }),
                    &format!("error: {e}"),
                )?;
                continue;
            }
        };
        last_frame = Instant::now();
        let meta = *frame.meta();
        if let Some(gap) = frame.gap() {
            summary.restarts += 1;
            let downtime_ms = gap.downtime.as_secs_f64() * 1e3;
            out.event(
                &serde_json::json!({ "event": "restart", "seq": meta.seq, "epoch": gap.epoch, "downtime_ms": downtime_ms }),
                &format!("restart: the producer restarted (epoch {}) before seq {}, {downtime_ms:.0} ms down", gap.epoch, meta.seq),
            )?;
            pending_gaps.push(Gap::Restart {
                seq: meta.seq,
                epoch: gap.epoch,
                downtime_ms,
            });
        }
        if !same_layout(&meta.format, &format) {
            failure = Some(anyhow::anyhow!(
                "frame {} is {} but the recording is {}: the recording stops here",
                meta.seq,
                json::format_human(&meta.format),
                json::format_human(&format)
            ));
            break "format_changed";
        }
        // Convert (and check) before touching the files.
        let check = match container {
            Container::Y4m { planar, .. } => {
                to_y4m(planar, &meta.format, frame.payload(), &mut converted)
            }
            Container::Concat {
                fourcc: FourCc::MJPG,
            } if !frame.payload().starts_with(&[0xFF, 0xD8]) => {
                Err("an MJPG frame must start with a JPEG SOI marker (FF D8)".to_owned())
            }
            _ => Ok(()),
        };
        if let Err(error) = check {
            summary.malformed += 1;
            out.event(
                &serde_json::json!({ "event": "malformed", "seq": meta.seq, "error": error }),
                &format!("malformed: frame {} not recorded: {error}", meta.seq),
            )?;
            pending_gaps.push(Gap::Malformed {
                seq: meta.seq,
                error,
            });
            continue;
        }
        let capture = if meta.capture_mono_ns != 0 {
            meta.capture_mono_ns
        } else {
            meta.publish_mono_ns
        };
        let t0 = *first_capture.get_or_insert(capture);
        // A segment boundary passed: close the file, open the next.
        if let (Some(seg_ns), Some(seg)) = (segment_ns, segment.as_ref()) {
            if capture.saturating_sub(seg.window_start) >= seg_ns {
                let seg = segment.take().expect("checked");
                if let Err(e) = close(seg, &mut summary, &mut out) {
                    failure = Some(e.context("the file was removed, not left half-written"));
                    break "error";
                }
            }
        }
        if segment.is_none() {
            let window_start = match segment_ns {
                Some(seg_ns) => t0 + (capture - t0) / seg_ns * seg_ns,
                None => t0,
            };
            let path = segment_path(&args.out, container, index(next_index))?;
            next_index += 1;
            match Segment::create(
                path,
                &args.stream,
                container,
                format,
                content_type.as_deref(),
                window_start,
            ) {
                Ok(s) => segment = Some(s),
                Err(e) => {
                    failure = Some(e);
                    break "error";
                }
            }
        }
        let seg = segment.as_mut().expect("opened above");
        seg.gaps.append(&mut pending_gaps);
        if let Err(e) = seg.write(&frame, &converted) {
            failure = Some(e);
            write_failed = true;
            break "error";
        }
        drop(frame);
        summary.frames += 1;
        open_bytes = seg.bytes;
        last_seq = Some(meta.seq);
        last_capture = capture;
    };
    out.clear_progress();
    summary.ended = ended.to_owned();
    if let Some(t0) = first_capture {
        summary.duration_s = last_capture.saturating_sub(t0) as f64 / 1e9;
        if summary.frames >= 2 && summary.duration_s > 0.0 {
            summary.effective_fps = Some((summary.frames - 1) as f64 / summary.duration_s);
        }
    }
    if let Some(mut seg) = segment.take() {
        seg.gaps.append(&mut pending_gaps);
        if write_failed {
            // The file being written is not whole: remove it and say so.
            let frames = seg.frames;
            seg.discard();
            let e = failure.take().expect("checked");
            let full = if is_disk_full(&e) {
                "the disk is full; "
            } else {
                ""
            };
            let kept = kept_text(&summary.files);
            summary.frames -= frames;
            if summary.frames < 2 {
                summary.effective_fps = None;
            }
            print_summary(&mut out, &mut summary, &args)?;
            return Err(e.context(format!(
                "{full}the file being written ({frames} frames) was removed, not left \
                 half-written; {kept}"
            )));
        }
        if seg.frames == 0 {
            seg.discard();
        } else if let Err(e) = close(seg, &mut summary, &mut out) {
            let full = if is_disk_full(&e) {
                "the disk is full; "
            } else {
                ""
            };
            let kept = kept_text(&summary.files);
            print_summary(&mut out, &mut summary, &args)?;
            return Err(e.context(format!(
                "{full}the last file could not be completed: it was removed, not left \
                 half-written; {kept}"
            )));
        }
    }
    print_summary(&mut out, &mut summary, &args)?;
    match failure {
        Some(e) => {
            let kept = kept_text(&summary.files);
            Err(e.context(kept))
        }
        None if summary.frames == 0 => Err(anyhow::anyhow!(
            "no frame was recorded from stream {:?}: nothing kept",
            args.stream
        )),
        None => Ok(Status::Success),
    }
}

/// Completes `seg` and reports it.
fn close(seg: Segment, summary: &mut Summary, out: &mut Out) -> anyhow::Result<()> {
    let gaps = seg.gaps.len() as u64;
    let seg_summary = serde_json::json!({
        "frames": seg.frames,
        "bytes": seg.bytes,
        "first_seq": seg.first_seq,
        "last_seq": seg.last_seq,
        "gaps": gaps,
    });
    let done = seg.finish(&seg_summary)?;
    summary.gaps += gaps;
    summary.bytes += done.bytes;
    summary.segments += 1;
    summary.files.push(done.path.clone());
    let mut line = serde_json::to_value(&done)?;
    line["event"] = "segment".into();
    out.event(
        &line,
        &format!(
            "wrote {} ({} frames, seq {}..{}, {:.1} MB) and its sidecar",
            done.path,
            done.frames,
            done.first_seq,
            done.last_seq,
            done.bytes as f64 / 1e6
        ),
    )
}

fn print_summary(out: &mut Out, summary: &mut Summary, args: &RecordArgs) -> anyhow::Result<()> {
    let mut line = serde_json::to_value(&*summary)?;
    line["event"] = "summary".into();
    let fps = summary
        .effective_fps
        .map_or("-".to_owned(), |f| format!("{f:.2}"));
    let text = format!(
        "summary: stream {} frames={} files={} gaps={} lagged={} bytes={} duration={:.2}s fps={fps} ended={}",
        args.stream,
        summary.frames,
        summary.segments,
        summary.gaps,
        summary.lagged,
        summary.bytes,
        summary.duration_s,
        summary.ended
    );
    out.event(&line, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use camux::format::FrameLayout;

    fn format(fourcc: FourCc, w: u32, h: u32) -> StreamFormat {
        StreamFormat::from_layout(&FrameLayout::packed(fourcc, w, h).unwrap(), 30.0)
    }

    #[test]
    fn packed_and_semi_planar_frames_become_planes() {
        // 4x2 YUYV: pairs (Y0 U Y1 V).
        let yuyv: Vec<u8> = (0..16).collect();
        let mut out = Vec::new();
        let Container::Y4m {
            planar,
            colourspace,
        } = Container::for_format(FourCc::YUYV)
        else {
            panic!("YUYV is Y4M")
        };
        assert_eq!(colourspace, Colourspace::Yuv422);
        to_y4m(planar, &format(FourCc::YUYV, 4, 2), &yuyv, &mut out).unwrap();
        assert_eq!(out, [0, 2, 4, 6, 8, 10, 12, 14, 1, 5, 9, 13, 3, 7, 11, 15]);
        // 4x2 NV21: Y then V U pairs.
        let nv21 = [0, 1, 2, 3, 4, 5, 6, 7, 20, 10, 21, 11];
        let Container::Y4m { planar, .. } = Container::for_format(FourCc::NV21) else {
            panic!("NV21 is Y4M")
        };
        to_y4m(planar, &format(FourCc::NV21, 4, 2), &nv21, &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 20, 21]);
        // A short payload names the plane and row.
        let e = to_y4m(planar, &format(FourCc::NV21, 4, 2), &nv21[..10], &mut out).unwrap_err();
        assert!(e.contains("plane 1 row 0"), "{e}");
    }

    #[test]
    fn padded_rows_lose_their_padding() {
        let mut f = format(FourCc::GREY, 2, 2);
        f.strides[0] = 4;
        let mut out = Vec::new();
        to_y4m(Planar::Copy, &f, &[1, 2, 0, 0, 3, 4, 0, 0], &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
    }

    #[test]
    fn paths_follow_the_container() {
        let y4m = Container::for_format(FourCc::NV12);
        let mjpeg = Container::for_format(FourCc::MJPG);
        let p = |s: &str, c, i| segment_path(Path::new(s), c, i).map(|p| p.display().to_string());
        assert_eq!(p("/d/clip", y4m, None).unwrap(), "/d/clip.y4m");
        assert_eq!(p("/d/clip.y4m", y4m, Some(3)).unwrap(), "/d/clip-0003.y4m");
        assert_eq!(p("clip.MJPG", mjpeg, Some(0)).unwrap(), "clip-0000.MJPG");
        let e = p("/d/clip.y4m", mjpeg, None).unwrap_err().to_string();
        assert!(e.contains("recorded as mjpeg (.mjpeg), not .y4m"), "{e}");
        assert_eq!(Container::for_format(FourCc::RGB3), Container::Raw);
        assert_eq!(
            sidecar_path(Path::new("/d/c.y4m")),
            PathBuf::from("/d/c.y4m.json")
        );
        assert!(partial_path(Path::new("/d/c.y4m"))
            .display()
            .to_string()
            .starts_with("/d/.c.y4m."));
    }
}
