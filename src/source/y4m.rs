//! YUV4MPEG2 (Y4M): raw planar video with a one-line text header.
//!
//! A Y4M stream is a header line, then frames, each a `FRAME` line and the
//! frame's raw planar bytes:
//!
//! ```text
//! YUV4MPEG2 W<width> H<height> F<num>:<den> [I<p|t|b|m>] [A<num>:<den>] [C<colourspace>] [X<anything>]...\n
//! FRAME[ <params>]\n<width × height × … bytes>
//! FRAME[ <params>]\n<…>
//! ```
//!
//! Parameters are separated by single spaces and may come in any order; `W`
//! and `H` are required, the others optional and given at most once (but
//! `X`, free-form, any number of times). A missing `F` or `F0:0` is an
//! unknown frame rate, a missing `A` or `A0:0` an unknown pixel aspect, a
//! missing `C` is `420jpeg`. Frame parameters (`FRAME Ixyz`) are kept as
//! text, not interpreted.
//!
//! Only 8-bit planar layouts are read and written, each mapped to the
//! [`FourCc`] of the same byte layout ([`Colourspace::fourcc`]): the 4:2:0
//! colour spaces (`420jpeg`, `420paldv`, `420mpeg2`, `420`, which differ
//! only in where chroma is sited) are [`FourCc::YU12`], `422` is
//! [`FourCc::YU16`], `444` is [`FourCc::YU24`] and `mono` is
//! [`FourCc::GREY`]. Subsampled formats need even dimensions, as
//! [`FrameLayout::packed`] does (Y4M itself would round chroma up).
//!
//! Reading is bounded: header and `FRAME` lines are at most
//! [`MAX_LINE_BYTES`], dimensions at most [`MAX_DIMENSION`], and a frame is
//! read straight into the caller's buffer. Every malformed input is a
//! [`Y4mError`] that names the field and what it may be; nothing panics.
//!
//! ```
//! use camux::format::FourCc;
//! use camux::source::y4m::{Ratio, Y4mHeader, Y4mReader, Y4mWriter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let header = Y4mHeader::for_fourcc(FourCc::GREY, 4, 2, Ratio::new(25, 1))?;
//! let mut writer = Y4mWriter::new(Vec::new(), header)?;
//! writer.write_frame(&[1, 2, 3, 4, 5, 6, 7, 8])?;
//! let file = writer.into_inner();
//! assert!(file.starts_with(b"YUV4MPEG2 W4 H2 F25:1 Cmono\nFRAME\n"));
//!
//! let mut reader = Y4mReader::new(&file[..])?;
//! assert_eq!(reader.layout().fourcc, FourCc::GREY);
//! let mut frame = vec![0; reader.frame_bytes()];
//! assert_eq!(reader.read_frame(&mut frame)?, Some(8));
//! assert_eq!(frame, [1, 2, 3, 4, 5, 6, 7, 8]);
//! assert_eq!(reader.read_frame(&mut frame)?, None);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

use super::BufferTooSmall;
use crate::format::{FormatError, FourCc, FrameLayout, MAX_DIMENSION};

/// The first bytes of every Y4M stream, the space included.
pub const SIGNATURE: &[u8; 10] = b"YUV4MPEG2 ";

/// The tag that starts every frame's header line.
pub const FRAME_TAG: &[u8; 5] = b"FRAME";

/// The longest header or `FRAME` line accepted or written, newline
/// included (1 KiB).
pub const MAX_LINE_BYTES: usize = 1024;

/// A ratio of two whole numbers: a frame rate in frames per second, or a
/// pixel aspect ratio.
///
/// ```
/// use camux::source::y4m::Ratio;
/// let ntsc = Ratio::new(30000, 1001);
/// assert_eq!(ntsc.to_string(), "30000:1001");
/// assert!((ntsc.to_f64() - 29.97).abs() < 0.001);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    /// Numerator.
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl Ratio {
    /// `num:den`, as given (not reduced).
    ///
    /// ```
    /// use camux::source::y4m::Ratio;
    /// assert_eq!(Ratio::new(50, 2).num, 50);
    /// ```
    pub const fn new(num: u32, den: u32) -> Ratio {
        Ratio { num, den }
    }

    /// `num / den`; infinite or NaN if `den` is 0.
    ///
    /// ```
    /// use camux::source::y4m::Ratio;
    /// assert_eq!(Ratio::new(25, 2).to_f64(), 12.5);
    /// ```
    pub fn to_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// A ratio for a frame rate given as a number: whole rates as `n:1`,
    /// the NTSC family (29.97, 59.94, 23.976, ...) as `n:1001`, anything
    /// else as the simplest fraction within a relative 10⁻¹² of it, or
    /// failing that the closest one found with both terms in `u32`.
    ///
    /// `None` unless `fps` is finite, above 0 and at most `u32::MAX`, with
    /// a nonzero numerator.
    ///
    /// ```
    /// use camux::source::y4m::Ratio;
    /// assert_eq!(Ratio::from_fps(30.0), Some(Ratio::new(30, 1)));
    /// assert_eq!(Ratio::from_fps(29.97), Some(Ratio::new(30000, 1001)));
    /// assert_eq!(Ratio::from_fps(12.5), Some(Ratio::new(25, 2)));
    /// assert_eq!(Ratio::from_fps(1.0 / 86400.0), Some(Ratio::new(1, 86400)));
    /// assert_eq!(Ratio::from_fps(0.0), None);
    /// ```
    pub fn from_fps(fps: f64) -> Option<Ratio> {
        if !(fps.is_finite() && fps > 0.0 && fps <= f64::from(u32::MAX)) {
            return None;
        }
        let whole = fps.round();
        if whole >= 1.0 && (fps - whole).abs() <= 1e-9 * fps {
            return Some(Ratio::new(whole as u32, 1));
        }
        // 30000/1001 and its kin: the numerator a multiple of 1000. The
        // tolerance lets the usual decimal spellings (29.97) stand for them.
        let ntsc = (fps * 1001.0).round();
        if ntsc >= 1000.0
            && ntsc <= f64::from(u32::MAX)
            && ntsc % 1000.0 == 0.0
            && (ntsc / 1001.0 - fps).abs() <= 2e-6 * fps
        {
            return Some(Ratio::new(ntsc as u32, 1001));
        }
        closest_fraction(fps)
    }
}

/// The first continued-fraction convergent of `x` within a relative 10⁻¹²
/// of it, or the last with both terms in `u32`; `x` finite and above 0.
fn closest_fraction(x: f64) -> Option<Ratio> {
    let limit = u64::from(u32::MAX);
    // Convergents h/k, from h₋₂/k₋₂ = 0/1 and h₋₁/k₋₁ = 1/0.
    let (mut h0, mut h1, mut k0, mut k1) = (0u64, 1u64, 1u64, 0u64);
    let mut best = None;
    let mut rest = x;
    for _ in 0..64 {
        let a = rest.floor();
        if !(0.0..=limit as f64).contains(&a) {
            break;
        }
        let a = a as u64;
        let (Some(h2), Some(k2)) = (
            a.checked_mul(h1).and_then(|v| v.checked_add(h0)),
            a.checked_mul(k1).and_then(|v| v.checked_add(k0)),
        ) else {
            break;
        };
        if h2 > limit || k2 > limit {
            break;
        }
        if h2 > 0 {
            best = Some(Ratio::new(h2 as u32, k2 as u32));
            if (h2 as f64 / k2 as f64 - x).abs() <= 1e-12 * x {
                break;
            }
        }
        let fraction = rest - a as f64;
        if fraction <= 0.0 {
            break;
        }
        rest = fraction.recip();
        (h0, h1, k0, k1) = (h1, h2, k1, k2);
    }
    best
}

impl fmt::Display for Ratio {
    /// `num:den`, as in a Y4M header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.num, self.den)
    }
}

/// The colour space (`C` parameter): the chroma subsampling and siting.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::y4m::Colourspace;
/// assert_eq!(Colourspace::from_tag("420mpeg2"), Some(Colourspace::Yuv420Mpeg2));
/// assert_eq!(Colourspace::Yuv420Mpeg2.fourcc(), FourCc::YU12);
/// assert_eq!(Colourspace::Mono.to_string(), "mono");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Colourspace {
    /// `420jpeg`: 4:2:0, chroma centred between luma samples (JPEG, MPEG-1);
    /// the default when `C` is missing.
    #[default]
    Yuv420Jpeg,
    /// `420paldv`: 4:2:0, chroma sited as in PAL DV.
    Yuv420Paldv,
    /// `420mpeg2`: 4:2:0, chroma sited as in MPEG-2 (left, centred vertically).
    Yuv420Mpeg2,
    /// `420`: 4:2:0, chroma co-sited with the top-left luma sample.
    Yuv420,
    /// `422`: 4:2:2, chroma half as wide as luma.
    Yuv422,
    /// `444`: 4:4:4, no subsampling.
    Yuv444,
    /// `mono`: luma only.
    Mono,
}

