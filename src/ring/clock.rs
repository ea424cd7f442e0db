//! Clocks as the ring records them: nanoseconds of CLOCK_MONOTONIC (shared
//! by every process on a node, so a reader can subtract a producer's
//! timestamp) and of CLOCK_REALTIME (wall time, for recordings and logs).

use nix::time::{clock_gettime, ClockId};

fn ns(id: ClockId) -> u64 {
    // clock_gettime cannot fail for these clocks on Linux; 0 is the fallback.
    clock_gettime(id)
        .map(|t| (t.tv_sec() as u64).wrapping_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC in nanoseconds.
///
/// ```
/// let a = camux::ring::mono_ns();
/// assert!(camux::ring::mono_ns() >= a);
/// ```
pub fn mono_ns() -> u64 {
    ns(ClockId::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the last tick (a few ms old), at
/// a fraction of the cost; for timeouts measured in seconds.
pub(crate) fn mono_coarse_ns() -> u64 {
    ns(ClockId::CLOCK_MONOTONIC_COARSE)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
///
/// ```
/// assert!(camux::ring::real_ns() > 1_600_000_000_000_000_000);
/// ```
pub fn real_ns() -> u64 {
    ns(ClockId::CLOCK_REALTIME)
}
