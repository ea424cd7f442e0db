//! The measuring examples' shared clock: this process's CPU time.

use nix::sys::resource::{getrusage, UsageWho};

/// CPU time (user + system) of this process so far, in ns.
pub fn cpu_ns() -> u64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage(RUSAGE_SELF)");
    let t = |tv: nix::sys::time::TimeVal| {
        tv.tv_sec() as u64 * 1_000_000_000 + tv.tv_usec() as u64 * 1000
    };
    t(u.user_time()) + t(u.system_time())
}
