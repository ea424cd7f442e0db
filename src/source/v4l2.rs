//! Capture from a V4L2 device straight into the ring.
//!
//! Built on the [`v4l`] crate (device handle, capability and format
//! enumeration, the bindgen'd kernel structs and its `ioctl` transport).
//! Streaming goes below it with typed ioctls, because the crate lacks what
//! camux is about: its USERPTR stream allocates its own buffers, while
//! camux queues *ring slots* to the driver, and its format conversions
//! panic on values a newer kernel may return.
//!
//! # I/O modes
//!
//! * [`IoMode::UserPtr`]: every buffer queued to the driver is a ring slot
//!   on [`Loan`] from the [`Publisher`]; the driver writes the frame into
//!   the slot's page-aligned memory, and the producer then only commits the
//!   metadata. No CPU copy from camera to reader: the daemon reports 0
//!   bytes copied per frame. Queued slots count as held, so no reader ever
//!   sees a slot the driver is filling. When every slot is held by readers
//!   the buffer is queued into a private scratch page instead and that
//!   frame is dropped (and counted); the driver never starves.
//! * [`IoMode::Mmap`]: the driver's own buffers are mapped and each frame is
//!   copied into the ring once ([`Publisher::publish`]); bytes copied per
//!   frame equal the frame size.
//! * [`IoMode::Auto`]: USERPTR if the driver takes ring slots, else MMAP;
//!   [`Capture::io_choice`] says which and why.
//!
//! # Errors
//!
//! [`V4l2Error`] keeps apart what a supervisor treats differently: a device
//! that does not exist, one that is busy in another process ("Device or
//! resource busy"), one that went away while streaming (unplug, `ENODEV`,
//! `EIO`: retry later), a format the driver substituted, and plain misuse.
//!
//! ```no_run
//! use camux::source::v4l2::{Capture, IoMode, V4l2Config, V4l2Device};
//! use camux::format::FourCc;
//! use std::time::Duration;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = V4l2Config {
//!     fourcc: Some(FourCc::YUYV),
//!     width: Some(640),
//!     height: Some(480),
//!     fps: Some(25.0),
//!     ..V4l2Config::new("/dev/video0")
//! };
//! let device = V4l2Device::open(&config)?;
//! let mut publisher = camux::Publisher::create(&device.ring_options("/run/camux", "cam0", 8))?;
//! let mut capture = Capture::start(device, &mut publisher, IoMode::Auto)?;
//! println!("{:?}", capture.io_choice());
//! for _ in 0..100 {
//!     capture.next(&mut publisher, Duration::from_secs(2))?;
//! }
//! # Ok(())
//! # }
//! ```

use crate::format::{FourCc, FrameLayout};
use crate::ring::layout::MAX_PLANES;
use crate::ring::{mono_ns, real_ns, Loan, PublishError, RingOptions, StreamFormat};
use crate::{FrameInfo, Published, Publisher};
use memmap2::{MmapMut, MmapOptions, MmapRaw};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use v4l::v4l_sys::{
    v4l2_buffer, v4l2_capability, v4l2_format, v4l2_requestbuffers, v4l2_streamparm,
};

const BUF_TYPE: u32 = v4l::v4l_sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
const MEMORY_MMAP: u32 = v4l::v4l_sys::v4l2_memory_V4L2_MEMORY_MMAP;
const MEMORY_USERPTR: u32 = v4l::v4l_sys::v4l2_memory_V4L2_MEMORY_USERPTR;
const CAP_VIDEO_CAPTURE: u32 = v4l::v4l_sys::V4L2_CAP_VIDEO_CAPTURE;
const CAP_VIDEO_CAPTURE_MPLANE: u32 = v4l::v4l_sys::V4L2_CAP_VIDEO_CAPTURE_MPLANE;
const CAP_STREAMING: u32 = v4l::v4l_sys::V4L2_CAP_STREAMING;
const CAP_DEVICE_CAPS: u32 = v4l::v4l_sys::V4L2_CAP_DEVICE_CAPS;
const CAP_TIMEPERFRAME: u32 = v4l::v4l_sys::V4L2_CAP_TIMEPERFRAME;
const BUF_FLAG_KEYFRAME: u32 = v4l::v4l_sys::V4L2_BUF_FLAG_KEYFRAME;
const BUF_FLAG_ERROR: u32 = v4l::v4l_sys::V4L2_BUF_FLAG_ERROR;
const BUF_FLAG_TIMESTAMP_MASK: u32 = v4l::v4l_sys::V4L2_BUF_FLAG_TIMESTAMP_MASK;
const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = v4l::v4l_sys::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
const FMT_FLAG_COMPRESSED: u32 = v4l::v4l_sys::V4L2_FMT_FLAG_COMPRESSED;

/// Buffers queued to the driver by default.
pub const DEFAULT_BUFFERS: u32 = 4;

/// How frames get from the driver into the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// USERPTR if the driver accepts ring slots, else MMAP + copy.
    #[default]
    Auto,
    /// The driver writes into ring slots: no copy.
    UserPtr,
    /// The driver's buffers, copied into the ring once per frame.
    Mmap,
}

impl IoMode {
    /// The mode's name as the command line spells it.
    ///
    /// ```
    /// use camux::source::v4l2::IoMode;
    /// assert_eq!(IoMode::UserPtr.name(), "userptr");
    /// assert_eq!("mmap".parse::<IoMode>(), Ok(IoMode::Mmap));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::UserPtr => "userptr",
            IoMode::Mmap => "mmap",
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<IoMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(IoMode::Auto),
            "userptr" => Ok(IoMode::UserPtr),
            "mmap" => Ok(IoMode::Mmap),
            _ => Err(format!(
                "unknown io mode {s:?}: expected auto, userptr or mmap"
            )),
        }
    }
}

/// What to ask a device for. Fields left `None` keep the driver's current
/// setting.
///
/// ```
/// use camux::source::v4l2::{IoMode, V4l2Config};
/// let config = V4l2Config::new("/dev/v4l/by-id/usb-046d_HD_Webcam-video-index0");
/// assert_eq!(config.io, IoMode::Auto);
/// assert!(!config.allow_substitution);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Config {
    /// Device node: `/dev/videoN` or a stable `/dev/v4l/by-id/...` or
    /// `/dev/v4l/by-path/...` name (symlinks are followed).
    pub device: PathBuf,
    /// Pixel format to require.
    pub fourcc: Option<FourCc>,
    /// Width to require.
    pub width: Option<u32>,
    /// Height to require.
    pub height: Option<u32>,
    /// Frame rate to require (frames per second).
    pub fps: Option<f64>,
    /// How frames reach the ring.
    pub io: IoMode,
    /// Accept what the driver chose when it differs from what was asked
    /// (a driver may silently substitute: vivid answers YUYV for MJPG).
    pub allow_substitution: bool,
    /// Buffers queued to the driver (2..=32).
    pub buffers: u32,
}

impl V4l2Config {
    /// A config for `device` that keeps the driver's current format.
    pub fn new(device: impl Into<PathBuf>) -> V4l2Config {
        V4l2Config {
            device: device.into(),
            fourcc: None,
            width: None,
            height: None,
            fps: None,
            io: IoMode::Auto,
            allow_substitution: false,
            buffers: DEFAULT_BUFFERS,
        }
    }
}