impl Colourspace {
    /// Every colour space, in the order the error messages list them.
    pub const ALL: [Colourspace; 7] = [
        Colourspace::Yuv420Jpeg,
        Colourspace::Yuv420Paldv,
        Colourspace::Yuv420Mpeg2,
        Colourspace::Yuv420,
        Colourspace::Yuv422,
        Colourspace::Yuv444,
        Colourspace::Mono,
    ];

    /// The text after `C` in a header.
    ///
    /// ```
    /// use camux::source::y4m::Colourspace;
    /// assert_eq!(Colourspace::Yuv420Jpeg.tag(), "420jpeg");
    /// ```
    pub const fn tag(self) -> &'static str {
        match self {
            Colourspace::Yuv420Jpeg => "420jpeg",
            Colourspace::Yuv420Paldv => "420paldv",
            Colourspace::Yuv420Mpeg2 => "420mpeg2",
            Colourspace::Yuv420 => "420",
            Colourspace::Yuv422 => "422",
            Colourspace::Yuv444 => "444",
            Colourspace::Mono => "mono",
        }
    }

    /// The colour space a `C` tag names; `None` for one this module does
    /// not read (`411`, `444alpha`, the high bit depth ones such as
    /// `420p10`...).
    ///
    /// ```
    /// use camux::source::y4m::Colourspace;
    /// assert_eq!(Colourspace::from_tag("422"), Some(Colourspace::Yuv422));
    /// assert_eq!(Colourspace::from_tag("420p10"), None);
    /// ```
    pub fn from_tag(tag: &str) -> Option<Colourspace> {
        Colourspace::ALL.into_iter().find(|c| c.tag() == tag)
    }

    /// The pixel format whose byte layout the frames have.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::Colourspace;
    /// assert_eq!(Colourspace::Yuv422.fourcc(), FourCc::YU16);
    /// assert_eq!(Colourspace::Mono.fourcc(), FourCc::GREY);
    /// ```
    pub const fn fourcc(self) -> FourCc {
        match self {
            Colourspace::Yuv420Jpeg
            | Colourspace::Yuv420Paldv
            | Colourspace::Yuv420Mpeg2
            | Colourspace::Yuv420 => FourCc::YU12,
            Colourspace::Yuv422 => FourCc::YU16,
            Colourspace::Yuv444 => FourCc::YU24,
            Colourspace::Mono => FourCc::GREY,
        }
    }

    /// The colour space to write frames of `fourcc` as: [`FourCc::YU12`]
    /// as `420jpeg` (the default siting), [`FourCc::YU16`] as `422`,
    /// [`FourCc::YU24`] as `444`, [`FourCc::GREY`] as `mono`; `None` for
    /// any other format.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::Colourspace;
    /// assert_eq!(Colourspace::for_fourcc(FourCc::YU12), Some(Colourspace::Yuv420Jpeg));
    /// assert_eq!(Colourspace::for_fourcc(FourCc::YUYV), None);
    /// ```
    pub const fn for_fourcc(fourcc: FourCc) -> Option<Colourspace> {
        match fourcc {
            FourCc::YU12 => Some(Colourspace::Yuv420Jpeg),
            FourCc::YU16 => Some(Colourspace::Yuv422),
            FourCc::YU24 => Some(Colourspace::Yuv444),
            FourCc::GREY => Some(Colourspace::Mono),
            _ => None,
        }
    }
}

impl fmt::Display for Colourspace {
    /// The tag, as after `C` in a header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// The interlacing (`I` parameter).
///
/// ```
/// use camux::source::y4m::Interlace;
/// assert_eq!(Interlace::from_tag('t'), Some(Interlace::TopFirst));
/// assert_eq!(Interlace::TopFirst.tag(), 't');
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interlace {
    /// `p`: progressive.
    Progressive,
    /// `t`: interlaced, top field first.
    TopFirst,
    /// `b`: interlaced, bottom field first.
    BottomFirst,
    /// `m`: mixed, said per frame in the `FRAME` parameters.
    Mixed,
}

impl Interlace {
    /// The letter after `I` in a header.
    ///
    /// ```
    /// use camux::source::y4m::Interlace;
    /// assert_eq!(Interlace::Progressive.tag(), 'p');
    /// ```
    pub const fn tag(self) -> char {
        match self {
            Interlace::Progressive => 'p',
            Interlace::TopFirst => 't',
            Interlace::BottomFirst => 'b',
            Interlace::Mixed => 'm',
        }
    }

    /// The interlacing a letter names, if any.
    ///
    /// ```
    /// use camux::source::y4m::Interlace;
    /// assert_eq!(Interlace::from_tag('m'), Some(Interlace::Mixed));
    /// assert_eq!(Interlace::from_tag('?'), None);
    /// ```
    pub const fn from_tag(tag: char) -> Option<Interlace> {
        match tag {
            'p' => Some(Interlace::Progressive),
            't' => Some(Interlace::TopFirst),
            'b' => Some(Interlace::BottomFirst),
            'm' => Some(Interlace::Mixed),
            _ => None,
        }
    }
}

/// What the allowed values of each field are, for error messages.
const EXPECT_RATE: &str = "a frame rate <num>:<den> of whole numbers, both at least 1 \
                           or both 0 for unknown (e.g. 30:1, 30000:1001)";
const EXPECT_ASPECT: &str = "a pixel aspect ratio <num>:<den> of whole numbers, both at least 1 \
                             or both 0 for unknown (e.g. 1:1)";
const EXPECT_INTERLACE: &str =
    "one of p (progressive), t (top field first), b (bottom field first), m (mixed)";
const EXPECT_COLOURSPACE: &str =
    "one of 420jpeg, 420paldv, 420mpeg2, 420, 422, 444, mono (8 bits per sample)";

/// The stream header: the first line of a Y4M stream.
///
/// Made by [`new`](Self::new) or [`for_fourcc`](Self::for_fourcc), or read
/// by [`parse`](Self::parse) (or [`Y4mReader::new`]); its fields may be set
/// freely, and are checked when the header is [`encode`](Self::encode)d or
/// its [`layout`](Self::layout) is asked for.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::y4m::{Colourspace, Interlace, Ratio, Y4mHeader};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let header = Y4mHeader::parse(b"YUV4MPEG2 W640 H480 F30000:1001 Ip A1:1 XYSCSS=420JPEG")?;
/// assert_eq!((header.width, header.height), (640, 480));
/// assert_eq!(header.rate, Some(Ratio::new(30000, 1001)));
/// assert_eq!(header.interlace, Some(Interlace::Progressive));
/// assert_eq!(header.colourspace, Colourspace::Yuv420Jpeg); // C missing
/// assert_eq!(header.extensions, ["YSCSS=420JPEG"]);
/// assert_eq!(header.layout()?.fourcc, FourCc::YU12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Y4mHeader {
    /// Width in pixels (`W`), 1 to [`MAX_DIMENSION`].
    pub width: u32,
    /// Height in pixels (`H`), 1 to [`MAX_DIMENSION`].
    pub height: u32,
    /// Frames per second (`F`); `None` when unknown (no `F`, or `F0:0`).
    pub rate: Option<Ratio>,
    /// Interlacing (`I`); `None` when not given.
    pub interlace: Option<Interlace>,
    /// Pixel aspect ratio (`A`); `None` when unknown (no `A`, or `A0:0`).
    pub aspect: Option<Ratio>,
    /// Colour space (`C`); [`Colourspace::Yuv420Jpeg`] when not given.
    pub colourspace: Colourspace,
    /// The values of the `X` parameters, in order, without the `X`
    /// (`"YSCSS=420JPEG"`); none may hold a space or a newline.
    pub extensions: Vec<String>,
}

impl Y4mHeader {
    /// A header with the given geometry, rate and colour space, and no
    /// interlacing, aspect or extensions.
    ///
    /// ```
    /// use camux::source::y4m::{Colourspace, Ratio, Y4mHeader};
    /// let header = Y4mHeader::new(320, 240, Ratio::new(30, 1), Colourspace::Yuv422);
    /// assert_eq!(header.encode().unwrap(), b"YUV4MPEG2 W320 H240 F30:1 C422\n");
    /// ```
    pub fn new(width: u32, height: u32, rate: Ratio, colourspace: Colourspace) -> Y4mHeader {
        Y4mHeader {
            width,
            height,
            rate: Some(rate),
            interlace: None,
            aspect: None,
            colourspace,
            extensions: Vec::new(),
        }
    }

