//! The shared-memory ring: file format, producer, reader protocol, handshake.
//!
//! This layer knows nothing of V4L2 or Kubernetes. One [`Publisher`] per
//! stream writes frames into `<dir>/<stream>.ring`; readers (see
//! [`crate::Subscriber`]) map that file read-only and register over
//! `<dir>/<stream>.sock` for a small writable lease page of their own.
//! `docs/FORMAT.md` describes the bytes and the synchronisation protocol
//! (`src/ring/protocol.rs`).

#[cfg(not(loom))]
mod clock;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
pub mod inspect;
pub mod layout;
#[cfg(not(loom))]
pub(crate) mod mem;
pub(crate) mod protocol;
#[cfg(not(loom))]
mod publisher;
#[cfg(not(loom))]
pub mod socket;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
pub use clock::{mono_ns, real_ns};
pub use layout::{Geometry, Header, Layout, LayoutError, StreamFormat};
#[cfg(not(loom))]
pub use mem::{STATE_INIT, STATE_LIVE, STATE_STOPPED, STATE_SUPERSEDED};
#[cfg(not(loom))]
pub use publisher::{
    CopyStores, CreateError, FrameInfo, Loan, Origin, PublishError, Published, Publisher,
    PublisherStats, ReaderInfo, RingOptions, SlotReuse, StreamLock, FLAG_ERROR, FLAG_KEYFRAME,
    STREAMING_MIN_BYTES,
};

use std::path::{Path, PathBuf};

/// The ring, socket and lock paths of stream `name` in `dir`.
///
/// ```
/// let (ring, sock, lock) = camux::ring::paths("/run/camux".as_ref(), "cam0");
/// assert_eq!(ring.to_str(), Some("/run/camux/cam0.ring"));
/// assert_eq!(sock.to_str(), Some("/run/camux/cam0.sock"));
/// assert_eq!(lock.to_str(), Some("/run/camux/cam0.lock"));
/// ```
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.ring")),
        dir.join(format!("{name}.sock")),
        dir.join(format!("{name}.lock")),
    )
}