/// Why a V4L2 operation failed. [`is_retryable`](Self::is_retryable) tells a
/// supervisor whether trying again later can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum V4l2Error {
    /// No such device node.
    #[error("{}: no such V4L2 device (is the camera plugged in? `camux devices` lists what there is)", device.display())]
    NotFound {
        /// The path given.
        device: PathBuf,
    },
    /// Opening or configuring the device was refused.
    #[error("{}: permission denied (the daemon needs read-write access to the device node: privileged, or the video group)", device.display())]
    PermissionDenied {
        /// The path given.
        device: PathBuf,
    },
    /// Another process streams from the device.
    #[error("{}: device or resource busy: another process is streaming from it ({op})", device.display())]
    Busy {
        /// The path given.
        device: PathBuf,
        /// The operation that was refused.
        op: &'static str,
    },
    /// The device is not a single-planar video capture device that streams.
    #[error("{}: {driver} \"{card}\" is not usable: {why}", device.display())]
    Unsupported {
        /// The path given.
        device: PathBuf,
        /// Driver name.
        driver: String,
        /// Card name.
        card: String,
        /// What it lacks.
        why: String,
    },
    /// The driver chose another format than the one required.
    #[error("{}: asked for {requested}, the driver chose {chosen} (allow substitution to accept it, or ask for one of the formats `camux devices` lists)", device.display())]
    Substituted {
        /// The path given.
        device: PathBuf,
        /// What was required.
        requested: String,
        /// What the driver chose.
        chosen: String,
    },
    /// USERPTR streaming was required and the driver refused it.
    #[error("{}: USERPTR streaming refused: {why} (use --io mmap or auto)", device.display())]
    NoUserPtr {
        /// The path given.
        device: PathBuf,
        /// The driver's answer.
        why: String,
    },
    /// The device went away (unplugged, `ENODEV`, `EIO`): retry later.
    #[error("{}: device lost during {op}: {cause}", device.display())]
    DeviceLost {
        /// The path given.
        device: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The kernel's error (in the message; not a `source()`, so
        /// error chains do not print it twice).
        cause: io::Error,
    },
    /// No frame within the timeout.
    #[error("{}: no frame for {:.1} s", device.display(), waited.as_secs_f64())]
    Stalled {
        /// The path given.
        device: PathBuf,
        /// How long it waited.
        waited: Duration,
    },
    /// Any other failed ioctl.
    #[error("{}: {op} failed: {cause}", device.display())]
    Ioctl {
        /// The path given.
        device: PathBuf,
        /// The operation.
        op: &'static str,
        /// The kernel's error (in the message; not a `source()`, so
        /// error chains do not print it twice).
        cause: io::Error,
    },
    /// The ring refused the frame (a slot too small for what the driver wrote).
    #[error("{}: cannot publish: {cause}", device.display())]
    Publish {
        /// The path given.
        device: PathBuf,
        /// The ring's error (in the message).
        cause: PublishError,
    },
    /// A bad request (buffer count, a frame size the ring cannot carry).
    #[error("{}: {why}", .device.display())]
    Invalid {
        /// The path given.
        device: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl V4l2Error {
    /// Whether a supervisor should retry later (the device may come back
    /// or be freed): missing, busy, lost or stalled devices.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            V4l2Error::NotFound { .. }
                | V4l2Error::Busy { .. }
                | V4l2Error::DeviceLost { .. }
                | V4l2Error::Stalled { .. }
        )
    }

    /// A short machine-readable kind: `not_found`, `permission_denied`,
    /// `busy`, `unsupported`, `substituted`, `no_userptr`, `device_lost`,
    /// `stalled`, `ioctl`, `publish`, `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            V4l2Error::NotFound { .. } => "not_found",
            V4l2Error::PermissionDenied { .. } => "permission_denied",
            V4l2Error::Busy { .. } => "busy",
            V4l2Error::Unsupported { .. } => "unsupported",
            V4l2Error::Substituted { .. } => "substituted",
            V4l2Error::NoUserPtr { .. } => "no_userptr",
            V4l2Error::DeviceLost { .. } => "device_lost",
            V4l2Error::Stalled { .. } => "stalled",
            V4l2Error::Ioctl { .. } => "ioctl",
            V4l2Error::Publish { .. } => "publish",
            V4l2Error::Invalid { .. } => "invalid",
        }
    }
}

/// Maps an ioctl's error to the variant a supervisor acts on.
fn classify(device: &Path, op: &'static str, e: io::Error) -> V4l2Error {
    let device = device.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ESHUTDOWN) => {
            V4l2Error::DeviceLost {
                device,
                op,
                cause: e,
            }
        }
        Some(libc::EBUSY) => V4l2Error::Busy { device, op },
        Some(libc::EACCES) | Some(libc::EPERM) => V4l2Error::PermissionDenied { device },
        Some(libc::ENOENT) => V4l2Error::NotFound { device },
        _ => V4l2Error::Ioctl {
            device,
            op,
            cause: e,
        },
    }
}

