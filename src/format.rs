//! Pixel formats and frame layout arithmetic.
//!
//! This module knows nothing of the ring or of devices: it names formats
//! ([`FourCc`]) and computes where the planes of a frame lie
//! ([`FrameLayout`]). All arithmetic is checked, so any geometry, however
//! hostile, yields a [`FormatError`] rather than an overflow or a panic.
//!
//! ```
//! use camux::format::{FourCc, FrameLayout};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let nv12 = FrameLayout::packed("nv12".parse()?, 1920, 1080)?;
//! assert_eq!(nv12.fourcc, FourCc::NV12);
//! assert_eq!(nv12.planes()[1].offset, 1920 * 1080);
//! assert_eq!(nv12.frame_bytes, 1920 * 1080 * 3 / 2);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;

/// The largest width or height accepted, in pixels (V4L2 drivers cap at
/// 16384 as well).
pub const MAX_DIMENSION: u32 = 16384;

/// The largest frame accepted, in bytes (1 GiB): far beyond any camera, and
/// small enough that every offset fits a `u32`.
pub const MAX_FRAME_BYTES: u64 = 1 << 30;

/// A V4L2-style four-character code naming a pixel format.
///
/// The code is little-endian, as `v4l2_fourcc(a, b, c, d)` =
/// `a | b << 8 | c << 16 | d << 24`, so the value can be handed to and read
/// from V4L2 as is.
///
/// ```
/// use camux::format::FourCc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(FourCc::new(*b"YUYV"), FourCc::YUYV);
/// assert_eq!(FourCc::YUYV.0, 0x5659_5559);
/// assert_eq!("rgb24".parse::<FourCc>()?, FourCc::RGB3);
/// assert_eq!(FourCc::RAW.to_string(), "RAW ");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourCc(pub u32);

impl FourCc {
    /// Packed YUV 4:2:2, bytes Y0 Cb Y1 Cr.
    pub const YUYV: FourCc = FourCc::new(*b"YUYV");
    /// Packed YUV 4:2:2, bytes Cb Y0 Cr Y1.
    pub const UYVY: FourCc = FourCc::new(*b"UYVY");
    /// YUV 4:2:0: a Y plane, then one plane of interleaved Cb Cr.
    pub const NV12: FourCc = FourCc::new(*b"NV12");
    /// YUV 4:2:0: a Y plane, then one plane of interleaved Cr Cb.
    pub const NV21: FourCc = FourCc::new(*b"NV21");
    /// YUV 4:2:0 in three planes Y, Cb, Cr (also known as I420).
    pub const YU12: FourCc = FourCc::new(*b"YU12");
    /// YUV 4:2:2 in three planes Y, Cb, Cr, chroma planes half as wide as
    /// the luma plane and as tall (also known as I422 or yuv422p).
    ///
    /// The code is V4L2's `V4L2_PIX_FMT_YUV422P`, `'422P'`: the constant is
    /// named after [`YU12`](Self::YU12), its 4:2:0 sibling, but the code is
    /// `*b"422P"`, not `*b"YU16"`.
    ///
    /// ```
    /// use camux::format::{FourCc, FrameLayout};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(&FourCc::YU16.as_bytes(), b"422P");
    /// let i422 = FrameLayout::packed(FourCc::YU16, 4, 2)?;
    /// let planes: Vec<(u32, u32)> = i422.planes().iter().map(|p| (p.offset, p.bytes)).collect();
    /// assert_eq!(planes, [(0, 8), (8, 4), (12, 4)]);
    /// # Ok(())
    /// # }
    /// ```
    pub const YU16: FourCc = FourCc::new(*b"422P");
    /// YUV 4:4:4 in three planes Y, Cb, Cr of the same size (also known as
    /// I444 or yuv444p).
    ///
    /// V4L2 has no single-buffer code for this layout (only the
    /// multi-planar `'YM24'`), so `'444P'` is camux's own, by analogy with
    /// [`YU16`](Self::YU16)'s `'422P'`.
    ///
    /// ```
    /// use camux::format::{FourCc, FrameLayout};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(&FourCc::YU24.as_bytes(), b"444P");
    /// assert_eq!(FrameLayout::packed(FourCc::YU24, 3, 3)?.frame_bytes, 27);
    /// # Ok(())
    /// # }
    /// ```
    pub const YU24: FourCc = FourCc::new(*b"444P");
    /// 8-bit greyscale (luma only).
    pub const GREY: FourCc = FourCc::new(*b"GREY");
    /// Packed 24-bit RGB, bytes R G B (also known as RGB24).
    pub const RGB3: FourCc = FourCc::new(*b"RGB3");
    /// Packed 24-bit BGR, bytes B G R (also known as BGR24).
    pub const BGR3: FourCc = FourCc::new(*b"BGR3");
    /// Motion JPEG: each frame a JPEG image of variable size.
    pub const MJPG: FourCc = FourCc::new(*b"MJPG");
    /// H.264 elementary stream: each frame an access unit of variable size.
    pub const H264: FourCc = FourCc::new(*b"H264");
    /// An opaque byte stream, such as fixed-size sensor records.
    pub const RAW: FourCc = FourCc::new(*b"RAW ");

