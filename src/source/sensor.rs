//! Records from a sensor: a character device, a FIFO, a file or stdin,
//! each record one frame.
//!
//! A sensor that is not a camera (an IMU on a serial port, a GPS, a CAN
//! bridge, a program printing CSV) writes a byte stream; [`Framing`] says
//! how it splits into records:
//!
//! - [`Framing::Fixed`]: exactly `n` bytes per record (binary records, such
//!   as the 24-byte `struct input_event` of `/dev/input/event*`).
//! - [`Framing::Lines`]: newline-delimited text. The `\n` and a `\r` just
//!   before it are stripped. Empty lines carry nothing and are skipped
//!   (and counted). A line longer than `max_bytes` is never truncated into
//!   a record: it is skipped up to its newline and counted as oversized.
//!
//! The splitting is done by [`RecordFramer`], which does no I/O: bytes go
//! in with [`push`](RecordFramer::push), records come out with
//! [`pull`](RecordFramer::pull). It is total (no input makes it panic) and
//! holds at most one record (plus a `\r`), however the input is chunked.
//! [`SensorSource`] does the blocking reads and hands out whole records.
//!
//! # End of stream
//!
//! A read that returns no bytes ends the stream: the end of a regular file
//! or of stdin, a FIFO whose every writer has closed it (reopen to wait for
//! the next writer), a device that hung up. Then a record cut short (a
//! fixed record missing bytes, a last line without a newline) is not
//! handed out but counted as truncated, and
//! [`next_record`](SensorSource::next_record) returns `None` from then on.
//!
//! # In the ring
//!
//! Records are opaque bytes: the stream's format is [`FourCc::RAW`], with
//! width the largest record in bytes and height 1 ([`SensorSource::layout`];
//! the publisher records it as `StreamFormat::opaque(max_record_bytes)`),
//! and what the bytes mean is said by the config's
//! [`content_type`](SensorConfig::content_type), a MIME-like name such as
//! `application/x-imu+csv`, in place of a pixel format.
//!
//! ```
//! use camux::source::{Framing, SensorConfig, SensorSource};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("imu.csv");
//! std::fs::write(&path, "0.1,0.2,9.8\r\n\n0.1,0.3,9.7\n0.2")?;
//!
//! let config = SensorConfig::new(&path, Framing::Lines { max_bytes: 64 }, "application/x-imu+csv");
//! let mut source = SensorSource::open(&config)?;
//! let mut record = vec![0; source.max_record_bytes()];
//! let mut lines = Vec::new();
//! while let Some(r) = source.next_record(&mut record)? {
//!     lines.push(String::from_utf8(record[..r.len].to_vec())?);
//! }
//! assert_eq!(lines, ["0.1,0.2,9.8", "0.1,0.3,9.7"]);
//! let stats = source.stats().framer;
//! assert_eq!((stats.records, stats.empty, stats.truncated), (2, 1, 1));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::time::{clock_gettime, ClockId};

use super::BufferTooSmall;
use crate::format::{FormatError, FourCc, FrameLayout, MAX_DIMENSION};

/// The largest record, in bytes (16 KiB): a record is the width of a
/// [`FourCc::RAW`] frame, and widths stop at [`MAX_DIMENSION`].
pub const MAX_RECORD_BYTES: usize = MAX_DIMENSION as usize;

/// Bytes a [`SensorSource`] asks for in each read.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The longest content type, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 63;

/// How a byte stream splits into records.
///
/// Parses from and shows as `fixed:<n>` or `lines:<max_bytes>`.
///
/// ```
/// use camux::source::Framing;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!("fixed:24".parse::<Framing>()?, Framing::Fixed(24));
/// assert_eq!("lines:256".parse::<Framing>()?, Framing::Lines { max_bytes: 256 });
/// assert_eq!(Framing::Lines { max_bytes: 80 }.to_string(), "lines:80");
/// assert!("lines:0".parse::<Framing>().is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Every record exactly this many bytes, 1 to [`MAX_RECORD_BYTES`].
    Fixed(usize),
    /// Newline-delimited records, without the `\n` (or `\r\n`), each at
    /// most `max_bytes` (1 to [`MAX_RECORD_BYTES`]) long; longer ones are
    /// skipped, empty ones too.
    Lines {
        /// The longest record, newline not counted.
        max_bytes: usize,
    },
}

impl Framing {
    /// The largest record this framing yields.
    ///
    /// ```
    /// use camux::source::Framing;
    /// assert_eq!(Framing::Fixed(48).max_record_bytes(), 48);
    /// assert_eq!(Framing::Lines { max_bytes: 200 }.max_record_bytes(), 200);
    /// ```
    pub const fn max_record_bytes(self) -> usize {
        match self {
            Framing::Fixed(n) => n,
            Framing::Lines { max_bytes } => max_bytes,
        }
    }

    /// `self` if its record size is within `1..=`[`MAX_RECORD_BYTES`].
    ///
    /// # Errors
    /// [`FramingError::Size`] otherwise.
    ///
    /// ```
    /// use camux::source::{Framing, FramingError};
    /// assert_eq!(Framing::Fixed(8).validate(), Ok(Framing::Fixed(8)));
    /// assert!(matches!(Framing::Fixed(0).validate(), Err(FramingError::Size { .. })));
    /// ```
    pub fn validate(self) -> Result<Framing, FramingError> {
        if (1..=MAX_RECORD_BYTES).contains(&self.max_record_bytes()) {
            Ok(self)
        } else {
            Err(FramingError::Size {
                framing: self,
                max: MAX_RECORD_BYTES,
            })
        }
    }
}

impl fmt::Display for Framing {
    /// `fixed:<n>` or `lines:<max_bytes>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framing::Fixed(n) => write!(f, "fixed:{n}"),
            Framing::Lines { max_bytes } => write!(f, "lines:{max_bytes}"),
        }
    }
}

impl FromStr for Framing {
    type Err = FramingError;

    /// `fixed:<n>` or `lines:<max_bytes>`, sizes in decimal, validated.
    fn from_str(s: &str) -> Result<Framing, FramingError> {
        let parse = |n: &str| {
            n.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| n.parse::<usize>().ok())
                .flatten()
        };
        let framing = match s.split_once(':') {
            Some(("fixed", n)) => parse(n).map(Framing::Fixed),
            Some(("lines", n)) => parse(n).map(|max_bytes| Framing::Lines { max_bytes }),
            _ => None,
        };
        framing
            .ok_or_else(|| FramingError::Parse {
                given: s.chars().take(64).collect(),
            })?
            .validate()
    }
}