/// A frame rate as V4L2 states it: a frame interval `num / den` seconds.
///
/// ```
/// use camux::source::v4l2::Interval;
/// assert_eq!(Interval::from_fps(25.0), Some(Interval { num: 1, den: 25 }));
/// assert_eq!(Interval::from_fps(12.5), Some(Interval { num: 2, den: 25 }));
/// assert_eq!(Interval::from_fps(29.97).map(|i| i.fps()), Some(29.97));
/// assert_eq!(Interval::from_fps(0.0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Numerator (seconds).
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl Interval {
    /// The interval of `fps` frames per second (to 1/1000 frame per
    /// second), or `None` for a rate that is not positive and finite.
    pub fn from_fps(fps: f64) -> Option<Interval> {
        if !(fps.is_finite() && fps > 0.0 && fps <= 1e6) {
            return None;
        }
        let den = (fps * 1000.0).round() as u64;
        if den == 0 {
            return None;
        }
        let g = gcd(1000, den);
        Some(Interval {
            num: (1000 / g) as u32,
            den: (den / g) as u32,
        })
    }

    /// Frames per second (0 for an unset interval).
    pub fn fps(self) -> f64 {
        if self.num == 0 {
            0.0
        } else {
            f64::from(self.den) / f64::from(self.num)
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The format the driver chose, as it reported it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Pixel format.
    pub fourcc: FourCc,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per line of the first plane (0 for compressed formats).
    pub bytesperline: u32,
    /// Largest frame the driver writes.
    pub sizeimage: u32,
    /// V4L2 field order.
    pub field: u32,
    /// Frame interval, if the driver reports one.
    pub interval: Option<Interval>,
    /// Whether frames are compressed (variable size: MJPG, H264...).
    pub compressed: bool,
}

impl Negotiated {
    /// How long without a frame counts as a stall: three frame intervals,
    /// at least 2 s (also when the driver reports no rate).
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::v4l2::{Interval, Negotiated};
    /// use std::time::Duration;
    /// let mut n = Negotiated {
    ///     fourcc: FourCc::YUYV, width: 640, height: 480, bytesperline: 1280,
    ///     sizeimage: 614400, field: 1, interval: Some(Interval { num: 1, den: 25 }), compressed: false,
    /// };
    /// assert_eq!(n.stall_after(), Duration::from_secs(2));
    /// n.interval = Some(Interval { num: 1, den: 1 });
    /// assert_eq!(n.stall_after(), Duration::from_secs(3));
    /// ```
    pub fn stall_after(&self) -> Duration {
        self.interval.map_or(Duration::from_secs(2), |i| {
            Duration::from_secs_f64(3.0 / i.fps().max(0.1)).max(Duration::from_secs(2))
        })
    }

    /// The ring's stream format for these frames. Known layouts get their
    /// planes (with the driver's line padding); others one plane of
    /// `bytesperline`.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::v4l2::{Interval, Negotiated};
    /// let n = Negotiated {
    ///     fourcc: FourCc::NV12, width: 640, height: 480, bytesperline: 640,
    ///     sizeimage: 640 * 480 * 3 / 2, field: 1,
    ///     interval: Some(Interval { num: 1, den: 25 }), compressed: false,
    /// };
    /// let f = n.stream_format();
    /// assert_eq!((f.num_planes, f.strides[1], f.plane_offsets[1]), (2, 640, 640 * 480));
    /// assert_eq!((f.fps_num, f.fps_den), (25, 1));
    /// ```
    pub fn stream_format(&self) -> StreamFormat {
        let fps = self.interval.map_or(0.0, Interval::fps);
        let mut f = if self.compressed || self.fourcc.is_opaque() {
            let layout =
                FrameLayout::opaque(self.fourcc, self.width, self.height, self.sizeimage.into());
            match layout {
                Ok(l) => StreamFormat::from_layout(&l, fps),
                Err(_) => single_plane(self, fps),
            }
        } else {
            match FrameLayout::packed(self.fourcc, self.width, self.height) {
                Ok(l) if self.bytesperline == l.planes[0].stride || self.bytesperline == 0 => {
                    StreamFormat::from_layout(&l, fps)
                }
                Ok(l) if l.planes[0].stride > 0 && l.num_planes <= 2 => {
                    // The driver pads lines: scale each plane's stride and offset.
                    let mut f = StreamFormat::from_layout(&l, fps);
                    let pad = f64::from(self.bytesperline) / f64::from(l.planes[0].stride);
                    let mut offset = 0u32;
                    for p in 0..(f.num_planes as usize).min(MAX_PLANES) {
                        let stride = (f64::from(f.strides[p]) * pad).round() as u32;
                        let rows = l.planes[p].bytes / l.planes[p].stride.max(1);
                        f.strides[p] = stride;
                        f.plane_offsets[p] = offset;
                        offset = offset.saturating_add(stride.saturating_mul(rows));
                    }
                    f
                }
                _ => single_plane(self, fps),
            }
        };
        if let Some(i) = self.interval {
            // Exact, not through f64: frames per second = den / num.
            f.fps_num = i.den;
            f.fps_den = i.num;
        }
        f
    }
}

fn single_plane(n: &Negotiated, fps: f64) -> StreamFormat {
    let mut f = StreamFormat::opaque(n.sizeimage);
    f.fourcc = n.fourcc;
    f.width = n.width;
    f.height = n.height;
    f.strides[0] = n.bytesperline;
    if let Some(i) = Interval::from_fps(fps) {
        f.fps_num = i.den;
        f.fps_den = i.num;
    }
    f
}

/// What was required, for comparing with what the driver chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requested {
    /// Pixel format.
    pub fourcc: Option<FourCc>,
    /// Width.
    pub width: Option<u32>,
    /// Height.
    pub height: Option<u32>,
    /// Frame rate.
    pub fps: Option<f64>,
}

impl Requested {
    /// The differences between what was required and what was chosen, as
    /// `(requested, chosen)` descriptions; empty when everything required
    /// was granted. A rate counts as granted within 1%.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::v4l2::{Interval, Negotiated, Requested};
    /// let chosen = Negotiated {
    ///     fourcc: FourCc::YUYV, width: 640, height: 480, bytesperline: 1280,
    ///     sizeimage: 614400, field: 1, interval: Some(Interval { num: 1, den: 25 }),
    ///     compressed: false,
    /// };
    /// let asked = Requested { fourcc: Some(FourCc::MJPG), width: Some(640), height: None, fps: Some(25.0) };
    /// assert_eq!(asked.mismatch(&chosen), Some(("MJPG".to_string(), "YUYV".to_string())));
    /// let asked = Requested { fourcc: Some(FourCc::YUYV), width: Some(640), height: Some(480), fps: Some(25.0) };
    /// assert_eq!(asked.mismatch(&chosen), None);
    /// ```
    pub fn mismatch(&self, chosen: &Negotiated) -> Option<(String, String)> {
        let mut asked = Vec::new();
        let mut got = Vec::new();
        if let Some(f) = self.fourcc {
            if f != chosen.fourcc {
                asked.push(f.to_string());
                got.push(chosen.fourcc.to_string());
            }
        }
        let w_bad = self.width.is_some_and(|w| w != chosen.width);
        let h_bad = self.height.is_some_and(|h| h != chosen.height);
        if w_bad || h_bad {
            let w = self.width.map_or("*".to_string(), |w| w.to_string());
            let h = self.height.map_or("*".to_string(), |h| h.to_string());
            asked.push(format!("{w}x{h}"));
            got.push(format!("{}x{}", chosen.width, chosen.height));
        }
        if let Some(fps) = self.fps {
            let have = chosen.interval.map_or(0.0, Interval::fps);
            if (have - fps).abs() > fps * 0.01 {
                asked.push(format!("{fps} fps"));
                got.push(if have > 0.0 {
                    format!("{have} fps")
                } else {
                    "no settable frame rate".to_string()
                });
            }
        }
        if asked.is_empty() {
            None
        } else {
            Some((asked.join(" "), got.join(" ")))
        }
    }
}

/// Counts frames the driver dropped, from gaps in its sequence numbers.
///
/// ```
/// use camux::source::v4l2::DropCounter;
/// let mut d = DropCounter::default();
/// assert_eq!(d.observe(0), 0);
/// assert_eq!(d.observe(1), 0);
/// assert_eq!(d.observe(4), 2);
/// assert_eq!(d.total(), 2);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounter {
    last: Option<u32>,
    total: u64,
}

impl DropCounter {
    /// Takes in the next frame's driver sequence; returns the frames missed
    /// before it. A sequence that goes back (a driver restart) starts over
    /// and counts nothing.
    pub fn observe(&mut self, seq: u32) -> u64 {
        let missed = match self.last {
            Some(last) if seq > last => u64::from(seq - last - 1),
            _ => 0,
        };
        self.last = Some(seq);
        self.total += missed;
        missed
    }

    /// Frames missed so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What the driver said about one dequeued buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverFrame {
    /// Buffer index.
    pub index: u32,
    /// Bytes the driver wrote.
    pub bytesused: u32,
    /// `V4L2_BUF_FLAG_*`.
    pub flags: u32,
    /// Field order of this frame.
    pub field: u32,
    /// Timestamp, seconds part.
    pub tv_sec: i64,
    /// Timestamp, microseconds part.
    pub tv_usec: i64,
    /// The driver's frame counter.
    pub sequence: u32,
}

impl DriverFrame {
    fn from_buffer(b: &v4l2_buffer) -> DriverFrame {
        DriverFrame {
            index: b.index,
            bytesused: b.bytesused,
            flags: b.flags,
            field: b.field,
            tv_sec: b.timestamp.tv_sec,
            tv_usec: b.timestamp.tv_usec,
            sequence: b.sequence,
        }
    }

    /// The ring metadata of this frame. A monotonic driver timestamp is the
    /// capture time and gets its realtime equivalent (`real_minus_mono_ns`
    /// is CLOCK_REALTIME - CLOCK_MONOTONIC now); frames without one are
    /// stamped at publish time.
    ///
    /// ```
    /// use camux::source::v4l2::DriverFrame;
    /// use camux::ring::{FLAG_ERROR, FLAG_KEYFRAME};
    /// let d = DriverFrame { index: 0, bytesused: 100, flags: 0x2000 | 0x40 | 0x8, field: 1,
    ///                       tv_sec: 12, tv_usec: 500, sequence: 7 };
    /// let info = d.frame_info(1_000_000_000);
    /// assert_eq!(info.capture_mono_ns, 12_000_500_000);
    /// assert_eq!(info.capture_real_ns, 13_000_500_000);
    /// assert_eq!(info.driver_seq, 7);
    /// assert_eq!(info.flags, FLAG_ERROR | FLAG_KEYFRAME);
    /// assert_eq!(info.field, 1);
    /// ```
    pub fn frame_info(&self, real_minus_mono_ns: i64) -> FrameInfo<'static> {
        let mut flags = 0;
        if self.flags & BUF_FLAG_ERROR != 0 {
            flags |= crate::ring::FLAG_ERROR;
        }
        if self.flags & BUF_FLAG_KEYFRAME != 0 {
            flags |= crate::ring::FLAG_KEYFRAME;
        }
        let monotonic = self.flags & BUF_FLAG_TIMESTAMP_MASK == BUF_FLAG_TIMESTAMP_MONOTONIC;
        let ts = self
            .tv_sec
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(self.tv_usec.saturating_mul(1000)))
            .filter(|&t| t > 0);
        let (mono, real) = match ts {
            Some(t) if monotonic => (t as u64, t.saturating_add(real_minus_mono_ns).max(1) as u64),
            _ => (0, 0), // 0: the publisher stamps publish time
        };
        FrameInfo {
            capture_mono_ns: mono,
            capture_real_ns: real,
            driver_seq: u64::from(self.sequence),
            flags,
            field: self.field,
            format: None,
            user: &[],
        }
    }
}

