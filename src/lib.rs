//! camux: a zero-copy camera/sensor stream multiplexer for Kubernetes edge nodes.
//!
//! One producer per stream (the `camux daemon` in a privileged DaemonSet pod)
//! publishes every frame once into a shared-memory ring file on a tmpfs
//! hostPath; any number of readers in other pods map it read-only and read
//! the same frames in parallel, with no copy and no per-reader work in the
//! producer.
//!
//! ```no_run
//! let mut sub = camux::Subscriber::open("/run/camux", "cam0")?;
//! let frame = sub.recv()?;
//! let m = frame.meta();
//! println!("#{} {} {}x{}: {} bytes", m.seq, m.format.fourcc, m.format.width, m.format.height, frame.payload().len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layers: [`ring`] (file format, protocol, producer, handshake) knows
//! nothing of cameras; [`source`] (synthetic test pattern, later V4L2)
//! knows nothing of the ring; the client ([`Subscriber`], [`Frame`]) is
//! what inference pods link. With `default-features = false` only these
//! are built: no tokio, no CLI dependencies.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod format;
pub mod ring;
pub mod source;
mod sync;

#[cfg(not(loom))]
pub mod client;
#[cfg(all(feature = "config", not(loom)))]
pub mod daemon;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(all(feature = "reconcile", not(loom)))]
pub mod reconciler;

#[cfg(all(not(loom), feature = "async"))]
pub use client::AsyncSubscriber;
#[cfg(not(loom))]
pub use client::{
    Frame, FrameMeta, Gap, Mode, OpenError, RecvError, Subscriber, SubscriberOptions,
    SPIN_WHEN_WAITS_UNDER,
};
#[cfg(not(loom))]
pub use ring::{FrameInfo, Published, Publisher, RingOptions};

/// The README's code blocks are compiled as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