/// A [`Framing`] that cannot be used.
///
/// ```
/// use camux::source::Framing;
/// let err = "fixed:100000".parse::<Framing>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid framing fixed:100000: a record must be 1..=16384 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The record size is 0 or over [`MAX_RECORD_BYTES`].
    #[error("invalid framing {framing}: a record must be 1..={max} bytes")]
    Size {
        /// The framing given.
        framing: Framing,
        /// The largest record.
        max: usize,
    },
    /// Text that is not `fixed:<n>` or `lines:<max_bytes>`.
    #[error(
        "invalid framing {given:?}: expected fixed:<bytes per record> or \
         lines:<max bytes per line>, e.g. fixed:24 or lines:256"
    )]
    Parse {
        /// The text given (its first 64 characters).
        given: String,
    },
}

/// What [`RecordFramer::pull`] and [`RecordFramer::finish`] hand out.
///
/// ```
/// use camux::source::{Framed, Framing, RecordFramer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut framer = RecordFramer::new(Framing::Lines { max_bytes: 4 })?;
/// framer.push(b"toolong\n");
/// assert_eq!(framer.pull(), Some(Framed::Oversized { len: 7 }));
/// framer.push(b"ok\n");
/// assert_eq!(framer.pull(), Some(Framed::Record(b"ok")));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framed<'a> {
    /// A whole record.
    Record(&'a [u8]),
    /// A line longer than the framing's `max_bytes` was skipped; `len`
    /// is its length, the newline (and a `\r` before it) not counted.
    Oversized {
        /// Bytes of the line.
        len: u64,
    },
    /// The input ended part way into a record (a fixed record missing
    /// bytes, a line with no newline); its `len` bytes were dropped.
    Truncated {
        /// Bytes of the record there were.
        len: usize,
    },
}

/// Counts kept by a [`RecordFramer`].
///
/// ```
/// use camux::source::{FramerStats, Framing, RecordFramer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut framer = RecordFramer::new(Framing::Fixed(2))?;
/// framer.push(b"abc");
/// framer.pull();
/// framer.push(b"c");
/// framer.finish();
/// let stats = framer.stats();
/// assert_eq!((stats.records, stats.record_bytes, stats.truncated), (1, 2, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FramerStats {
    /// Records framed.
    pub records: u64,
    /// Bytes of the records framed.
    pub record_bytes: u64,
    /// Lines skipped as longer than `max_bytes`.
    pub oversized: u64,
    /// Bytes of the lines skipped as too long, newlines not counted.
    pub oversized_bytes: u64,
    /// Empty lines skipped.
    pub empty: u64,
    /// Records cut short by the end of the input.
    pub truncated: u64,
}

/// An event framed but not yet pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    /// The first `len` bytes of the buffer.
    Record(usize),
    Oversized(u64),
    Truncated(usize),
}

/// Splits a byte stream into records; does no I/O.
///
/// Feed it with [`push`](Self::push), which takes bytes until a record is
/// complete, and take the record with [`pull`](Self::pull); at the end of
/// the input, [`finish`](Self::finish) reports a record cut short. The
/// records are the same however the input is split into pushes.
///
/// It never holds more than one record (for lines, plus a `\r`), in a
/// buffer allocated once: memory is bounded whatever the input, and no
/// input makes it panic.
///
/// ```
/// use camux::source::{Framed, Framing, RecordFramer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut framer = RecordFramer::new(Framing::Lines { max_bytes: 16 })?;
/// let mut records = Vec::new();
/// for chunk in [&b"temp=2"[..], b"1.5\r\nte", b"mp=21.6\n\ntemp="] {
///     let mut input = chunk;
///     while !input.is_empty() {
///         let taken = framer.push(input);
///         input = &input[taken..];
///         while let Some(event) = framer.pull() {
///             if let Framed::Record(record) = event {
///                 records.push(record.to_vec());
///             }
///         }
///     }
/// }
/// assert_eq!(records, [b"temp=21.5".to_vec(), b"temp=21.6".to_vec()]);
/// assert_eq!(framer.finish(), Some(Framed::Truncated { len: 5 }));
/// assert_eq!(framer.stats().empty, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RecordFramer {
    framing: Framing,
    /// Bytes of the record being framed (or framed and pending).
    buf: Vec<u8>,
    /// The most bytes `buf` holds: `n`, or `max_bytes + 1` (for a `\r`).
    limit: usize,
    pending: Pending,
    /// `buf` holds a record already pulled: clear it before framing more.
    stale: bool,
    /// Bytes skipped so far of an oversized line, when skipping one.
    skipping: Option<u64>,
    /// The last byte skipped was a `\r`.
    skipped_cr: bool,
    stats: FramerStats,
}

impl RecordFramer {
    /// A framer for `framing`, with its buffer allocated.
    ///
    /// # Errors
    /// [`FramingError::Size`] for a record size out of
    /// `1..=`[`MAX_RECORD_BYTES`].
    ///
    /// ```
    /// use camux::source::{Framing, RecordFramer};
    /// assert!(RecordFramer::new(Framing::Fixed(24)).is_ok());
    /// assert!(RecordFramer::new(Framing::Lines { max_bytes: 0 }).is_err());
    /// ```
    pub fn new(framing: Framing) -> Result<RecordFramer, FramingError> {
        let framing = framing.validate()?;
        let limit = match framing {
            Framing::Fixed(n) => n,
            Framing::Lines { max_bytes } => max_bytes + 1,
        };
        Ok(RecordFramer {
            framing,
            buf: Vec::with_capacity(limit),
            limit,
            pending: Pending::None,
            stale: false,
            skipping: None,
            skipped_cr: false,
            stats: FramerStats::default(),
        })
    }

    /// The framing.
    ///
    /// ```
    /// use camux::source::{Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(RecordFramer::new(Framing::Fixed(3))?.framing(), Framing::Fixed(3));
    /// # Ok(())
    /// # }
    /// ```
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Takes bytes from the start of `input` until a record (or an
    /// oversized line) is complete or `input` is used up; returns how many
    /// it took.
    ///
    /// Takes nothing while an event is waiting to be [`pull`](Self::pull)ed,
    /// so the caller pulls after every push and pushes the rest again.
    ///
    /// ```
    /// use camux::source::{Framed, Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut framer = RecordFramer::new(Framing::Fixed(2))?;
    /// assert_eq!(framer.push(b"abcde"), 2);
    /// assert_eq!(framer.push(b"cde"), 0); // "ab" not pulled yet
    /// assert_eq!(framer.pull(), Some(Framed::Record(b"ab")));
    /// assert_eq!(framer.push(b"cde"), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn push(&mut self, input: &[u8]) -> usize {
        if self.pending != Pending::None {
            return 0;
        }
        self.clear_stale();
        let mut taken = 0;
        while taken < input.len() && self.pending == Pending::None {
            let rest = &input[taken..];
            taken += match self.framing {
                Framing::Fixed(n) => self.push_fixed(rest, n),
                Framing::Lines { max_bytes } => match self.skipping {
                    Some(_) => self.skip(rest),
                    None => self.push_line(rest, max_bytes),
                },
            };
        }
        taken
    }