/// The identity a device reports (`VIDIOC_QUERYCAP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Driver name (`vivid`, `uvcvideo`).
    pub driver: String,
    /// Card name.
    pub card: String,
    /// Bus info (`platform:vivid-000`, `usb-0000:00:14.0-1`).
    pub bus: String,
    /// Capabilities of this node (`V4L2_CAP_*`).
    pub device_caps: u32,
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Runs one ioctl on `fd`, retrying on `EINTR`.
///
/// # Safety
///
/// `arg` must be the struct `request` is defined for, valid for the call.
unsafe fn xioctl<T>(fd: i32, request: v4l::v4l2::vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: the caller passes the struct `request` expects; `arg` is a
        // live exclusive reference for the duration of the call.
        let r =
            unsafe { v4l::v4l2::ioctl(fd, request, arg as *mut T as *mut std::os::raw::c_void) };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}

/// A zeroed kernel struct (all of V4L2's are plain C data).
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used for the bindgen'd V4L2 structs, which are plain C
    // data for which all-zero bytes are a valid value (the kernel API's
    // documented way to initialise them).
    unsafe { std::mem::zeroed() }
}

fn query_identity(fd: i32) -> io::Result<DeviceIdentity> {
    let mut cap: v4l2_capability = zeroed();
    // SAFETY: VIDIOC_QUERYCAP takes a v4l2_capability.
    unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_QUERYCAP, &mut cap)? };
    let device_caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    };
    Ok(DeviceIdentity {
        driver: cstr(&cap.driver),
        card: cstr(&cap.card),
        bus: cstr(&cap.bus_info),
        device_caps,
    })
}

/// An open, configured V4L2 capture device.
pub struct V4l2Device {
    dev: v4l::Device,
    path: PathBuf,
    identity: DeviceIdentity,
    negotiated: Negotiated,
    buffers: u32,
    io: IoMode,
}

impl fmt::Debug for V4l2Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Device")
            .field("path", &self.path)
            .field("identity", &self.identity)
            .field("negotiated", &self.negotiated)
            .finish()
    }
}

impl V4l2Device {
    /// Opens `config.device`, checks it is a capture device that streams,
    /// and negotiates the format and rate. What the driver chose is in
    /// [`negotiated`](Self::negotiated); if it differs from what the config
    /// requires and substitution is not allowed, this fails with
    /// [`V4l2Error::Substituted`] naming both.
    pub fn open(config: &V4l2Config) -> Result<V4l2Device, V4l2Error> {
        let path = config.device.clone();
        if !(2..=32).contains(&config.buffers) {
            return Err(V4l2Error::Invalid {
                device: path,
                why: format!("buffers must be 2..=32, not {}", config.buffers),
            });
        }
        let dev = v4l::Device::with_path(&path).map_err(|e| classify(&path, "open", e))?;
        let fd = dev.handle().fd();
        let identity = query_identity(fd).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => V4l2Error::Unsupported {
                device: path.clone(),
                driver: "?".into(),
                card: "?".into(),
                why: "not a V4L2 device (VIDIOC_QUERYCAP refused)".into(),
            },
            _ => classify(&path, "VIDIOC_QUERYCAP", e),
        })?;
        let unsupported = |why: &str| V4l2Error::Unsupported {
            device: path.clone(),
            driver: identity.driver.clone(),
            card: identity.card.clone(),
            why: why.to_string(),
        };
        let caps = identity.device_caps;
        if caps & CAP_VIDEO_CAPTURE == 0 {
            return Err(unsupported(if caps & CAP_VIDEO_CAPTURE_MPLANE != 0 {
                "it only offers the multi-planar capture API, which camux does not support yet"
            } else {
                "not a video capture node (an output, metadata or radio node?)"
            }));
        }
        if caps & CAP_STREAMING == 0 {
            return Err(unsupported("it does not support streaming I/O"));
        }
        let negotiated = negotiate(fd, &path, config)?;
        let requested = Requested {
            fourcc: config.fourcc,
            width: config.width,
            height: config.height,
            fps: config.fps,
        };
        if let Some((requested, chosen)) = requested.mismatch(&negotiated) {
            if !config.allow_substitution {
                return Err(V4l2Error::Substituted {
                    device: path,
                    requested,
                    chosen,
                });
            }
        }
        Ok(V4l2Device {
            dev,
            path,
            identity,
            negotiated,
            buffers: config.buffers,
            io: config.io,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Driver, card and bus.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The format the driver chose.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Ring options that fit this device's frames: the negotiated format,
    /// slots of `sizeimage` bytes, and `reader_slots` slots for readers on
    /// top of the buffers the driver keeps queued.
    pub fn ring_options(
        &self,
        dir: impl Into<PathBuf>,
        name: &str,
        reader_slots: u32,
    ) -> RingOptions {
        let mut opts = RingOptions::new(
            dir,
            name,
            self.negotiated.stream_format(),
            u64::from(self.negotiated.sizeimage),
        );
        opts.slots = reader_slots.saturating_add(self.buffers);
        opts
    }

    fn fd(&self) -> i32 {
        self.dev.handle().fd()
    }
}

fn negotiate(fd: i32, path: &Path, config: &V4l2Config) -> Result<Negotiated, V4l2Error> {
    let mut fmt: v4l2_format = zeroed();
    fmt.type_ = BUF_TYPE;
    // SAFETY: VIDIOC_G_FMT takes a v4l2_format; `pix` is the member for
    // VIDEO_CAPTURE, which `type_` selects.
    unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_G_FMT, &mut fmt) }
        .map_err(|e| classify(path, "VIDIOC_G_FMT", e))?;
    if config.fourcc.is_some() || config.width.is_some() || config.height.is_some() {
        // SAFETY: the union member for VIDEO_CAPTURE, as G_FMT filled it.
        let pix = unsafe { &mut fmt.fmt.pix };
        if let Some(f) = config.fourcc {
            pix.pixelformat = f.0;
        }
        if let Some(w) = config.width {
            pix.width = w;
        }
        if let Some(h) = config.height {
            pix.height = h;
        }
        pix.bytesperline = 0; // let the driver choose
        pix.sizeimage = 0;
        pix.field = v4l::v4l_sys::v4l2_field_V4L2_FIELD_ANY;
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_S_FMT, &mut fmt) }
            .map_err(|e| classify(path, "VIDIOC_S_FMT", e))?;
    }
    // SAFETY: the kernel filled the VIDEO_CAPTURE member.
    let pix = unsafe { fmt.fmt.pix };
    let compressed = is_compressed(fd, pix.pixelformat);
    let mut parm: v4l2_streamparm = zeroed();
    parm.type_ = BUF_TYPE;
    // SAFETY: VIDIOC_G_PARM takes a v4l2_streamparm.
    let have_parm = unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_G_PARM, &mut parm) }.is_ok();
    // SAFETY: the capture member, which `type_` selects.
    let settable = have_parm && unsafe { parm.parm.capture.capability } & CAP_TIMEPERFRAME != 0;
    if let (Some(fps), true) = (config.fps, settable) {
        let Some(i) = Interval::from_fps(fps) else {
            return Err(V4l2Error::Invalid {
                device: path.to_path_buf(),
                why: format!("frame rate {fps} is not a positive number"),
            });
        };
        // (Writing a union field is safe; `capture` is the member `type_` selects.)
        parm.parm.capture.timeperframe.numerator = i.num;
        parm.parm.capture.timeperframe.denominator = i.den;
        // SAFETY: VIDIOC_S_PARM takes a v4l2_streamparm.
        unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_S_PARM, &mut parm) }
            .map_err(|e| classify(path, "VIDIOC_S_PARM", e))?;
    }
    let interval = if have_parm {
        // SAFETY: the capture member, filled by G_PARM or S_PARM.
        let t = unsafe { parm.parm.capture.timeperframe };
        (t.numerator > 0 && t.denominator > 0).then_some(Interval {
            num: t.numerator,
            den: t.denominator,
        })
    } else {
        None
    };
    if pix.sizeimage == 0 {
        return Err(V4l2Error::Invalid {
            device: path.to_path_buf(),
            why: "the driver reports a frame size of 0 bytes".into(),
        });
    }
    Ok(Negotiated {
        fourcc: FourCc(pix.pixelformat),
        width: pix.width,
        height: pix.height,
        bytesperline: pix.bytesperline,
        sizeimage: pix.sizeimage,
        field: pix.field,
        interval,
        compressed,
    })
}

