//! Replay of a recorded file, for development without a camera.
//!
//! Two kinds of file are read:
//!
//! - **Y4M** ([`y4m`]): the header gives the format, the size
//!   and the frame rate; every frame is a `FRAME` line and its bytes.
//! - **Raw**: frames back to back with nothing between them, each
//!   `FrameLayout::packed(fourcc, width, height).frame_bytes` long (for
//!   [`FourCc::RAW`], `width × height` bytes), as `cat`ting frames into a
//!   file gives. The file says nothing of its format, so it must be given
//!   ([`FileConfig::raw_format`]).
//!
//! With [`FileKind::Auto`] a file is Y4M if it starts with
//! [`y4m::SIGNATURE`], raw otherwise.
//!
//! A file has no clock: [`FileSource::pacer`] paces the replay at the Y4M
//! header's rate, the rate given ([`FileConfig::fps`]), or
//! [`DEFAULT_FPS`]. At the end of the file the source stops, or with
//! [`FileConfig::looping`] starts over from the first frame. Only whole
//! frames are ever handed out: a file that ends part way into a frame is
//! [`FileError::PartialFrame`], naming the file, the offset and the sizes.
//!
//! The file must be seekable (a regular file, not a pipe): the kind is
//! told by reading its first bytes and seeking back, and looping seeks.
//!
//! ```
//! use camux::format::FourCc;
//! use camux::source::{FileConfig, FileSource, RawFormat};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("two.grey");
//! std::fs::write(&path, [1u8; 32].iter().chain(&[2u8; 32]).copied().collect::<Vec<u8>>())?;
//!
//! let config = FileConfig {
//!     raw_format: Some(RawFormat::new(FourCc::GREY, 8, 4)),
//!     ..FileConfig::new(&path)
//! };
//! let mut source = FileSource::open(&config)?;
//! assert_eq!(source.frame_bytes(), 32);
//! let mut frame = vec![0; source.frame_bytes()];
//! let mut pacer = source.pacer();
//! while let Some(read) = source.next_frame(&mut frame)? {
//!     pacer.wait();
//!     assert_eq!(frame[0], read.index as u8 + 1);
//! }
//! assert_eq!(source.frames_read(), 2);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::y4m::{self, Y4mError, Y4mHeader, Y4mReader};
use super::{BufferTooSmall, Pacer, PacerError};
use crate::format::{FormatError, FourCc, FrameLayout};

/// The frame rate of a replay when neither the file nor the configuration
/// gives one: 30 frames per second.
pub const DEFAULT_FPS: f64 = 30.0;

/// What kind of file to read.
///
/// ```
/// use camux::source::FileKind;
/// assert_eq!(FileKind::default(), FileKind::Auto);
/// assert_eq!(FileKind::Y4m.to_string(), "y4m");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileKind {
    /// Y4M if the file starts with `YUV4MPEG2 `, raw otherwise.
    #[default]
    Auto,
    /// A Y4M stream.
    Y4m,
    /// Raw frames back to back, of [`FileConfig::raw_format`].
    Raw,
}

impl fmt::Display for FileKind {
    /// `auto`, `y4m` or `raw`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Auto => "auto",
            FileKind::Y4m => "y4m",
            FileKind::Raw => "raw",
        })
    }
}

/// The format of the frames of a raw file.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::RawFormat;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let format = RawFormat::new(FourCc::YUYV, 640, 480);
/// assert_eq!(format.layout()?.frame_bytes, 640 * 480 * 2);
/// assert_eq!(format.to_string(), "YUYV 640x480");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawFormat {
    /// Pixel format: one [`FrameLayout::packed`] lays out, or
    /// [`FourCc::RAW`] for records of `width × height` bytes.
    pub fourcc: FourCc,
    /// Width in pixels (for [`FourCc::RAW`], bytes per record).
    pub width: u32,
    /// Height in pixels (for [`FourCc::RAW`], records per frame).
    pub height: u32,
}

impl RawFormat {
    /// Frames of `fourcc`, `width` by `height`.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::RawFormat;
    /// assert_eq!(RawFormat::new(FourCc::NV12, 64, 48).width, 64);
    /// ```
    pub const fn new(fourcc: FourCc, width: u32, height: u32) -> RawFormat {
        RawFormat {
            fourcc,
            width,
            height,
        }
    }

    /// The layout of every frame.
    ///
    /// # Errors
    /// What [`FrameLayout::packed`] finds wrong with the geometry, or
    /// [`FormatError::NeedsMaxBytes`] for a compressed format (MJPG, H264),
    /// whose frames have no fixed size and so cannot be told apart in a raw
    /// file.
    ///
    /// ```
    /// use camux::format::{FormatError, FourCc};
    /// use camux::source::RawFormat;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(RawFormat::new(FourCc::RAW, 48, 2).layout()?.frame_bytes, 96);
    /// assert!(matches!(
    ///     RawFormat::new(FourCc::MJPG, 640, 480).layout(),
    ///     Err(FormatError::NeedsMaxBytes { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> Result<FrameLayout, FormatError> {
        if self.fourcc == FourCc::RAW {
            let bytes = u64::from(self.width) * u64::from(self.height);
            FrameLayout::opaque(self.fourcc, self.width, self.height, bytes)
        } else {
            FrameLayout::packed(self.fourcc, self.width, self.height)
        }
    }
}

