//! The C ABI of the camux client: `include/camux.h` at the repository root (hand-written) over
//! [`camux_core::Subscriber`] and [`camux_core::Frame`].
//!
//! This one file holds all of the ABI's `unsafe`: dereferencing the
//! pointers a C caller passes. Handles are boxes: a `camux_subscriber *` is
//! a `Box<Sub>`, a `camux_frame *` a `Box<camux_core::Frame>` (the guard
//! that holds the slot), freed by `camux_close` / `camux_frame_release`.
//! The payload pointer a caller gets is the guard's `&[u8]`, valid while
//! the box lives: the header says so, and nothing in here keeps a copy of
//! it. Every entry point catches panics (`CAMUX_ERR_PANIC`), so none can
//! unwind into C.

use camux_core::source::stamp;
use camux_core::{Frame, Mode, OpenError, RecvError, Subscriber, SubscriberOptions};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// `CAMUX_ABI_VERSION`.
pub const ABI_VERSION: u32 = 1;
/// `CAMUX_MAX_PLANES`.
pub const MAX_PLANES: usize = 4;

/// Status codes, as `camux_status` in the header.
pub mod status {
    #![allow(missing_docs)]
    pub const OK: i32 = 0;
    pub const TIMEOUT: i32 = 1;
    pub const LAGGED: i32 = 2;
    pub const STALE: i32 = 3;
    pub const FORMAT_CHANGED: i32 = 4;
    pub const HOLD_LIMIT: i32 = 5;
    pub const REOPEN_FAILED: i32 = 6;
    pub const ERR_INVALID_ARGUMENT: i32 = -1;
    pub const ERR_NOT_FOUND: i32 = -2;
    pub const ERR_INVALID_NAME: i32 = -3;
    pub const ERR_BAD_RING: i32 = -4;
    pub const ERR_IO: i32 = -5;
    pub const ERR_REFUSED: i32 = -6;
    pub const ERR_CORRUPT: i32 = -7;
    pub const ERR_VERIFY: i32 = -8;
    pub const ERR_PANIC: i32 = -9;
    pub const ERR_OTHER: i32 = -10;

    /// Every code with its header name (for `camux_status_name` and the
    /// test that the header agrees).
    pub const NAMES: &[(i32, &str)] = &[
        (OK, "CAMUX_OK"),
        (TIMEOUT, "CAMUX_TIMEOUT"),
        (LAGGED, "CAMUX_LAGGED"),
        (STALE, "CAMUX_STALE"),
        (FORMAT_CHANGED, "CAMUX_FORMAT_CHANGED"),
        (HOLD_LIMIT, "CAMUX_HOLD_LIMIT"),
        (REOPEN_FAILED, "CAMUX_REOPEN_FAILED"),
        (ERR_INVALID_ARGUMENT, "CAMUX_ERR_INVALID_ARGUMENT"),
        (ERR_NOT_FOUND, "CAMUX_ERR_NOT_FOUND"),
        (ERR_INVALID_NAME, "CAMUX_ERR_INVALID_NAME"),
        (ERR_BAD_RING, "CAMUX_ERR_BAD_RING"),
        (ERR_IO, "CAMUX_ERR_IO"),
        (ERR_REFUSED, "CAMUX_ERR_REFUSED"),
        (ERR_CORRUPT, "CAMUX_ERR_CORRUPT"),
        (ERR_VERIFY, "CAMUX_ERR_VERIFY"),
        (ERR_PANIC, "CAMUX_ERR_PANIC"),
        (ERR_OTHER, "CAMUX_ERR_OTHER"),
    ];
}
use status::*;

/// `camux_frame_meta`: layout fixed by the header (136 bytes, asserted).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FrameMetaC {
    pub seq: u64,
    pub capture_mono_ns: u64,
    pub capture_real_ns: u64,
    pub publish_mono_ns: u64,
    pub publish_real_ns: u64,
    pub driver_seq: u64,
    pub length: u64,
    pub skipped: u64,
    pub gap_ns: u64,
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    pub num_planes: u32,
    pub strides: [u32; MAX_PLANES],
    pub plane_offsets: [u32; MAX_PLANES],
    pub flags: u32,
    pub field: u32,
    pub epoch: u32,
    pub reserved: u32,
}
const _: () = assert!(std::mem::size_of::<FrameMetaC>() == 136);
const _: () = assert!(std::mem::align_of::<FrameMetaC>() == 8);