fn is_compressed(fd: i32, pixelformat: u32) -> bool {
    format_descriptions(fd)
        .iter()
        .find(|d| d.pixelformat == pixelformat)
        .map_or(FourCc(pixelformat).is_opaque(), |d| {
            d.flags & FMT_FLAG_COMPRESSED != 0
        })
}

/// The capture formats the device offers (`VIDIOC_ENUM_FMT` until it says no more).
fn format_descriptions(fd: i32) -> Vec<v4l::v4l_sys::v4l2_fmtdesc> {
    let mut out = Vec::new();
    for index in 0..256 {
        let mut d: v4l::v4l_sys::v4l2_fmtdesc = zeroed();
        d.index = index;
        d.type_ = BUF_TYPE;
        // SAFETY: VIDIOC_ENUM_FMT takes a v4l2_fmtdesc.
        if unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_ENUM_FMT, &mut d) }.is_err() {
            break;
        }
        out.push(d);
    }
    out
}

/// Counters of a running capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Buffers dequeued from the driver.
    pub frames: u64,
    /// Frames published into the ring.
    pub published: u64,
    /// Frames dropped because every ring slot was held by readers.
    pub dropped_no_slot: u64,
    /// Frames the driver missed (gaps in its sequence numbers).
    pub driver_drops: u64,
    /// Frames the driver flagged as erroneous (published with `FLAG_ERROR`).
    pub error_frames: u64,
    /// Bytes copied on the way into the ring (0 in USERPTR mode).
    pub bytes_copied: u64,
}

/// What one [`Capture::next`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// A frame, published with this ring seq.
    Published {
        /// The ring's seq.
        seq: u64,
        /// What the driver reported.
        driver: DriverFrame,
    },
    /// A frame the ring had no free slot for (counted).
    Dropped {
        /// What the driver reported.
        driver: DriverFrame,
    },
}

/// A page-aligned private buffer the driver fills when no ring slot is free.
struct Scratch(MmapMut);

enum Queued {
    /// A ring slot on loan to the driver.
    Slot(Loan),
    /// The scratch page: the frame will be dropped.
    Scratch,
    /// Not queued (between dequeue and re-queue).
    Idle,
}

/// USERPTR buffers: which ring slot (or the scratch page) each V4L2
/// buffer index is queued with.
struct UserPtr {
    queued: Vec<Queued>,
    scratch: Scratch,
    scratch_queued: bool,
    /// Buffer index == slot (the last index is the scratch page's).
    by_slot: bool,
    /// Buffers to keep queued.
    target: u32,
    in_flight: u32,
}

impl UserPtr {
    fn idle_index(&self) -> Option<u32> {
        self.queued
            .iter()
            .position(|q| matches!(q, Queued::Idle))
            .map(|i| i as u32)
    }
}

enum Buffers {
    UserPtr(UserPtr),
    Mmap { maps: Vec<MmapRaw> },
}

/// A device streaming into a ring.
pub struct Capture {
    device: V4l2Device,
    buffers: Buffers,
    mode: IoMode,
    why: String,
    streaming: bool,
    drops: DropCounter,
    stats: CaptureStats,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("device", &self.device)
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Capture {
    /// Sets up streaming in `io` mode (overriding the device config's mode
    /// unless `IoMode::Auto` is passed, which uses the config's) and starts
    /// the stream. In USERPTR mode the driver's buffers are ring slots
    /// loaned from `publisher`, whose slots must hold `sizeimage` bytes.
    pub fn start(
        device: V4l2Device,
        publisher: &mut Publisher,
        io: IoMode,
    ) -> Result<Capture, V4l2Error> {
        let io = if io == IoMode::Auto { device.io } else { io };
        let capacity = publisher.header().layout.geometry.max_frame_bytes;
        if capacity < u64::from(device.negotiated.sizeimage) {
            return Err(V4l2Error::Invalid {
                device: device.path.clone(),
                why: format!(
                    "ring slots of {capacity} bytes are smaller than the driver's frames of {} bytes",
                    device.negotiated.sizeimage
                ),
            });
        }
        let mut capture = Capture {
            device,
            buffers: Buffers::Mmap { maps: Vec::new() },
            mode: io,
            why: String::new(),
            streaming: false,
            drops: DropCounter::default(),
            stats: CaptureStats::default(),
        };
        match io {
            IoMode::UserPtr => {
                capture.setup_userptr(publisher).map_err(|e| match e {
                    SetupError::Refused(why) => V4l2Error::NoUserPtr {
                        device: capture.device.path.clone(),
                        why,
                    },
                    SetupError::Fatal(e) => e,
                })?;
                capture.why = "USERPTR requested".into();
            }
            IoMode::Mmap => {
                capture.setup_mmap()?;
                capture.why = "MMAP requested".into();
            }
            IoMode::Auto => match capture.setup_userptr(publisher) {
                Ok(()) => {
                    capture.mode = IoMode::UserPtr;
                    capture.why = "the driver accepts ring slots as USERPTR buffers".into();
                }
                Err(SetupError::Refused(why)) => {
                    capture.release_buffers(MEMORY_USERPTR);
                    capture.setup_mmap()?;
                    capture.mode = IoMode::Mmap;
                    capture.why = format!("USERPTR refused ({why}); MMAP + one copy per frame");
                }
                Err(SetupError::Fatal(e)) => return Err(e),
            },
        }
        if let Buffers::UserPtr(u) = &capture.buffers {
            if !u.by_slot {
                capture.why.push_str(&format!(
                    "; the driver granted {} buffers for {} ring slots, so slots rotate over \
                     buffer indices and are re-pinned per frame",
                    u.queued.len(),
                    publisher.header().layout.geometry.slot_count
                ));
            }
        }
        let mut typ = BUF_TYPE as i32;
        // SAFETY: VIDIOC_STREAMON takes an int (the buffer type).
        unsafe {
            xioctl(
                capture.device.fd(),
                v4l::v4l2::vidioc::VIDIOC_STREAMON,
                &mut typ,
            )
        }
        .map_err(|e| classify(&capture.device.path, "VIDIOC_STREAMON", e))?;
        capture.streaming = true;
        Ok(capture)
    }

    fn memory(&self) -> u32 {
        match self.buffers {
            Buffers::UserPtr(_) => MEMORY_USERPTR,
            Buffers::Mmap { .. } => MEMORY_MMAP,
        }
    }

    /// The mode in use and why it was chosen.
    pub fn io_choice(&self) -> (IoMode, &str) {
        (self.mode, &self.why)
    }

    /// The device.
    pub fn device(&self) -> &V4l2Device {
        &self.device
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            driver_drops: self.drops.total(),
            ..self.stats
        }
    }

    fn request(&self, memory: u32, count: u32) -> io::Result<u32> {
        let mut req: v4l2_requestbuffers = zeroed();
        req.count = count;
        req.type_ = BUF_TYPE;
        req.memory = memory;
        // SAFETY: VIDIOC_REQBUFS takes a v4l2_requestbuffers.
        unsafe {
            xioctl(
                self.device.fd(),
                v4l::v4l2::vidioc::VIDIOC_REQBUFS,
                &mut req,
            )?
        };
        Ok(req.count)
    }

    fn release_buffers(&mut self, memory: u32) {
        let _ = self.request(memory, 0);
        self.buffers = Buffers::Mmap { maps: Vec::new() };
    }