impl fmt::Display for RawFormat {
    /// `YUYV 640x480`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.fourcc, self.width, self.height)
    }
}

/// What file a [`FileSource`] replays, and how.
///
/// ```
/// use camux::source::{FileConfig, FileKind};
/// let config = FileConfig { looping: true, fps: Some(10.0), ..FileConfig::new("clip.y4m") };
/// assert_eq!(config.kind, FileKind::Auto);
/// assert_eq!(config.raw_format, None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    /// The file.
    pub path: PathBuf,
    /// What kind of file it is.
    pub kind: FileKind,
    /// The format of a raw file's frames; needed when the file is raw,
    /// ignored when it is Y4M (its header says).
    pub raw_format: Option<RawFormat>,
    /// Frames per second to replay at, over the Y4M header's rate; `None`
    /// for the header's rate, or [`DEFAULT_FPS`] if there is none (a raw
    /// file, a Y4M file with `F0:0`).
    pub fps: Option<f64>,
    /// Start over from the first frame at the end of the file, rather than
    /// stop.
    pub looping: bool,
}

impl FileConfig {
    /// `path`, of a kind told from its content, not looping, at its own
    /// rate.
    ///
    /// ```
    /// use camux::source::FileConfig;
    /// assert!(!FileConfig::new("clip.y4m").looping);
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            path: path.into(),
            kind: FileKind::Auto,
            raw_format: None,
            fps: None,
            looping: false,
        }
    }
}

/// One frame that [`FileSource::next_frame`] read.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::{FileConfig, FileSource, RawFormat};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("f.raw");
/// std::fs::write(&path, [7u8; 4])?;
/// let config = FileConfig {
///     raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)),
///     looping: true,
///     ..FileConfig::new(&path)
/// };
/// let mut source = FileSource::open(&config)?;
/// let mut frame = [0; 4];
/// let first = source.next_frame(&mut frame)?.unwrap();
/// let second = source.next_frame(&mut frame)?.unwrap();
/// assert_eq!((first.seq, first.index, first.pass, first.offset), (0, 0, 0, 0));
/// assert_eq!((second.seq, second.index, second.pass, second.offset), (1, 0, 1, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRead {
    /// Bytes written to the start of the buffer: always
    /// [`FileSource::frame_bytes`].
    pub len: usize,
    /// Frames read before this one since the source was opened, over all
    /// passes.
    pub seq: u64,
    /// Index of the frame in the file, from 0.
    pub index: u64,
    /// The pass through the file it is from: 0 the first time, then one
    /// more each time a looping source starts over.
    pub pass: u64,
    /// Offset in the file of the frame's data.
    pub offset: u64,
}

/// The open file, by kind.
#[derive(Debug)]
enum Reader {
    Raw {
        reader: BufReader<File>,
        /// Offset of the next frame.
        position: u64,
        /// Frames read in this pass.
        index: u64,
    },
    Y4m(Box<Y4mReader<BufReader<File>>>),
}

/// A source of frames read from a file (see the [module docs](self)).
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
/// use camux::source::{FileConfig, FileSource};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("clip.y4m");
/// let header = Y4mHeader::for_fourcc(FourCc::GREY, 4, 4, Ratio::new(15, 1))?;
/// let mut writer = Y4mWriter::new(std::fs::File::create(&path)?, header)?;
/// writer.write_frame(&[9; 16])?;
/// drop(writer);
///
/// let mut source = FileSource::open(&FileConfig::new(&path))?;
/// assert_eq!(source.layout().fourcc, FourCc::GREY);
/// assert_eq!(source.fps(), 15.0);
/// let mut frame = [0; 16];
/// assert!(source.next_frame(&mut frame)?.is_some());
/// assert!(source.next_frame(&mut frame)?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    kind: FileKind,
    reader: Reader,
    layout: FrameLayout,
    frame_bytes: usize,
    fps: f64,
    pacer: Pacer,
    looping: bool,
    frames_read: u64,
    loops: u64,
    /// Set when a non-looping source has reached the end of the file.
    ended: bool,
}

