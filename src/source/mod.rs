//! Where frames come from; knows nothing of the ring.
//!
//! A source fills a caller's buffer with one frame at a time. The daemon
//! wires a source to a publisher, which owns the ring; nothing here depends
//! on either, so sources are tested on plain byte buffers.
//!
//! - [`synthetic`]: a deterministic moving test pattern, every frame
//!   [`stamp`]ed with its sequence and a checksum, so any reader anywhere can
//!   check that it got whole, untorn frames.
//! - [`file`](mod@file): replay of a recorded file ([`y4m`] or raw frames
//!   back to back), optionally looping, for development without a camera.
//! - [`sensor`]: records from a character device, FIFO, file or stdin,
//!   fixed-size or newline-delimited, each record one frame.
//! - [`y4m`]: the YUV4MPEG2 format, read by [`file`](mod@file) and written
//!   by [`Y4mWriter`] (for recordings).
//! - [`Pacer`]: paces a source that has no clock of its own (a camera has
//!   one; a test pattern or a file replay does not).
//!
//! ```
//! use camux::source::{stamp, Pacer, Synthetic, SyntheticConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = Synthetic::new(SyntheticConfig { width: 320, height: 240, ..Default::default() })?;
//! let mut pacer = Pacer::unpaced();
//! let mut frame = vec![0; source.frame_bytes()];
//! for seq in 0..3 {
//!     pacer.wait();
//!     source.render(seq, &mut frame)?;
//!     assert_eq!(stamp::verify(&frame)?.seq, seq);
//! }
//! # Ok(())
//! # }
//! ```

pub mod file;
mod pacer;
pub mod sensor;
pub mod stamp;
pub mod synthetic;
#[cfg(all(feature = "v4l2", not(loom)))]
pub mod v4l2;
pub mod y4m;

pub use file::{FileConfig, FileError, FileKind, FileSource, FrameRead, RawFormat, DEFAULT_FPS};
pub use pacer::{Pacer, PacerError};
pub use sensor::{
    ContentTypeError, Framed, FramerStats, Framing, FramingError, Record, RecordFramer,
    SensorConfig, SensorError, SensorSource, SensorStats,
};
pub use synthetic::{Synthetic, SyntheticConfig, SyntheticError};
pub use y4m::{Colourspace, Y4mError, Y4mHeader, Y4mReader, Y4mWriter};

/// A buffer too small for the frame a source was asked to write into it.
///
/// ```
/// use camux::source::{BufferTooSmall, Synthetic, SyntheticConfig};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Synthetic::new(SyntheticConfig::default())?;
/// let err = source.render(0, &mut [0; 16]).unwrap_err();
/// assert_eq!(err, BufferTooSmall { need: source.frame_bytes(), have: 16 });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {have} bytes is too small for a frame of {need} bytes")]
pub struct BufferTooSmall {
    /// Bytes the frame needs.
    pub need: usize,
    /// Bytes the buffer has.
    pub have: usize,
}