    fn setup_userptr(&mut self, publisher: &mut Publisher) -> Result<(), SetupError> {
        let path = self.device.path.clone();
        let slots = publisher.header().layout.geometry.slot_count;
        let target = self.device.buffers;
        // One V4L2 buffer index per ring slot (+1 for the scratch page), so
        // a slot always comes back to the driver under the same index: vb2
        // keeps a USERPTR buffer's pinned pages while its address does not
        // change, so nothing is re-pinned per frame. A driver that grants
        // fewer buffers gets slots rotated over its indices (and re-pins).
        let want = slots.saturating_add(1).max(target + 1);
        let count = match self.request(MEMORY_USERPTR, want) {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => {
                return Err(SetupError::Refused(format!("VIDIOC_REQBUFS: {e}")));
            }
            Err(e) => return Err(SetupError::Fatal(classify(&path, "VIDIOC_REQBUFS", e))),
        };
        if count < 2 {
            return Err(SetupError::Refused(format!(
                "VIDIOC_REQBUFS granted {count} buffers"
            )));
        }
        let by_slot = count >= slots.saturating_add(1);
        let len = publisher.header().layout.geometry.max_frame_bytes as usize;
        let scratch = MmapMut::map_anon(len.max(1)).map_err(|e| {
            SetupError::Fatal(V4l2Error::Invalid {
                device: path.clone(),
                why: format!("cannot allocate a scratch buffer of {len} bytes: {e}"),
            })
        })?;
        self.buffers = Buffers::UserPtr(UserPtr {
            queued: (0..count).map(|_| Queued::Idle).collect(),
            scratch: Scratch(scratch),
            scratch_queued: false,
            by_slot,
            target: target.min(count - 1),
            in_flight: 0,
        });
        if let Err(e) = self.top_up(publisher) {
            // Queued buffers go back (REQBUFS 0 while not streaming); then
            // the loans may be dropped.
            let _ = self.request(MEMORY_USERPTR, 0);
            self.buffers = Buffers::Mmap { maps: Vec::new() };
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EFAULT) | Some(libc::ENOMEM) => {
                    SetupError::Refused(format!("VIDIOC_QBUF of a ring slot: {e}"))
                }
                _ => SetupError::Fatal(classify(&path, "VIDIOC_QBUF", e)),
            });
        }
        Ok(())
    }

    /// Queues ring slots (or, when every slot is held, the scratch page)
    /// until the driver has its buffers.
    fn top_up(&mut self, publisher: &mut Publisher) -> io::Result<()> {
        let fd = self.device.fd();
        let Buffers::UserPtr(u) = &mut self.buffers else {
            return Ok(());
        };
        while u.in_flight < u.target {
            let (index, ptr, len, entry) = match publisher.loan() {
                Ok(mut loan) => {
                    let index = if u.by_slot {
                        loan.slot()
                    } else {
                        match u.idle_index() {
                            Some(i) => i,
                            None => {
                                publisher.abandon(loan);
                                return Ok(());
                            }
                        }
                    };
                    let len = loan.capacity();
                    (index, loan.as_mut_ptr(), len, Queued::Slot(loan))
                }
                Err(_) if !u.scratch_queued => {
                    let index = if u.by_slot {
                        u.queued.len() as u32 - 1
                    } else {
                        match u.idle_index() {
                            Some(i) => i,
                            None => return Ok(()),
                        }
                    };
                    u.scratch_queued = true;
                    let (ptr, len) = (u.scratch.0.as_mut_ptr(), u.scratch.0.len());
                    (index, ptr, len, Queued::Scratch)
                }
                // Every slot held and the scratch page queued: the driver
                // runs with fewer buffers until a reader lets go.
                Err(_) => return Ok(()),
            };
            let mut buf: v4l2_buffer = zeroed();
            buf.index = index;
            buf.type_ = BUF_TYPE;
            buf.memory = MEMORY_USERPTR;
            buf.m.userptr = ptr as std::os::raw::c_ulong;
            buf.length = len as u32;
            // SAFETY: VIDIOC_QBUF takes a v4l2_buffer. The driver will write
            // up to `len` bytes at `ptr` until the buffer is dequeued or
            // streaming stops: the memory is a loaned ring slot (the loan,
            // kept in `queued[index]` until then, keeps the mapping alive and
            // no reader can hold the slot) or the scratch mapping, owned by
            // `self`. Drop stops streaming before either is released.
            let r = unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_QBUF, &mut buf) };
            match r {
                Ok(()) => {
                    u.queued[index as usize] = entry;
                    u.in_flight += 1;
                }
                Err(e) => {
                    match entry {
                        Queued::Slot(loan) => publisher.abandon(loan),
                        Queued::Scratch => u.scratch_queued = false,
                        Queued::Idle => {}
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn setup_mmap(&mut self) -> Result<(), V4l2Error> {
        let path = self.device.path.clone();
        let fd = self.device.fd();
        let count = self
            .request(MEMORY_MMAP, self.device.buffers)
            .map_err(|e| classify(&path, "VIDIOC_REQBUFS", e))?;
        if count == 0 {
            return Err(V4l2Error::Unsupported {
                device: path,
                driver: self.device.identity.driver.clone(),
                card: self.device.identity.card.clone(),
                why: "VIDIOC_REQBUFS granted no MMAP buffers".into(),
            });
        }
        let mut maps = Vec::with_capacity(count as usize);
        for index in 0..count {
            let mut buf: v4l2_buffer = zeroed();
            buf.index = index;
            buf.type_ = BUF_TYPE;
            buf.memory = MEMORY_MMAP;
            // SAFETY: VIDIOC_QUERYBUF takes a v4l2_buffer.
            unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_QUERYBUF, &mut buf) }
                .map_err(|e| classify(&path, "VIDIOC_QUERYBUF", e))?;
            // SAFETY: `offset` is the member QUERYBUF fills for MMAP buffers.
            let offset = unsafe { buf.m.offset };
            let map = MmapOptions::new()
                .offset(u64::from(offset))
                .len(buf.length as usize)
                .map_raw_read_only(fd)
                .map_err(|e| classify(&path, "mmap of a driver buffer", e))?;
            maps.push(map);
            // SAFETY: VIDIOC_QBUF takes a v4l2_buffer (an MMAP buffer: the
            // driver writes into its own memory).
            unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_QBUF, &mut buf) }
                .map_err(|e| classify(&path, "VIDIOC_QBUF", e))?;
        }
        self.buffers = Buffers::Mmap { maps };
        Ok(())
    }

    /// Waits up to `timeout` for the next frame and publishes it. Never
    /// waits for readers: with no free slot the frame is dropped and
    /// counted. A device that went away gives [`V4l2Error::DeviceLost`]; no
    /// frame in time gives [`V4l2Error::Stalled`] (the stream goes on).
    pub fn next(
        &mut self,
        publisher: &mut Publisher,
        timeout: Duration,
    ) -> Result<Captured, V4l2Error> {
        let fd = self.device.fd();
        let path = &self.device.path;
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        match self.device.dev.handle().poll(libc::POLLIN, ms) {
            Ok(0) => {
                return Err(V4l2Error::Stalled {
                    device: path.clone(),
                    waited: timeout,
                })
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                return Err(V4l2Error::Stalled {
                    device: path.clone(),
                    waited: Duration::ZERO,
                })
            }
            Err(e) => return Err(classify(path, "poll", e)),
        }
        let memory = self.memory();
        let mut buf: v4l2_buffer = zeroed();
        buf.type_ = BUF_TYPE;
        buf.memory = memory;
        // SAFETY: VIDIOC_DQBUF takes a v4l2_buffer.
        match unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_DQBUF, &mut buf) } {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                return Err(V4l2Error::Stalled {
                    device: path.clone(),
                    waited: Duration::ZERO,
                })
            }
            // EPIPE: the driver stopped (e.g. a disconnect simulation).
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                return Err(V4l2Error::DeviceLost {
                    device: path.clone(),
                    op: "VIDIOC_DQBUF",
                    cause: e,
                })
            }
            Err(e) => return Err(classify(path, "VIDIOC_DQBUF", e)),
        }
        let driver = DriverFrame::from_buffer(&buf);
        self.stats.frames += 1;
        self.drops.observe(driver.sequence);
        if driver.flags & BUF_FLAG_ERROR != 0 {
            self.stats.error_frames += 1;
        }
        let offset = real_ns() as i64 - mono_ns() as i64;
        let info = driver.frame_info(offset);
        let len = driver.bytesused as usize;
        let outcome = match &mut self.buffers {
            Buffers::UserPtr(u) => {
                let n = u.queued.len();
                let Some(entry) = u.queued.get_mut(driver.index as usize) else {
                    return Err(V4l2Error::Invalid {
                        device: path.clone(),
                        why: format!("the driver returned buffer {} of {n}", driver.index),
                    });
                };
                let was = std::mem::replace(entry, Queued::Idle);
                if !matches!(was, Queued::Idle) {
                    u.in_flight -= 1;
                }
                if matches!(was, Queued::Scratch) {
                    u.scratch_queued = false;
                }
                match was {
                    Queued::Slot(loan) => {
                        let len = len.min(loan.capacity());
                        match publisher.commit(loan, len, &info) {
                            Ok(seq) => Captured::Published { seq, driver },
                            Err(cause) => {
                                return Err(V4l2Error::Publish {
                                    device: path.clone(),
                                    cause,
                                })
                            }
                        }
                    }
                    Queued::Scratch | Queued::Idle => Captured::Dropped { driver },
                }
            }
            Buffers::Mmap { maps } => {
                let Some(map) = maps.get(driver.index as usize) else {
                    return Err(V4l2Error::Invalid {
                        device: path.clone(),
                        why: format!(
                            "the driver returned buffer {} of {}",
                            driver.index,
                            maps.len()
                        ),
                    });
                };
                let len = len.min(map.len());
                // SAFETY: the buffer is dequeued: the driver does not write it
                // until we queue it again below; the mapping lives in `maps`.
                let payload = unsafe { std::slice::from_raw_parts(map.as_ptr(), len) };
                let published = publisher.publish(&info, payload);
                // Back to the driver whatever happened to the frame.
                let mut q: v4l2_buffer = zeroed();
                q.index = driver.index;
                q.type_ = BUF_TYPE;
                q.memory = MEMORY_MMAP;
                // SAFETY: VIDIOC_QBUF takes a v4l2_buffer (MMAP: driver memory).
                unsafe { xioctl(fd, v4l::v4l2::vidioc::VIDIOC_QBUF, &mut q) }
                    .map_err(|e| classify(path, "VIDIOC_QBUF", e))?;
                match published {
                    Ok(Published::Seq(seq)) => {
                        self.stats.bytes_copied += len as u64;
                        Captured::Published { seq, driver }
                    }
                    Ok(Published::Dropped) => Captured::Dropped { driver },
                    Err(cause) => {
                        return Err(V4l2Error::Publish {
                            device: path.clone(),
                            cause,
                        })
                    }
                }
            }
        };
        match outcome {
            Captured::Published { .. } => self.stats.published += 1,
            Captured::Dropped { .. } => self.stats.dropped_no_slot += 1,
        }
        self.top_up(publisher)
            .map_err(|e| classify(&self.device.path, "VIDIOC_QBUF", e))?;
        Ok(outcome)
    }

    /// Stops streaming and gives the ring slots back.
    pub fn stop(mut self, publisher: &mut Publisher) {
        self.streamoff();
        if let Buffers::UserPtr(u) = &mut self.buffers {
            for q in u.queued.drain(..) {
                if let Queued::Slot(loan) = q {
                    publisher.abandon(loan);
                }
            }
        }
    }

    fn streamoff(&mut self) {
        if self.streaming {
            let mut typ = BUF_TYPE as i32;
            // SAFETY: VIDIOC_STREAMOFF takes an int (the buffer type). After
            // it the driver holds no buffer: none of our memory is written.
            let _ = unsafe {
                xioctl(
                    self.device.fd(),
                    v4l::v4l2::vidioc::VIDIOC_STREAMOFF,
                    &mut typ,
                )
            };
            self.streaming = false;
        }
        let memory = self.memory();
        // Frees the driver's buffers (and USERPTR pins).
        let _ = self.request(memory, 0);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Before the loans and maps (fields) drop: the driver must be done
        // with the memory. A device already gone fails these harmlessly.
        self.streamoff();
    }
}