    /// The record (or oversized line) completed by the last
    /// [`push`](Self::push), once; `None` if there is none.
    ///
    /// ```
    /// use camux::source::{Framed, Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut framer = RecordFramer::new(Framing::Lines { max_bytes: 8 })?;
    /// framer.push(b"a\r\n");
    /// assert_eq!(framer.pull(), Some(Framed::Record(b"a")));
    /// assert_eq!(framer.pull(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pull(&mut self) -> Option<Framed<'_>> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => None,
            Pending::Record(len) => {
                self.stale = true;
                Some(Framed::Record(&self.buf[..len.min(self.buf.len())]))
            }
            Pending::Oversized(len) => Some(Framed::Oversized { len }),
            Pending::Truncated(len) => Some(Framed::Truncated { len }),
        }
    }

    /// Ends the input: returns an event still waiting to be pulled, if
    /// any, else what is left of a record cut short ([`Framed::Truncated`],
    /// or [`Framed::Oversized`] for an overlong line with no newline), and
    /// counts it; `None` when nothing is left. Call until `None`.
    ///
    /// The framer is then empty and may be fed a new stream.
    ///
    /// ```
    /// use camux::source::{Framed, Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut framer = RecordFramer::new(Framing::Fixed(4))?;
    /// framer.push(b"xyz");
    /// assert_eq!(framer.finish(), Some(Framed::Truncated { len: 3 }));
    /// assert_eq!(framer.finish(), None);
    /// assert_eq!(framer.stats().truncated, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn finish(&mut self) -> Option<Framed<'_>> {
        if self.pending != Pending::None {
            return self.pull();
        }
        self.clear_stale();
        if let Some(skipped) = self.skipping.take() {
            let len = skipped.saturating_sub(u64::from(self.skipped_cr));
            self.skipped_cr = false;
            self.count_oversized(len);
            self.pending = Pending::Oversized(len);
        } else if !self.buf.is_empty() {
            let len = self.buf.len();
            self.buf.clear();
            self.stats.truncated = self.stats.truncated.saturating_add(1);
            self.pending = Pending::Truncated(len);
        }
        self.pull()
    }

    /// Bytes held: of a record being framed, or of one framed and not yet
    /// pulled. At most the record size (for lines, plus one for a `\r`).
    ///
    /// ```
    /// use camux::source::{Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut framer = RecordFramer::new(Framing::Fixed(10))?;
    /// framer.push(b"abc");
    /// assert_eq!(framer.buffered(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn buffered(&self) -> usize {
        if self.stale {
            0
        } else {
            self.buf.len()
        }
    }

    /// The counts so far.
    ///
    /// ```
    /// use camux::source::{Framing, RecordFramer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut framer = RecordFramer::new(Framing::Lines { max_bytes: 8 })?;
    /// framer.push(b"\n");
    /// assert_eq!(framer.stats().empty, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    fn clear_stale(&mut self) {
        if self.stale {
            self.buf.clear();
            self.stale = false;
        }
    }

    fn push_fixed(&mut self, rest: &[u8], n: usize) -> usize {
        let take = n.saturating_sub(self.buf.len()).min(rest.len());
        self.buf.extend_from_slice(&rest[..take]);
        if self.buf.len() >= n {
            self.stats.records = self.stats.records.saturating_add(1);
            self.stats.record_bytes = self.stats.record_bytes.saturating_add(n as u64);
            self.pending = Pending::Record(n);
        }
        take
    }

    fn push_line(&mut self, rest: &[u8], max_bytes: usize) -> usize {
        let room = self.limit.saturating_sub(self.buf.len());
        // One byte past the room may be the newline that ends a full line.
        let window = &rest[..rest.len().min(room.saturating_add(1))];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..i]);
            self.end_line(max_bytes);
            return i + 1;
        }
        if rest.len() <= room {
            self.buf.extend_from_slice(rest);
            return rest.len();
        }
        // More than `limit` bytes and no newline: too long whatever
        // follows. Skip it from here, counting what was held.
        self.skipping = Some(self.buf.len() as u64);
        self.skipped_cr = false;
        self.buf.clear();
        self.skip(rest)
    }

    /// A line's bytes are in `buf` (its newline seen): frame it.
    fn end_line(&mut self, max_bytes: usize) {
        let len = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
        if len == 0 {
            self.stats.empty = self.stats.empty.saturating_add(1);
            self.buf.clear();
        } else if len > max_bytes {
            self.buf.clear();
            self.count_oversized(len as u64);
            self.pending = Pending::Oversized(len as u64);
        } else {
            self.stats.records = self.stats.records.saturating_add(1);
            self.stats.record_bytes = self.stats.record_bytes.saturating_add(len as u64);
            self.pending = Pending::Record(len);
        }
    }

    /// Skips an oversized line up to and including its newline.
    fn skip(&mut self, rest: &[u8]) -> usize {
        let skipped = self.skipping.unwrap_or(0);
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let cr = if i > 0 {
                    rest[i - 1] == b'\r'
                } else {
                    self.skipped_cr
                };
                let len = skipped.saturating_add(i as u64) - u64::from(cr);
                self.skipping = None;
                self.skipped_cr = false;
                self.count_oversized(len);
                self.pending = Pending::Oversized(len);
                i + 1
            }
            None => {
                self.skipping = Some(skipped.saturating_add(rest.len() as u64));
                if let Some(&last) = rest.last() {
                    self.skipped_cr = last == b'\r';
                }
                rest.len()
            }
        }
    }

    fn count_oversized(&mut self, len: u64) {
        self.stats.oversized = self.stats.oversized.saturating_add(1);
        self.stats.oversized_bytes = self.stats.oversized_bytes.saturating_add(len);
    }
}

