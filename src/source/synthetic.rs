//! A deterministic moving test pattern whose every frame can be verified.
//!
//! Each frame is a function of its sequence number and the configuration
//! only, so a test can render the frame a reader should have got and
//! compare, and two producers (before and after a restart) agree.
//!
//! The picture is eight colour bars with a fine ripple on every channel,
//! slanted, scrolling a few pixels per frame, with a box bouncing over them.
//! The ripple makes every pixel change from one frame to the next, so
//! consecutive frames differ in (almost) every cache line, as real video
//! does. Every [`MARK_INTERVAL`] bytes after the stamp, eight bytes hold the
//! sequence number: the scroll and the bounce repeat after a while, and
//! these marks keep any two frames different in every such block anyway.
//! Then the frame is [`stamp`]ed, so a frame torn from two
//! frames (whose parts differ) fails [`stamp::verify`].
//!
//! Rendering is a row copy per row: every plane's pattern row is built
//! once, twice over, and each output row is a window of it.
//!
//! With the `qr` feature, [`Synthetic::with_qr`] also draws a QR code
//! carrying a text in the bottom-right corner of every frame, so a consumer
//! can recognise something real (`examples/qr.rs`). The code is drawn after
//! the pattern and the sequence marks and before the stamp, never over the
//! stamp (the first [`STAMP_BYTES`] bytes, at the top left): the checksum
//! covers it like any other pixel and [`stamp::verify`] checks every frame
//! as before. Inside the code's square the marks are painted over, so
//! consecutive frames are equal there; a tear that lies wholly inside it
//! mixes equal bytes and delivers exactly the frame published.
//!
//! ```
//! use camux::format::FourCc;
//! use camux::source::{stamp, Synthetic, SyntheticConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SyntheticConfig { fourcc: FourCc::NV12, ..SyntheticConfig::default() };
//! let source = Synthetic::new(config)?;
//! let mut frame = vec![0; source.frame_bytes()];
//! source.render(7, &mut frame)?;
//! assert_eq!(stamp::verify(&frame)?.seq, 7);
//! # Ok(())
//! # }
//! ```

use super::stamp::{self, STAMP_BYTES};
use super::{BufferTooSmall, Pacer, PacerError};
use crate::format::{FormatError, FourCc, FrameLayout};

/// Bytes between sequence marks in the frame body (see the module docs).
pub const MARK_INTERVAL: usize = 256;

/// Pixels the pattern scrolls per frame.
const SCROLL_PER_FRAME: usize = 4;

/// What a [`Synthetic`] source renders.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::SyntheticConfig;
/// let config = SyntheticConfig::default();
/// assert_eq!((config.width, config.height, config.fourcc), (1280, 720, FourCc::YUYV));
/// assert_eq!(config.fps, 30.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticConfig {
    /// Width in pixels; for [`FourCc::RAW`], bytes per record.
    pub width: u32,
    /// Height in pixels; for [`FourCc::RAW`], records per frame (usually 1).
    pub height: u32,
    /// Pixel format, one of [`Synthetic::FORMATS`].
    pub fourcc: FourCc,
    /// Frames per second, for [`Synthetic::pacer`]. The pattern does not
    /// depend on it.
    pub fps: f64,
}

impl Default for SyntheticConfig {
    /// 1280x720 YUYV at 30 fps.
    fn default() -> SyntheticConfig {
        SyntheticConfig {
            width: 1280,
            height: 720,
            fourcc: FourCc::YUYV,
            fps: 30.0,
        }
    }
}