/// `camux_subscriber`.
pub struct Sub {
    inner: Subscriber,
    lagged: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl std::fmt::Display) {
    let s = CString::new(msg.to_string().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = s);
}

/// Fails with `code` and `msg` as the thread's last error.
fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    set_error(msg);
    code
}

/// Runs an entry point, turning a panic into `CAMUX_ERR_PANIC`.
fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        fail(ERR_PANIC, format!("internal error (panic): {what}"))
    })
}

fn open_code(e: &OpenError) -> i32 {
    match e {
        OpenError::NotFound { .. } => ERR_NOT_FOUND,
        OpenError::InvalidName(_) => ERR_INVALID_NAME,
        OpenError::Format { .. } => ERR_BAD_RING,
        OpenError::Io { .. } => ERR_IO,
        OpenError::Handshake(_) => ERR_REFUSED,
        _ => ERR_OTHER,
    }
}

fn recv_code(e: &RecvError) -> i32 {
    match e {
        RecvError::Lagged(_) => LAGGED,
        RecvError::Timeout | RecvError::Empty => TIMEOUT,
        RecvError::Stale { .. } => STALE,
        RecvError::FormatChanged { .. } => FORMAT_CHANGED,
        RecvError::HoldLimit { .. } => HOLD_LIMIT,
        RecvError::Reopen(_) => REOPEN_FAILED,
        RecvError::Corrupt(_) => ERR_CORRUPT,
        RecvError::Refused(_) => ERR_REFUSED,
        _ => ERR_OTHER,
    }
}

/// A C string argument as `&str`; `None` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, i32> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, and NUL-terminated and live for the call by this
    // function's contract (the header's, for the caller).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| fail(ERR_INVALID_ARGUMENT, format!("{what} is not UTF-8")))
}

/// See `camux.h`.
#[no_mangle]
pub extern "C" fn camux_abi_version() -> u32 {
    ABI_VERSION
}

/// See `camux.h`.
///
/// # Safety
/// `dir` is NULL or a C string, `stream` a C string, `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn camux_open(
    dir: *const c_char,
    stream: *const c_char,
    mode: c_int,
    out: *mut *mut Sub,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return fail(ERR_INVALID_ARGUMENT, "camux_open: out is NULL");
        }
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: C strings or NULL (the caller's contract).
        let (dir, stream) = match unsafe { (arg_str(dir, "dir"), arg_str(stream, "stream")) } {
            (Ok(d), Ok(Some(s))) => (d.unwrap_or("/run/camux"), s),
            (Ok(_), Ok(None)) => return fail(ERR_INVALID_ARGUMENT, "camux_open: stream is NULL"),
            (Err(c), _) | (_, Err(c)) => return c,
        };
        let mode = match mode {
            0 => Mode::EveryFrame,
            1 => Mode::LatestOnly,
            m => return fail(ERR_INVALID_ARGUMENT, format!("camux_open: bad mode {m}")),
        };
        match Subscriber::with_options(SubscriberOptions::new(stream).dir(dir).mode(mode)) {
            Ok(inner) => {
                let sub = Box::into_raw(Box::new(Sub { inner, lagged: 0 }));
                // SAFETY: as above; the box is the caller's until camux_close.
                unsafe { out.write(sub) };
                OK
            }
            Err(e) => fail(open_code(&e), e),
        }
    })
}

/// See `camux.h`.
///
/// # Safety
/// `sub` is NULL or from `camux_open`, not closed before.
#[no_mangle]
pub unsafe extern "C" fn camux_close(sub: *mut Sub) {
    if !sub.is_null() {
        guard(|| {
            // SAFETY: from Box::into_raw in camux_open, closed only once (the
            // caller's contract).
            drop(unsafe { Box::from_raw(sub) });
            OK
        });
    }
}

/// See `camux.h`.
///
/// # Safety
/// `sub` is NULL or an open subscriber not used by another thread now;
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn camux_recv(sub: *mut Sub, timeout_ms: i64, out: *mut *mut Frame) -> c_int {
    guard(|| {
        if out.is_null() {
            return fail(ERR_INVALID_ARGUMENT, "camux_recv: out is NULL");
        }
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or a live subscriber used only by this thread now.
        let Some(sub) = (unsafe { sub.as_mut() }) else {
            return fail(ERR_INVALID_ARGUMENT, "camux_recv: sub is NULL");
        };
        let r = match u64::try_from(timeout_ms) {
            Err(_) => sub.inner.recv(),
            Ok(0) => sub.inner.try_recv(),
            Ok(ms) => sub.inner.recv_timeout(Duration::from_millis(ms)),
        };
        match r {
            Ok(frame) => {
                let f = Box::into_raw(Box::new(frame));
                // SAFETY: as above; the box is the caller's until released.
                unsafe { out.write(f) };
                OK
            }
            Err(e) => {
                if let RecvError::Lagged(n) = e {
                    sub.lagged = n;
                }
                fail(recv_code(&e), e)
            }
        }
    })
}

