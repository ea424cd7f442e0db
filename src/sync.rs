//! The one place atomics come from.
//!
//! Under `--cfg loom` the ring protocol is model-checked with loom's atomics
//! on heap memory; otherwise these are the `std` atomics, which have the same
//! in-memory representation as the integers they wrap and so can live inside
//! the shared mapping. Everything else in the crate imports atomics from here
//! (`.ci/run` fails if any other file names `std::sync::atomic`).

#[cfg(loom)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
}

#[cfg(not(loom))]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
}