    /// A header for frames of `fourcc` ([`Colourspace::for_fourcc`]).
    ///
    /// # Errors
    /// [`Y4mError::UnsupportedFourcc`] for a format Y4M cannot hold, and
    /// whatever [`layout`](Self::layout) finds wrong with the geometry.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mError, Y4mHeader};
    /// let header = Y4mHeader::for_fourcc(FourCc::YU12, 64, 48, Ratio::new(30, 1)).unwrap();
    /// assert_eq!(header.layout().unwrap().frame_bytes, 64 * 48 * 3 / 2);
    /// assert!(matches!(
    ///     Y4mHeader::for_fourcc(FourCc::YUYV, 64, 48, Ratio::new(30, 1)),
    ///     Err(Y4mError::UnsupportedFourcc { .. })
    /// ));
    /// ```
    pub fn for_fourcc(
        fourcc: FourCc,
        width: u32,
        height: u32,
        rate: Ratio,
    ) -> Result<Y4mHeader, Y4mError> {
        let colourspace =
            Colourspace::for_fourcc(fourcc).ok_or(Y4mError::UnsupportedFourcc { fourcc })?;
        let header = Y4mHeader::new(width, height, rate, colourspace);
        header.layout()?;
        Ok(header)
    }

    /// The frame rate in frames per second, if known.
    ///
    /// ```
    /// use camux::source::y4m::{Colourspace, Ratio, Y4mHeader};
    /// let header = Y4mHeader::new(2, 2, Ratio::new(25, 1), Colourspace::Mono);
    /// assert_eq!(header.fps(), Some(25.0));
    /// ```
    pub fn fps(&self) -> Option<f64> {
        self.rate.map(Ratio::to_f64)
    }

    /// The layout of every frame: the colour space's [`FourCc`], packed.
    ///
    /// # Errors
    /// [`Y4mError::Field`] for a dimension out of `1..=`[`MAX_DIMENSION`],
    /// [`Y4mError::Layout`] for one the format cannot take (an odd width
    /// for a subsampled colour space).
    ///
    /// ```
    /// use camux::source::y4m::{Colourspace, Ratio, Y4mHeader};
    /// let header = Y4mHeader::new(3, 2, Ratio::new(1, 1), Colourspace::Yuv420);
    /// let message = header.layout().unwrap_err().to_string();
    /// assert!(message.contains("even width"), "{message}");
    /// ```
    pub fn layout(&self) -> Result<FrameLayout, Y4mError> {
        check_dimension('W', "width", self.width)?;
        check_dimension('H', "height", self.height)?;
        let fourcc = self.colourspace.fourcc();
        FrameLayout::packed(fourcc, self.width, self.height).map_err(|source| Y4mError::Layout {
            width: self.width,
            height: self.height,
            colourspace: self.colourspace,
            source,
        })
    }

    /// Parses a header line, without its newline.
    ///
    /// # Errors
    /// [`Y4mError`] naming what is wrong: not a Y4M header, a field that
    /// does not parse (and what it may be), one given twice, `W` or `H`
    /// missing, an unknown parameter, a line over [`MAX_LINE_BYTES`], a
    /// geometry with no layout.
    ///
    /// ```
    /// use camux::source::y4m::Y4mHeader;
    /// let err = Y4mHeader::parse(b"YUV4MPEG2 Wabc H2").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "Y4M header field 'W': expected a width 1..=16384, found 'abc'"
    /// );
    /// ```
    pub fn parse(line: &[u8]) -> Result<Y4mHeader, Y4mError> {
        if line.len() >= MAX_LINE_BYTES {
            return Err(Y4mError::HeaderTooLong {
                max: MAX_LINE_BYTES,
            });
        }
        let magic = &SIGNATURE[..SIGNATURE.len() - 1];
        let Some(rest) = line.strip_prefix(magic) else {
            return Err(not_y4m(line));
        };
        if rest.is_empty() {
            return Err(Y4mError::Missing {
                field: 'W',
                name: "width",
            });
        }
        let Some(rest) = rest.strip_prefix(b" ") else {
            return Err(not_y4m(line));
        };
        let text = std::str::from_utf8(rest).map_err(|_| Y4mError::NotText)?;
        let mut width = None;
        let mut height = None;
        let mut rate = None;
        let mut interlace = None;
        let mut aspect = None;
        let mut colourspace = None;
        let mut extensions = Vec::new();
        for token in text.split(' ') {
            let mut chars = token.chars();
            let Some(tag) = chars.next() else {
                return Err(Y4mError::EmptyParameter);
            };
            let value = chars.as_str();
            match tag {
                'W' => set_once(&mut width, 'W', parse_dimension('W', "width", value)?)?,
                'H' => set_once(&mut height, 'H', parse_dimension('H', "height", value)?)?,
                'F' => set_once(&mut rate, 'F', parse_ratio('F', EXPECT_RATE, value)?)?,
                'A' => set_once(&mut aspect, 'A', parse_ratio('A', EXPECT_ASPECT, value)?)?,
                'I' => {
                    let mut letters = value.chars();
                    let parsed = match (letters.next(), letters.next()) {
                        (Some(letter), None) => Interlace::from_tag(letter),
                        _ => None,
                    };
                    let parsed = parsed.ok_or_else(|| field_error('I', EXPECT_INTERLACE, value))?;
                    set_once(&mut interlace, 'I', parsed)?;
                }
                'C' => {
                    let parsed = Colourspace::from_tag(value)
                        .ok_or_else(|| field_error('C', EXPECT_COLOURSPACE, value))?;
                    set_once(&mut colourspace, 'C', parsed)?;
                }
                'X' => extensions.push(value.to_owned()),
                _ => {
                    return Err(Y4mError::UnknownParameter {
                        found: shown(token),
                    })
                }
            }
        }
        let header = Y4mHeader {
            width: width.ok_or(Y4mError::Missing {
                field: 'W',
                name: "width",
            })?,
            height: height.ok_or(Y4mError::Missing {
                field: 'H',
                name: "height",
            })?,
            rate: rate.flatten(),
            interlace,
            aspect: aspect.flatten(),
            colourspace: colourspace.unwrap_or_default(),
            extensions,
        };
        header.layout()?;
        Ok(header)
    }

    /// The header line, newline included, as a writer writes it: `W`, `H`,
    /// `F` (`F0:0` when the rate is unknown), then `I` and `A` if known, `C`
    /// always, and the `X` parameters in order.
    ///
    /// # Errors
    /// What [`layout`](Self::layout) finds wrong, a rate or aspect with one
    /// term 0 ([`Y4mError::Field`]), an extension holding a space or a
    /// newline ([`Y4mError::BadExtension`]), a line over
    /// [`MAX_LINE_BYTES`].
    ///
    /// ```
    /// use camux::source::y4m::{Colourspace, Interlace, Ratio, Y4mHeader};
    /// let mut header = Y4mHeader::new(64, 48, Ratio::new(30000, 1001), Colourspace::Yuv420Mpeg2);
    /// header.interlace = Some(Interlace::Progressive);
    /// header.extensions.push("COLORRANGE=FULL".into());
    /// assert_eq!(
    ///     header.encode().unwrap(),
    ///     b"YUV4MPEG2 W64 H48 F30000:1001 Ip C420mpeg2 XCOLORRANGE=FULL\n"
    /// );
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, Y4mError> {
        self.layout()?;
        let check_ratio = |field, expected, ratio: Option<Ratio>| match ratio {
            Some(r) if r.num == 0 || r.den == 0 => {
                Err(field_error(field, expected, &r.to_string()))
            }
            _ => Ok(()),
        };
        check_ratio('F', EXPECT_RATE, self.rate)?;
        check_ratio('A', EXPECT_ASPECT, self.aspect)?;
        if let Some(bad) = self.extensions.iter().find(|x| x.contains([' ', '\n'])) {
            return Err(Y4mError::BadExtension { found: shown(bad) });
        }
        let mut line = format!(
            "YUV4MPEG2 W{} H{} F{}",
            self.width,
            self.height,
            self.rate.unwrap_or(Ratio::new(0, 0))
        );
        if let Some(interlace) = self.interlace {
            line.push_str(&format!(" I{}", interlace.tag()));
        }
        if let Some(aspect) = self.aspect {
            line.push_str(&format!(" A{aspect}"));
        }
        line.push_str(&format!(" C{}", self.colourspace));
        for x in &self.extensions {
            line.push_str(" X");
            line.push_str(x);
        }
        line.push('\n');
        if line.len() > MAX_LINE_BYTES {
            return Err(Y4mError::HeaderTooLong {
                max: MAX_LINE_BYTES,
            });
        }
        Ok(line.into_bytes())
    }
}

fn check_dimension(field: char, name: &'static str, value: u32) -> Result<(), Y4mError> {
    if (1..=MAX_DIMENSION).contains(&value) {
        Ok(())
    } else {
        Err(field_error(
            field,
            &format!("a {name} 1..={MAX_DIMENSION}"),
            &value.to_string(),
        ))
    }
}

fn parse_dimension(field: char, name: &'static str, value: &str) -> Result<u32, Y4mError> {
    let parsed = parse_number(value)
        .filter(|v| (1..=MAX_DIMENSION).contains(v))
        .ok_or_else(|| field_error(field, &format!("a {name} 1..={MAX_DIMENSION}"), value))?;
    Ok(parsed)
}