enum SetupError {
    /// The driver does not take ring slots (auto falls back to MMAP).
    Refused(String),
    /// Anything else.
    Fatal(V4l2Error),
}

/// One frame size a device offers, with its frame rates.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeInfo {
    /// Width (the largest, for a stepwise range).
    pub width: u32,
    /// Height (the largest, for a stepwise range).
    pub height: u32,
    /// A stepwise or continuous range `min_w x min_h .. max_w x max_h`, if this is one.
    pub range: Option<(u32, u32, u32, u32)>,
    /// Frame rates offered at this size (fps), highest first.
    pub fps: Vec<f64>,
}

/// One pixel format a device offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    /// FourCC.
    pub fourcc: FourCc,
    /// The driver's description.
    pub description: String,
    /// Compressed (variable-size frames).
    pub compressed: bool,
    /// Sizes offered.
    pub sizes: Vec<SizeInfo>,
}

/// A V4L2 capture device and what it offers, for writing a config.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// The node (`/dev/videoN`).
    pub path: PathBuf,
    /// Stable names that point at it (`/dev/v4l/by-id/...`, `/dev/v4l/by-path/...`).
    pub aliases: Vec<PathBuf>,
    /// Driver, card, bus.
    pub identity: DeviceIdentity,
    /// Its formats (empty when it could not be opened).
    pub formats: Vec<FormatInfo>,
    /// Why it could not be inspected, if so (busy devices still list).
    pub error: Option<String>,
}