impl FileSource {
    /// Opens the file `config` names, reads a Y4M header if it is Y4M,
    /// and checks the format and the rate.
    ///
    /// # Errors
    /// [`FileError::Open`] or [`FileError::Read`] if the file cannot be
    /// opened or read, [`FileError::Y4m`] for a bad Y4M header,
    /// [`FileError::NeedsRawFormat`] for a raw file without
    /// [`FileConfig::raw_format`], [`FileError::Format`] for a raw format
    /// with no fixed frame size, [`FileError::Rate`] for an invalid rate.
    ///
    /// ```
    /// use camux::source::{FileConfig, FileError, FileSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("frames.bin");
    /// std::fs::write(&path, [0u8; 100])?;
    /// let err = FileSource::open(&FileConfig::new(&path)).unwrap_err();
    /// assert!(matches!(err, FileError::NeedsRawFormat { .. }));
    /// assert!(err.to_string().contains("raw_format"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(config: &FileConfig) -> Result<FileSource, FileError> {
        let path = config.path.clone();
        let mut file = File::open(&path).map_err(|source| FileError::Open {
            path: path.clone(),
            source,
        })?;
        let read_error = |source| FileError::Read {
            path: path.clone(),
            source,
        };
        let kind = match config.kind {
            FileKind::Auto => {
                let mut start = [0; y4m::SIGNATURE.len()];
                let n = read_up_to(&mut file, &mut start).map_err(read_error)?;
                file.seek(SeekFrom::Start(0)).map_err(read_error)?;
                if start[..n] == y4m::SIGNATURE[..] {
                    FileKind::Y4m
                } else {
                    FileKind::Raw
                }
            }
            kind => kind,
        };
        let buffered = BufReader::new(file);
        let (reader, layout, native_fps) = if kind == FileKind::Y4m {
            let reader = Y4mReader::new(buffered).map_err(|source| FileError::Y4m {
                path: path.clone(),
                source,
            })?;
            let layout = *reader.layout();
            let fps = reader.header().fps();
            (Reader::Y4m(Box::new(reader)), layout, fps)
        } else {
            let format = config.raw_format.ok_or_else(|| FileError::NeedsRawFormat {
                path: path.clone(),
                forced: config.kind == FileKind::Raw,
            })?;
            let layout = format.layout().map_err(|source| FileError::Format {
                path: path.clone(),
                format,
                source,
            })?;
            let reader = Reader::Raw {
                reader: buffered,
                position: 0,
                index: 0,
            };
            (reader, layout, None)
        };
        let fps = config.fps.or(native_fps).unwrap_or(DEFAULT_FPS);
        let pacer = Pacer::new(fps).map_err(|source| FileError::Rate {
            path: path.clone(),
            source,
        })?;
        Ok(FileSource {
            path,
            kind,
            reader,
            layout,
            // At most MAX_FRAME_BYTES (1 GiB), which fits a usize on Linux.
            frame_bytes: layout.frame_bytes as usize,
            fps,
            pacer,
            looping: config.looping,
            frames_read: 0,
            loops: 0,
            ended: false,
        })
    }

    /// Reads the next frame into the start of `buf`.
    ///
    /// `None` at the end of the file, and on every call after, unless the
    /// source loops: then it seeks back to the first frame and reads it.
    ///
    /// # Errors
    /// [`FileError::Buffer`] if `buf` is shorter than
    /// [`frame_bytes`](Self::frame_bytes) (nothing is read then);
    /// [`FileError::PartialFrame`] if the file ends part way into a frame,
    /// which is not handed out (the next call carries on as at the end of
    /// the file); [`FileError::Empty`] if a looping source finds no frame
    /// in a whole pass, rather than loop forever; [`FileError::Y4m`] for a
    /// bad `FRAME` line; [`FileError::Read`] if reading or seeking fails.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{FileConfig, FileError, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("cut.raw");
    /// std::fs::write(&path, [0u8; 10])?; // one frame of 8 bytes, then 2 bytes
    /// let config = FileConfig {
    ///     raw_format: Some(RawFormat::new(FourCc::GREY, 4, 2)),
    ///     ..FileConfig::new(&path)
    /// };
    /// let mut source = FileSource::open(&config)?;
    /// let mut frame = [0; 8];
    /// assert!(source.next_frame(&mut frame)?.is_some());
    /// let err = source.next_frame(&mut frame).unwrap_err();
    /// assert!(matches!(err, FileError::PartialFrame { offset: 8, have: 2, expected: 8, .. }));
    /// assert!(source.next_frame(&mut frame)?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameRead>, FileError> {
        let have = buf.len();
        let frame = buf.get_mut(..self.frame_bytes).ok_or(BufferTooSmall {
            need: self.frame_bytes,
            have,
        })?;
        if self.ended {
            return Ok(None);
        }
        let mut rewound = false;
        loop {
            if let Some((index, offset)) = self.read_one(frame)? {
                let read = FrameRead {
                    len: self.frame_bytes,
                    seq: self.frames_read,
                    index,
                    pass: self.loops,
                    offset,
                };
                self.frames_read += 1;
                return Ok(Some(read));
            }
            if !self.looping {
                self.ended = true;
                return Ok(None);
            }
            // A pass that found no frame at all, right after starting over
            // or before any frame was read, means there is none to loop.
            if rewound || self.frames_in_pass() == 0 {
                return Err(FileError::Empty {
                    path: self.path.clone(),
                });
            }
            self.rewind()?;
            self.loops += 1;
            rewound = true;
        }
    }

    /// Reads one frame into `frame` (exactly a frame long); its index and
    /// offset, or `None` at the end of the file.
    fn read_one(&mut self, frame: &mut [u8]) -> Result<Option<(u64, u64)>, FileError> {
        match &mut self.reader {
            Reader::Raw {
                reader,
                position,
                index,
            } => {
                let offset = *position;
                let n = read_up_to(reader, frame).map_err(|source| FileError::Read {
                    path: self.path.clone(),
                    source,
                })?;
                *position += n as u64;
                if n == 0 {
                    return Ok(None);
                }
                if n < frame.len() {
                    return Err(FileError::PartialFrame {
                        path: self.path.clone(),
                        offset,
                        have: n as u64,
                        expected: frame.len() as u64,
                    });
                }
                *index += 1;
                Ok(Some((*index - 1, offset)))
            }
            Reader::Y4m(reader) => {
                let index = reader.frames_read();
                let start = reader.position();
                match reader.read_frame(frame) {
                    Ok(Some(_)) => {
                        let offset = reader.position() - self.frame_bytes as u64;
                        Ok(Some((index, offset)))
                    }
                    Ok(None) => Ok(None),
                    Err(Y4mError::TruncatedFrame { have, need, .. }) => {
                        Err(FileError::PartialFrame {
                            path: self.path.clone(),
                            offset: start,
                            have: have as u64,
                            expected: need as u64,
                        })
                    }
                    Err(Y4mError::Io(source)) => Err(FileError::Read {
                        path: self.path.clone(),
                        source,
                    }),
                    Err(source) => Err(FileError::Y4m {
                        path: self.path.clone(),
                        source,
                    }),
                }
            }
        }
    }

    /// Frames read in the current pass.
    fn frames_in_pass(&self) -> u64 {
        match &self.reader {
            Reader::Raw { index, .. } => *index,
            Reader::Y4m(reader) => reader.frames_read(),
        }
    }

    /// Seeks back to the first frame.
    fn rewind(&mut self) -> Result<(), FileError> {
        let read_error = |source| FileError::Read {
            path: self.path.clone(),
            source,
        };
        match &mut self.reader {
            Reader::Raw {
                reader,
                position,
                index,
            } => {
                reader.seek(SeekFrom::Start(0)).map_err(read_error)?;
                (*position, *index) = (0, 0);
                Ok(())
            }
            Reader::Y4m(reader) => reader.rewind().map_err(|err| match err {
                Y4mError::Io(source) => read_error(source),
                source => FileError::Y4m {
                    path: self.path.clone(),
                    source,
                },
            }),
        }
    }

    /// The file.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 4])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)), ..FileConfig::new(&path) };
    /// assert_eq!(FileSource::open(&config)?.path(), path);
    /// # Ok(())
    /// # }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kind the file was read as: [`FileKind::Y4m`] or
    /// [`FileKind::Raw`], never [`FileKind::Auto`].
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileKind, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 4])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)), ..FileConfig::new(&path) };
    /// assert_eq!(FileSource::open(&config)?.kind(), FileKind::Raw);
    /// # Ok(())
    /// # }
    /// ```
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// The Y4M stream header, for a Y4M file.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.y4m");
    /// std::fs::write(&path, "YUV4MPEG2 W2 H2 F1:1 Cmono XNOTE=hi\n")?;
    /// let source = FileSource::open(&camux::source::FileConfig::new(&path))?;
    /// assert_eq!(source.y4m_header().unwrap().extensions, ["NOTE=hi"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn y4m_header(&self) -> Option<&Y4mHeader> {
        match &self.reader {
            Reader::Y4m(reader) => Some(reader.header()),
            Reader::Raw { .. } => None,
        }
    }

    /// The parameters of the last Y4M `FRAME` line read (empty for a raw
    /// file, or a frame without any).
    ///
    /// ```
    /// # use camux::source::{FileConfig, FileSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.y4m");
    /// std::fs::write(&path, b"YUV4MPEG2 W1 H1 Cmono\nFRAME Ib\n\x05")?;
    /// let mut source = FileSource::open(&FileConfig::new(&path))?;
    /// source.next_frame(&mut [0])?;
    /// assert_eq!(source.frame_params(), "Ib");
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_params(&self) -> &str {
        match &self.reader {
            Reader::Y4m(reader) => reader.frame_params(),
            Reader::Raw { .. } => "",
        }
    }

    /// The layout of every frame.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.yuyv");
    /// std::fs::write(&path, [0u8; 0])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::YUYV, 64, 48)), ..FileConfig::new(&path) };
    /// assert_eq!(FileSource::open(&config)?.layout().planes()[0].stride, 128);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// Bytes of every frame, the same as the layout's `frame_bytes`.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.nv12");
    /// std::fs::write(&path, [0u8; 0])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::NV12, 64, 48)), ..FileConfig::new(&path) };
    /// assert_eq!(FileSource::open(&config)?.frame_bytes(), 64 * 48 * 3 / 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Frames per second of the replay: [`FileConfig::fps`] if given, else
    /// the Y4M header's rate, else [`DEFAULT_FPS`].
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat, DEFAULT_FPS};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 4])?;
    /// let mut config = FileConfig { raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)), ..FileConfig::new(&path) };
    /// assert_eq!(FileSource::open(&config)?.fps(), DEFAULT_FPS);
    /// config.fps = Some(5.0);
    /// assert_eq!(FileSource::open(&config)?.fps(), 5.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// A fresh pacer at [`fps`](Self::fps).
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 4])?;
    /// let config = FileConfig {
    ///     raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)),
    ///     fps: Some(20.0),
    ///     ..FileConfig::new(&path)
    /// };
    /// let pacer = FileSource::open(&config)?.pacer();
    /// assert_eq!(pacer.period(), Some(std::time::Duration::from_millis(50)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn pacer(&self) -> Pacer {
        self.pacer.clone()
    }

    /// True if the source starts over at the end of the file.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 4])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)), ..FileConfig::new(&path) };
    /// assert!(!FileSource::open(&config)?.is_looping());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_looping(&self) -> bool {
        self.looping
    }

    /// Frames handed out since the source was opened, over all passes.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 8])?;
    /// let config = FileConfig { raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)), ..FileConfig::new(&path) };
    /// let mut source = FileSource::open(&config)?;
    /// while source.next_frame(&mut [0; 4])?.is_some() {}
    /// assert_eq!(source.frames_read(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Times a looping source has started over from the first frame.
    ///
    /// ```
    /// # use camux::format::FourCc;
    /// # use camux::source::{FileConfig, FileSource, RawFormat};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.raw");
    /// std::fs::write(&path, [0u8; 8])?;
    /// let config = FileConfig {
    ///     raw_format: Some(RawFormat::new(FourCc::GREY, 2, 2)),
    ///     looping: true,
    ///     ..FileConfig::new(&path)
    /// };
    /// let mut source = FileSource::open(&config)?;
    /// for _ in 0..5 {
    ///     source.next_frame(&mut [0; 4])?;
    /// }
    /// assert_eq!(source.loops(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn loops(&self) -> u64 {
        self.loops
    }
}