    /// The code for four bytes, the first being the least significant.
    pub const fn new(code: [u8; 4]) -> FourCc {
        FourCc(u32::from_le_bytes(code))
    }

    /// The four bytes of the code, in the order they are written (`*b"YUYV"`).
    ///
    /// ```
    /// use camux::format::FourCc;
    /// assert_eq!(&FourCc::NV12.as_bytes(), b"NV12");
    /// ```
    pub const fn as_bytes(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }

    /// True for formats whose frames have no fixed size ([`MJPG`](Self::MJPG),
    /// [`H264`](Self::H264), [`RAW`](Self::RAW)) and need
    /// [`FrameLayout::opaque`].
    ///
    /// ```
    /// use camux::format::FourCc;
    /// assert!(FourCc::MJPG.is_opaque());
    /// assert!(!FourCc::YUYV.is_opaque());
    /// ```
    pub const fn is_opaque(self) -> bool {
        matches!(self, FourCc::MJPG | FourCc::H264 | FourCc::RAW)
    }

    /// True if the code reads as text: printable ASCII, padded at the end
    /// with spaces, not blank. Only such codes are accepted by [`FromStr`].
    fn is_well_formed(code: [u8; 4]) -> bool {
        let text = code.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        text > 0 && code[..text].iter().all(u8::is_ascii_graphic)
    }
}

impl fmt::Display for FourCc {
    /// The four characters; a byte that is not printable ASCII shows as `.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            let c = if b == b' ' || b.is_ascii_graphic() {
                b
            } else {
                b'.'
            };
            write!(f, "{}", char::from(c))?;
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    /// `FourCc("YUYV")`, or the hex value when the code is not text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if FourCc::is_well_formed(self.as_bytes()) {
            write!(f, "FourCc(\"{self}\")")
        } else {
            write!(f, "FourCc({:#010x})", self.0)
        }
    }
}

/// The formats [`FrameLayout::packed`] lays out.
const PACKED_FORMATS: [FourCc; 10] = [
    FourCc::YUYV,
    FourCc::UYVY,
    FourCc::NV12,
    FourCc::NV21,
    FourCc::YU12,
    FourCc::YU16,
    FourCc::YU24,
    FourCc::GREY,
    FourCc::RGB3,
    FourCc::BGR3,
];

/// Lowercase names accepted by [`FourCc::from_str`] besides the codes.
///
/// They are looked up before the code itself, so `"grey"` is
/// [`FourCc::GREY`], not the (meaningless) code `grey`.
const ALIASES: &[(&str, FourCc)] = &[
    ("yuyv", FourCc::YUYV),
    ("uyvy", FourCc::UYVY),
    ("nv12", FourCc::NV12),
    ("nv21", FourCc::NV21),
    ("i420", FourCc::YU12),
    ("yu12", FourCc::YU12),
    ("yuv420p", FourCc::YU12),
    ("i422", FourCc::YU16),
    ("yuv422p", FourCc::YU16),
    ("i444", FourCc::YU24),
    ("yuv444p", FourCc::YU24),
    ("grey", FourCc::GREY),
    ("gray", FourCc::GREY),
    ("rgb24", FourCc::RGB3),
    ("bgr24", FourCc::BGR3),
    ("mjpg", FourCc::MJPG),
    ("mjpeg", FourCc::MJPG),
    ("h264", FourCc::H264),
    ("raw", FourCc::RAW),
];