/// A source of synthetic, stamped frames.
///
/// ```
/// use camux::source::{stamp, Synthetic, SyntheticConfig};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Synthetic::new(SyntheticConfig::default())?;
/// assert_eq!(source.frame_bytes(), 1280 * 720 * 2);
/// let mut frame = vec![0; source.frame_bytes()];
/// let mut pacer = source.pacer();
/// for seq in 0..2 {
///     pacer.wait();
///     assert_eq!(source.render(seq, &mut frame)?, source.frame_bytes());
///     assert_eq!(stamp::verify(&frame)?.seq, seq);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Synthetic {
    config: SyntheticConfig,
    layout: FrameLayout,
    frame_bytes: usize,
    pacer: Pacer,
    planes: Vec<PlanePattern>,
    /// Width and height of the bouncing box, in pixels (even; 0 for none).
    box_size: (usize, usize),
    /// The QR code drawn over every frame, if any.
    qr: Option<QrOverlay>,
}

/// A QR code drawn over every frame: the bytes it covers, precomputed.
#[derive(Debug, Clone)]
struct QrOverlay {
    /// The text it carries.
    text: String,
    /// Every covered run of bytes: (offset in the frame, the bytes).
    runs: Vec<(usize, Vec<u8>)>,
}

/// One plane's precomputed rows.
#[derive(Debug, Clone)]
struct PlanePattern {
    offset: usize,
    row_bytes: usize,
    rows: usize,
    /// Bytes per two pixels across, so a scroll of `s` (even) pixels is
    /// `s / 2 * bytes_per_pair` bytes.
    bytes_per_pair: usize,
    /// Pixel rows per plane row (2 for vertically subsampled chroma).
    rows_per_row: usize,
    /// The pattern row twice over: any scroll of it is one window.
    doubled: Vec<u8>,
    /// A row in the box's colour.
    box_row: Vec<u8>,
}

impl Synthetic {
    /// The formats a synthetic source renders.
    pub const FORMATS: [FourCc; 9] = [
        FourCc::YUYV,
        FourCc::UYVY,
        FourCc::NV12,
        FourCc::NV21,
        FourCc::YU12,
        FourCc::GREY,
        FourCc::RGB3,
        FourCc::BGR3,
        FourCc::RAW,
    ];

    /// A source for `config`; builds the pattern rows.
    ///
    /// For [`FourCc::RAW`] the frame is `width × height` bytes: `height`
    /// records of `width` bytes.
    ///
    /// # Errors
    /// A format not in [`FORMATS`](Self::FORMATS), a geometry
    /// [`FrameLayout`] rejects, a frame smaller than the stamp, or an
    /// invalid frame rate.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{Synthetic, SyntheticConfig, SyntheticError};
    /// let imu = SyntheticConfig { width: 48, height: 1, fourcc: FourCc::RAW, fps: 200.0 };
    /// assert_eq!(Synthetic::new(imu).map(|s| s.frame_bytes()), Ok(48));
    ///
    /// let tiny = SyntheticConfig { width: 4, height: 4, fourcc: FourCc::GREY, ..imu };
    /// assert_eq!(Synthetic::new(tiny).unwrap_err(), SyntheticError::TooSmall { bytes: 16, min: 32 });
    /// ```
    pub fn new(config: SyntheticConfig) -> Result<Synthetic, SyntheticError> {
        let SyntheticConfig {
            width,
            height,
            fourcc,
            fps,
        } = config;
        if !Synthetic::FORMATS.contains(&fourcc) {
            return Err(SyntheticError::Unsupported { fourcc });
        }
        let layout = if fourcc == FourCc::RAW {
            let bytes = u64::from(width) * u64::from(height);
            FrameLayout::opaque(fourcc, width, height, bytes)?
        } else {
            FrameLayout::packed(fourcc, width, height)?
        };
        // At most MAX_FRAME_BYTES (1 GiB), which fits the usize of any Linux target.
        let frame_bytes = layout.frame_bytes as usize;
        if frame_bytes < STAMP_BYTES {
            return Err(SyntheticError::TooSmall {
                bytes: frame_bytes,
                min: STAMP_BYTES,
            });
        }
        let pacer = Pacer::new(fps)?;
        let (w, h) = (width as usize, height as usize);
        let pattern: Vec<Rgb> = (0..w).map(|x| Rgb::pattern(x, w)).collect();
        let box_colour = vec![Rgb::BOX; w];
        let planes = encode_rows(fourcc, &pattern)
            .into_iter()
            .zip(encode_rows(fourcc, &box_colour))
            .zip(layout.planes())
            .map(|((row, box_row), plane)| {
                let rows = if fourcc == FourCc::RAW {
                    h
                } else {
                    (plane.bytes / plane.stride) as usize
                };
                PlanePattern {
                    offset: plane.offset as usize,
                    bytes_per_pair: 2 * row.len() / w,
                    rows_per_row: h / rows,
                    row_bytes: row.len(),
                    rows,
                    doubled: row.repeat(2),
                    box_row,
                }
            })
            .collect();
        Ok(Synthetic {
            config,
            layout,
            frame_bytes,
            pacer,
            planes,
            box_size: ((w / 6) & !1, (h / 6) & !1),
            qr: None,
        })
    }