/// Lists the video capture nodes under `dev` (normally `/dev`), with their
/// formats, sizes and rates. Nodes that are not capture devices (outputs,
/// metadata nodes) are left out.
pub fn list_devices(dev: &Path) -> Vec<DeviceInfo> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("video"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    nodes.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("video"))
            .and_then(|n| n.parse::<u32>().ok())
    });
    let mut aliases: Vec<(PathBuf, PathBuf)> = Vec::new();
    for sub in ["v4l/by-id", "v4l/by-path"] {
        for e in std::fs::read_dir(dev.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::canonicalize(e.path()) {
                aliases.push((target, e.path()));
            }
        }
    }
    let mut out = Vec::new();
    for path in nodes {
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let my_aliases: Vec<PathBuf> = aliases
            .iter()
            .filter(|(t, _)| *t == canonical)
            .map(|(_, a)| a.clone())
            .collect();
        let dev = match v4l::Device::with_path(&path) {
            Ok(d) => d,
            Err(e) => {
                out.push(DeviceInfo {
                    path,
                    aliases: my_aliases,
                    identity: DeviceIdentity {
                        driver: String::new(),
                        card: String::new(),
                        bus: String::new(),
                        device_caps: 0,
                    },
                    formats: Vec::new(),
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let Ok(identity) = query_identity(dev.handle().fd()) else {
            continue;
        };
        if identity.device_caps & CAP_VIDEO_CAPTURE == 0 {
            continue;
        }
        let formats = enumerate_formats(&dev);
        out.push(DeviceInfo {
            path,
            aliases: my_aliases,
            identity,
            formats,
            error: None,
        });
    }
    out
}

fn enumerate_formats(dev: &v4l::Device) -> Vec<FormatInfo> {
    use v4l::frameinterval::FrameIntervalEnum;
    use v4l::framesize::FrameSizeEnum;
    use v4l::video::Capture as _;
    let mut formats = Vec::new();
    for d in format_descriptions(dev.handle().fd()) {
        let fourcc = v4l::FourCC::from(d.pixelformat);
        let mut sizes = Vec::new();
        for size in dev.enum_framesizes(fourcc).unwrap_or_default() {
            let (width, height, range) = match size.size {
                FrameSizeEnum::Discrete(s) => (s.width, s.height, None),
                FrameSizeEnum::Stepwise(s) => (
                    s.max_width,
                    s.max_height,
                    Some((s.min_width, s.min_height, s.max_width, s.max_height)),
                ),
            };
            let mut fps: Vec<f64> = dev
                .enum_frameintervals(fourcc, width, height)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|i| match i.interval {
                    FrameIntervalEnum::Discrete(f) => vec![(f.numerator, f.denominator)],
                    FrameIntervalEnum::Stepwise(s) => vec![
                        (s.min.numerator, s.min.denominator),
                        (s.max.numerator, s.max.denominator),
                    ],
                })
                .filter(|&(n, d)| n > 0 && d > 0)
                .map(|(n, d)| Interval { num: n, den: d }.fps())
                .collect();
            fps.sort_by(|a, b| b.total_cmp(a));
            fps.dedup();
            sizes.push(SizeInfo {
                width,
                height,
                range,
                fps,
            });
        }
        formats.push(FormatInfo {
            fourcc: FourCc(d.pixelformat),
            description: cstr(&d.description),
            compressed: d.flags & FMT_FLAG_COMPRESSED != 0,
            sizes,
        });
    }
    formats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(fourcc: FourCc, w: u32, h: u32, bpl: u32, size: u32) -> Negotiated {
        Negotiated {
            fourcc,
            width: w,
            height: h,
            bytesperline: bpl,
            sizeimage: size,
            field: 1,
            interval: Some(Interval { num: 1, den: 25 }),
            compressed: false,
        }
    }

    #[test]
    fn intervals_round_trip_common_rates() {
        for fps in [
            1.0, 5.0, 12.5, 15.0, 24.0, 25.0, 29.97, 30.0, 59.94, 60.0, 120.0,
        ] {
            let i = Interval::from_fps(fps).unwrap();
            assert!((i.fps() - fps).abs() < 1e-9, "{fps} -> {i:?}");
        }
        assert_eq!(Interval::from_fps(f64::NAN), None);
        assert_eq!(Interval::from_fps(-1.0), None);
        assert_eq!(Interval::from_fps(f64::INFINITY), None);
        assert_eq!(Interval { num: 0, den: 0 }.fps(), 0.0);
    }

    #[test]
    fn substitution_names_both_sides() {
        let chosen = neg(FourCc::YUYV, 640, 480, 1280, 614_400);
        let all = Requested {
            fourcc: Some(FourCc::MJPG),
            width: Some(1920),
            height: Some(1080),
            fps: Some(30.0),
        };
        let (asked, got) = all.mismatch(&chosen).unwrap();
        assert_eq!(asked, "MJPG 1920x1080 30 fps");
        assert_eq!(got, "YUYV 640x480 25 fps");
        let none = Requested {
            fourcc: None,
            width: None,
            height: None,
            fps: None,
        };
        assert_eq!(none.mismatch(&chosen), None);
        let mut no_rate = chosen;
        no_rate.interval = None;
        let rate = Requested {
            fps: Some(25.0),
            ..none
        };
        assert_eq!(
            rate.mismatch(&no_rate),
            Some(("25 fps".into(), "no settable frame rate".into()))
        );
        // Within 1% is granted (drivers round).
        let close = Requested {
            fps: Some(25.1),
            ..none
        };
        assert_eq!(close.mismatch(&chosen), None);
    }

    #[test]
    fn stream_formats_follow_the_driver() {
        let f = neg(FourCc::YUYV, 640, 480, 1280, 614_400).stream_format();
        assert_eq!(
            (f.fourcc, f.width, f.height, f.num_planes),
            (FourCc::YUYV, 640, 480, 1)
        );
        assert_eq!(f.strides[0], 1280);
        assert_eq!((f.fps_num, f.fps_den), (25, 1));
        // Padded lines: the stride is the driver's.
        let f = neg(FourCc::YUYV, 630, 480, 1280, 614_400).stream_format();
        assert_eq!(f.strides[0], 1280);
        // NV12 with padding: both planes scale.
        let f = neg(FourCc::NV12, 600, 480, 640, 640 * 480 * 3 / 2).stream_format();
        assert_eq!((f.strides[0], f.strides[1]), (640, 640));
        assert_eq!(f.plane_offsets[1], 640 * 480);
        // A format camux has no layout for: one plane, the driver's numbers.
        let f = neg(FourCc::new(*b"BA81"), 640, 480, 640, 307_200).stream_format();
        assert_eq!((f.num_planes, f.strides[0]), (1, 640));
        // Compressed: variable size up to sizeimage.
        let mut m = neg(FourCc::MJPG, 1280, 720, 0, 1_000_000);
        m.compressed = true;
        let f = m.stream_format();
        assert_eq!(f.fourcc, FourCc::MJPG);
        assert_eq!((f.width, f.height), (1280, 720));
    }

    #[test]
    fn driver_metadata_maps_onto_frame_info() {
        let base = DriverFrame {
            index: 2,
            bytesused: 614_400,
            flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
            field: 1,
            tv_sec: 100,
            tv_usec: 250_000,
            sequence: 41,
        };
        let i = base.frame_info(-50);
        assert_eq!(i.capture_mono_ns, 100_250_000_000);
        assert_eq!(i.capture_real_ns, 100_249_999_950);
        assert_eq!((i.driver_seq, i.flags, i.field), (41, 0, 1));
        // A timestamp that is not monotonic is not trusted as capture time.
        let copy = DriverFrame {
            flags: 0x4000,
            ..base
        };
        assert_eq!(copy.frame_info(0).capture_mono_ns, 0);
        // No timestamp at all, or a hostile one, gives "now" (0), no overflow.
        for (s, us) in [(0, 0), (i64::MAX, 0), (-5, 0), (1, i64::MIN)] {
            let d = DriverFrame {
                tv_sec: s,
                tv_usec: us,
                ..base
            };
            assert_eq!(d.frame_info(i64::MAX).capture_mono_ns, 0, "{s} {us}");
        }
    }

    #[test]
    fn drop_counter_counts_gaps_and_survives_restarts() {
        let mut d = DropCounter::default();
        assert_eq!(d.observe(5), 0, "the first frame has no predecessor");
        assert_eq!(d.observe(6), 0);
        assert_eq!(d.observe(9), 2);
        assert_eq!(d.observe(0), 0, "a driver restart counts nothing");
        assert_eq!(d.observe(u32::MAX), u64::from(u32::MAX) - 1);
        assert_eq!(d.total(), 2 + u64::from(u32::MAX) - 1);
    }

    #[test]
    fn io_modes_parse_with_a_helpful_error() {
        assert_eq!("USERPTR".parse::<IoMode>(), Ok(IoMode::UserPtr));
        let err = "dmabuf".parse::<IoMode>().unwrap_err();
        assert!(err.contains("auto, userptr or mmap"), "{err}");
    }

    #[test]
    fn a_missing_device_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = V4l2Device::open(&V4l2Config::new(dir.path().join("video9"))).unwrap_err();
        assert_eq!(err.kind(), "not_found", "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("video9"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_device_is_unsupported() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = V4l2Device::open(&V4l2Config::new(file.path())).unwrap_err();
        assert_eq!(err.kind(), "unsupported", "{err}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn classify_separates_what_a_supervisor_needs() {
        let p = Path::new("/dev/video0");
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify(p, "x", e(libc::ENODEV)).kind(), "device_lost");
        assert_eq!(classify(p, "x", e(libc::EIO)).kind(), "device_lost");
        assert_eq!(classify(p, "x", e(libc::EBUSY)).kind(), "busy");
        assert_eq!(
            classify(p, "x", e(libc::EACCES)).kind(),
            "permission_denied"
        );
        assert_eq!(classify(p, "x", e(libc::EINVAL)).kind(), "ioctl");
        let busy = classify(p, "VIDIOC_REQBUFS", e(libc::EBUSY)).to_string();
        assert!(
            busy.contains("/dev/video0") && busy.contains("busy"),
            "{busy}"
        );
    }
}