impl FromStr for FourCc {
    type Err = ParseFourCcError;

    /// Parses exactly four ASCII characters, case-sensitive, with trailing
    /// spaces as padding (`"YUYV"`, `"RAW "`), or one of the lowercase
    /// aliases (`"rgb24"`, `"i420"`, `"gray"`, `"yuyv"`, `"raw"`, ...).
    /// `"RAW"` is taken for `"RAW "`: shells and YAML drop trailing spaces.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// assert_eq!("RAW".parse::<FourCc>(), Ok(FourCc::RAW));
    /// assert_eq!("RAW ".parse::<FourCc>(), Ok(FourCc::RAW));
    /// assert!("YUY".parse::<FourCc>().is_err(), "a typo, not a padded code");
    /// ```
    ///
    /// Any well-formed code parses, known or not: whether a format can be
    /// laid out is [`FrameLayout`]'s business.
    fn from_str(s: &str) -> Result<FourCc, ParseFourCcError> {
        if let Some(&(_, fourcc)) = ALIASES.iter().find(|(name, _)| *name == s) {
            return Ok(fourcc);
        }
        if (1..4).contains(&s.len()) {
            let mut code = [b' '; 4];
            code[..s.len()].copy_from_slice(s.as_bytes());
            // Only known space-padded codes: "YUY" is a typo, not a format.
            if FourCc::new(code) == FourCc::RAW {
                return Ok(FourCc::RAW);
            }
        }
        match <[u8; 4]>::try_from(s.as_bytes()) {
            Ok(code) if FourCc::is_well_formed(code) => Ok(FourCc::new(code)),
            _ => Err(ParseFourCcError {
                given: s.to_owned(),
            }),
        }
    }
}

/// A string that is neither a four-character code nor a known alias.
///
/// ```
/// use camux::format::FourCc;
/// let err = "yuv".parse::<FourCc>().unwrap_err();
/// assert_eq!(err.given(), "yuv");
/// assert!(err.to_string().contains("rgb24"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid FourCC {given:?}: expected exactly 4 ASCII characters, case-sensitive, \
     padded with trailing spaces (e.g. \"YUYV\", \"RAW \"), or one of {}",
    alias_list()
)]
pub struct ParseFourCcError {
    given: String,
}

impl ParseFourCcError {
    /// The string that failed to parse.
    pub fn given(&self) -> &str {
        &self.given
    }
}

fn alias_list() -> String {
    let names: Vec<&str> = ALIASES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Where one plane of a frame lies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Plane {
    /// Offset of the plane's first byte from the start of the frame.
    pub offset: u32,
    /// Bytes from the start of one row to the start of the next; 0 for an
    /// opaque format, which has no rows (as V4L2's `bytesperline`).
    pub stride: u32,
    /// Size of the plane in bytes.
    pub bytes: u32,
}

/// The geometry of a frame: its format, size and where its planes lie.
///
/// ```
/// use camux::format::{FourCc, FrameLayout};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let yuyv = FrameLayout::packed(FourCc::YUYV, 640, 480)?;
/// assert_eq!(yuyv.planes()[0].stride, 1280);
/// assert_eq!(yuyv.frame_bytes, 640 * 480 * 2);
///
/// let jpeg = FrameLayout::opaque(FourCc::MJPG, 1920, 1080, 2 << 20)?;
/// assert_eq!(jpeg.frame_bytes, 2 << 20);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLayout {
    /// The pixel format.
    pub fourcc: FourCc,
    /// Width in pixels (for [`FourCc::RAW`], often the bytes per record).
    pub width: u32,
    /// Height in pixels (rows).
    pub height: u32,
    /// The planes in order; entries past `num_planes` are zero.
    pub planes: [Plane; 3],
    /// How many entries of `planes` are in use (1 to 3).
    pub num_planes: u32,
    /// Bytes of a whole frame; for opaque formats, the largest frame.
    pub frame_bytes: u64,
}

/// A plane as a row count and a stride, before offsets are assigned.
#[derive(Clone, Copy)]
struct PlaneShape {
    stride: u64,
    rows: u64,
}