/// Why a content type is refused.
///
/// ```
/// use camux::source::sensor::{validate_content_type, ContentTypeError};
/// assert_eq!(validate_content_type(""), Err(ContentTypeError::Empty));
/// assert_eq!(
///     validate_content_type("text/csv; charset=utf-8"),
///     Err(ContentTypeError::BadByte { index: 9, byte: b' ' })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentTypeError {
    /// The content type is empty.
    #[error(
        "the content type is empty: expected 1..=63 bytes of printable ASCII without spaces, \
         such as application/x-imu+csv"
    )]
    Empty,
    /// The content type is longer than [`MAX_CONTENT_TYPE_BYTES`].
    #[error(
        "the content type is {len} bytes long: expected 1..=63 bytes of printable ASCII \
         without spaces, such as application/x-imu+csv"
    )]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A byte that is not printable ASCII, or a space.
    #[error(
        "the content type has {} at byte {index}: expected 1..=63 bytes of printable ASCII \
         without spaces, such as application/x-imu+csv",
        describe_byte(*byte)
    )]
    BadByte {
        /// Where.
        index: usize,
        /// The byte.
        byte: u8,
    },
}

fn describe_byte(byte: u8) -> String {
    match byte {
        b' ' => "a space".to_owned(),
        _ => format!("byte {byte:#04x}"),
    }
}

/// Checks a content type: 1 to [`MAX_CONTENT_TYPE_BYTES`] bytes of
/// printable ASCII, no spaces (`application/x-imu+csv`,
/// `application/octet-stream`).
///
/// # Errors
/// [`ContentTypeError`] says what is wrong.
///
/// ```
/// use camux::source::sensor::validate_content_type;
/// assert!(validate_content_type("application/x-imu+csv").is_ok());
/// assert!(validate_content_type(&"a".repeat(64)).is_err());
/// assert!(validate_content_type("caf\u{e9}").is_err());
/// ```
pub fn validate_content_type(content_type: &str) -> Result<(), ContentTypeError> {
    let bytes = content_type.as_bytes();
    if bytes.is_empty() {
        return Err(ContentTypeError::Empty);
    }
    if bytes.len() > MAX_CONTENT_TYPE_BYTES {
        return Err(ContentTypeError::TooLong { len: bytes.len() });
    }
    match bytes.iter().position(|b| !b.is_ascii_graphic()) {
        Some(index) => Err(ContentTypeError::BadByte {
            index,
            byte: bytes[index],
        }),
        None => Ok(()),
    }
}

/// What a [`SensorSource`] reads, and how.
///
/// ```
/// use camux::source::{Framing, SensorConfig};
/// let config = SensorConfig::new("/dev/ttyUSB0", Framing::Lines { max_bytes: 128 }, "text/x-nmea");
/// assert_eq!(config.content_type, "text/x-nmea");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorConfig {
    /// The device, FIFO or file to read; `-` for stdin.
    pub path: PathBuf,
    /// How its bytes split into records.
    pub framing: Framing,
    /// What the records hold, MIME-like (`application/x-imu+csv`): 1 to
    /// [`MAX_CONTENT_TYPE_BYTES`] bytes of printable ASCII, no spaces.
    /// Carried for the ring header; not interpreted.
    pub content_type: String,
}

impl SensorConfig {
    /// A config from its parts.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig};
    /// let config = SensorConfig::new("-", Framing::Fixed(24), "application/x-input-event");
    /// assert_eq!(config.path.to_str(), Some("-"));
    /// ```
    pub fn new(
        path: impl Into<PathBuf>,
        framing: Framing,
        content_type: impl Into<String>,
    ) -> SensorConfig {
        SensorConfig {
            path: path.into(),
            framing,
            content_type: content_type.into(),
        }
    }
}

/// One record that [`SensorSource::next_record`] read.
///
/// The times are those of the read that brought the record's last byte
/// (right after it returned), so records that came in one read share them.
///
/// ```
/// use camux::source::{Framing, SensorConfig, SensorSource};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("r");
/// std::fs::write(&path, b"abcdef")?;
/// let mut source = SensorSource::open(&SensorConfig::new(&path, Framing::Fixed(3), "application/octet-stream"))?;
/// let mut buf = [0; 3];
/// let a = source.next_record(&mut buf)?.unwrap();
/// let b = source.next_record(&mut buf)?.unwrap();
/// assert_eq!((a.seq, a.len, b.seq), (0, 3, 1));
/// assert!(a.mono_ns > 0 && a.real_ns > 0);
/// assert_eq!(a.mono_ns, b.mono_ns); // one read brought both
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// Bytes written to the start of the buffer.
    pub len: usize,
    /// Records handed out before this one.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds when the record's last byte was read.
    pub mono_ns: u64,
    /// CLOCK_REALTIME nanoseconds when the record's last byte was read.
    pub real_ns: u64,
}

/// Counts kept by a [`SensorSource`].
///
/// ```
/// use camux::source::{Framing, SensorConfig, SensorSource};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("r");
/// std::fs::write(&path, b"a\nbb\n")?;
/// let mut source = SensorSource::open(&SensorConfig::new(&path, Framing::Lines { max_bytes: 1 }, "text/plain"))?;
/// while source.next_record(&mut [0; 1])?.is_some() {}
/// let stats = source.stats();
/// assert_eq!((stats.bytes_read, stats.framer.records, stats.framer.oversized), (5, 1, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SensorStats {
    /// Bytes read from the input.
    pub bytes_read: u64,
    /// Reads that returned bytes.
    pub reads: u64,
    /// What the framer made of them.
    pub framer: FramerStats,
}

/// Where the bytes come from.
#[derive(Debug)]
enum Input {
    Stdin(io::Stdin),
    File(File),
}

impl Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Stdin(stdin) => stdin.read(buf),
            Input::File(file) => file.read(buf),
        }
    }
}

/// A source of records read from a device, FIFO, file or stdin (see the
/// [module docs](self)).
///
/// Reads block: a device or FIFO with nothing to say blocks
/// [`next_record`](Self::next_record) until it says something or closes.
/// Opening a FIFO blocks until a writer opens it too.
///
/// ```
/// use camux::format::FourCc;
/// use camux::source::{Framing, SensorConfig, SensorSource};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // /dev/zero: a character device that never ends.
/// let config = SensorConfig::new("/dev/zero", Framing::Fixed(16), "application/octet-stream");
/// let mut source = SensorSource::open(&config)?;
/// assert_eq!(source.layout().fourcc, FourCc::RAW);
/// assert_eq!((source.layout().width, source.layout().height), (16, 1));
/// let mut record = [1; 16];
/// assert_eq!(source.next_record(&mut record)?.map(|r| r.len), Some(16));
/// assert_eq!(record, [0; 16]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SensorSource {
    path: PathBuf,
    content_type: String,
    input: Input,
    framer: RecordFramer,
    layout: FrameLayout,
    chunk: Box<[u8]>,
    /// `chunk[pos..end]` is read and not yet framed.
    pos: usize,
    end: usize,
    /// A read returned no bytes.
    eof: bool,
    /// When the last read returned.
    read_mono_ns: u64,
    read_real_ns: u64,
    records: u64,
    bytes_read: u64,
    reads: u64,
}

