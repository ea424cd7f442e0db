//! camux errors as Python exceptions.
//!
//! The exception classes are defined in Python (`camux/__init__.py`, with
//! docstrings and multiple inheritance such as `Timeout(RecvError,
//! TimeoutError)`); this module maps each Rust error variant to its class
//! and attributes, so the meaning is the same as in Rust.

use crate::frame::stream_format_dict;
use camux::{OpenError, RecvError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Builds `camux.<class>(message, **attrs)` as a `PyErr`.
fn raise(
    py: Python<'_>,
    class: &str,
    message: String,
    attrs: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = py.import("camux")?.getattr(class)?;
        let kw = PyDict::new(py);
        attrs(&kw)?;
        Ok(PyErr::from_value(cls.call((message,), Some(&kw))?))
    };
    build().unwrap_or_else(|e| e)
}

fn none(_: &Bound<'_, PyDict>) -> PyResult<()> {
    Ok(())
}

/// `camux.FrameReleased`: the frame's bytes were asked for after release.
pub(crate) fn released(py: Python<'_>, seq: u64) -> PyErr {
    raise(
        py,
        "FrameReleased",
        format!("frame {seq} was released: its bytes may already hold another frame"),
        |kw| kw.set_item("seq", seq),
    )
}

/// `camux.VerifyError`: a synthetic frame's stamp does not check out.
pub(crate) fn verify(py: Python<'_>, seq: u64, why: &str) -> PyErr {
    raise(
        py,
        "VerifyError",
        format!("frame {seq} failed verification: {why}"),
        |kw| kw.set_item("seq", seq),
    )
}

/// `camux.Closed`: the subscriber was closed.
pub(crate) fn closed(py: Python<'_>) -> PyErr {
    raise(py, "Closed", "the subscriber is closed".into(), none)
}

/// The exception for a receive error.
pub(crate) fn recv(py: Python<'_>, e: RecvError) -> PyErr {
    let msg = e.to_string();
    match e {
        RecvError::Lagged(n) => raise(py, "Lagged", msg, |kw| kw.set_item("missed", n)),
        RecvError::Timeout => raise(py, "Timeout", msg, none),
        RecvError::Empty => raise(py, "Timeout", msg, none),
        RecvError::Stale { since } => raise(py, "Stale", msg, |kw| {
            kw.set_item("since", since.as_secs_f64())
        }),
        RecvError::FormatChanged { old, new } => raise(py, "FormatChanged", msg, |kw| {
            kw.set_item("old", stream_format_dict(py, &old)?)?;
            kw.set_item("new", stream_format_dict(py, &new)?)
        }),
        RecvError::HoldLimit { limit } => {
            raise(py, "HoldLimit", msg, |kw| kw.set_item("limit", limit))
        }
        RecvError::Corrupt(_) => raise(py, "Corrupt", msg, none),
        RecvError::Refused(_) => raise(py, "Refused", msg, none),
        RecvError::Reopen(_) => raise(py, "ReopenFailed", msg, none),
        _ => raise(py, "RecvError", msg, none),
    }
}

/// The exception for an open error.
pub(crate) fn open(py: Python<'_>, e: OpenError) -> PyErr {
    let msg = e.to_string();
    match e {
        OpenError::NotFound { path, stream } => raise(py, "StreamNotFound", msg, |kw| {
            kw.set_item("path", path)?;
            kw.set_item("stream", stream)
        }),
        OpenError::InvalidName(_) => raise(py, "InvalidStreamName", msg, none),
        OpenError::Format { path, .. } => raise(py, "BadRing", msg, |kw| kw.set_item("path", path)),
        OpenError::Handshake(_) => raise(py, "Refused", msg, none),
        _ => raise(py, "OpenError", msg, none),
    }
}