    /// This source with a QR code carrying `text` drawn in the bottom-right
    /// corner of every frame (black modules on white, a four-module quiet
    /// zone, error correction level M), at the largest whole number of
    /// pixels per module that keeps the code within half the frame's
    /// smaller side. The stamp still verifies every frame (see the module
    /// docs). Needs the `qr` feature.
    ///
    /// # Errors
    /// [`QrError`] if the format is not a picture (RAW), the
    /// text does not fit in a QR code, or the frame is too small for the
    /// code at two pixels per module.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{stamp, Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SyntheticConfig { width: 320, height: 240, fourcc: FourCc::NV12, fps: 10.0 };
    /// let source = Synthetic::new(config)?.with_qr("camux:cam0")?;
    /// assert_eq!(source.qr_text(), Some("camux:cam0"));
    /// let mut frame = vec![0; source.frame_bytes()];
    /// source.render(3, &mut frame)?;
    /// assert_eq!(stamp::verify(&frame)?.seq, 3);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "qr")]
    pub fn with_qr(mut self, text: &str) -> Result<Synthetic, QrError> {
        use qrcode::{Color, EcLevel, QrCode};
        const QUIET: usize = 4;
        let fourcc = self.config.fourcc;
        if fourcc == FourCc::RAW {
            return Err(QrError {
                reason: "RAW frames are records, not pictures: choose a pixel format".into(),
            });
        }
        let code =
            QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| {
                QrError {
                    reason: format!("the text ({} bytes) cannot be a QR code: {e}", text.len()),
                }
            })?;
        let modules = code.width();
        let total = modules + 2 * QUIET;
        let (w, h) = (self.config.width as usize, self.config.height as usize);
        let scale = w.min(h) / 2 / total;
        if scale < 2 {
            return Err(QrError {
                reason: format!(
                    "a {w}x{h} frame is too small for this code: its {total} modules (quiet \
                     zone included) at 2 pixels each need {} pixels, half the smaller side at \
                     most; make the frame larger or the text shorter",
                    2 * total
                ),
            });
        }
        // Even position and size, so subsampled chroma pairs never straddle
        // the edge; below the first row, so the stamp is never covered.
        let size = (total * scale + 1) & !1;
        let (x0, y0) = ((w - size - 2) & !1, (h - size - 2) & !1);
        let colour = |px: usize, py: usize| {
            let (mx, my) = (px / scale, py / scale);
            let dark = (QUIET..QUIET + modules).contains(&mx)
                && (QUIET..QUIET + modules).contains(&my)
                && code[(mx - QUIET, my - QUIET)] == Color::Dark;
            if dark {
                Rgb { r: 0, g: 0, b: 0 }
            } else {
                Rgb {
                    r: 255,
                    g: 255,
                    b: 255,
                }
            }
        };
        let mut runs = Vec::new();
        for (i, plane) in self.planes.iter().enumerate() {
            let rows = y0 / plane.rows_per_row..(y0 + size) / plane.rows_per_row;
            for r in rows {
                let py = r * plane.rows_per_row - y0;
                let pixels: Vec<Rgb> = (0..size).map(|px| colour(px, py)).collect();
                let bytes = encode_rows(fourcc, &pixels).swap_remove(i);
                let offset = plane.offset + r * plane.row_bytes + x0 / 2 * plane.bytes_per_pair;
                runs.push((offset, bytes));
            }
        }
        self.qr = Some(QrOverlay {
            text: text.to_owned(),
            runs,
        });
        Ok(self)
    }

    /// The text of the QR code drawn over every frame, if any
    /// ([`with_qr`](Self::with_qr)).
    ///
    /// ```
    /// use camux::source::{Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Synthetic::new(SyntheticConfig::default())?.qr_text(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn qr_text(&self) -> Option<&str> {
        self.qr.as_ref().map(|q| q.text.as_str())
    }

    /// The configuration this source renders.
    ///
    /// ```
    /// use camux::source::{Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Synthetic::new(SyntheticConfig::default())?.config().width, 1280);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// The layout of every frame.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = Synthetic::new(SyntheticConfig::default())?;
    /// assert_eq!(source.layout().fourcc, FourCc::YUYV);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// Bytes of every frame, the same as the layout's `frame_bytes`.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SyntheticConfig { width: 64, height: 48, fourcc: FourCc::RGB3, fps: 1.0 };
    /// assert_eq!(Synthetic::new(config)?.frame_bytes(), 64 * 48 * 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// A fresh pacer at the configured frame rate.
    ///
    /// ```
    /// use camux::source::{Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pacer = Synthetic::new(SyntheticConfig::default())?.pacer();
    /// assert_eq!(pacer.period(), Some(std::time::Duration::from_secs(1) / 30));
    /// # Ok(())
    /// # }
    /// ```
    pub fn pacer(&self) -> Pacer {
        self.pacer.clone()
    }

    /// Renders and stamps frame `seq` into the start of `buf`, and returns
    /// the bytes written, always [`frame_bytes`](Self::frame_bytes). Bytes
    /// of `buf` past that are left alone.
    ///
    /// The frame depends on `seq` and the configuration only.
    ///
    /// # Errors
    /// [`BufferTooSmall`] if `buf` is shorter than a frame; nothing is
    /// written then.
    ///
    /// ```
    /// use camux::source::{stamp, Synthetic, SyntheticConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = Synthetic::new(SyntheticConfig::default())?;
    /// let mut slot = vec![0; 4 << 20];
    /// let len = source.render(1, &mut slot)?;
    /// assert_eq!(stamp::verify(&slot[..len])?.seq, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn render(&self, seq: u64, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let have = buf.len();
        let frame = buf.get_mut(..self.frame_bytes).ok_or(BufferTooSmall {
            need: self.frame_bytes,
            have,
        })?;
        let width = self.config.width as usize;
        let height = self.config.height as usize;
        // Reduce first, so that no sequence number can overflow.
        let scroll = (seq % width as u64) as usize * SCROLL_PER_FRAME % width;
        let (box_width, box_height) = self.box_size;
        let box_x = bounce(seq, 6, width - box_width);
        let box_y = bounce(seq, 4, height - box_height);
        for plane in &self.planes {
            let data = &mut frame[plane.offset..][..plane.row_bytes * plane.rows];
            let box_bytes =
                box_x / 2 * plane.bytes_per_pair..(box_x + box_width) / 2 * plane.bytes_per_pair;
            let box_rows = box_y / plane.rows_per_row..(box_y + box_height) / plane.rows_per_row;
            for (r, row) in data.chunks_exact_mut(plane.row_bytes).enumerate() {
                // Slant: each pair of pixel rows is scrolled two pixels more.
                let y = r * plane.rows_per_row;
                let shift = ((scroll + (y & !1)) % width) & !1;
                let start = shift / 2 * plane.bytes_per_pair;
                row.copy_from_slice(&plane.doubled[start..][..plane.row_bytes]);
                if box_rows.contains(&r) {
                    row[box_bytes.clone()].copy_from_slice(&plane.box_row[box_bytes.clone()]);
                }
            }
        }
        let seq_bytes = seq.to_le_bytes();
        for mark in frame[STAMP_BYTES..].chunks_mut(MARK_INTERVAL) {
            let n = mark.len().min(seq_bytes.len());
            mark[..n].copy_from_slice(&seq_bytes[..n]);
        }
        if let Some(qr) = &self.qr {
            for (offset, bytes) in &qr.runs {
                frame[*offset..][..bytes.len()].copy_from_slice(bytes);
            }
        }
        stamp::write(seq, frame);
        Ok(self.frame_bytes)
    }
}