/// See `camux.h`.
///
/// # Safety
/// `sub` is NULL or an open subscriber.
#[no_mangle]
pub unsafe extern "C" fn camux_lagged(sub: *const Sub) -> u64 {
    // SAFETY: NULL or a live subscriber (the caller's contract).
    unsafe { sub.as_ref() }.map_or(0, |s| s.lagged)
}

/// The metadata of `f` in the header's layout.
fn meta_of(f: &Frame) -> FrameMetaC {
    let m = f.meta();
    let fmt = &m.format;
    let mut strides = [0; MAX_PLANES];
    let mut offsets = [0; MAX_PLANES];
    let n = fmt.strides.len().min(MAX_PLANES);
    strides[..n].copy_from_slice(&fmt.strides[..n]);
    offsets[..n].copy_from_slice(&fmt.plane_offsets[..n]);
    FrameMetaC {
        seq: m.seq,
        capture_mono_ns: m.capture_mono_ns,
        capture_real_ns: m.capture_real_ns,
        publish_mono_ns: m.publish_mono_ns,
        publish_real_ns: m.publish_real_ns,
        driver_seq: m.driver_seq,
        length: m.len as u64,
        skipped: f.skipped(),
        gap_ns: f.gap().map_or(0, |g| (g.downtime.as_nanos() as u64).max(1)),
        fourcc: fmt.fourcc.0,
        width: fmt.width,
        height: fmt.height,
        num_planes: fmt.num_planes,
        strides,
        plane_offsets: offsets,
        flags: m.flags,
        field: m.field,
        epoch: m.epoch,
        reserved: 0,
    }
}

/// See `camux.h`.
///
/// # Safety
/// `frame` is NULL or a held frame; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn camux_frame_get_meta(frame: *const Frame, out: *mut FrameMetaC) -> c_int {
    guard(|| {
        // SAFETY: NULL or a held frame (the caller's contract).
        let Some(f) = (unsafe { frame.as_ref() }) else {
            return fail(ERR_INVALID_ARGUMENT, "camux_frame_get_meta: frame is NULL");
        };
        if out.is_null() {
            return fail(ERR_INVALID_ARGUMENT, "camux_frame_get_meta: out is NULL");
        }
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(meta_of(f)) };
        OK
    })
}

/// See `camux.h`.
///
/// # Safety
/// `frame` is NULL or a held frame; `len` NULL or writable. The pointer
/// returned is valid until `camux_frame_release(frame)`.
#[no_mangle]
pub unsafe extern "C" fn camux_frame_data(frame: *const Frame, len: *mut usize) -> *const u8 {
    // SAFETY: NULL or a held frame (the caller's contract).
    let payload = unsafe { frame.as_ref() }.map_or(&[][..], Frame::payload);
    if !len.is_null() {
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { len.write(payload.len()) };
    }
    if frame.is_null() {
        std::ptr::null()
    } else {
        // Into the ring mapping, which the frame's guard keeps mapped and
        // held until camux_frame_release frees the guard.
        payload.as_ptr()
    }
}

/// See `camux.h`.
///
/// # Safety
/// `frame` is NULL or a held frame.
#[no_mangle]
pub unsafe extern "C" fn camux_frame_verify(frame: *const Frame) -> c_int {
    guard(|| {
        // SAFETY: NULL or a held frame (the caller's contract).
        let Some(f) = (unsafe { frame.as_ref() }) else {
            return fail(ERR_INVALID_ARGUMENT, "camux_frame_verify: frame is NULL");
        };
        let seq = f.seq();
        match stamp::verify(f.payload()) {
            Err(e) => fail(ERR_VERIFY, format!("frame {seq}: {e}")),
            Ok(v) if v.seq != seq => fail(
                ERR_VERIFY,
                format!("frame {seq}: stamped seq {} is not the ring's", v.seq),
            ),
            Ok(_) if !f.is_intact() => fail(
                ERR_VERIFY,
                format!("frame {seq}: revoked while being checked"),
            ),
            Ok(_) => OK,
        }
    })
}