/// `num:den`; `Some(None)` for `0:0`, the "unknown" spelling.
fn parse_ratio(field: char, expected: &str, value: &str) -> Result<Option<Ratio>, Y4mError> {
    let bad = || field_error(field, expected, value);
    let (num, den) = value.split_once(':').ok_or_else(bad)?;
    let (num, den) = (
        parse_number(num).ok_or_else(bad)?,
        parse_number(den).ok_or_else(bad)?,
    );
    match (num, den) {
        (0, 0) => Ok(None),
        (0, _) | (_, 0) => Err(bad()),
        _ => Ok(Some(Ratio::new(num, den))),
    }
}

/// A whole number in decimal digits only (no sign, no spaces), in `u32`.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn set_once<T>(slot: &mut Option<T>, field: char, value: T) -> Result<(), Y4mError> {
    if slot.is_some() {
        return Err(Y4mError::Duplicate { field });
    }
    *slot = Some(value);
    Ok(())
}

fn field_error(field: char, expected: &str, found: &str) -> Y4mError {
    Y4mError::Field {
        field,
        expected: expected.to_owned(),
        found: shown(found),
    }
}

fn not_y4m(start: &[u8]) -> Y4mError {
    Y4mError::NotY4m {
        found: shown(&String::from_utf8_lossy(
            &start[..start.len().min(SIGNATURE.len())],
        )),
    }
}

/// `text` fit for an error message: escaped, at most 40 characters.
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    let mut escaped: String = text.escape_debug().take(MAX + 1).collect();
    if escaped.chars().count() > MAX {
        escaped = escaped.chars().take(MAX).collect();
        escaped.push_str("...");
    }
    escaped
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
enum LineEnd {
    /// A newline was read (and consumed, not stored).
    Newline,
    /// The input ended before a newline.
    Eof,
    /// `max` bytes came without a newline among them.
    TooLong,
}

/// Reads into `line` the bytes up to the next newline, consuming it too,
/// with at most `max` bytes in all (the newline included); adds the bytes
/// consumed to `consumed`.
fn read_line<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
    consumed: &mut u64,
) -> io::Result<LineEnd> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(LineEnd::Eof);
        }
        let room = max.saturating_sub(line.len());
        let window = &available[..available.len().min(room)];
        let (take, end) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                (i + 1, Some(LineEnd::Newline))
            }
            None => {
                line.extend_from_slice(window);
                let full = line.len() >= max;
                (window.len(), full.then_some(LineEnd::TooLong))
            }
        };
        reader.consume(take);
        *consumed += take as u64;
        if let Some(end) = end {
            return Ok(end);
        }
    }
}

/// Fills `buf` from `reader` until it is full or the input ends; returns
/// the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the frames of a Y4M stream.
///
/// Give it a buffered reader (a `BufReader<File>`, a byte slice); frames
/// are read straight into the caller's buffer, so only `FRAME` lines pass
/// through the reader's buffer.
///
/// ```
/// use camux::source::y4m::Y4mReader;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stream = b"YUV4MPEG2 W2 H2 F30:1 C420jpeg\nFRAME\n\x10\x11\x12\x13\x80\x80FRAME Ixyz\n\x20\x21\x22\x23\x80\x80";
/// let mut reader = Y4mReader::new(&stream[..])?;
/// let mut frame = [0; 6];
/// assert_eq!(reader.read_frame(&mut frame)?, Some(6));
/// assert_eq!(reader.read_frame(&mut frame)?, Some(6));
/// assert_eq!((frame[0], reader.frame_params()), (0x20, "Ixyz"));
/// assert_eq!(reader.read_frame(&mut frame)?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Y4mReader<R> {
    inner: R,
    header: Y4mHeader,
    layout: FrameLayout,
    frame_bytes: usize,
    /// Bytes of the header line, newline included.
    header_bytes: u64,
    /// Bytes consumed from `inner`.
    position: u64,
    /// Frames read since the header or the last rewind.
    frames: u64,
    /// The parameters of the last `FRAME` line.
    params: String,
    /// Scratch for `FRAME` lines.
    line: Vec<u8>,
}

impl<R: BufRead> Y4mReader<R> {
    /// Reads and checks the stream header.
    ///
    /// # Errors
    /// [`Y4mError::Empty`] or [`Y4mError::NotY4m`] if the input does not
    /// start with [`SIGNATURE`], [`Y4mError::HeaderTooLong`] or
    /// [`Y4mError::TruncatedHeader`] if no newline ends it in time, what
    /// [`Y4mHeader::parse`] finds wrong, or an I/O error.
    ///
    /// ```
    /// use camux::source::y4m::{Y4mError, Y4mReader};
    /// let err = Y4mReader::new(&b"RIFF....WAVE"[..]).unwrap_err();
    /// assert!(matches!(err, Y4mError::NotY4m { .. }));
    /// ```
    pub fn new(mut inner: R) -> Result<Y4mReader<R>, Y4mError> {
        let mut line = Vec::new();
        let mut position = 0;
        let end = read_line(&mut inner, &mut line, MAX_LINE_BYTES, &mut position)?;
        let magic = &SIGNATURE[..SIGNATURE.len() - 1];
        let shared = line.len().min(magic.len());
        if position == 0 {
            return Err(Y4mError::Empty);
        }
        if line[..shared] != magic[..shared] || (end == LineEnd::Newline && shared < magic.len()) {
            return Err(not_y4m(&line));
        }
        match end {
            LineEnd::Newline => {}
            LineEnd::Eof => return Err(Y4mError::TruncatedHeader),
            LineEnd::TooLong => {
                return Err(Y4mError::HeaderTooLong {
                    max: MAX_LINE_BYTES,
                })
            }
        }
        let header = Y4mHeader::parse(&line)?;
        let layout = header.layout()?;
        Ok(Y4mReader {
            inner,
            header,
            layout,
            // At most MAX_FRAME_BYTES (1 GiB), which fits a usize on Linux.
            frame_bytes: layout.frame_bytes as usize,
            header_bytes: position,
            position,
            frames: 0,
            params: String::new(),
            line,
        })
    }

    /// Reads the next frame into the start of `buf` and returns its length,
    /// always [`frame_bytes`](Self::frame_bytes); `None` at the end of the
    /// stream (the input ends right after a frame).
    ///
    /// The `FRAME` line's parameters are then [`frame_params`](Self::frame_params).
    ///
    /// # Errors
    /// [`Y4mError::Buffer`] if `buf` is shorter than a frame (nothing is
    /// read then), [`Y4mError::BadFrameHeader`] or
    /// [`Y4mError::FrameHeaderTooLong`] for a bad `FRAME` line,
    /// [`Y4mError::TruncatedFrame`] if the input ends inside a frame, or an
    /// I/O error. After an error the stream position is unspecified.
    ///
    /// ```
    /// use camux::source::y4m::{Y4mError, Y4mReader};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stream = b"YUV4MPEG2 W2 H1 Cmono\nFRAME\n\x01";
    /// let mut reader = Y4mReader::new(&stream[..])?;
    /// let err = reader.read_frame(&mut [0; 2]).unwrap_err();
    /// assert!(matches!(err, Y4mError::TruncatedFrame { frame: 0, need: 2, have: 1, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_frame(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Y4mError> {
        let have = buf.len();
        let frame = buf.get_mut(..self.frame_bytes).ok_or(BufferTooSmall {
            need: self.frame_bytes,
            have,
        })?;
        let start = self.position;
        let end = read_line(
            &mut self.inner,
            &mut self.line,
            MAX_LINE_BYTES,
            &mut self.position,
        )?;
        let truncated = |have| Y4mError::TruncatedFrame {
            frame: self.frames,
            offset: start,
            need: self.frame_bytes,
            have,
        };
        match end {
            LineEnd::Newline => {}
            LineEnd::Eof if self.position == start => return Ok(None),
            LineEnd::Eof
                if FRAME_TAG.starts_with(&self.line) || self.line.starts_with(FRAME_TAG) =>
            {
                return Err(truncated(0))
            }
            LineEnd::Eof => {}
            LineEnd::TooLong => {
                return Err(Y4mError::FrameHeaderTooLong {
                    frame: self.frames,
                    offset: start,
                    max: MAX_LINE_BYTES,
                })
            }
        }
        let params = match self.line.strip_prefix(FRAME_TAG) {
            Some([]) => Some(&[][..]),
            Some([b' ', params @ ..]) => Some(params),
            _ => None,
        };
        let Some(params) = params.filter(|_| end == LineEnd::Newline) else {
            return Err(Y4mError::BadFrameHeader {
                frame: self.frames,
                offset: start,
                found: shown(&String::from_utf8_lossy(
                    &self.line[..self.line.len().min(16)],
                )),
            });
        };
        self.params.clear();
        self.params.push_str(&String::from_utf8_lossy(params));
        let read = read_full(&mut self.inner, frame)?;
        self.position += read as u64;
        if read < self.frame_bytes {
            return Err(truncated(read));
        }
        self.frames += 1;
        Ok(Some(self.frame_bytes))
    }
}