/// A position in `0..=span` moving `speed` per frame, back and forth; even.
fn bounce(seq: u64, speed: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let period = 2 * span;
    let t = (seq % period as u64) as usize * speed % period;
    let position = if t <= span { t } else { 2 * span - t };
    position & !1
}

/// A pixel colour, before encoding.
#[derive(Debug, Clone, Copy)]
struct Rgb {
    r: u8,
    g: u8,
    b: u8,
}

impl Rgb {
    /// The box: orange, which no bar is.
    const BOX: Rgb = Rgb {
        r: 230,
        g: 120,
        b: 20,
    };

    /// Pixel `x` of a row `width` wide: one of eight bars (75% white,
    /// yellow, cyan, green, magenta, red, blue, black), with a sawtooth
    /// ripple of ±12 and period 24 pixels, out of phase on each channel, so
    /// that a scroll of a few pixels changes luma and chroma everywhere.
    fn pattern(x: usize, width: usize) -> Rgb {
        const BARS: [(bool, bool, bool); 8] = [
            (true, true, true),
            (true, true, false),
            (false, true, true),
            (false, true, false),
            (true, false, true),
            (true, false, false),
            (false, false, true),
            (false, false, false),
        ];
        let (r, g, b) = BARS[x * BARS.len() / width];
        let channel = |on: bool, phase: usize| {
            let level: i32 = if on { 180 } else { 24 };
            let ripple = ((x + phase) % 24) as i32 - 12;
            (level + ripple) as u8
        };
        Rgb {
            r: channel(r, 0),
            g: channel(g, 8),
            b: channel(b, 16),
        }
    }