/// See `camux.h`.
///
/// # Safety
/// `frame` is NULL or a held frame.
#[no_mangle]
pub unsafe extern "C" fn camux_frame_is_intact(frame: *const Frame) -> c_int {
    // SAFETY: NULL or a held frame (the caller's contract).
    match unsafe { frame.as_ref() } {
        None => -1,
        Some(f) => c_int::from(f.is_intact()),
    }
}

/// See `camux.h`.
///
/// # Safety
/// `frame` is NULL or from `camux_recv`, not released before.
#[no_mangle]
pub unsafe extern "C" fn camux_frame_release(frame: *mut Frame) {
    if !frame.is_null() {
        guard(|| {
            // SAFETY: from Box::into_raw in camux_recv, released only once
            // (the caller's contract). Dropping the guard ends the hold.
            drop(unsafe { Box::from_raw(frame) });
            OK
        });
    }
}

/// See `camux.h`.
#[no_mangle]
pub extern "C" fn camux_last_error() -> *const c_char {
    // The CString lives in this thread's slot until the next failure on
    // this thread replaces it, as the header says.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// See `camux.h`.
#[no_mangle]
pub extern "C" fn camux_status_name(status: c_int) -> *const c_char {
    const UNKNOWN: &CStr = c"CAMUX_UNKNOWN_STATUS";
    static NAMES: std::sync::OnceLock<Vec<(i32, CString)>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        status::NAMES
            .iter()
            .map(|(c, n)| (*c, CString::new(*n).unwrap_or_default()))
            .collect()
    });
    names
        .iter()
        .find(|(c, _)| *c == status)
        .map_or(UNKNOWN.as_ptr(), |(_, n)| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../../include/camux.h");

    /// The hand-written header says what this file does: every status code
    /// and constant has the same value.
    #[test]
    fn header_matches_the_library() {
        for (code, name) in status::NAMES {
            let line = HEADER
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} is not in camux.h"));
            let value: i32 = line
                .split('=')
                .nth(1)
                .and_then(|v| v.trim().trim_end_matches(',').parse().ok())
                .unwrap_or_else(|| panic!("cannot read {line:?}"));
            assert_eq!(value, *code, "{name}");
        }
        assert!(HEADER.contains(&format!("#define CAMUX_ABI_VERSION {ABI_VERSION}u")));
        assert!(HEADER.contains(&format!("#define CAMUX_MAX_PLANES {MAX_PLANES}")));
        for f in [
            "camux_abi_version",
            "camux_open",
            "camux_close",
            "camux_recv",
            "camux_lagged",
            "camux_frame_get_meta(",
            "camux_frame_data",
            "camux_frame_verify",
            "camux_frame_is_intact",
            "camux_frame_release",
            "camux_last_error",
            "camux_status_name",
        ] {
            assert!(HEADER.contains(f), "{f} missing from camux.h");
        }
    }

    #[test]
    fn errors_reach_the_caller() {
        let mut sub = std::ptr::null_mut();
        let dir = tempfile_dir();
        let cdir = CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a writable out pointer.
        let rc = unsafe { camux_open(cdir.as_ptr(), c"nope".as_ptr(), 0, &mut sub) };
        assert_eq!(rc, ERR_NOT_FOUND);
        assert!(sub.is_null());
        // SAFETY: camux_last_error returns a valid C string.
        let msg = unsafe { CStr::from_ptr(camux_last_error()) }
            .to_str()
            .unwrap();
        assert!(msg.contains("no ring"), "{msg}");
        // SAFETY: as above.
        let rc = unsafe { camux_open(cdir.as_ptr(), c"x".as_ptr(), 7, &mut sub) };
        assert_eq!(rc, ERR_INVALID_ARGUMENT);
        // SAFETY: a NULL out pointer is refused, not written.
        let rc = unsafe { camux_open(cdir.as_ptr(), c"x".as_ptr(), 0, std::ptr::null_mut()) };
        assert_eq!(rc, ERR_INVALID_ARGUMENT);
        // SAFETY: camux_status_name returns a valid C string.
        let name = unsafe { CStr::from_ptr(camux_status_name(LAGGED)) };
        assert_eq!(name.to_str().unwrap(), "CAMUX_LAGGED");
        // SAFETY: NULL handles are no-ops / errors, never dereferenced.
        unsafe {
            camux_close(std::ptr::null_mut());
            camux_frame_release(std::ptr::null_mut());
            assert!(camux_frame_data(std::ptr::null(), std::ptr::null_mut()).is_null());
        }
        let _ = std::fs::remove_dir(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("camux-capi-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