impl<R> Y4mReader<R> {
    /// The stream header.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W8 H4 F50:1 C444\n"[..])?;
    /// assert_eq!(reader.header().fps(), Some(50.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// The layout of every frame.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W8 H4 C422\n"[..])?;
    /// assert_eq!(reader.layout().fourcc, FourCc::YU16);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// Bytes of every frame's data (the `FRAME` line not counted).
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W8 H4 C422\n"[..])?;
    /// assert_eq!(reader.frame_bytes(), 8 * 4 * 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Frames read since the header or the last [`rewind`](Self::rewind):
    /// the index of the next frame in the stream.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\nFRAME\n\x07"[..])?;
    /// reader.read_frame(&mut [0])?;
    /// assert_eq!(reader.frames_read(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// Bytes consumed from the input so far: the offset, from where the
    /// stream started, of the next `FRAME` line.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\nFRAME\n\x07"[..])?;
    /// assert_eq!(reader.position(), 22);
    /// # Ok(())
    /// # }
    /// ```
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes of the stream header line, newline included: the offset of
    /// the first frame.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\n"[..])?;
    /// assert_eq!(reader.header_bytes(), 22);
    /// # Ok(())
    /// # }
    /// ```
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// The parameters of the last frame read: the text after `FRAME ` on
    /// its line (invalid UTF-8 replaced by U+FFFD), empty if none.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\nFRAME Ip XT=1\n\x07"[..])?;
    /// reader.read_frame(&mut [0])?;
    /// assert_eq!(reader.frame_params(), "Ip XT=1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_params(&self) -> &str {
        &self.params
    }

    /// The underlying reader.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\nFRAME\n\x07"[..])?;
    /// assert_eq!(reader.get_ref().len(), 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader, mutably. Reading from it or seeking it
    /// desynchronises this reader's [`position`](Self::position).
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\n"[..])?;
    /// assert!(reader.get_mut().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The underlying reader, positioned after the last byte read.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reader = Y4mReader::new(&b"YUV4MPEG2 W1 H1 Cmono\nFRAME\n\x07"[..])?;
    /// assert_eq!(reader.into_inner(), b"FRAME\n\x07");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead + Seek> Y4mReader<R> {
    /// Seeks back to the first frame, so the next
    /// [`read_frame`](Self::read_frame) reads it again, and resets
    /// [`frames_read`](Self::frames_read).
    ///
    /// The seek is relative to the current position, so the stream need
    /// not start at offset 0 of the input.
    ///
    /// # Errors
    /// The seek's I/O error.
    ///
    /// ```
    /// use camux::source::y4m::Y4mReader;
    /// use std::io::Cursor;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stream = Cursor::new(b"YUV4MPEG2 W1 H1 Cmono\nFRAME\n\x07".to_vec());
    /// let mut reader = Y4mReader::new(stream)?;
    /// let mut frame = [0];
    /// assert_eq!(reader.read_frame(&mut frame)?, Some(1));
    /// assert_eq!(reader.read_frame(&mut frame)?, None);
    /// reader.rewind()?;
    /// assert_eq!(reader.read_frame(&mut frame)?, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn rewind(&mut self) -> Result<(), Y4mError> {
        let back = self.position - self.header_bytes;
        let back = i64::try_from(back).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "stream too long to rewind")
        })?;
        self.inner.seek(SeekFrom::Current(-back))?;
        self.position = self.header_bytes;
        self.frames = 0;
        self.params.clear();
        Ok(())
    }
}

/// Writes a Y4M stream: the header when made, then one frame per call.
///
/// Give it a buffered writer (a `BufWriter<File>`): each frame is two
/// writes, its `FRAME` line and its data. A write that fails part way
/// leaves a stream cut short inside a frame, which readers report as
/// [`Y4mError::TruncatedFrame`].
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let header = Y4mHeader::for_fourcc(FourCc::YU12, 2, 2, Ratio::from_fps(29.97).unwrap())?;
/// let mut writer = Y4mWriter::new(Vec::new(), header)?;
/// writer.write_frame(&[16, 16, 16, 16, 128, 128])?;
/// writer.write_frame_with_params(&[235, 235, 235, 235, 128, 128], "XTIME=1")?;
/// assert_eq!(writer.frames_written(), 2);
/// let stream = writer.into_inner();
/// assert!(stream.starts_with(b"YUV4MPEG2 W2 H2 F30000:1001 C420jpeg\nFRAME\n"));
/// assert!(stream.ends_with(b"FRAME XTIME=1\n\xeb\xeb\xeb\xeb\x80\x80"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Y4mWriter<W: Write> {
    inner: W,
    header: Y4mHeader,
    layout: FrameLayout,
    frame_bytes: usize,
    frames: u64,
}

impl<W: Write> Y4mWriter<W> {
    /// Checks `header` and writes it.
    ///
    /// # Errors
    /// What [`Y4mHeader::encode`] finds wrong, or the write's I/O error.
    ///
    /// ```
    /// use camux::source::y4m::{Colourspace, Ratio, Y4mHeader, Y4mWriter};
    /// let header = Y4mHeader::new(0, 480, Ratio::new(30, 1), Colourspace::Mono);
    /// let message = Y4mWriter::new(Vec::new(), header).unwrap_err().to_string();
    /// assert_eq!(message, "Y4M header field 'W': expected a width 1..=16384, found '0'");
    /// ```
    pub fn new(mut inner: W, header: Y4mHeader) -> Result<Y4mWriter<W>, Y4mError> {
        let line = header.encode()?;
        let layout = header.layout()?;
        inner.write_all(&line)?;
        Ok(Y4mWriter {
            inner,
            header,
            layout,
            frame_bytes: layout.frame_bytes as usize,
            frames: 0,
        })
    }