/// Fills `buf` from `reader` until it is full or the input ends; returns
/// the bytes read.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
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

/// Why a file cannot be replayed. Every variant names the file, but
/// [`Buffer`](Self::Buffer), which is about the caller's buffer.
///
/// ```
/// use camux::source::{FileConfig, FileError, FileSource};
/// let err = FileSource::open(&FileConfig::new("/nonexistent/clip.y4m")).unwrap_err();
/// assert!(matches!(err, FileError::Open { .. }));
/// assert!(err.to_string().contains("/nonexistent/clip.y4m"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading or seeking the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A Y4M file whose header or a `FRAME` line is bad.
    #[error("{}: {source}", path.display())]
    Y4m {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Y4mError,
    },
    /// A raw file (or one that does not start like Y4M) without a format.
    #[error(
        "{}: {} so it is read as raw frames, whose format the file does not say: \
         give it (FileConfig::raw_format: fourcc, width and height)",
        path.display(),
        if *forced { "the file kind is raw," } else { "the file does not start with \"YUV4MPEG2 \"," }
    )]
    NeedsRawFormat {
        /// The file.
        path: PathBuf,
        /// True if [`FileKind::Raw`] was asked for, false if the kind was
        /// told from the content.
        forced: bool,
    },
    /// The raw format has no fixed frame size, or a bad geometry.
    #[error("{}: raw frames of {format}: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The format given.
        format: RawFormat,
        /// What is wrong with it.
        source: FormatError,
    },
    /// The frame rate is not valid.
    #[error("{}: {source}", path.display())]
    Rate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: PacerError,
    },
    /// The file ends part way into a frame.
    #[error(
        "{}: partial frame at byte {offset}: the file ends {have} bytes into it, \
         but a frame is {expected} bytes",
        path.display()
    )]
    PartialFrame {
        /// The file.
        path: PathBuf,
        /// Offset of the frame (its `FRAME` line, for Y4M) in the file.
        offset: u64,
        /// Bytes of the frame's data in the file.
        have: u64,
        /// Bytes of a frame's data.
        expected: u64,
    },
    /// A looping source found no frame to loop over.
    #[error("{}: no frames to loop over", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The caller's buffer is too small for a frame.
    #[error(transparent)]
    Buffer(#[from] BufferTooSmall),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::stamp::{self, verify};
    use crate::source::y4m::{Ratio, Y4mWriter};
    use crate::source::{Synthetic, SyntheticConfig};
    use std::io::Write;

    fn synthetic(fourcc: FourCc, width: u32, height: u32) -> Synthetic {
        Synthetic::new(SyntheticConfig {
            width,
            height,
            fourcc,
            fps: 30.0,
        })
        .unwrap()
    }

    fn frames(source: &Synthetic, n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|seq| {
                let mut frame = vec![0; source.frame_bytes()];
                source.render(seq, &mut frame).unwrap();
                frame
            })
            .collect()
    }

    fn write_raw(path: &Path, frames: &[Vec<u8>]) {
        let mut file = File::create(path).unwrap();
        for frame in frames {
            file.write_all(frame).unwrap();
        }
    }

    fn write_y4m(path: &Path, header: Y4mHeader, frames: &[Vec<u8>]) {
        let mut writer =
            Y4mWriter::new(io::BufWriter::new(File::create(path).unwrap()), header).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            writer
                .write_frame_with_params(frame, &format!("XSEQ={i}"))
                .unwrap();
        }
        writer.flush().unwrap();
    }

    fn raw_config(path: &Path, fourcc: FourCc, width: u32, height: u32) -> FileConfig {
        FileConfig {
            raw_format: Some(RawFormat::new(fourcc, width, height)),
            ..FileConfig::new(path)
        }
    }

    /// Reads every frame of a non-looping source.
    fn replay(source: &mut FileSource) -> Vec<(FrameRead, Vec<u8>)> {
        let mut frame = vec![0; source.frame_bytes()];
        let mut out = Vec::new();
        while let Some(read) = source.next_frame(&mut frame).unwrap() {
            out.push((read, frame.clone()));
        }
        out
    }

    #[test]
    fn raw_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for (fourcc, width, height) in [
            (FourCc::YUYV, 64, 48),
            (FourCc::YU12, 64, 48),
            (FourCc::NV12, 32, 16),
            (FourCc::GREY, 40, 10),
            (FourCc::RAW, 48, 1),
        ] {
            let synthetic = synthetic(fourcc, width, height);
            let originals = frames(&synthetic, 5);
            let path = dir.path().join(format!("{fourcc}.raw").replace(' ', ""));
            write_raw(&path, &originals);
            // Both told from the content and asked for.
            for kind in [FileKind::Auto, FileKind::Raw] {
                let config = FileConfig {
                    kind,
                    ..raw_config(&path, fourcc, width, height)
                };
                let mut source = FileSource::open(&config).unwrap();
                assert_eq!(source.kind(), FileKind::Raw);
                assert_eq!(source.layout(), synthetic.layout());
                assert_eq!(source.frame_bytes(), synthetic.frame_bytes());
                assert_eq!(source.fps(), DEFAULT_FPS);
                assert!(source.y4m_header().is_none());
                let replayed = replay(&mut source);
                assert_eq!(replayed.len(), originals.len(), "{fourcc}");
                for (i, ((read, frame), original)) in replayed.iter().zip(&originals).enumerate() {
                    let i = i as u64;
                    assert_eq!(frame, original, "{fourcc} frame {i}");
                    assert_eq!(verify(frame).unwrap().seq, i);
                    assert_eq!(
                        *read,
                        FrameRead {
                            len: source.frame_bytes(),
                            seq: i,
                            index: i,
                            pass: 0,
                            offset: i * source.frame_bytes() as u64,
                        }
                    );
                }
                assert_eq!(source.frames_read(), 5);
                assert_eq!(source.loops(), 0);
                // Stays at the end.
                let mut frame = vec![0; source.frame_bytes()];
                assert!(source.next_frame(&mut frame).unwrap().is_none());
            }
        }
    }

    #[test]
    fn y4m_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for (fourcc, width, height) in [(FourCc::YU12, 64, 48), (FourCc::GREY, 50, 7)] {
            let synthetic = synthetic(fourcc, width, height);
            let originals = frames(&synthetic, 4);
            let path = dir.path().join(format!("{fourcc}.y4m"));
            let header =
                Y4mHeader::for_fourcc(fourcc, width, height, Ratio::new(30000, 1001)).unwrap();
            write_y4m(&path, header.clone(), &originals);
            for kind in [FileKind::Auto, FileKind::Y4m] {
                // A raw format given is ignored for a Y4M file.
                let config = FileConfig {
                    kind,
                    ..raw_config(&path, FourCc::RGB3, 2, 2)
                };
                let mut source = FileSource::open(&config).unwrap();
                assert_eq!(source.kind(), FileKind::Y4m);
                assert_eq!(source.y4m_header(), Some(&header));
                assert_eq!(source.layout(), synthetic.layout());
                assert!((source.fps() - 29.97).abs() < 0.001);
                let mut frame = vec![0; source.frame_bytes()];
                let line = header.encode().unwrap().len() as u64;
                for (i, original) in originals.iter().enumerate() {
                    let read = source.next_frame(&mut frame).unwrap().unwrap();
                    assert_eq!(&frame, original);
                    assert_eq!(verify(&frame).unwrap().seq, i as u64);
                    assert_eq!(source.frame_params(), format!("XSEQ={i}"));
                    assert_eq!(read.index, i as u64);
                    // Offset of the data: the header, then per frame a
                    // FRAME line ("FRAME XSEQ=i\n", 13 bytes) and the data.
                    let frame_bytes = source.frame_bytes() as u64;
                    assert_eq!(
                        read.offset,
                        line + (i as u64 + 1) * 13 + i as u64 * frame_bytes
                    );
                }
                assert!(source.next_frame(&mut frame).unwrap().is_none());
            }
        }
    }

    #[test]
    fn planar_422_y4m_round_trips() {
        // Synthetic does not render 4:2:2 planar: stamp made-up frames.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i422.y4m");
        let header = Y4mHeader::for_fourcc(FourCc::YU16, 32, 8, Ratio::new(25, 1)).unwrap();
        let size = header.layout().unwrap().frame_bytes as usize;
        assert_eq!(size, 32 * 8 * 2);
        let originals: Vec<Vec<u8>> = (0..3u8)
            .map(|seq| {
                let mut frame: Vec<u8> = (0..size).map(|i| (i as u8) ^ seq).collect();
                stamp::write(u64::from(seq), &mut frame);
                frame
            })
            .collect();
        write_y4m(&path, header, &originals);
        let mut source = FileSource::open(&FileConfig::new(&path)).unwrap();
        assert_eq!(source.layout().fourcc, FourCc::YU16);
        assert_eq!(source.fps(), 25.0);
        let replayed = replay(&mut source);
        assert_eq!(replayed.len(), 3);
        for (seq, ((_, frame), original)) in replayed.iter().zip(&originals).enumerate() {
            assert_eq!(frame, original);
            assert_eq!(verify(frame).unwrap().seq, seq as u64);
        }
    }

    #[test]
    fn looping_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let synthetic = synthetic(FourCc::GREY, 32, 8);
        let originals = frames(&synthetic, 3);
        let raw = dir.path().join("loop.raw");
        write_raw(&raw, &originals);
        let y4m = dir.path().join("loop.y4m");
        let header = Y4mHeader::for_fourcc(FourCc::GREY, 32, 8, Ratio::new(30, 1)).unwrap();
        write_y4m(&y4m, header, &originals);
        for path in [raw, y4m] {
            let config = FileConfig {
                looping: true,
                ..raw_config(&path, FourCc::GREY, 32, 8)
            };
            let mut source = FileSource::open(&config).unwrap();
            assert!(source.is_looping());
            let mut frame = vec![0; source.frame_bytes()];
            for seq in 0..10u64 {
                let read = source.next_frame(&mut frame).unwrap().unwrap();
                assert_eq!(read.seq, seq);
                assert_eq!(read.index, seq % 3);
                assert_eq!(read.pass, seq / 3);
                assert_eq!(frame, originals[(seq % 3) as usize], "{}", path.display());
                assert_eq!(verify(&frame).unwrap().seq, seq % 3);
            }
            assert_eq!(source.loops(), 3);
            assert_eq!(source.frames_read(), 10);
        }
    }

    #[test]
    fn empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("empty.raw");
        File::create(&raw).unwrap();
        let y4m = dir.path().join("empty.y4m");
        std::fs::write(&y4m, "YUV4MPEG2 W4 H4 F30:1 Cmono\n").unwrap();
        for path in [raw, y4m] {
            let config = raw_config(&path, FourCc::GREY, 4, 4);
            let mut source = FileSource::open(&config).unwrap();
            let mut frame = [0; 16];
            assert!(source.next_frame(&mut frame).unwrap().is_none());
            // Looping over nothing is an error, not a busy loop.
            let mut source = FileSource::open(&FileConfig {
                looping: true,
                ..config
            })
            .unwrap();
            let err = source.next_frame(&mut frame).unwrap_err();
            assert!(
                matches!(&err, FileError::Empty { path: p } if *p == path),
                "{err}"
            );
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
    }

    #[test]
    fn partial_frames_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let synthetic = synthetic(FourCc::YUYV, 16, 4);
        let originals = frames(&synthetic, 2);
        let path = dir.path().join("cut.yuyv");
        write_raw(&path, &originals);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&originals[0][..100]).unwrap();
        drop(file);
        for looping in [false, true] {
            let config = FileConfig {
                looping,
                ..raw_config(&path, FourCc::YUYV, 16, 4)
            };
            let mut source = FileSource::open(&config).unwrap();
            let mut frame = vec![0; 128];
            for pass in 0..2 {
                for original in &originals {
                    let read = source.next_frame(&mut frame).unwrap().unwrap();
                    assert_eq!(&frame, original);
                    assert_eq!(read.pass, pass);
                }
                let err = source.next_frame(&mut frame).unwrap_err();
                assert!(
                    matches!(
                        err,
                        FileError::PartialFrame {
                            offset: 256,
                            have: 100,
                            expected: 128,
                            ..
                        }
                    ),
                    "{err}"
                );
                let text = err.to_string();
                for part in [
                    &*path.to_string_lossy(),
                    "byte 256",
                    "100 bytes",
                    "128 bytes",
                ] {
                    assert!(text.contains(part), "{text}");
                }
                if !looping {
                    assert!(source.next_frame(&mut frame).unwrap().is_none());
                    break;
                }
            }
        }
        // A file shorter than one frame: nothing whole to loop over either.
        let short = dir.path().join("short.yuyv");
        std::fs::write(&short, [0u8; 5]).unwrap();
        let config = FileConfig {
            looping: true,
            ..raw_config(&short, FourCc::YUYV, 16, 4)
        };
        let mut source = FileSource::open(&config).unwrap();
        let mut frame = vec![0; 128];
        assert!(matches!(
            source.next_frame(&mut frame),
            Err(FileError::PartialFrame {
                offset: 0,
                have: 5,
                ..
            })
        ));
        assert!(matches!(
            source.next_frame(&mut frame),
            Err(FileError::Empty { .. })
        ));
    }

    #[test]
    fn partial_y4m_frames_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.y4m");
        std::fs::write(&path, b"YUV4MPEG2 W4 H1 Cmono\nFRAME\n1234FRAME\n12").unwrap();
        let mut source = FileSource::open(&FileConfig::new(&path)).unwrap();
        let mut frame = [0; 4];
        assert!(source.next_frame(&mut frame).unwrap().is_some());
        let err = source.next_frame(&mut frame).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::PartialFrame {
                    offset: 32,
                    have: 2,
                    expected: 4,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(&path, b"YUV4MPEG2 W4 H1 Cmono\nFRAME\n1234JUNK\n").unwrap();
        let mut source = FileSource::open(&FileConfig::new(&path)).unwrap();
        source.next_frame(&mut frame).unwrap();
        let err = source.next_frame(&mut frame).unwrap_err();
        assert!(
            matches!(
                &err,
                FileError::Y4m {
                    source: Y4mError::BadFrameHeader { frame: 1, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&*path.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.bin");
        std::fs::write(&path, [0u8; 64]).unwrap();
        for (kind, phrase) in [
            (FileKind::Auto, "does not start with"),
            (FileKind::Raw, "the file kind is raw"),
        ] {
            let config = FileConfig {
                kind,
                ..FileConfig::new(&path)
            };
            let err = FileSource::open(&config).unwrap_err();
            assert!(matches!(err, FileError::NeedsRawFormat { .. }), "{err}");
            let text = err.to_string();
            for part in [
                &*path.to_string_lossy(),
                phrase,
                "raw_format",
                "fourcc, width and height",
            ] {
                assert!(text.contains(part), "{text}");
            }
        }
        // Forced Y4M on a file that is not.
        let config = FileConfig {
            kind: FileKind::Y4m,
            ..FileConfig::new(&path)
        };
        assert!(matches!(
            FileSource::open(&config),
            Err(FileError::Y4m {
                source: Y4mError::NotY4m { .. },
                ..
            })
        ));
        // A bad Y4M header.
        let bad = dir.path().join("bad.y4m");
        std::fs::write(&bad, "YUV4MPEG2 W0 H4\n").unwrap();
        let err = FileSource::open(&FileConfig::new(&bad)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("Y4M header field 'W': expected a width 1..=16384, found '0'"),
            "{err}"
        );
        // Formats without a fixed size, and bad geometries.
        for (format, expected) in [
            (
                RawFormat::new(FourCc::MJPG, 64, 48),
                FormatError::NeedsMaxBytes {
                    fourcc: FourCc::MJPG,
                },
            ),
            (
                RawFormat::new(FourCc::YUYV, 63, 48),
                FormatError::OddWidth {
                    fourcc: FourCc::YUYV,
                    width: 63,
                },
            ),
        ] {
            let config = FileConfig {
                raw_format: Some(format),
                ..FileConfig::new(&path)
            };
            let err = FileSource::open(&config).unwrap_err();
            assert!(
                matches!(&err, FileError::Format { source, .. } if *source == expected),
                "{err}"
            );
        }
        let config = FileConfig {
            fps: Some(0.0),
            ..raw_config(&path, FourCc::GREY, 8, 8)
        };
        assert!(matches!(
            FileSource::open(&config),
            Err(FileError::Rate { .. })
        ));
        let missing = dir.path().join("missing.raw");
        let err = FileSource::open(&raw_config(&missing, FourCc::GREY, 8, 8)).unwrap_err();
        assert!(matches!(err, FileError::Open { .. }));
        assert!(err.to_string().contains("missing.raw"), "{err}");
    }

    #[test]
    fn rates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rate.y4m");
        std::fs::write(&path, "YUV4MPEG2 W2 H2 F0:0 Cmono\n").unwrap();
        assert_eq!(
            FileSource::open(&FileConfig::new(&path)).unwrap().fps(),
            DEFAULT_FPS
        );
        std::fs::write(&path, "YUV4MPEG2 W2 H2 F5:2 Cmono\n").unwrap();
        let source = FileSource::open(&FileConfig::new(&path)).unwrap();
        assert_eq!(source.fps(), 2.5);
        assert_eq!(
            source.pacer().period(),
            Some(std::time::Duration::from_millis(400))
        );
        let config = FileConfig {
            fps: Some(100.0),
            ..FileConfig::new(&path)
        };
        assert_eq!(FileSource::open(&config).unwrap().fps(), 100.0);
    }

    #[test]
    fn small_buffers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.raw");
        std::fs::write(&path, [1u8; 16]).unwrap();
        let mut source = FileSource::open(&raw_config(&path, FourCc::GREY, 4, 4)).unwrap();
        assert!(matches!(
            source.next_frame(&mut [0; 15]),
            Err(FileError::Buffer(BufferTooSmall { need: 16, have: 15 }))
        ));
        // Nothing was read; a larger buffer gets the frame at its start.
        let mut big = [0; 20];
        assert_eq!(
            source.next_frame(&mut big).unwrap().map(|r| r.len),
            Some(16)
        );
        assert_eq!(big[..16], [1; 16]);
        assert_eq!(big[16..], [0; 4]);
    }

    #[test]
    fn short_files_that_look_like_y4m_are_raw() {
        // Too short for the signature: raw.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yuv");
        std::fs::write(&path, b"YUV4").unwrap();
        let source = FileSource::open(&raw_config(&path, FourCc::GREY, 2, 2)).unwrap();
        assert_eq!(source.kind(), FileKind::Raw);
    }
}
