//! SIGTERM and SIGINT as a flag that the command loops check.
//!
//! This is the one file of the binary that names `std::sync::atomic`: the
//! crate's own `sync` module is private to the library, and a signal handler
//! may do little more than store to a lock-free atomic.
//!
//! The handler is installed without `SA_RESTART`, so a blocking `flock`
//! (`publish --wait-lock`) or futex wait returns `EINTR` and the caller gets
//! to look at the flag. The library retries its own interrupted calls.

use anyhow::Context;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the handler; never cleared.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGTERM and SIGINT.
pub fn install() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: `on_signal` is async-signal-safe: it does one store to a
        // static `AtomicBool` (lock-free on every Linux target) and touches
        // nothing else, so it may interrupt any code on any thread. The
        // previous disposition it replaces is the default one; it is not
        // restored.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("cannot install a handler for {signal}"))?;
    }
    Ok(())
}

/// Whether SIGTERM or SIGINT has arrived since [`install`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
