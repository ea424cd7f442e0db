//! The `camux` Python package's native module (`camux._native`).
//!
//! [`Subscriber`] wraps [`camux::Subscriber`]; [`frame::Frame`] wraps a held
//! [`camux::Frame`] and exports its bytes through the buffer protocol with
//! no copy. Blocking receives release the GIL. The Python layer
//! (`camux/__init__.py`) adds the exception classes and `arecv`.
//!
//! `unsafe` is confined to `frame.rs` (the buffer protocol).

mod errors;
mod frame;

use frame::Frame;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::time::{Duration, Instant};

/// The longest single wait with the GIL released: between two, pending
/// signals (Ctrl-C) are delivered. A futex wait either way, not a poll.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// A reader of one stream (see the package docstring).
#[pyclass(module = "camux", name = "Subscriber", subclass)]
struct Subscriber {
    inner: Option<camux::Subscriber>,
    stream: String,
    dir: String,
    raise_lagged: bool,
    /// Frames missed but not yet reported on a frame (`raise_lagged=False`).
    pending_lag: u64,
    lagged_total: u64,
}

fn parse_mode(mode: &str) -> PyResult<camux::Mode> {
    match mode {
        "every" => Ok(camux::Mode::EveryFrame),
        "latest" => Ok(camux::Mode::LatestOnly),
        other => Err(PyValueError::new_err(format!(
            "mode must be \"every\" or \"latest\", not {other:?}"
        ))),
    }
}

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, not {s}"
        ))
    })
}

impl Subscriber {
    fn sub(&mut self, py: Python<'_>) -> PyResult<&mut camux::Subscriber> {
        self.inner.as_mut().ok_or_else(|| errors::closed(py))
    }

    fn frame(&mut self, py: Python<'_>, f: camux::Frame) -> Frame {
        Frame::new(py, f, std::mem::take(&mut self.pending_lag))
    }
}

#[pymethods]
impl Subscriber {
    /// Opens `stream` in `dir`: maps the ring read-only and registers with
    /// the producer. `mode` is "every" (every frame in order) or "latest"
    /// (only the newest at each call). With `raise_lagged=True` a reader
    /// that fell behind gets `camux.Lagged` from `recv`; by default the
    /// count is on the next frame's `lagged` attribute. `spin` (seconds,
    /// default 100 us, 0 never) is how long `recv` polls before it sleeps
    /// when frames come less than 50 us apart (sensor records flat out).
    #[new]
    #[pyo3(signature = (stream, dir = "/run/camux", mode = "every", *, raise_lagged = false, handshake_timeout = 2.0, spin = None))]
    fn new(
        py: Python<'_>,
        stream: &str,
        dir: &str,
        mode: &str,
        raise_lagged: bool,
        handshake_timeout: f64,
        spin: Option<f64>,
    ) -> PyResult<Self> {
        let mut opts = camux::SubscriberOptions::new(stream)
            .dir(dir)
            .mode(parse_mode(mode)?);
        opts.handshake_timeout = seconds("handshake_timeout", handshake_timeout)?;
        if let Some(spin) = spin {
            opts.spin = seconds("spin", spin)?;
        }
        let sub = py
            .allow_threads(|| camux::Subscriber::with_options(opts))
            .map_err(|e| errors::open(py, e))?;
        Ok(Subscriber {
            inner: Some(sub),
            stream: stream.to_owned(),
            dir: dir.to_owned(),
            raise_lagged,
            pending_lag: 0,
            lagged_total: 0,
        })
    }