impl SensorSource {
    /// Checks `config` and opens its input (stdin for `-`), read-only and,
    /// for a terminal, without making it the controlling terminal.
    ///
    /// A serial port is read as it is set up: set its speed and raw mode
    /// beforehand (`stty -F /dev/ttyUSB0 115200 raw`).
    ///
    /// # Errors
    /// [`SensorError::ContentType`] or [`SensorError::Framing`] for a bad
    /// config, [`SensorError::Open`] if the input cannot be opened.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorError, SensorSource};
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "imu data");
    /// let err = SensorSource::open(&config).unwrap_err();
    /// assert!(matches!(err, SensorError::ContentType(_)));
    /// assert!(err.to_string().contains("a space at byte 3"), "{err}");
    /// ```
    pub fn open(config: &SensorConfig) -> Result<SensorSource, SensorError> {
        validate_content_type(&config.content_type)?;
        let framer = RecordFramer::new(config.framing)?;
        let max = config.framing.max_record_bytes();
        // max is at most MAX_DIMENSION, so both conversions hold.
        let layout = FrameLayout::opaque(FourCc::RAW, max as u32, 1, max as u64)?;
        let input = if config.path.as_os_str() == "-" {
            Input::Stdin(io::stdin())
        } else {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&config.path)
                .map_err(|source| SensorError::Open {
                    path: config.path.clone(),
                    source,
                })?;
            Input::File(file)
        };
        Ok(SensorSource {
            path: config.path.clone(),
            content_type: config.content_type.clone(),
            input,
            framer,
            layout,
            chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            read_mono_ns: 0,
            read_real_ns: 0,
            records: 0,
            bytes_read: 0,
            reads: 0,
        })
    }

    /// Reads until a whole record is framed and writes it to the start of
    /// `buf`; `None` at the end of the stream, and on every call after.
    ///
    /// Oversized lines, empty lines and a record cut short at the end are
    /// skipped here and counted in [`stats`](Self::stats).
    ///
    /// # Errors
    /// [`SensorError::Buffer`] if `buf` is shorter than
    /// [`max_record_bytes`](Self::max_record_bytes) (nothing is read then),
    /// [`SensorError::Read`] if a read fails (an interrupted read is
    /// retried); the source may be read again after either.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "application/octet-stream");
    /// let mut source = SensorSource::open(&config)?;
    /// assert!(source.next_record(&mut [0; 4]).is_err());
    /// assert_eq!(source.next_record(&mut [0; 8])?, None);
    /// assert!(source.is_at_end());
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_record(&mut self, buf: &mut [u8]) -> Result<Option<Record>, SensorError> {
        let need = self.max_record_bytes();
        if buf.len() < need {
            return Err(BufferTooSmall {
                need,
                have: buf.len(),
            }
            .into());
        }
        loop {
            if let Some(event) = self.framer.pull() {
                if let Framed::Record(record) = event {
                    let len = record.len();
                    buf[..len].copy_from_slice(record);
                    return Ok(Some(self.record(len)));
                }
                continue;
            }
            if self.pos < self.end {
                self.pos += self.framer.push(&self.chunk[self.pos..self.end]);
                continue;
            }
            if self.eof {
                match self.framer.finish() {
                    Some(Framed::Record(record)) => {
                        let len = record.len();
                        buf[..len].copy_from_slice(record);
                        return Ok(Some(self.record(len)));
                    }
                    Some(_) => continue,
                    None => return Ok(None),
                }
            }
            match self.input.read(&mut self.chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.read_mono_ns = clock_ns(ClockId::CLOCK_MONOTONIC);
                    self.read_real_ns = clock_ns(ClockId::CLOCK_REALTIME);
                    (self.pos, self.end) = (0, n.min(self.chunk.len()));
                    self.bytes_read = self.bytes_read.saturating_add(n as u64);
                    self.reads += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SensorError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// The [`Record`] for the next record handed out, of `len` bytes.
    fn record(&mut self, len: usize) -> Record {
        let record = Record {
            len,
            seq: self.records,
            mono_ns: self.read_mono_ns,
            real_ns: self.read_real_ns,
        };
        self.records += 1;
        record
    }

    /// The input's path (`-` for stdin).
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "application/octet-stream");
    /// assert_eq!(SensorSource::open(&config)?.path().to_str(), Some("/dev/null"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The framing.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "application/octet-stream");
    /// assert_eq!(SensorSource::open(&config)?.framing(), Framing::Fixed(8));
    /// # Ok(())
    /// # }
    /// ```
    pub fn framing(&self) -> Framing {
        self.framer.framing()
    }

    /// The content type, as configured (and validated).
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "application/x-can");
    /// assert_eq!(SensorSource::open(&config)?.content_type(), "application/x-can");
    /// # Ok(())
    /// # }
    /// ```
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The largest record, in bytes: the buffer size
    /// [`next_record`](Self::next_record) needs, and the width of
    /// [`layout`](Self::layout).
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Lines { max_bytes: 100 }, "text/csv");
    /// assert_eq!(SensorSource::open(&config)?.max_record_bytes(), 100);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_record_bytes(&self) -> usize {
        self.framing().max_record_bytes()
    }

    /// The layout of the stream: [`FourCc::RAW`], width
    /// [`max_record_bytes`](Self::max_record_bytes), height 1, one opaque
    /// plane of up to that many bytes. The ring's
    /// `StreamFormat::opaque(max_record_bytes)` describes the same stream.
    ///
    /// ```
    /// use camux::format::FourCc;
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(48), "application/x-imu");
    /// let layout = *SensorSource::open(&config)?.layout();
    /// assert_eq!((layout.fourcc, layout.width, layout.height, layout.frame_bytes), (FourCc::RAW, 48, 1, 48));
    /// # Ok(())
    /// # }
    /// ```
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// True once the end of the stream was reached.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/null", Framing::Fixed(8), "application/octet-stream");
    /// let mut source = SensorSource::open(&config)?;
    /// assert!(!source.is_at_end());
    /// source.next_record(&mut [0; 8])?;
    /// assert!(source.is_at_end());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_at_end(&self) -> bool {
        self.eof && self.pos >= self.end && self.framer.buffered() == 0
    }

    /// The counts so far.
    ///
    /// ```
    /// use camux::source::{Framing, SensorConfig, SensorSource};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SensorConfig::new("/dev/zero", Framing::Fixed(10), "application/octet-stream");
    /// let mut source = SensorSource::open(&config)?;
    /// source.next_record(&mut [0; 10])?;
    /// assert_eq!(source.stats().framer.records, 1);
    /// assert!(source.stats().bytes_read >= 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> SensorStats {
        SensorStats {
            bytes_read: self.bytes_read,
            reads: self.reads,
            framer: self.framer.stats(),
        }
    }
}