    // BT.601 limited range, in 8.8 fixed point.
    fn y(self) -> u8 {
        let (r, g, b) = (i32::from(self.r), i32::from(self.g), i32::from(self.b));
        (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
    }

    fn cb(self) -> u8 {
        let (r, g, b) = (i32::from(self.r), i32::from(self.g), i32::from(self.b));
        (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8
    }

    fn cr(self) -> u8 {
        let (r, g, b) = (i32::from(self.r), i32::from(self.g), i32::from(self.b));
        (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8
    }
}

/// One row of `pixels` in `fourcc`, one `Vec` per plane. Subsampled chroma
/// takes the left pixel of each pair (and the row stands for both rows of a
/// vertically subsampled pair).
fn encode_rows(fourcc: FourCc, pixels: &[Rgb]) -> Vec<Vec<u8>> {
    let luma = || pixels.iter().map(|p| p.y()).collect::<Vec<u8>>();
    let pairs = || pixels.chunks_exact(2);
    let interleave = |f: fn(&[Rgb]) -> [u8; 4]| pairs().flat_map(f).collect::<Vec<u8>>();
    match fourcc {
        FourCc::YUYV => vec![interleave(|p| [p[0].y(), p[0].cb(), p[1].y(), p[0].cr()])],
        FourCc::UYVY => vec![interleave(|p| [p[0].cb(), p[0].y(), p[0].cr(), p[1].y()])],
        FourCc::NV12 => vec![
            luma(),
            pairs().flat_map(|p| [p[0].cb(), p[0].cr()]).collect(),
        ],
        FourCc::NV21 => vec![
            luma(),
            pairs().flat_map(|p| [p[0].cr(), p[0].cb()]).collect(),
        ],
        FourCc::YU12 => vec![
            luma(),
            pairs().map(|p| p[0].cb()).collect(),
            pairs().map(|p| p[0].cr()).collect(),
        ],
        FourCc::RGB3 => vec![pixels.iter().flat_map(|p| [p.r, p.g, p.b]).collect()],
        FourCc::BGR3 => vec![pixels.iter().flat_map(|p| [p.b, p.g, p.r]).collect()],
        // GREY, and RAW: bytes shaped like a luma row.
        _ => vec![luma()],
    }
}

/// Why a [`Synthetic`] source cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntheticError {
    /// The format is not one the pattern can be rendered in.
    #[error(
        "the synthetic source cannot render {fourcc:?}: it renders YUYV, UYVY, NV12, NV21, \
         YU12, GREY, RGB3, BGR3 and RAW"
    )]
    Unsupported {
        /// The format asked for.
        fourcc: FourCc,
    },
    /// The geometry is not a valid frame layout.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A frame would be smaller than the stamp it must carry.
    #[error("a synthetic frame of {bytes} bytes is too small: it must hold the {min}-byte stamp")]
    TooSmall {
        /// Bytes a frame would have.
        bytes: usize,
        /// The smallest frame, [`STAMP_BYTES`].
        min: usize,
    },
    /// The frame rate is not valid.
    #[error(transparent)]
    Rate(#[from] PacerError),
}

/// Why [`Synthetic::with_qr`] cannot draw a QR code: the reason, and what
/// to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw the QR code: {reason}")]
pub struct QrError {
    /// Why, and what to change.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::stamp::{verify, Verified, VerifyError};
    use proptest::prelude::*;