impl FrameLayout {
    /// The tightly packed layout (no row padding) of an uncompressed format.
    ///
    /// Supported: YUYV and UYVY (stride 2w, even width), NV12 and NV21 (a
    /// Y plane, then w×h/2 bytes of interleaved chroma; even width and
    /// height), YU12 (Y, Cb, Cr planes; even width and height), YU16 (Y,
    /// Cb, Cr planes, chroma w/2 × h; even width), YU24 (three w × h
    /// planes), GREY (stride w), RGB3 and BGR3 (stride 3w).
    ///
    /// # Errors
    /// A zero or too large dimension, an odd dimension a subsampled format
    /// cannot take, a frame over [`MAX_FRAME_BYTES`], an opaque format
    /// ([`FormatError::NeedsMaxBytes`]) or an unknown one.
    ///
    /// ```
    /// use camux::format::{FormatError, FourCc, FrameLayout};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let i420 = FrameLayout::packed(FourCc::YU12, 4, 2)?;
    /// let offsets: Vec<u32> = i420.planes().iter().map(|p| p.offset).collect();
    /// assert_eq!(offsets, [0, 8, 10]);
    /// assert!(matches!(
    ///     FrameLayout::packed(FourCc::YUYV, 641, 480),
    ///     Err(FormatError::OddWidth { width: 641, .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn packed(fourcc: FourCc, width: u32, height: u32) -> Result<FrameLayout, FormatError> {
        check_dimensions(width, height)?;
        let (w, h) = (u64::from(width), u64::from(height));
        let even_width = || {
            if width.is_multiple_of(2) {
                Ok(())
            } else {
                Err(FormatError::OddWidth { fourcc, width })
            }
        };
        let even_height = || {
            if height.is_multiple_of(2) {
                Ok(())
            } else {
                Err(FormatError::OddHeight { fourcc, height })
            }
        };
        let layout =
            |shapes: &[PlaneShape]| FrameLayout::from_shapes(fourcc, width, height, shapes);
        let rows = |stride: u64, rows: u64| PlaneShape { stride, rows };
        match fourcc {
            FourCc::YUYV | FourCc::UYVY => {
                even_width()?;
                layout(&[rows(2 * w, h)])
            }
            FourCc::GREY => layout(&[rows(w, h)]),
            FourCc::RGB3 | FourCc::BGR3 => layout(&[rows(3 * w, h)]),
            FourCc::NV12 | FourCc::NV21 => {
                even_width()?;
                even_height()?;
                layout(&[rows(w, h), rows(w, h / 2)])
            }
            FourCc::YU12 => {
                even_width()?;
                even_height()?;
                let chroma = rows(w / 2, h / 2);
                layout(&[rows(w, h), chroma, chroma])
            }
            FourCc::YU16 => {
                even_width()?;
                let chroma = rows(w / 2, h);
                layout(&[rows(w, h), chroma, chroma])
            }
            FourCc::YU24 => layout(&[rows(w, h), rows(w, h), rows(w, h)]),
            _ if fourcc.is_opaque() => Err(FormatError::NeedsMaxBytes { fourcc }),
            _ => Err(FormatError::Unsupported { fourcc }),
        }
    }

    /// The layout of a compressed or opaque format (MJPG, H264, RAW, or a
    /// code this module does not know): one plane of up to `max_bytes`,
    /// with stride 0 as there are no rows. Each frame carries its own
    /// length, at most `max_bytes`.
    ///
    /// # Errors
    /// A zero or too large dimension, `max_bytes` 0 or over
    /// [`MAX_FRAME_BYTES`], or a format [`packed`](Self::packed) lays out
    /// ([`FormatError::NotOpaque`]): its frame size is not a choice.
    ///
    /// ```
    /// use camux::format::{FourCc, FrameLayout};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 64-byte sensor records, one per frame.
    /// let imu = FrameLayout::opaque(FourCc::RAW, 64, 1, 64)?;
    /// assert_eq!(imu.num_planes, 1);
    /// assert_eq!(imu.planes()[0].bytes, 64);
    /// # Ok(())
    /// # }
    /// ```
    pub fn opaque(
        fourcc: FourCc,
        width: u32,
        height: u32,
        max_bytes: u64,
    ) -> Result<FrameLayout, FormatError> {
        check_dimensions(width, height)?;
        if PACKED_FORMATS.contains(&fourcc) {
            return Err(FormatError::NotOpaque { fourcc });
        }
        if max_bytes == 0 {
            return Err(FormatError::ZeroMaxBytes { fourcc });
        }
        let bytes = check_frame_bytes(max_bytes)?;
        let mut planes = [Plane::default(); 3];
        planes[0] = Plane {
            offset: 0,
            stride: 0,
            bytes,
        };
        Ok(FrameLayout {
            fourcc,
            width,
            height,
            planes,
            num_planes: 1,
            frame_bytes: max_bytes,
        })
    }

    /// The planes in use (the first [`num_planes`](Self::num_planes)).
    ///
    /// ```
    /// use camux::format::{FourCc, FrameLayout};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(FrameLayout::packed(FourCc::YU12, 64, 64)?.planes().len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn planes(&self) -> &[Plane] {
        let n = usize::try_from(self.num_planes).map_or(0, |n| n.min(self.planes.len()));
        &self.planes[..n]
    }

    /// Lays the planes out back to back from offset 0.
    fn from_shapes(
        fourcc: FourCc,
        width: u32,
        height: u32,
        shapes: &[PlaneShape],
    ) -> Result<FrameLayout, FormatError> {
        let mut planes = [Plane::default(); 3];
        let mut end: u64 = 0;
        for (plane, shape) in planes.iter_mut().zip(shapes) {
            // Dimensions are at most 2^14, so stride * rows < 2^30 * 3 and the
            // sum of three planes fits a u64 by far; checked anyway so that
            // raising the limits can never turn into an overflow.
            let bytes = shape.stride.checked_mul(shape.rows).ok_or(TOO_LARGE)?;
            let next = end.checked_add(bytes).ok_or(TOO_LARGE)?;
            check_frame_bytes(next)?;
            *plane = Plane {
                offset: check_frame_bytes(end)?,
                stride: check_frame_bytes(shape.stride)?,
                bytes: check_frame_bytes(bytes)?,
            };
            end = next;
        }
        Ok(FrameLayout {
            fourcc,
            width,
            height,
            planes,
            num_planes: u32::try_from(shapes.len()).map_err(|_| TOO_LARGE)?,
            frame_bytes: end,
        })
    }
}