/// A clock in nanoseconds; 0 if it cannot be read (never, on Linux).
fn clock_ns(id: ClockId) -> u64 {
    clock_gettime(id)
        .map(|t| (t.tv_sec() as u64).wrapping_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// `path` as error messages show it.
fn shown_path(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Why a sensor cannot be read.
///
/// ```
/// use camux::source::{Framing, SensorConfig, SensorError, SensorSource};
/// let config = SensorConfig::new("/nonexistent/tty", Framing::Fixed(8), "application/octet-stream");
/// let err = SensorSource::open(&config).unwrap_err();
/// assert!(matches!(err, SensorError::Open { .. }));
/// assert!(err.to_string().starts_with("cannot open /nonexistent/tty: "), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SensorError {
    /// The content type is not valid.
    #[error(transparent)]
    ContentType(#[from] ContentTypeError),
    /// The framing is not valid.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The record size has no layout (cannot happen with a valid framing).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The input cannot be opened.
    #[error("cannot open {}: {source}", shown_path(path))]
    Open {
        /// The path (`-` for stdin).
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A read failed.
    #[error("cannot read {}: {source}", shown_path(path))]
    Read {
        /// The path (`-` for stdin).
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The caller's buffer is smaller than the largest record.
    #[error(transparent)]
    Buffer(#[from] BufferTooSmall),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// An event, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Record(Vec<u8>),
        Oversized(u64),
        Truncated(usize),
    }

    impl From<Framed<'_>> for Event {
        fn from(framed: Framed<'_>) -> Event {
            match framed {
                Framed::Record(r) => Event::Record(r.to_vec()),
                Framed::Oversized { len } => Event::Oversized(len),
                Framed::Truncated { len } => Event::Truncated(len),
            }
        }
    }

    /// Feeds `chunks` one by one, pulling after every push, then finishes;
    /// checks the memory bound all along.
    fn frame(framing: Framing, chunks: &[&[u8]]) -> (Vec<Event>, FramerStats) {
        let mut framer = RecordFramer::new(framing).unwrap();
        let capacity = framer.buf.capacity();
        let mut events = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let taken = framer.push(input);
                assert!(taken <= input.len());
                input = &input[taken..];
                assert!(framer.buf.len() <= framer.limit);
                assert_eq!(framer.buf.capacity(), capacity, "no reallocation");
                let mut pulled = false;
                while let Some(event) = framer.pull() {
                    events.push(event.into());
                    pulled = true;
                }
                assert!(pulled || input.is_empty(), "push stops only at an event");
            }
        }
        while let Some(event) = framer.finish() {
            events.push(event.into());
        }
        assert_eq!(framer.buffered(), 0);
        (events, framer.stats())
    }

    fn record(bytes: &[u8]) -> Event {
        Event::Record(bytes.to_vec())
    }

    /// What the framing should give, computed the obvious way.
    fn model(framing: Framing, input: &[u8]) -> Vec<Event> {
        match framing {
            Framing::Fixed(n) => {
                let chunks = input.chunks_exact(n);
                let rest = chunks.remainder().len();
                let mut events: Vec<Event> = chunks.map(record).collect();
                if rest > 0 {
                    events.push(Event::Truncated(rest));
                }
                events
            }
            Framing::Lines { max_bytes } => {
                let strip = |line: &[u8]| line.len() - usize::from(line.last() == Some(&b'\r'));
                let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
                let last = lines.pop().unwrap_or(&[]);
                let mut events = Vec::new();
                for line in lines {
                    let len = strip(line);
                    if len == 0 {
                        continue;
                    }
                    events.push(if len > max_bytes {
                        Event::Oversized(len as u64)
                    } else {
                        record(&line[..len])
                    });
                }
                if last.len() > max_bytes + 1 {
                    events.push(Event::Oversized(strip(last) as u64));
                } else if !last.is_empty() {
                    events.push(Event::Truncated(last.len()));
                }
                events
            }
        }
    }

    #[test]
    fn fixed_records() {
        let (events, stats) = frame(Framing::Fixed(3), &[b"abcd", b"ef", b"ghi", b"j"]);
        assert_eq!(
            events,
            [
                record(b"abc"),
                record(b"def"),
                record(b"ghi"),
                Event::Truncated(1)
            ]
        );
        assert_eq!(
            stats,
            FramerStats {
                records: 3,
                record_bytes: 9,
                truncated: 1,
                ..FramerStats::default()
            }
        );
        // Newlines mean nothing to fixed framing.
        let (events, _) = frame(Framing::Fixed(2), &[b"\n\n\r\n"]);
        assert_eq!(events, [record(b"\n\n"), record(b"\r\n")]);
        let (events, stats) = frame(Framing::Fixed(1), &[]);
        assert!(events.is_empty());
        assert_eq!(stats, FramerStats::default());
    }

    #[test]
    fn lines_strip_newlines_and_skip_empty_ones() {
        let (events, stats) = frame(
            Framing::Lines { max_bytes: 8 },
            &[b"a,1\r\nb,2\n\n\r\n", b"c,3\r", b"\n\rd\n"],
        );
        assert_eq!(
            events,
            [
                record(b"a,1"),
                record(b"b,2"),
                record(b"c,3"),
                record(b"\rd")
            ]
        );
        assert_eq!((stats.records, stats.empty, stats.record_bytes), (4, 2, 11));
        // Only one \r is stripped, and only before the \n.
        let (events, _) = frame(Framing::Lines { max_bytes: 8 }, &[b"x\r\r\n"]);
        assert_eq!(events, [record(b"x\r")]);
    }

    #[test]
    fn lines_at_the_limit() {
        let framing = Framing::Lines { max_bytes: 4 };
        let (events, _) = frame(
            framing,
            &[b"abcd\n", b"abcd\r\n", b"abcde\n", b"abcd\r", b"\n"],
        );
        assert_eq!(
            events,
            [
                record(b"abcd"),
                record(b"abcd"),
                Event::Oversized(5),
                record(b"abcd")
            ]
        );
        // abcd then \r then something other than \n: oversized.
        let (events, _) = frame(framing, &[b"abcd\rx\n"]);
        assert_eq!(events, [Event::Oversized(6)]);
    }

    #[test]
    fn oversized_lines_are_skipped_whole() {
        let framing = Framing::Lines { max_bytes: 4 };
        let long = [b'x'; 1000];
        let (events, stats) = frame(
            framing,
            &[
                b"ok\n",
                &long,
                &long,
                b"\r",
                b"\nok2\n",
                &long,
                b"\r\nlast\n",
            ],
        );
        assert_eq!(
            events,
            [
                record(b"ok"),
                Event::Oversized(2000),
                record(b"ok2"),
                Event::Oversized(1000),
                record(b"last")
            ]
        );
        assert_eq!((stats.oversized, stats.oversized_bytes), (2, 3000));
        // One byte at a time, the same.
        let input: Vec<u8> = [&b"ok\n"[..], &long, b"\r\nz\n"].concat();
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (events, _) = frame(framing, &bytes);
        assert_eq!(
            events,
            [record(b"ok"), Event::Oversized(1000), record(b"z")]
        );
        // An overlong last line without a newline.
        let (events, stats) = frame(framing, &[b"ok\n", &long]);
        assert_eq!(events, [record(b"ok"), Event::Oversized(1000)]);
        assert_eq!((stats.oversized, stats.truncated), (1, 0));
    }

    #[test]
    fn unterminated_last_line_is_truncated() {
        let (events, stats) = frame(Framing::Lines { max_bytes: 8 }, &[b"a\nb", b"c"]);
        assert_eq!(events, [record(b"a"), Event::Truncated(2)]);
        assert_eq!(stats.truncated, 1);
    }

    #[test]
    fn pending_events_block_pushes() {
        let mut framer = RecordFramer::new(Framing::Lines { max_bytes: 8 }).unwrap();
        assert_eq!(framer.push(b"a\nb\n"), 2);
        assert_eq!(framer.buffered(), 1);
        assert_eq!(framer.push(b"b\n"), 0);
        // finish hands out the pending record first.
        assert_eq!(framer.finish(), Some(Framed::Record(b"a")));
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.push(b"b\n"), 2);
        assert_eq!(framer.pull(), Some(Framed::Record(b"b")));
        assert_eq!(framer.pull(), None);
        assert_eq!(framer.finish(), None);
        // Usable again after finishing.
        assert_eq!(framer.push(b"c"), 1);
        assert_eq!(framer.finish(), Some(Framed::Truncated { len: 1 }));
        assert_eq!(framer.push(b"d\n"), 2);
        assert_eq!(framer.pull(), Some(Framed::Record(b"d")));
    }

    #[test]
    fn framing_validation_and_text() {
        for bad in [
            Framing::Fixed(0),
            Framing::Fixed(MAX_RECORD_BYTES + 1),
            Framing::Lines { max_bytes: 0 },
            Framing::Lines {
                max_bytes: usize::MAX,
            },
        ] {
            assert_eq!(
                RecordFramer::new(bad).unwrap_err(),
                FramingError::Size {
                    framing: bad,
                    max: MAX_RECORD_BYTES
                }
            );
        }
        assert!(RecordFramer::new(Framing::Fixed(MAX_RECORD_BYTES)).is_ok());
        for text in ["fixed:1", "lines:16384", "fixed:24"] {
            assert_eq!(text.parse::<Framing>().unwrap().to_string(), text);
        }
        for text in [
            "",
            "fixed",
            "fixed:",
            "fixed:-1",
            "fixed:+3",
            "lines:x",
            "line:5",
            "fixed:99999999999999999999999",
        ] {
            let err = text.parse::<Framing>().unwrap_err();
            assert!(matches!(err, FramingError::Parse { .. }), "{text}: {err}");
            assert!(err.to_string().contains("fixed:24 or lines:256"), "{err}");
        }
        assert!(matches!(
            "lines:16385".parse::<Framing>(),
            Err(FramingError::Size { .. })
        ));
    }

    #[test]
    fn content_types() {
        for good in [
            "application/x-imu+csv",
            "a",
            &"x".repeat(63),
            "text/x-nmea;v=4.1",
        ] {
            assert_eq!(validate_content_type(good), Ok(()), "{good}");
        }
        let cases = [
            ("", ContentTypeError::Empty),
            (&*"x".repeat(64), ContentTypeError::TooLong { len: 64 }),
            (
                "a b",
                ContentTypeError::BadByte {
                    index: 1,
                    byte: b' ',
                },
            ),
            (
                "a\tb",
                ContentTypeError::BadByte {
                    index: 1,
                    byte: b'\t',
                },
            ),
            (
                "ab\n",
                ContentTypeError::BadByte {
                    index: 2,
                    byte: b'\n',
                },
            ),
            (
                "\u{7f}",
                ContentTypeError::BadByte {
                    index: 0,
                    byte: 0x7f,
                },
            ),
            (
                "\u{e9}",
                ContentTypeError::BadByte {
                    index: 0,
                    byte: 0xc3,
                },
            ),
        ];
        for (text, expected) in cases {
            let err = validate_content_type(text).unwrap_err();
            assert_eq!(err, expected, "{text:?}");
            assert!(
                err.to_string().contains("1..=63 bytes of printable ASCII"),
                "{err}"
            );
        }
        assert!(ContentTypeError::BadByte { index: 2, byte: 9 }
            .to_string()
            .contains("byte 0x09 at byte 2"));
        let config = SensorConfig::new("/dev/null", Framing::Fixed(1), "");
        assert!(matches!(
            SensorSource::open(&config),
            Err(SensorError::ContentType(ContentTypeError::Empty))
        ));
        let config = SensorConfig::new("/dev/null", Framing::Fixed(0), "a/b");
        assert!(matches!(
            SensorSource::open(&config),
            Err(SensorError::Framing(FramingError::Size { .. }))
        ));
    }

    /// Reads every record of `source`.
    fn read_all(source: &mut SensorSource) -> Vec<Vec<u8>> {
        let mut buf = vec![0; source.max_record_bytes()];
        let mut records = Vec::new();
        while let Some(r) = source.next_record(&mut buf).unwrap() {
            assert_eq!(r.seq, records.len() as u64);
            records.push(buf[..r.len].to_vec());
        }
        records
    }

    #[test]
    fn regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.bin");
        // More than a read chunk, so records straddle reads.
        let input: Vec<u8> = (0..READ_CHUNK_BYTES * 2 + 10)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &input).unwrap();
        let config = SensorConfig::new(&path, Framing::Fixed(7), "application/octet-stream");
        let mut source = SensorSource::open(&config).unwrap();
        let records = read_all(&mut source);
        assert_eq!(records.len(), input.len() / 7);
        assert_eq!(records.concat(), input[..input.len() / 7 * 7]);
        let stats = source.stats();
        assert_eq!(stats.bytes_read, input.len() as u64);
        assert!(stats.reads >= 3);
        assert_eq!(
            stats.framer.truncated,
            u64::from(!input.len().is_multiple_of(7))
        );
        assert!(source.is_at_end());
        // The end is sticky.
        assert_eq!(source.next_record(&mut [0; 7]).unwrap(), None);

        let lines = dir.path().join("lines.csv");
        std::fs::write(&lines, "t,x\r\n1,2\r\n\r\n3,4\n").unwrap();
        let config = SensorConfig::new(&lines, Framing::Lines { max_bytes: 3 }, "text/csv");
        let mut source = SensorSource::open(&config).unwrap();
        assert_eq!(read_all(&mut source), [b"t,x", b"1,2", b"3,4"]);
        assert_eq!(source.stats().framer.empty, 1);
    }

    #[test]
    fn small_buffers_and_missing_files() {
        let config = SensorConfig::new("/dev/zero", Framing::Lines { max_bytes: 32 }, "a/b");
        let mut source = SensorSource::open(&config).unwrap();
        assert!(matches!(
            source.next_record(&mut [0; 31]),
            Err(SensorError::Buffer(BufferTooSmall { need: 32, have: 31 }))
        ));
        assert_eq!(source.stats().bytes_read, 0);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err =
            SensorSource::open(&SensorConfig::new(&missing, Framing::Fixed(1), "a/b")).unwrap_err();
        assert!(matches!(&err, SensorError::Open { path, .. } if *path == missing));
        assert!(err.to_string().contains("nope"), "{err}");
        // A directory opens, but cannot be read.
        let mut source =
            SensorSource::open(&SensorConfig::new(dir.path(), Framing::Fixed(1), "a/b")).unwrap();
        assert!(matches!(
            source.next_record(&mut [0; 1]),
            Err(SensorError::Read { .. })
        ));
        assert!(SensorError::Read {
            path: "-".into(),
            source: io::Error::other("x")
        }
        .to_string()
        .contains("standard input"));
    }

    #[test]
    fn char_devices() {
        let config =
            SensorConfig::new("/dev/zero", Framing::Fixed(100), "application/octet-stream");
        let mut source = SensorSource::open(&config).unwrap();
        let mut buf = [1; 100];
        let mut last = 0;
        for seq in 0..500 {
            let r = source.next_record(&mut buf).unwrap().unwrap();
            assert_eq!((r.seq, r.len), (seq, 100));
            assert!(r.mono_ns >= last);
            last = r.mono_ns;
        }
        assert_eq!(buf, [0; 100]);
        let config = SensorConfig::new("/dev/null", Framing::Lines { max_bytes: 10 }, "text/plain");
        let mut source = SensorSource::open(&config).unwrap();
        assert!(read_all(&mut source).is_empty());
    }

    #[test]
    fn fifo_fed_by_a_writer_thread() {
        use nix::sys::stat::Mode;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sensor.fifo");
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            // Blocks until the reader opens the FIFO.
            let mut fifo = OpenOptions::new().write(true).open(writer_path).unwrap();
            for i in 0..50 {
                // Lines split across writes, and a pause now and then so
                // the reader blocks on an empty FIFO.
                fifo.write_all(format!("imu,{i},").as_bytes()).unwrap();
                fifo.flush().unwrap();
                if i % 10 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                fifo.write_all(format!("{}\r\n", i * i).as_bytes()).unwrap();
            }
            fifo.write_all(b"cut").unwrap();
            // Dropping the last writer ends the stream.
        });
        let config = SensorConfig::new(
            &path,
            Framing::Lines { max_bytes: 32 },
            "application/x-imu+csv",
        );
        let mut source = SensorSource::open(&config).unwrap();
        let records = read_all(&mut source);
        writer.join().unwrap();
        let expected: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("imu,{i},{}", i * i).into_bytes())
            .collect();
        assert_eq!(records, expected);
        assert_eq!(source.stats().framer.truncated, 1);
        assert!(source.is_at_end());
    }

    /// Not a test by itself: run by `stdin_is_read_to_its_end` as a child
    /// process with its stdin piped, it reports what it read.
    #[test]
    fn stdin_child() {
        if std::env::var_os("CAMUX_SENSOR_STDIN_CHILD").is_none() {
            return;
        }
        let config = SensorConfig::new("-", Framing::Lines { max_bytes: 16 }, "text/plain");
        let mut source = SensorSource::open(&config).unwrap();
        for record in read_all(&mut source) {
            println!("RECORD {}", String::from_utf8(record).unwrap());
        }
        let stats = source.stats().framer;
        println!("END {} {}", stats.oversized, stats.truncated);
    }

    #[test]
    fn stdin_is_read_to_its_end() {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "source::sensor::tests::stdin_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CAMUX_SENSOR_STDIN_CHILD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"one\r\ntwo\n\nthis line is far too long\nthree\nfou")
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        // The first line printed follows libtest's "test ... " on its line.
        let reported: Vec<&str> = stdout
            .lines()
            .filter_map(|l| {
                let at = l.find("RECORD ").or_else(|| l.find("END "))?;
                Some(&l[at..])
            })
            .collect();
        assert_eq!(
            reported,
            ["RECORD one", "RECORD two", "RECORD three", "END 1 1"],
            "{stdout}"
        );
    }

    fn arb_framing() -> impl Strategy<Value = Framing> {
        prop_oneof![
            (1usize..=9).prop_map(Framing::Fixed),
            (1usize..=9).prop_map(|max_bytes| Framing::Lines { max_bytes }),
        ]
    }

    /// Bytes rich in newlines and carriage returns.
    fn arb_input() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                3 => Just(b'\n'),
                2 => Just(b'\r'),
                6 => b'a'..=b'e',
                1 => any::<u8>(),
            ],
            0..120,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_split_gives_the_same_records(
            framing in arb_framing(),
            input in arb_input(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        ) {
            let (whole, whole_stats) = frame(framing, &[&input]);
            prop_assert_eq!(&whole, &model(framing, &input));
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&input[start..cut]);
                start = cut;
            }
            chunks.push(&input[start..]);
            let (split, split_stats) = frame(framing, &chunks);
            prop_assert_eq!(split, whole);
            prop_assert_eq!(split_stats, whole_stats);
        }

        #[test]
        fn any_bytes_are_framed_within_bounds(
            framing in arb_framing(),
            input in proptest::collection::vec(any::<u8>(), 0..300),
            chunk in 1usize..40,
        ) {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            let (events, stats) = frame(framing, &chunks);
            let max = framing.max_record_bytes();
            let mut records = 0;
            for event in &events {
                if let Event::Record(r) = event {
                    prop_assert!(!r.is_empty() && r.len() <= max);
                    records += 1;
                }
            }
            prop_assert_eq!(stats.records, records);
            prop_assert_eq!(events, model(framing, &input));
        }
    }
}