    /// Blocks until the next frame (at most `timeout` seconds, then
    /// `camux.Timeout`; `None` waits forever). The GIL is released while
    /// waiting. Events (stale producer, format change) raise their
    /// exception; the subscriber stays usable.
    #[pyo3(signature = (timeout = None))]
    fn recv(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Frame> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + seconds("timeout", t)?),
            None => None,
        };
        let raise_lagged = self.raise_lagged;
        loop {
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            let sub = self.sub(py)?;
            match py.allow_threads(|| sub.recv_timeout(slice)) {
                Ok(f) => return Ok(self.frame(py, f)),
                Err(camux::RecvError::Lagged(n)) if !raise_lagged => {
                    // The next attempt returns the oldest frame still there
                    // at once; it carries the count.
                    self.pending_lag = self.pending_lag.saturating_add(n);
                    self.lagged_total = self.lagged_total.saturating_add(n);
                }
                Err(camux::RecvError::Lagged(n)) => {
                    self.lagged_total = self.lagged_total.saturating_add(n);
                    return Err(errors::recv(py, camux::RecvError::Lagged(n)));
                }
                Err(camux::RecvError::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                    py.check_signals()?;
                }
                Err(e) => return Err(errors::recv(py, e)),
            }
        }
    }

    /// The next frame if one is ready now, else `None` (never blocks).
    fn try_recv(&mut self, py: Python<'_>) -> PyResult<Option<Frame>> {
        let raise_lagged = self.raise_lagged;
        loop {
            match self.sub(py)?.try_recv() {
                Ok(f) => return Ok(Some(self.frame(py, f))),
                Err(camux::RecvError::Empty) => return Ok(None),
                Err(camux::RecvError::Lagged(n)) => {
                    self.lagged_total = self.lagged_total.saturating_add(n);
                    if raise_lagged {
                        return Err(errors::recv(py, camux::RecvError::Lagged(n)));
                    }
                    self.pending_lag = self.pending_lag.saturating_add(n);
                }
                Err(e) => return Err(errors::recv(py, e)),
            }
        }
    }

    /// The newest frame now, skipping older unread ones (in either mode;
    /// the count is its `skipped`), or `None` if nothing newer than the
    /// last frame returned. Never blocks.
    fn latest(&mut self, py: Python<'_>) -> PyResult<Option<Frame>> {
        match self.sub(py)?.latest() {
            Ok(Some(f)) => Ok(Some(self.frame(py, f))),
            Ok(None) => Ok(None),
            Err(e) => Err(errors::recv(py, e)),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// `for frame in sub:` is `recv()` forever.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Frame> {
        self.recv(py, None)
    }

    /// Closes the subscriber (its frames stay valid until released).
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// The stream name.
    #[getter]
    fn stream(&self) -> &str {
        &self.stream
    }

    /// The ring directory.
    #[getter]
    fn dir(&self) -> &str {
        &self.dir
    }

    /// "every" or "latest".
    #[getter]
    fn mode(&mut self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match self.sub(py)?.mode() {
            camux::Mode::LatestOnly => "latest",
            _ => "every",
        })
    }

    /// The stream's format as a dict (fourcc, width, height, num_planes,
    /// strides, plane_offsets, fps).
    #[getter]
    fn format<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let f = self.sub(py)?.format();
        frame::stream_format_dict(py, &f)
    }

    /// The stream's content type, or `None` (image streams).
    #[getter]
    fn content_type(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.sub(py)?.content_type().map(str::to_owned))
    }

    /// Whether registered with a live producer.
    #[getter]
    fn connected(&mut self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.sub(py)?.is_connected())
    }

    /// Holds the producer revoked (held past the hold timeout).
    #[getter]
    fn revoked(&mut self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.sub(py)?.revoked())
    }

    /// Every frame this reader missed so far (every-frame mode).
    #[getter]
    fn lagged_total(&self) -> u64 {
        self.lagged_total
    }

    fn __repr__(&self) -> String {
        format!(
            "<camux.Subscriber stream={:?} dir={:?}{}>",
            self.stream,
            self.dir,
            if self.inner.is_none() { " closed" } else { "" }
        )
    }
}

/// The native part of the `camux` package; import `camux`, not this.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Subscriber>()?;
    m.add_class::<Frame>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