/// Stands for an arithmetic overflow, which can only mean "too large".
const TOO_LARGE: FormatError = FormatError::TooLarge {
    bytes: u64::MAX,
    max: MAX_FRAME_BYTES,
};

fn check_dimensions(width: u32, height: u32) -> Result<(), FormatError> {
    if width == 0 || height == 0 {
        Err(FormatError::ZeroDimension { width, height })
    } else if width > MAX_DIMENSION || height > MAX_DIMENSION {
        Err(FormatError::DimensionTooLarge {
            width,
            height,
            max: MAX_DIMENSION,
        })
    } else {
        Ok(())
    }
}

/// `bytes` as a `u32` if it is within [`MAX_FRAME_BYTES`].
fn check_frame_bytes(bytes: u64) -> Result<u32, FormatError> {
    if bytes > MAX_FRAME_BYTES {
        return Err(FormatError::TooLarge {
            bytes,
            max: MAX_FRAME_BYTES,
        });
    }
    u32::try_from(bytes).map_err(|_| TOO_LARGE)
}

/// Why a frame layout cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The width or the height is zero.
    #[error("frame size {width}x{height} is empty: width and height must be at least 1")]
    ZeroDimension {
        /// The width given.
        width: u32,
        /// The height given.
        height: u32,
    },
    /// The width or the height is over [`MAX_DIMENSION`].
    #[error("frame size {width}x{height} is too large: width and height must be at most {max}")]
    DimensionTooLarge {
        /// The width given.
        width: u32,
        /// The height given.
        height: u32,
        /// The largest dimension accepted.
        max: u32,
    },
    /// The format subsamples chroma horizontally and needs an even width.
    #[error("{fourcc} needs an even width, got {width}")]
    OddWidth {
        /// The format.
        fourcc: FourCc,
        /// The width given.
        width: u32,
    },
    /// The format subsamples chroma vertically and needs an even height.
    #[error("{fourcc} needs an even height, got {height}")]
    OddHeight {
        /// The format.
        fourcc: FourCc,
        /// The height given.
        height: u32,
    },
    /// The frame would be over [`MAX_FRAME_BYTES`].
    #[error("frame of {bytes} bytes is too large: at most {max} bytes")]
    TooLarge {
        /// The size asked for (`u64::MAX` if computing it overflowed).
        bytes: u64,
        /// The largest frame accepted.
        max: u64,
    },
    /// The format's frames have no fixed size, so a maximum must be given
    /// with [`FrameLayout::opaque`].
    #[error("{fourcc} frames have no fixed size: give a max frame size (FrameLayout::opaque)")]
    NeedsMaxBytes {
        /// The format.
        fourcc: FourCc,
    },
    /// An opaque layout was asked for a format whose frame size is fixed.
    #[error("{fourcc} frames have a fixed size: use FrameLayout::packed, not a max frame size")]
    NotOpaque {
        /// The format.
        fourcc: FourCc,
    },
    /// An opaque layout was asked with a max frame size of 0.
    #[error("{fourcc}: the max frame size must be at least 1 byte")]
    ZeroMaxBytes {
        /// The format.
        fourcc: FourCc,
    },
    /// The format is not one this module can lay out.
    #[error(
        "unsupported pixel format {fourcc:?}: supported are YUYV, UYVY, NV12, NV21, YU12, \
         422P (YU16), 444P (YU24), GREY, RGB3, BGR3 (and MJPG, H264, RAW with a max frame size)"
    )]
    Unsupported {
        /// The format.
        fourcc: FourCc,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PACKED: [FourCc; PACKED_FORMATS.len()] = PACKED_FORMATS;

    #[test]
    fn fourcc_is_v4l2_little_endian() {
        let v4l2_fourcc = |a: u8, b: u8, c: u8, d: u8| {
            u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16 | u32::from(d) << 24
        };
        assert_eq!(FourCc::YUYV.0, v4l2_fourcc(b'Y', b'U', b'Y', b'V'));
        assert_eq!(FourCc::RAW.0, v4l2_fourcc(b'R', b'A', b'W', b' '));
        assert_eq!(&FourCc::H264.as_bytes(), b"H264");
    }

    #[test]
    fn display_and_debug() {
        assert_eq!(FourCc::MJPG.to_string(), "MJPG");
        assert_eq!(FourCc(0x4100_0142).to_string(), "B..A");
        assert_eq!(format!("{:?}", FourCc::GREY), "FourCc(\"GREY\")");
        assert_eq!(format!("{:?}", FourCc(1)), "FourCc(0x00000001)");
    }

    #[test]
    fn parse_codes_and_aliases() {
        let cases = [
            ("YUYV", FourCc::YUYV),
            ("RAW ", FourCc::RAW),
            ("rgb24", FourCc::RGB3),
            ("i420", FourCc::YU12),
            ("gray", FourCc::GREY),
            ("grey", FourCc::GREY),
            ("yuyv", FourCc::YUYV),
            ("nv12", FourCc::NV12),
            ("uyvy", FourCc::UYVY),
            ("raw", FourCc::RAW),
            ("Y10 ", FourCc::new(*b"Y10 ")),
            ("ABCD", FourCc::new(*b"ABCD")),
        ];
        for (text, fourcc) in cases {
            assert_eq!(text.parse::<FourCc>(), Ok(fourcc), "{text:?}");
        }
    }

    #[test]
    fn parse_rejects() {
        for text in [
            "", "YUY", "YUYVV", " RAW", "RA", "R AW", "    ", "YU\u{e9}", "Nv12\n",
        ] {
            let err = text.parse::<FourCc>().unwrap_err();
            assert_eq!(err.given(), text);
            let message = err.to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains("i420"), "{message}");
        }
    }

    #[test]
    fn display_parses_back() {
        for fourcc in PACKED
            .iter()
            .chain(&[FourCc::MJPG, FourCc::H264, FourCc::RAW])
        {
            assert_eq!(fourcc.to_string().parse::<FourCc>(), Ok(*fourcc));
        }
    }

    #[test]
    fn packed_layouts() {
        let yuyv = FrameLayout::packed(FourCc::YUYV, 1280, 720).unwrap();
        assert_eq!(yuyv.num_planes, 1);
        assert_eq!(
            yuyv.planes[0],
            Plane {
                offset: 0,
                stride: 2560,
                bytes: 2560 * 720
            }
        );
        let nv21 = FrameLayout::packed(FourCc::NV21, 64, 48).unwrap();
        assert_eq!(
            nv21.planes(),
            [
                Plane {
                    offset: 0,
                    stride: 64,
                    bytes: 64 * 48
                },
                Plane {
                    offset: 64 * 48,
                    stride: 64,
                    bytes: 64 * 24
                },
            ]
        );
        let rgb = FrameLayout::packed(FourCc::BGR3, 3, 5).unwrap();
        assert_eq!((rgb.planes[0].stride, rgb.frame_bytes), (9, 45));
        let grey = FrameLayout::packed(FourCc::GREY, 1, 1).unwrap();
        assert_eq!(grey.frame_bytes, 1);
    }

    #[test]
    fn planar_422_and_444_layouts() {
        let i422 = FrameLayout::packed(FourCc::YU16, 64, 3).unwrap();
        assert_eq!(
            i422.planes(),
            [
                Plane {
                    offset: 0,
                    stride: 64,
                    bytes: 64 * 3
                },
                Plane {
                    offset: 64 * 3,
                    stride: 32,
                    bytes: 32 * 3
                },
                Plane {
                    offset: 64 * 3 + 32 * 3,
                    stride: 32,
                    bytes: 32 * 3
                },
            ]
        );
        assert_eq!(i422.frame_bytes, 64 * 3 * 2);
        assert_eq!(
            FrameLayout::packed(FourCc::YU16, 63, 2),
            Err(FormatError::OddWidth {
                fourcc: FourCc::YU16,
                width: 63
            })
        );
        let i444 = FrameLayout::packed(FourCc::YU24, 5, 3).unwrap();
        let offsets: Vec<u32> = i444.planes().iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [0, 15, 30]);
        assert_eq!(i444.frame_bytes, 45);
        for (text, fourcc) in [
            ("422P", FourCc::YU16),
            ("i422", FourCc::YU16),
            ("yuv422p", FourCc::YU16),
            ("444P", FourCc::YU24),
            ("yuv444p", FourCc::YU24),
            ("yuv420p", FourCc::YU12),
        ] {
            assert_eq!(text.parse::<FourCc>(), Ok(fourcc), "{text:?}");
        }
        assert_eq!(
            FrameLayout::opaque(FourCc::YU16, 64, 64, 8192),
            Err(FormatError::NotOpaque {
                fourcc: FourCc::YU16
            })
        );
    }

    #[test]
    fn packed_errors() {
        use FormatError::*;
        let cases = [
            (
                FourCc::YUYV,
                0,
                480,
                ZeroDimension {
                    width: 0,
                    height: 480,
                },
            ),
            (
                FourCc::GREY,
                16385,
                1,
                DimensionTooLarge {
                    width: 16385,
                    height: 1,
                    max: MAX_DIMENSION,
                },
            ),
            (
                FourCc::UYVY,
                3,
                2,
                OddWidth {
                    fourcc: FourCc::UYVY,
                    width: 3,
                },
            ),
            (
                FourCc::NV12,
                4,
                3,
                OddHeight {
                    fourcc: FourCc::NV12,
                    height: 3,
                },
            ),
            (
                FourCc::MJPG,
                640,
                480,
                NeedsMaxBytes {
                    fourcc: FourCc::MJPG,
                },
            ),
            (
                FourCc::new(*b"Y10 "),
                640,
                480,
                Unsupported {
                    fourcc: FourCc::new(*b"Y10 "),
                },
            ),
        ];
        for (fourcc, width, height, expected) in cases {
            assert_eq!(FrameLayout::packed(fourcc, width, height), Err(expected));
        }
        let message = FrameLayout::packed(FourCc::H264, 64, 64)
            .unwrap_err()
            .to_string();
        assert!(message.contains("max frame size"), "{message}");
    }

    #[test]
    fn opaque_layouts() {
        let h264 = FrameLayout::opaque(FourCc::H264, 1920, 1080, 4 << 20).unwrap();
        assert_eq!(
            h264.planes(),
            [Plane {
                offset: 0,
                stride: 0,
                bytes: 4 << 20
            }]
        );
        assert_eq!(h264.frame_bytes, 4 << 20);
        let custom = FourCc::new(*b"IMU0");
        assert!(FrameLayout::opaque(custom, 48, 1, 48).is_ok());
        assert_eq!(
            FrameLayout::opaque(FourCc::YUYV, 64, 64, 8192),
            Err(FormatError::NotOpaque {
                fourcc: FourCc::YUYV
            })
        );
        assert_eq!(
            FrameLayout::opaque(FourCc::RAW, 64, 1, 0),
            Err(FormatError::ZeroMaxBytes {
                fourcc: FourCc::RAW
            })
        );
        assert_eq!(
            FrameLayout::opaque(FourCc::MJPG, 64, 64, MAX_FRAME_BYTES + 1),
            Err(FormatError::TooLarge {
                bytes: MAX_FRAME_BYTES + 1,
                max: MAX_FRAME_BYTES
            })
        );
        assert!(FrameLayout::opaque(FourCc::MJPG, 64, 64, MAX_FRAME_BYTES).is_ok());
    }

    #[test]
    fn largest_frames_fit() {
        for fourcc in PACKED {
            let layout = FrameLayout::packed(fourcc, MAX_DIMENSION, MAX_DIMENSION).unwrap();
            assert!(layout.frame_bytes <= MAX_FRAME_BYTES);
        }
    }

    fn check_invariants(layout: &FrameLayout) {
        let planes = layout.planes();
        assert!(!planes.is_empty());
        assert_eq!(planes.len(), layout.num_planes as usize);
        assert!(layout.planes[planes.len()..]
            .iter()
            .all(|p| *p == Plane::default()));
        let mut end = 0u64;
        for plane in planes {
            assert_eq!(u64::from(plane.offset), end, "planes are back to back");
            assert!(plane.bytes > 0);
            if plane.stride > 0 {
                assert_eq!(plane.bytes % plane.stride, 0, "whole rows");
            }
            end += u64::from(plane.bytes);
        }
        assert_eq!(end, layout.frame_bytes);
        assert!(layout.frame_bytes <= MAX_FRAME_BYTES);
    }

    proptest! {
        #[test]
        fn packed_planes_tile_the_frame(
            fourcc in proptest::sample::select(&PACKED[..]),
            half_width in 1..=MAX_DIMENSION / 2,
            half_height in 1..=MAX_DIMENSION / 2,
        ) {
            let layout = FrameLayout::packed(fourcc, half_width * 2, half_height * 2).unwrap();
            check_invariants(&layout);
            let luma = layout.planes[0];
            prop_assert!(u64::from(luma.stride) >= u64::from(layout.width));
            prop_assert_eq!(u64::from(luma.bytes), u64::from(luma.stride) * u64::from(layout.height));
        }

        #[test]
        fn any_input_is_a_layout_or_an_error(
            code in any::<u32>(),
            known in proptest::sample::select(&PACKED[..]),
            use_known in any::<bool>(),
            width in prop_oneof![0..=MAX_DIMENSION + 2, any::<u32>()],
            height in prop_oneof![0..=MAX_DIMENSION + 2, any::<u32>()],
            max_bytes in prop_oneof![0..=MAX_FRAME_BYTES + 2, any::<u64>()],
        ) {
            let fourcc = if use_known { known } else { FourCc(code) };
            if let Ok(layout) = FrameLayout::packed(fourcc, width, height) {
                check_invariants(&layout);
            }
            if let Ok(layout) = FrameLayout::opaque(fourcc, width, height, max_bytes) {
                check_invariants(&layout);
                prop_assert_eq!(layout.frame_bytes, max_bytes);
            }
        }

        #[test]
        fn parse_never_panics_and_round_trips(text in "\\PC{0,6}", code in any::<[u8; 4]>()) {
            if let Ok(fourcc) = text.parse::<FourCc>() {
                prop_assert!(FourCc::is_well_formed(fourcc.as_bytes()));
            }
            let fourcc = FourCc::new(code);
            if FourCc::is_well_formed(code) {
                let shown = fourcc.to_string();
                // An alias spelled like a code wins, so only compare the rest.
                if !ALIASES.iter().any(|(name, _)| *name == shown) {
                    prop_assert_eq!(shown.parse::<FourCc>(), Ok(fourcc));
                }
            }
        }
    }
}