    /// Writes one frame, `FRAME\n` and `frame`.
    ///
    /// # Errors
    /// [`Y4mError::FrameSize`] unless `frame` is exactly
    /// [`frame_bytes`](Self::frame_bytes) long (nothing is written then),
    /// or the write's I/O error.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mError, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 2, 2, Ratio::new(1, 1))?;
    /// let mut writer = Y4mWriter::new(Vec::new(), header)?;
    /// assert!(matches!(
    ///     writer.write_frame(&[0; 3]),
    ///     Err(Y4mError::FrameSize { expected: 4, found: 3 })
    /// ));
    /// writer.write_frame(&[0; 4])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), Y4mError> {
        self.write_frame_with_params(frame, "")
    }

    /// Writes one frame with parameters on its `FRAME` line
    /// (`FRAME <params>\n`; just `FRAME\n` if `params` is empty).
    ///
    /// # Errors
    /// [`Y4mError::FrameSize`] as for [`write_frame`](Self::write_frame),
    /// [`Y4mError::BadFrameParams`] if `params` holds a newline or makes
    /// the line longer than [`MAX_LINE_BYTES`] (nothing is written then),
    /// or the write's I/O error.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mError, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let mut writer = Y4mWriter::new(Vec::new(), header)?;
    /// writer.write_frame_with_params(&[9], "Ibtp")?;
    /// assert!(matches!(
    ///     writer.write_frame_with_params(&[9], "a\nb"),
    ///     Err(Y4mError::BadFrameParams { .. })
    /// ));
    /// assert!(writer.into_inner().ends_with(b"FRAME Ibtp\n\x09"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_frame_with_params(&mut self, frame: &[u8], params: &str) -> Result<(), Y4mError> {
        if frame.len() != self.frame_bytes {
            return Err(Y4mError::FrameSize {
                expected: self.frame_bytes,
                found: frame.len(),
            });
        }
        // "FRAME", a space, the parameters and the newline.
        let line_bytes = FRAME_TAG.len() + 1 + params.len() + 1;
        if params.contains('\n') || line_bytes > MAX_LINE_BYTES {
            return Err(Y4mError::BadFrameParams {
                found: shown(params),
                max: MAX_LINE_BYTES - FRAME_TAG.len() - 2,
            });
        }
        if params.is_empty() {
            self.inner.write_all(b"FRAME\n")?;
        } else {
            let mut line = Vec::with_capacity(line_bytes);
            line.extend_from_slice(b"FRAME ");
            line.extend_from_slice(params.as_bytes());
            line.push(b'\n');
            self.inner.write_all(&line)?;
        }
        self.inner.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    /// The header written.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Colourspace, Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::YU24, 2, 2, Ratio::new(1, 1))?;
    /// let writer = Y4mWriter::new(Vec::new(), header)?;
    /// assert_eq!(writer.header().colourspace, Colourspace::Yuv444);
    /// # Ok(())
    /// # }
    /// ```
    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// The layout every frame must have.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::YU16, 4, 2, Ratio::new(1, 1))?;
    /// let writer = Y4mWriter::new(Vec::new(), header)?;
    /// assert_eq!(writer.layout().fourcc, FourCc::YU16);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// Bytes every frame must have.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::YU16, 4, 2, Ratio::new(1, 1))?;
    /// assert_eq!(Y4mWriter::new(Vec::new(), header)?.frame_bytes(), 16);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Frames written so far.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let mut writer = Y4mWriter::new(Vec::new(), header)?;
    /// writer.write_frame(&[0])?;
    /// assert_eq!(writer.frames_written(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    /// The flush's I/O error.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let mut writer = Y4mWriter::new(std::io::BufWriter::new(Vec::new()), header)?;
    /// writer.flush()?;
    /// assert!(!writer.get_ref().get_ref().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn flush(&mut self) -> Result<(), Y4mError> {
        self.inner.flush()?;
        Ok(())
    }

    /// The underlying writer.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let writer = Y4mWriter::new(Vec::new(), header)?;
    /// assert!(writer.get_ref().starts_with(b"YUV4MPEG2 "));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably. Writing to it directly corrupts the
    /// stream unless what is written is whole frames.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let mut writer = Y4mWriter::new(Vec::new(), header)?;
    /// writer.get_mut().extend_from_slice(b"FRAME\n\x01");
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The underlying writer, not flushed (a `BufWriter` flushes when
    /// dropped, but drops its errors: [`flush`](Self::flush) first).
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let header = Y4mHeader::for_fourcc(FourCc::GREY, 1, 1, Ratio::new(1, 1))?;
    /// let bytes = Y4mWriter::new(Vec::new(), header)?.into_inner();
    /// assert_eq!(bytes, b"YUV4MPEG2 W1 H1 F1:1 Cmono\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Why a Y4M stream cannot be read or written.
///
/// ```
/// use camux::source::y4m::{Y4mError, Y4mHeader};
/// let err = Y4mHeader::parse(b"YUV4MPEG2 W64 H48 C411").unwrap_err();
/// assert!(matches!(err, Y4mError::Field { field: 'C', .. }));
/// assert!(err.to_string().contains("420jpeg"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Y4mError {
    /// The input is empty.
    #[error("empty input: a Y4M stream starts with \"YUV4MPEG2 \"")]
    Empty,
    /// The input does not start with [`SIGNATURE`].
    #[error("not a Y4M stream: it starts with '{found}', not 'YUV4MPEG2 '")]
    NotY4m {
        /// The first bytes, escaped.
        found: String,
    },
    /// The header line is longer than [`MAX_LINE_BYTES`].
    #[error("Y4M header line is longer than {max} bytes")]
    HeaderTooLong {
        /// The longest line accepted, newline included.
        max: usize,
    },
    /// The input ends inside the header line.
    #[error("Y4M header line is cut short: the input ends before its newline")]
    TruncatedHeader,
    /// The header's parameters are not UTF-8 text.
    #[error("Y4M header line is not UTF-8 text")]
    NotText,
    /// Two spaces in a row, or a space at the end of the header line.
    #[error("Y4M header has an empty parameter: parameters are separated by single spaces")]
    EmptyParameter,
    /// A parameter whose letter is none of `W H F I A C X`.
    #[error(
        "unknown Y4M header parameter '{found}': expected W, H, F, I, A, C or X followed by \
         its value"
    )]
    UnknownParameter {
        /// The parameter, escaped.
        found: String,
    },
    /// A field whose value is not one it may have.
    #[error("Y4M header field '{field}': expected {expected}, found '{found}'")]
    Field {
        /// The field's letter.
        field: char,
        /// What it may be.
        expected: String,
        /// What it is, escaped.
        found: String,
    },
    /// A field given twice.
    #[error("Y4M header field '{field}' is given twice")]
    Duplicate {
        /// The field's letter.
        field: char,
    },
    /// A required field is missing.
    #[error("Y4M header has no '{field}' field (the {name}), which is required")]
    Missing {
        /// The field's letter.
        field: char,
        /// What it holds.
        name: &'static str,
    },
    /// The geometry has no layout in the colour space's format.
    #[error("Y4M stream {width}x{height} C{colourspace} cannot be laid out: {source}")]
    Layout {
        /// The width.
        width: u32,
        /// The height.
        height: u32,
        /// The colour space.
        colourspace: Colourspace,
        /// Why.
        source: FormatError,
    },
    /// A format Y4M cannot hold.
    #[error("{fourcc} frames cannot be stored as Y4M: it holds YU12 (I420), 422P, 444P and GREY")]
    UnsupportedFourcc {
        /// The format.
        fourcc: FourCc,
    },
    /// A line where a `FRAME` line should be.
    #[error("Y4M frame {frame} at byte {offset}: expected a 'FRAME' line, found '{found}'")]
    BadFrameHeader {
        /// Index of the frame in the stream, from 0.
        frame: u64,
        /// Offset of the line from the start of the stream.
        offset: u64,
        /// The line's first bytes, escaped.
        found: String,
    },
    /// A `FRAME` line longer than [`MAX_LINE_BYTES`].
    #[error("Y4M frame {frame} at byte {offset}: its FRAME line is longer than {max} bytes")]
    FrameHeaderTooLong {
        /// Index of the frame in the stream, from 0.
        frame: u64,
        /// Offset of the line from the start of the stream.
        offset: u64,
        /// The longest line accepted, newline included.
        max: usize,
    },
    /// The input ends inside a frame.
    #[error("Y4M frame {frame} at byte {offset} is cut short: {have} of its {need} bytes of data")]
    TruncatedFrame {
        /// Index of the frame in the stream, from 0.
        frame: u64,
        /// Offset of its `FRAME` line from the start of the stream.
        offset: u64,
        /// Bytes of data a frame has.
        need: usize,
        /// Bytes of data there were.
        have: usize,
    },
    /// A frame handed to the writer is not the stream's frame size.
    #[error("a frame of this Y4M stream is {expected} bytes, got {found}")]
    FrameSize {
        /// Bytes of a frame.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// An `X` parameter that would break the header line.
    #[error("Y4M X parameter '{found}' must not contain a space or a newline")]
    BadExtension {
        /// The value, escaped.
        found: String,
    },
    /// Frame parameters that would break the `FRAME` line.
    #[error(
        "Y4M frame parameters '{found}' must not contain a newline and be at most {max} bytes"
    )]
    BadFrameParams {
        /// The parameters, escaped.
        found: String,
        /// The most bytes of parameters a line holds.
        max: usize,
    },
    /// The caller's buffer is too small for a frame.
    #[error(transparent)]
    Buffer(#[from] BufferTooSmall),
    /// Reading or writing failed.
    #[error("Y4M I/O error: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn parse(line: &str) -> Result<Y4mHeader, Y4mError> {
        Y4mHeader::parse(line.as_bytes())
    }

    fn message(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn parses_full_headers() {
        let header =
            parse("YUV4MPEG2 W1920 H1080 F25:1 It A128:117 C420paldv XYSCSS=420PALDV X").unwrap();
        assert_eq!(
            header,
            Y4mHeader {
                width: 1920,
                height: 1080,
                rate: Some(Ratio::new(25, 1)),
                interlace: Some(Interlace::TopFirst),
                aspect: Some(Ratio::new(128, 117)),
                colourspace: Colourspace::Yuv420Paldv,
                extensions: vec!["YSCSS=420PALDV".into(), String::new()],
            }
        );
        // Any order; unknowns spelled 0:0.
        let header = parse("YUV4MPEG2 C444 H2 A0:0 W6 F0:0 Im").unwrap();
        assert_eq!((header.width, header.height), (6, 2));
        assert_eq!((header.rate, header.aspect), (None, None));
        assert_eq!(header.colourspace, Colourspace::Yuv444);
        assert_eq!(header.layout().unwrap().fourcc, FourCc::YU24);
        // Only W and H are needed.
        let header = parse("YUV4MPEG2 W2 H2").unwrap();
        assert_eq!(header.colourspace, Colourspace::Yuv420Jpeg);
        assert_eq!((header.rate, header.interlace), (None, None));
        for colourspace in Colourspace::ALL {
            let header = parse(&format!("YUV4MPEG2 W4 H4 C{colourspace}")).unwrap();
            assert_eq!(header.colourspace, colourspace);
            let fourcc = colourspace.fourcc();
            let written_as = Colourspace::for_fourcc(fourcc).unwrap();
            assert_eq!(written_as.fourcc(), fourcc);
        }
    }

    #[test]
    fn field_errors_say_what_is_allowed() {
        assert_eq!(
            message("YUV4MPEG2 Wabc H2"),
            "Y4M header field 'W': expected a width 1..=16384, found 'abc'"
        );
        let cases = [
            ("YUV4MPEG2 W0 H2", 'W', "1..=16384"),
            ("YUV4MPEG2 W16385 H2", 'W', "1..=16384"),
            ("YUV4MPEG2 W+4 H2", 'W', "width"),
            ("YUV4MPEG2 W99999999999 H2", 'W', "width"),
            ("YUV4MPEG2 W2 H", 'H', "a height 1..=16384"),
            ("YUV4MPEG2 W2 H2 F30", 'F', "30000:1001"),
            ("YUV4MPEG2 W2 H2 F30:0", 'F', "both 0 for unknown"),
            ("YUV4MPEG2 W2 H2 F0:1", 'F', "frame rate"),
            ("YUV4MPEG2 W2 H2 F1:-1", 'F', "frame rate"),
            ("YUV4MPEG2 W2 H2 A1:0", 'A', "pixel aspect"),
            ("YUV4MPEG2 W2 H2 I?", 'I', "p (progressive)"),
            ("YUV4MPEG2 W2 H2 Ipt", 'I', "m (mixed)"),
            ("YUV4MPEG2 W2 H2 I", 'I', "t (top field first)"),
            ("YUV4MPEG2 W2 H2 C420p10", 'C', "420jpeg, 420paldv"),
            ("YUV4MPEG2 W2 H2 Cmono16", 'C', "8 bits per sample"),
            ("YUV4MPEG2 W2 H2 C", 'C', "mono"),
        ];
        for (line, field, hint) in cases {
            let err = parse(line).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, Y4mError::Field { field: f, .. } if f == field),
                "{line}: {text}"
            );
            assert!(text.contains(hint), "{line}: {text}");
            assert!(
                text.starts_with(&format!("Y4M header field '{field}': expected ")),
                "{text}"
            );
        }
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            parse("YUV4MPEG2 W2 W2 H2"),
            Err(Y4mError::Duplicate { field: 'W' })
        ));
        assert!(matches!(
            parse("YUV4MPEG2 W2 H2 C420 Cmono"),
            Err(Y4mError::Duplicate { field: 'C' })
        ));
        assert!(matches!(
            parse("YUV4MPEG2 H2"),
            Err(Y4mError::Missing { field: 'W', .. })
        ));
        assert!(matches!(
            parse("YUV4MPEG2 W2"),
            Err(Y4mError::Missing { field: 'H', .. })
        ));
        assert!(matches!(
            parse("YUV4MPEG2"),
            Err(Y4mError::Missing { field: 'W', .. })
        ));
        assert!(matches!(
            parse("YUV4MPEG2 W2  H2"),
            Err(Y4mError::EmptyParameter)
        ));
        assert!(matches!(
            parse("YUV4MPEG2 W2 H2 "),
            Err(Y4mError::EmptyParameter)
        ));
        assert!(matches!(parse("YUV4MPEG2 "), Err(Y4mError::EmptyParameter)));
        let err = parse("YUV4MPEG2 W2 H2 Q7").unwrap_err();
        assert!(matches!(&err, Y4mError::UnknownParameter { found } if found == "Q7"));
        assert!(err.to_string().contains("W, H, F, I, A, C or X"), "{err}");
        assert!(matches!(
            parse("YUV4MPEG W2 H2"),
            Err(Y4mError::NotY4m { .. })
        ));
        assert!(matches!(
            parse("YUV4MPEG2W2 H2"),
            Err(Y4mError::NotY4m { .. })
        ));
        assert!(matches!(
            Y4mHeader::parse(b"YUV4MPEG2 W2 H2 X\xff"),
            Err(Y4mError::NotText)
        ));
        let long = format!("YUV4MPEG2 W2 H2 X{}", "a".repeat(MAX_LINE_BYTES));
        assert!(matches!(
            parse(&long),
            Err(Y4mError::HeaderTooLong { max: 1024 })
        ));
        let err = parse("YUV4MPEG2 W3 H2 C420jpeg").unwrap_err();
        assert!(
            matches!(
                err,
                Y4mError::Layout {
                    source: FormatError::OddWidth { width: 3, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("3x2 C420jpeg"), "{err}");
        // Odd sizes are fine where nothing is subsampled that way.
        assert!(parse("YUV4MPEG2 W3 H3 Cmono").is_ok());
        assert!(parse("YUV4MPEG2 W3 H3 C444").is_ok());
        assert!(parse("YUV4MPEG2 W4 H3 C422").is_ok());
        assert!(parse("YUV4MPEG2 W3 H4 C422").is_err());
    }

    #[test]
    fn error_values_are_escaped_and_bounded() {
        let line = format!("YUV4MPEG2 W2 H2 C\u{1b}[31m{}", "x".repeat(500));
        let text = message(&line);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}"), "{text}");
        assert!(text.len() < 300, "{text}");
    }

    #[test]
    fn reader_start_errors() {
        let open = |bytes: &[u8]| Y4mReader::new(bytes).map(|_| ());
        assert!(matches!(open(b""), Err(Y4mError::Empty)));
        let err = open(b"\x00\x01\x02 raw bytes").unwrap_err();
        assert!(
            matches!(&err, Y4mError::NotY4m { found } if found.starts_with("\\0")),
            "{err}"
        );
        // A binary file without a newline for a long way is not Y4M, not a
        // long header.
        assert!(matches!(open(&[0xAA; 5000]), Err(Y4mError::NotY4m { .. })));
        assert!(matches!(open(b"YUV4"), Err(Y4mError::TruncatedHeader)));
        assert!(matches!(open(b"YUV\n"), Err(Y4mError::NotY4m { .. })));
        assert!(matches!(
            open(b"YUV4MPEG2 W2 H2"),
            Err(Y4mError::TruncatedHeader)
        ));
        let long = format!("YUV4MPEG2 W2 H2 X{}\n", "a".repeat(2000));
        assert!(matches!(
            open(long.as_bytes()),
            Err(Y4mError::HeaderTooLong { .. })
        ));
        // Exactly at the limit, newline included: accepted.
        let pad = MAX_LINE_BYTES - "YUV4MPEG2 W2 H2 X\n".len();
        let edge = format!("YUV4MPEG2 W2 H2 X{}\n", "a".repeat(pad));
        assert_eq!(edge.len(), MAX_LINE_BYTES);
        assert!(open(edge.as_bytes()).is_ok());
        let over = format!("YUV4MPEG2 W2 H2 X{}\n", "a".repeat(pad + 1));
        assert!(matches!(
            open(over.as_bytes()),
            Err(Y4mError::HeaderTooLong { .. })
        ));
    }

    #[test]
    fn frame_errors() {
        let stream = |rest: &[u8]| {
            let mut bytes = b"YUV4MPEG2 W2 H2 Cmono\n".to_vec();
            bytes.extend_from_slice(rest);
            bytes
        };
        let read_all = |bytes: Vec<u8>| -> Result<u64, Y4mError> {
            let mut reader = Y4mReader::new(&bytes[..])?;
            let mut frame = [0; 4];
            while reader.read_frame(&mut frame)?.is_some() {}
            Ok(reader.frames_read())
        };
        assert_eq!(read_all(stream(b"")).unwrap(), 0);
        assert_eq!(read_all(stream(b"FRAME\n1234FRAME X\n5678")).unwrap(), 2);
        let err = read_all(stream(b"FRAME\n1234FRAMES\n5678")).unwrap_err();
        assert!(
            matches!(&err, Y4mError::BadFrameHeader { frame: 1, offset: 32, found } if found == "FRAMES"),
            "{err}"
        );
        assert!(matches!(
            read_all(stream(b"frame\n1234")),
            Err(Y4mError::BadFrameHeader {
                frame: 0,
                offset: 22,
                ..
            })
        ));
        assert!(matches!(
            read_all(stream(b"FRAME\n12")),
            Err(Y4mError::TruncatedFrame {
                frame: 0,
                offset: 22,
                need: 4,
                have: 2
            })
        ));
        for cut in [&b"FRAME"[..], b"FRA", b"FRAME Ixyz"] {
            assert!(
                matches!(
                    read_all(stream(cut)),
                    Err(Y4mError::TruncatedFrame {
                        frame: 0,
                        have: 0,
                        ..
                    })
                ),
                "{cut:?}"
            );
        }
        assert!(matches!(
            read_all(stream(b"garbage")),
            Err(Y4mError::BadFrameHeader { .. })
        ));
        let mut long = b"FRAME ".to_vec();
        long.resize(5000, b'x');
        assert!(matches!(
            read_all(stream(&long)),
            Err(Y4mError::FrameHeaderTooLong {
                frame: 0,
                max: 1024,
                ..
            })
        ));
        let bytes = stream(b"FRAME\n1234");
        let mut reader = Y4mReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            reader.read_frame(&mut [0; 3]),
            Err(Y4mError::Buffer(BufferTooSmall { need: 4, have: 3 }))
        ));
        // Nothing was consumed: a big enough buffer reads the frame.
        let mut big = [0; 10];
        assert_eq!(reader.read_frame(&mut big).unwrap(), Some(4));
        assert_eq!(&big[..4], b"1234");
    }

    #[test]
    fn writer_checks() {
        let header = Y4mHeader::for_fourcc(FourCc::YU12, 4, 2, Ratio::new(30, 1)).unwrap();
        let mut writer = Y4mWriter::new(Vec::new(), header.clone()).unwrap();
        assert!(matches!(
            writer.write_frame(&[0; 13]),
            Err(Y4mError::FrameSize {
                expected: 12,
                found: 13
            })
        ));
        let long = "x".repeat(MAX_LINE_BYTES - 6);
        assert!(matches!(
            writer.write_frame_with_params(&[0; 12], &long),
            Err(Y4mError::BadFrameParams { max: 1017, .. })
        ));
        writer
            .write_frame_with_params(&[0; 12], &long[1..])
            .unwrap();
        assert_eq!(writer.frames_written(), 1);
        let bytes = writer.into_inner();
        assert_eq!(
            bytes.len(),
            "YUV4MPEG2 W4 H2 F30:1 C420jpeg\n".len() + MAX_LINE_BYTES + 12
        );

        let mut bad = header.clone();
        bad.extensions.push("A B".into());
        assert!(matches!(
            Y4mWriter::new(Vec::new(), bad),
            Err(Y4mError::BadExtension { .. })
        ));
        let mut bad = header.clone();
        bad.rate = Some(Ratio::new(30, 0));
        assert_eq!(
            Y4mWriter::new(Vec::new(), bad).unwrap_err().to_string(),
            format!("Y4M header field 'F': expected {EXPECT_RATE}, found '30:0'")
        );
        let mut bad = header.clone();
        bad.extensions.push("a".repeat(MAX_LINE_BYTES));
        assert!(matches!(
            Y4mWriter::new(Vec::new(), bad),
            Err(Y4mError::HeaderTooLong { .. })
        ));
        let mut unknown = header;
        unknown.rate = None;
        unknown.aspect = Some(Ratio::new(1, 1));
        assert_eq!(
            unknown.encode().unwrap(),
            b"YUV4MPEG2 W4 H2 F0:0 A1:1 C420jpeg\n"
        );
        assert_eq!(
            Y4mHeader::parse(b"YUV4MPEG2 W4 H2 F0:0 A1:1 C420jpeg").unwrap(),
            unknown
        );
        for fourcc in [FourCc::NV12, FourCc::RAW, FourCc::RGB3] {
            let err = Y4mHeader::for_fourcc(fourcc, 4, 4, Ratio::new(1, 1)).unwrap_err();
            assert!(err.to_string().contains("422P"), "{err}");
        }
    }

    /// A writer that fails after `room` bytes.
    struct Failing {
        room: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_reported() {
        let header = Y4mHeader::for_fourcc(FourCc::GREY, 4, 4, Ratio::new(1, 1)).unwrap();
        assert!(matches!(
            Y4mWriter::new(Failing { room: 3 }, header.clone()),
            Err(Y4mError::Io(_))
        ));
        let mut writer = Y4mWriter::new(Failing { room: 40 }, header).unwrap();
        assert!(matches!(writer.write_frame(&[0; 16]), Err(Y4mError::Io(_))));
        assert_eq!(writer.frames_written(), 0);
    }

    #[test]
    fn rewind_returns_to_the_first_frame() {
        let header = Y4mHeader::for_fourcc(FourCc::GREY, 2, 1, Ratio::new(5, 1)).unwrap();
        // The stream starts part way into the input.
        let mut bytes = b"prefix".to_vec();
        let mut writer = Y4mWriter::new(&mut bytes, header).unwrap();
        for i in 0..3u8 {
            writer
                .write_frame_with_params(&[i, i], &format!("X{i}"))
                .unwrap();
        }
        let mut cursor = Cursor::new(bytes);
        cursor.set_position(6);
        let mut reader = Y4mReader::new(io::BufReader::with_capacity(7, cursor)).unwrap();
        let mut frame = [0; 2];
        for pass in 0..3 {
            for i in 0..3u8 {
                assert_eq!(
                    reader.read_frame(&mut frame).unwrap(),
                    Some(2),
                    "pass {pass}"
                );
                assert_eq!(frame, [i, i]);
                assert_eq!(reader.frame_params(), format!("X{i}"));
            }
            assert_eq!(reader.read_frame(&mut frame).unwrap(), None);
            assert_eq!(reader.frames_read(), 3);
            reader.rewind().unwrap();
            assert_eq!(reader.frames_read(), 0);
            assert_eq!(reader.position(), reader.header_bytes());
        }
        // Rewinding mid-stream works too.
        reader.read_frame(&mut frame).unwrap();
        reader.rewind().unwrap();
        reader.read_frame(&mut frame).unwrap();
        assert_eq!(frame, [0, 0]);
    }

    #[test]
    fn rates_from_numbers() {
        let cases = [
            (25.0, Some((25, 1))),
            (1.0, Some((1, 1))),
            (30000.0 / 1001.0, Some((30000, 1001))),
            (59.94, Some((60000, 1001))),
            (23.976, Some((24000, 1001))),
            (119.88, Some((120000, 1001))),
            (0.5, Some((1, 2))),
            (7.5, Some((15, 2))),
            (29.5, Some((59, 2))),
            (1.0 / 3.0, Some((1, 3))),
            (1e-9, Some((1, 1_000_000_000))),
            (f64::from(u32::MAX), Some((u32::MAX, 1))),
            (0.0, None),
            (-1.0, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (1e10, None),
            (1e-12, None),
        ];
        for (fps, expected) in cases {
            assert_eq!(
                Ratio::from_fps(fps),
                expected.map(|(n, d)| Ratio::new(n, d)),
                "{fps}"
            );
        }
    }

    fn arb_header() -> impl Strategy<Value = Y4mHeader> {
        let ratio = || proptest::option::of((1u32.., 1u32..).prop_map(|(n, d)| Ratio::new(n, d)));
        (
            1u32..=MAX_DIMENSION / 2,
            1u32..=MAX_DIMENSION / 2,
            ratio(),
            proptest::option::of(proptest::sample::select(vec![
                Interlace::Progressive,
                Interlace::TopFirst,
                Interlace::BottomFirst,
                Interlace::Mixed,
            ])),
            ratio(),
            proptest::sample::select(Colourspace::ALL.to_vec()),
            proptest::collection::vec("[!-~]{0,12}", 0..4),
        )
            .prop_map(
                |(half_width, half_height, rate, interlace, aspect, colourspace, extensions)| {
                    Y4mHeader {
                        width: half_width * 2,
                        height: half_height * 2,
                        rate,
                        interlace,
                        aspect,
                        colourspace,
                        extensions,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn headers_round_trip(header in arb_header()) {
            let line = header.encode().unwrap();
            prop_assert_eq!(line.last(), Some(&b'\n'));
            prop_assert_eq!(Y4mHeader::parse(&line[..line.len() - 1]).unwrap(), header.clone());
            let reader = Y4mReader::new(&line[..]).unwrap();
            prop_assert_eq!(reader.header(), &header);
            prop_assert_eq!(reader.header_bytes(), line.len() as u64);
        }

        #[test]
        fn streams_round_trip(
            colourspace in proptest::sample::select(Colourspace::ALL.to_vec()),
            half_width in 1u32..12,
            half_height in 1u32..12,
            frames in proptest::collection::vec(("[ -~]{0,20}", any::<u8>()), 0..6),
            capacity in 1usize..64,
        ) {
            let mut header = Y4mHeader::new(half_width * 2, half_height * 2, Ratio::new(30, 1), colourspace);
            header.extensions.push("TEST=1".into());
            let mut writer = Y4mWriter::new(Vec::new(), header.clone()).unwrap();
            let size = writer.frame_bytes();
            let data: Vec<Vec<u8>> = frames
                .iter()
                .map(|(_, seed)| (0..size).map(|i| (i as u8).wrapping_mul(*seed)).collect())
                .collect();
            for ((params, _), frame) in frames.iter().zip(&data) {
                writer.write_frame_with_params(frame, params).unwrap();
            }
            let bytes = writer.into_inner();
            let mut reader = Y4mReader::new(io::BufReader::with_capacity(capacity, &bytes[..])).unwrap();
            prop_assert_eq!(reader.header(), &header);
            prop_assert_eq!(reader.layout().fourcc, colourspace.fourcc());
            let mut buf = vec![0; size];
            for ((params, _), frame) in frames.iter().zip(&data) {
                prop_assert_eq!(reader.read_frame(&mut buf).unwrap(), Some(size));
                prop_assert_eq!(&buf, frame);
                prop_assert_eq!(reader.frame_params(), params.as_str());
            }
            prop_assert_eq!(reader.read_frame(&mut buf).unwrap(), None);
            prop_assert_eq!(reader.position(), bytes.len() as u64);
        }

        #[test]
        fn any_input_reads_or_errors(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                ("[WHFIACX0-9: a-z]{0,40}", proptest::collection::vec(any::<u8>(), 0..200))
                    .prop_map(|(header, rest)| {
                        let mut bytes = format!("YUV4MPEG2 {header}\n").into_bytes();
                        bytes.extend(rest);
                        bytes
                    }),
            ],
        ) {
            let _ = Y4mHeader::parse(&bytes);
            if let Ok(mut reader) = Y4mReader::new(&bytes[..]) {
                let frame_bytes = reader.frame_bytes();
                if frame_bytes <= 1 << 16 {
                    let mut buf = vec![0; frame_bytes];
                    while let Ok(Some(n)) = reader.read_frame(&mut buf) {
                        prop_assert_eq!(n, frame_bytes);
                    }
                    prop_assert!(reader.position() <= bytes.len() as u64);
                }
            }
        }
    }
}