    fn source(fourcc: FourCc, width: u32, height: u32) -> Synthetic {
        let config = SyntheticConfig {
            width,
            height,
            fourcc,
            fps: 30.0,
        };
        Synthetic::new(config).unwrap_or_else(|e| panic!("{fourcc} {width}x{height}: {e}"))
    }

    /// A small geometry of each format (RAW: one 4 KiB record).
    fn sources() -> Vec<Synthetic> {
        Synthetic::FORMATS
            .iter()
            .map(|&fourcc| match fourcc {
                FourCc::RAW => source(fourcc, 4096, 1),
                _ => source(fourcc, 320, 240),
            })
            .collect()
    }

    fn render(source: &Synthetic, seq: u64) -> Vec<u8> {
        let mut frame = vec![0; source.frame_bytes()];
        assert_eq!(source.render(seq, &mut frame), Ok(frame.len()));
        frame
    }

    #[test]
    fn every_frame_verifies() {
        for source in sources() {
            for seq in [0, 1, 2, 1000, u64::MAX] {
                let frame = render(&source, seq);
                let expected = Verified {
                    seq,
                    len: frame.len() as u64,
                };
                assert_eq!(verify(&frame), Ok(expected), "{}", source.layout().fourcc);
            }
        }
    }

    #[test]
    fn odd_and_tiny_geometries_render() {
        for (fourcc, width, height) in [
            (FourCc::GREY, 1, 32),
            (FourCc::GREY, 33, 1),
            (FourCc::RGB3, 11, 1),
            (FourCc::YUYV, 16, 1),
            (FourCc::NV12, 6, 6),
            (FourCc::YU12, 2, 16),
            (FourCc::RAW, 32, 1),
            (FourCc::RAW, 7, 5),
            (FourCc::RAW, 16384, 3),
        ] {
            let source = source(fourcc, width, height);
            for seq in [0, 1, 5, 77] {
                assert_eq!(verify(&render(&source, seq)).map(|v| v.seq), Ok(seq));
            }
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        for (a, b) in sources().iter().zip(sources()) {
            for seq in [0, 3, 999_999] {
                assert!(render(a, seq) == render(&b, seq), "{}", b.layout().fourcc);
            }
        }
    }

    #[test]
    fn consecutive_frames_differ_in_most_cache_lines() {
        for source in sources() {
            for seq in [0, 1, 57, 1 << 40] {
                let (a, b) = (render(&source, seq), render(&source, seq + 1));
                let lines = a.len().div_ceil(64);
                let differ = a
                    .chunks(64)
                    .zip(b.chunks(64))
                    .filter(|(x, y)| x != y)
                    .count();
                assert!(
                    differ * 10 >= lines * 9,
                    "{}: {differ} of {lines} cache lines differ",
                    source.layout().fourcc
                );
            }
        }
    }

    #[test]
    fn torn_frames_fail() {
        // Besides neighbours, pairs a ring's worth of slots apart: a short
        // pattern period could make their pixels identical (at width 64 the
        // scroll repeats every 16 frames), which the marks must catch.
        let mut pairs = vec![(1, 2), (0, u64::MAX)];
        for slots in [1, 2, 4, 8, 16, 32, 64, 240] {
            pairs.extend([(7, 7 + slots), (100, 100 + slots)]);
        }
        for &fourcc in &Synthetic::FORMATS {
            let geometries = match fourcc {
                FourCc::RAW => [(4096, 1), (64, 1)],
                _ => [(320, 240), (64, 48)],
            };
            for (width, height) in geometries {
                let source = source(fourcc, width, height);
                for &(a, b) in &pairs {
                    let (frame_a, frame_b) = (render(&source, a), render(&source, b));
                    let half = frame_a.len() / 2;
                    for (first, second) in [(&frame_a, &frame_b), (&frame_b, &frame_a)] {
                        let mut torn = first[..half].to_vec();
                        torn.extend_from_slice(&second[half..]);
                        assert!(
                            matches!(verify(&torn), Err(VerifyError::Checksum { .. })),
                            "{fourcc} {width}x{height}, frames {a} and {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn render_writes_exactly_one_frame() {
        let source = source(FourCc::NV12, 64, 48);
        let mut slot = vec![0xA5; source.frame_bytes() + 100];
        assert_eq!(source.render(3, &mut slot), Ok(source.frame_bytes()));
        assert!(slot[source.frame_bytes()..].iter().all(|&b| b == 0xA5));
        let mut short = vec![0xA5; source.frame_bytes() - 1];
        assert_eq!(
            source.render(3, &mut short),
            Err(BufferTooSmall {
                need: source.frame_bytes(),
                have: short.len()
            })
        );
        assert!(short.iter().all(|&b| b == 0xA5));
    }

    #[test]
    fn config_errors() {
        let config = SyntheticConfig::default();
        let cases = [
            (
                SyntheticConfig {
                    fourcc: FourCc::MJPG,
                    ..config
                },
                SyntheticError::Unsupported {
                    fourcc: FourCc::MJPG,
                },
            ),
            (
                SyntheticConfig { width: 0, ..config },
                SyntheticError::Format(FormatError::ZeroDimension {
                    width: 0,
                    height: 720,
                }),
            ),
            (
                SyntheticConfig {
                    width: 1279,
                    ..config
                },
                SyntheticError::Format(FormatError::OddWidth {
                    fourcc: FourCc::YUYV,
                    width: 1279,
                }),
            ),
            (
                SyntheticConfig {
                    width: 31,
                    height: 1,
                    fourcc: FourCc::RAW,
                    ..config
                },
                SyntheticError::TooSmall { bytes: 31, min: 32 },
            ),
            (
                SyntheticConfig { fps: 0.0, ..config },
                SyntheticError::Rate(PacerError::InvalidRate { fps: 0.0 }),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(Synthetic::new(config).unwrap_err(), expected);
        }
        let message = Synthetic::new(SyntheticConfig {
            width: 2,
            height: 2,
            fourcc: FourCc::GREY,
            ..config
        })
        .unwrap_err()
        .to_string();
        assert!(message.contains("32-byte"), "{message}");
    }

    #[test]
    fn pattern_moves() {
        // The scroll alone changes pixels: row 1 is clear of the box (rows
        // 40 to 49 then) and columns 64.. of the marks (column 32).
        let source = source(FourCc::GREY, 256, 64);
        let (a, b) = (render(&source, 10), render(&source, 11));
        let differ = (256 + 64..512).filter(|&i| a[i] != b[i]).count();
        assert_eq!(differ, 192);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_corruption_is_detected(
            format in any::<proptest::sample::Index>(),
            seq in any::<u64>(),
            position in any::<proptest::sample::Index>(),
            flip in 1u8..,
        ) {
            let fourcc = format.get(&Synthetic::FORMATS);
            let source = if *fourcc == FourCc::RAW { source(*fourcc, 200, 1) } else { source(*fourcc, 64, 48) };
            let mut frame = render(&source, seq);
            frame[position.index(source.frame_bytes())] ^= flip;
            prop_assert!(verify(&frame).is_err());
        }

        #[test]
        fn any_geometry_renders_or_errors(
            format in any::<proptest::sample::Index>(),
            width in 0u32..200,
            height in 0u32..200,
            seq in any::<u64>(),
        ) {
            let fourcc = *format.get(&Synthetic::FORMATS);
            let config = SyntheticConfig { width, height, fourcc, fps: 30.0 };
            if let Ok(source) = Synthetic::new(config) {
                let frame = render(&source, seq);
                prop_assert_eq!(verify(&frame).map(|v| v.seq), Ok(seq));
            }
        }
    }

    /// The luma of pixel (x, y), whatever the format.
    #[cfg(feature = "qr")]
    fn luma(fourcc: FourCc, width: usize, frame: &[u8], x: usize, y: usize) -> u8 {
        match fourcc {
            FourCc::YUYV => frame[y * width * 2 + x * 2],
            FourCc::UYVY => frame[y * width * 2 + x * 2 + 1],
            FourCc::RGB3 | FourCc::BGR3 => {
                let p = &frame[(y * width + x) * 3..][..3];
                Rgb {
                    r: p[0],
                    g: p[1],
                    b: p[2],
                }
                .y()
            }
            _ => frame[y * width + x],
        }
    }

    #[cfg(feature = "qr")]
    #[test]
    fn a_qr_code_decodes_in_every_picture_format_and_the_stamp_still_verifies() {
        for plain in sources() {
            let fourcc = plain.config().fourcc;
            if fourcc == FourCc::RAW {
                let e = plain.with_qr("x").unwrap_err();
                assert!(e.to_string().contains("not pictures"), "{e}");
                continue;
            }
            let (w, h) = (
                plain.config().width as usize,
                plain.config().height as usize,
            );
            let source = plain.with_qr("camux QR test").unwrap();
            let mut frame = vec![0; source.frame_bytes()];
            for seq in [0, 1, 77] {
                source.render(seq, &mut frame).unwrap();
                assert_eq!(verify(&frame).map(|v| v.seq), Ok(seq), "{fourcc}");
                let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
                    luma(fourcc, w, &frame, x, y)
                });
                let grids = img.detect_grids();
                assert_eq!(grids.len(), 1, "{fourcc} seq {seq}");
                let (_, text) = grids[0].decode().unwrap();
                assert_eq!(text, "camux QR test", "{fourcc}");
            }
        }
        let tiny = source(FourCc::GREY, 64, 48).with_qr("camux").unwrap_err();
        assert!(tiny.to_string().contains("too small"), "{tiny}");
    }
}
