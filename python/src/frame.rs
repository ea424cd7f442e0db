//! `camux.Frame`: a held frame whose bytes Python reads in place.
//!
//! This is the only file of the Python bindings with `unsafe`: the buffer
//! protocol (`__getbuffer__` / `__releasebuffer__`) hands CPython a raw
//! pointer into the ring mapping.
//!
//! How the pointer never outlives the hold: the [`camux::Frame`] guard (which
//! keeps the slot from being overwritten and the mapping mapped) and the
//! count of exported buffers live under one mutex. `__getbuffer__` exports
//! only while the guard is there and counts the export; `release()` drops
//! the guard only when no export is alive and raises `BufferError`
//! otherwise, exactly as `memoryview.release()` and `mmap.close()` do. An
//! exported buffer keeps a reference to this object (`Py_buffer.obj`), so
//! the guard cannot be dropped by garbage collection either while a NumPy
//! array or memoryview over it exists. After release every access to the
//! bytes raises `camux.FrameReleased`.

use crate::errors;
use camux::format::FourCc;
use camux::source::stamp;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyInt, PyTuple};
use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard};

/// The guard and its live exports, changed together under one lock.
struct Held {
    frame: Option<camux::Frame>,
    exports: usize,
}

/// A received frame: metadata attributes plus the payload bytes in the
/// shared ring (buffer protocol, `array()`), held until `release()`.
///
/// `seq`, `length` and `lagged`, the attributes a loop reads at every
/// frame, are Python ints made once when the frame is received and read by
/// CPython itself (struct members of this frozen class): no call into the
/// extension per access. On a reader woken once per frame, each such call
/// ran cold and cost 3-4 us (docs/BINDINGS.md, "Cost per frame").
///
/// A small free list keeps the last released objects' memory for the next
/// frames: the 648-byte object is above pymalloc's 512-byte limit, so each
/// frame would otherwise be a glibc `malloc` and `free`. Measured, this is
/// within the run-to-run noise (docs/BINDINGS.md, 2026-12-03); it stays,
/// as it swaps those two calls for a pop and a push under an uncontended
/// lock.
#[pyclass(module = "camux", name = "Frame", frozen, freelist = 8)]
pub struct Frame {
    /// Ring sequence number (continues across producer restarts).
    #[pyo3(get)]
    seq: Py<PyInt>,
    /// Payload length in bytes (also `len(frame)`).
    #[pyo3(get)]
    length: Py<PyInt>,
    /// Every-frame mode: frames this reader missed (overwritten before it
    /// read them) just before this one; 0 when none were.
    #[pyo3(get)]
    lagged: Py<PyInt>,
    held: Mutex<Held>,
    meta: camux::FrameMeta,
    gap: Option<camux::Gap>,
    skipped: u64,
}

impl Frame {
    pub(crate) fn new(py: Python<'_>, frame: camux::Frame, lagged: u64) -> Frame {
        let meta = frame.meta();
        let int = |v: u64| v.into_pyobject(py).expect("infallible").unbind();
        Frame {
            seq: int(meta.seq),
            length: int(meta.len as u64),
            lagged: int(lagged),
            meta: *meta,
            gap: frame.gap(),
            skipped: frame.skipped(),
            held: Mutex::new(Held {
                frame: Some(frame),
                exports: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends one export of the payload (flat or shaped).
    fn end_export(&self) {
        let mut held = self.lock();
        held.exports = held.exports.saturating_sub(1);
    }

    /// Runs `f` on the held guard, or raises `FrameReleased`.
    fn with_frame<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&camux::Frame) -> PyResult<T>,
    ) -> PyResult<T> {
        let held = self.lock();
        match &held.frame {
            Some(frame) => f(frame),
            None => Err(errors::released(py, self.meta.seq)),
        }
    }

    /// NumPy shape and byte strides for the format, checked against the
    /// payload length; `None` for formats without a fixed image shape.
    fn image_shape(&self) -> Option<Shape> {
        let f = &self.meta.format;
        let (w, h) = (f.width as usize, f.height as usize);
        let s0 = f.strides[0] as usize;
        let len = self.meta.len;
        let planes = f.num_planes as usize;
        let fits = |rows: usize, row_bytes: usize, stride: usize| {
            rows > 0 && row_bytes <= stride && (rows - 1) * stride + row_bytes <= len
        };
        let first_at_zero = f.plane_offsets[0] == 0;
        let packed = |px: usize| {
            (first_at_zero && fits(h, w * px, s0)).then(|| {
                if px == 1 {
                    Shape::new(&[h, w], &[s0, 1])
                } else {
                    Shape::new(&[h, w, px], &[s0, px, 1])
                }
            })
        };
        match f.fourcc {
            FourCc::YUYV | FourCc::UYVY => packed(2),
            FourCc::RGB3 | FourCc::BGR3 => packed(3),
            FourCc::GREY => packed(1),
            // Y rows then chroma rows of the same stride, back to back.
            FourCc::NV12 | FourCc::NV21 => {
                let chroma_follows = planes < 2
                    || (f.strides[1] as usize == s0 && f.plane_offsets[1] as usize == s0 * h);
                let rows = h + h / 2;
                (first_at_zero && chroma_follows && fits(rows, w, s0))
                    .then(|| Shape::new(&[rows, w], &[s0, 1]))
            }
            // Three planes packed with no row padding: the same bytes as
            // the (h*3/2, w) array OpenCV's COLOR_YUV2BGR_I420 takes.
            FourCc::YU12 => {
                let tight = s0 == w
                    && (planes < 3
                        || (f.plane_offsets[1] as usize == w * h
                            && f.plane_offsets[2] as usize == w * h + (w / 2) * (h / 2)
                            && f.strides[1] as usize == w / 2));
                let rows = h + h / 2;
                (first_at_zero && tight && fits(rows, w, w))
                    .then(|| Shape::new(&[rows, w], &[w, 1]))
            }
            _ => None,
        }
    }
}

/// An image's NumPy shape and byte strides (1 byte items), at most 3-D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    ndim: usize,
    shape: [isize; 3],
    strides: [isize; 3],
}

impl Shape {
    fn new(shape: &[usize], strides: &[usize]) -> Shape {
        let mut s = Shape {
            ndim: shape.len(),
            shape: [0; 3],
            strides: [0; 3],
        };
        for (i, (&n, &st)) in shape.iter().zip(strides).enumerate() {
            // Both are bounded by the payload length (checked by the
            // caller), which is an isize.
            s.shape[i] = n as isize;
            s.strides[i] = st as isize;
        }
        s
    }

    /// One past the last byte an array of this shape addresses.
    fn extent(&self) -> usize {
        let dims = self.shape[..self.ndim]
            .iter()
            .zip(&self.strides[..self.ndim]);
        1 + dims
            .map(|(&n, &st)| (n.max(1) as usize - 1) * st as usize)
            .sum::<usize>()
    }
}

/// `numpy.asarray`, looked up once.
fn asarray(py: Python<'_>) -> PyResult<&'static Py<PyAny>> {
    static ASARRAY: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    ASARRAY.get_or_try_init(py, || Ok(py.import("numpy")?.getattr("asarray")?.unbind()))
}

/// What `Frame.array()` hands to `numpy.asarray`: an exporter of the
/// frame's payload with the image's shape and strides, so that NumPy
/// builds the shaped array in one call (building a flat array and then an
/// `ndarray(shape, buffer=flat, strides=...)` on it cost twice as much per
/// frame, most of it on a cold wake-up). Each export counts as one of the
/// frame's, exactly as a flat one does: the array's base chain ends in a
/// memoryview of this object, which references the frame.
#[pyclass(module = "camux", name = "_ShapedView", frozen)]
struct ShapedView {
    frame: Py<Frame>,
    shape: Shape,
}

#[pymethods]
impl ShapedView {
    /// Exports the payload with the image's shape: read-only, strided.
    ///
    /// # Safety
    /// Called by CPython with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let frame = this.frame.get();
        if flags & pyo3::ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("frames are read-only"));
        }
        if flags & pyo3::ffi::PyBUF_STRIDES != pyo3::ffi::PyBUF_STRIDES {
            return Err(PyBufferError::new_err(
                "a shaped frame view needs a strided buffer request",
            ));
        }
        let mut held = frame.lock();
        let Some(f) = &held.frame else {
            return Err(errors::released(py, frame.meta.seq));
        };
        let payload = f.payload();
        let shape = &this.shape;
        if shape.extent() > payload.len() {
            return Err(PyBufferError::new_err(
                "the frame's format does not fit its payload",
            ));
        }
        let len: isize = shape.shape[..shape.ndim].iter().product();
        // SAFETY: `view` is the Py_buffer CPython asked us to fill (the
        // caller's contract). `buf` points into the ring mapping, which the
        // frame's guard keeps mapped and held until this export ends:
        // `release()` refuses while `exports` > 0 (both under this lock),
        // and `view.obj` (a new reference to this object, which references
        // the frame) keeps both alive. Every byte the shape and strides
        // address lies in the payload (extent checked above). `shape` and
        // `strides` point into this frozen object, which does not move and
        // outlives the export. readonly = 1; format "B" (unsigned bytes)
        // when asked for, NULL means the same otherwise.
        unsafe {
            let v = &mut *view;
            v.buf = payload.as_ptr() as *mut std::ffi::c_void;
            v.obj = slf.clone().into_any().unbind().into_ptr();
            v.len = len;
            v.itemsize = 1;
            v.readonly = 1;
            v.ndim = shape.ndim as c_int;
            v.format = if flags & pyo3::ffi::PyBUF_FORMAT != 0 {
                c"B".as_ptr() as *mut std::ffi::c_char
            } else {
                std::ptr::null_mut()
            };
            v.shape = shape.shape.as_ptr() as *mut isize;
            v.strides = shape.strides.as_ptr() as *mut isize;
            v.suboffsets = std::ptr::null_mut();
            v.internal = std::ptr::null_mut();
        }
        held.exports += 1;
        Ok(())
    }

    /// Ends one export started by `__getbuffer__`.
    ///
    /// # Safety
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.frame.get().end_export();
    }
}

/// A stream format as a Python dict.
pub(crate) fn stream_format_dict<'py>(
    py: Python<'py>,
    f: &camux::ring::StreamFormat,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = (f.num_planes as usize).min(f.strides.len());
    d.set_item("fourcc", f.fourcc.to_string().trim_end())?;
    d.set_item("width", f.width)?;
    d.set_item("height", f.height)?;
    d.set_item("num_planes", f.num_planes)?;
    d.set_item("strides", PyTuple::new(py, &f.strides[..n])?)?;
    d.set_item("plane_offsets", PyTuple::new(py, &f.plane_offsets[..n])?)?;
    d.set_item("fps", (f.fps_num, f.fps_den))?;
    Ok(d)
}

#[pymethods]
impl Frame {
    /// Capture time, CLOCK_MONOTONIC nanoseconds.
    #[getter]
    fn capture_mono_ns(&self) -> u64 {
        self.meta.capture_mono_ns
    }
    /// Capture time, CLOCK_REALTIME nanoseconds.
    #[getter]
    fn capture_real_ns(&self) -> u64 {
        self.meta.capture_real_ns
    }
    /// Publish time, CLOCK_MONOTONIC nanoseconds.
    #[getter]
    fn publish_mono_ns(&self) -> u64 {
        self.meta.publish_mono_ns
    }
    /// Publish time, CLOCK_REALTIME nanoseconds.
    #[getter]
    fn publish_real_ns(&self) -> u64 {
        self.meta.publish_real_ns
    }
    /// FourCC as a string without trailing spaces ("YUYV", "NV12", "RAW").
    #[getter]
    fn fourcc(&self) -> String {
        self.meta.format.fourcc.to_string().trim_end().to_owned()
    }
    /// Width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.meta.format.width
    }
    /// Height in pixels.
    #[getter]
    fn height(&self) -> u32 {
        self.meta.format.height
    }
    /// Bytes per line of the first plane.
    #[getter]
    fn stride(&self) -> u32 {
        self.meta.format.strides[0]
    }
    /// Bytes per line of every plane in use.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let n = (self.meta.format.num_planes as usize).min(self.meta.format.strides.len());
        PyTuple::new(py, &self.meta.format.strides[..n])
    }
    /// Offset of every plane in use from the start of the payload.
    #[getter]
    fn plane_offsets<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let n = (self.meta.format.num_planes as usize).min(self.meta.format.plane_offsets.len());
        PyTuple::new(py, &self.meta.format.plane_offsets[..n])
    }
    /// The driver's frame counter.
    #[getter]
    fn driver_seq(&self) -> u64 {
        self.meta.driver_seq
    }
    /// `FLAG_*` bits (1 keyframe, 2 driver error).
    #[getter]
    fn flags(&self) -> u32 {
        self.meta.flags
    }
    /// V4L2 field order.
    #[getter]
    fn field(&self) -> u32 {
        self.meta.field
    }
    /// Epoch of the producer that published the frame.
    #[getter]
    fn epoch(&self) -> u32 {
        self.meta.epoch
    }
    /// Latest-only mode: frames skipped on purpose since the previous one.
    #[getter]
    fn skipped(&self) -> u64 {
        self.skipped
    }
    /// `None`, or `(epoch, downtime_seconds)` on the first frame after a
    /// producer restart.
    #[getter]
    fn gap(&self) -> Option<(u32, f64)> {
        self.gap.map(|g| (g.epoch, g.downtime.as_secs_f64()))
    }
    /// The user metadata bytes (sensor records), a copy.
    #[getter]
    fn user<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.meta.user())
    }
    /// The stream format of this frame as a dict.
    #[getter]
    fn format<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stream_format_dict(py, &self.meta.format)
    }
    /// Whether the hold has been released (the bytes are then unreachable).
    #[getter]
    fn released(&self) -> bool {
        self.lock().frame.is_none()
    }
    /// Nanoseconds from publish to now (CLOCK_MONOTONIC).
    #[getter]
    fn age_ns(&self) -> u64 {
        camux::ring::mono_ns().saturating_sub(self.meta.publish_mono_ns)
    }

    /// Whether the bytes are still exactly as published: `False` if the
    /// producer revoked the hold (held past the ring's hold timeout).
    /// Raises `FrameReleased` after `release()`.
    fn is_intact(&self, py: Python<'_>) -> PyResult<bool> {
        self.with_frame(py, |f| Ok(f.is_intact()))
    }

    /// Checks the synthetic source's stamp with camux's own code: the
    /// checksum matches the bytes in the ring, the stamped sequence equals
    /// `seq`, and the frame is still intact afterwards. Returns `None` or
    /// raises `camux.VerifyError` (`FrameReleased` after `release()`).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        self.with_frame(py, |f| {
            let seq = self.meta.seq;
            // Hashing megabytes: let other Python threads run meanwhile.
            let r = py.allow_threads(|| stamp::verify(f.payload()).map(|v| (v, f.is_intact())));
            match r {
                Err(e) => Err(errors::verify(py, seq, &e.to_string())),
                Ok((v, _)) if v.seq != seq => Err(errors::verify(
                    py,
                    seq,
                    &format!("stamped seq {} is not the ring's seq {seq}", v.seq),
                )),
                Ok((_, false)) => Err(errors::verify(
                    py,
                    seq,
                    "revoked: overwritten while it was being checked",
                )),
                Ok(_) => Ok(()),
            }
        })
    }

    /// A read-only NumPy view of the payload in the ring (no copy), shaped
    /// for the format: `(h, w, 2)` YUYV/UYVY, `(h, w, 3)` RGB3/BGR3,
    /// `(h, w)` GREY, `(h*3//2, w)` NV12/NV21/YU12, row strides honoured;
    /// 1-D `(length,)` for other formats. The array keeps this frame's
    /// buffer exported: `release()` raises `BufferError` while it lives.
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.lock().frame.is_none() {
            return Err(errors::released(py, this.meta.seq));
        }
        // Through `numpy.asarray`, never `ndarray(buffer=...)`: the latter
        // releases the buffer it takes at once and keeps only the exporter
        // as its base, which would not count as an export. `asarray` keeps
        // a memoryview (holding its export, taken by `__getbuffer__` with
        // the lock not held here) at the root of the base chain of every
        // array derived from it.
        let asarray = asarray(py)?.bind(py);
        match this.image_shape() {
            None => asarray.call1((slf,)),
            Some(shape) => {
                let view = Bound::new(
                    py,
                    ShapedView {
                        frame: slf.clone().unbind(),
                        shape,
                    },
                )?;
                asarray.call1((view,))
            }
        }
    }

    /// NumPy's fallback when the buffer protocol fails, which only happens
    /// after `release()`: raise `FrameReleased` rather than let
    /// `numpy.asarray` wrap the frame object in an object array.
    #[pyo3(signature = (dtype = None, copy = None))]
    fn __array__<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (dtype, copy);
        let py = slf.py();
        let this = slf.get();
        if this.lock().frame.is_none() {
            return Err(errors::released(py, this.meta.seq));
        }
        py.import("numpy")?
            .getattr("asarray")?
            .call1((pyo3::types::PyMemoryView::from(slf.as_any())?,))
    }

    /// Releases the hold: the producer may reuse the slot. Raises
    /// `BufferError` while a NumPy array or memoryview of the frame exists
    /// (delete it first); releasing twice is a no-op.
    fn release(&self) -> PyResult<()> {
        let frame = {
            let mut held = self.lock();
            if held.exports > 0 {
                return Err(PyBufferError::new_err(format!(
                    "cannot release frame {}: {} NumPy array(s)/memoryview(s) of it still exist; \
                     delete them (or copy what you keep) first",
                    self.meta.seq, held.exports
                )));
            }
            held.frame.take()
        };
        // Dropped outside the lock: this releases the hold in the ring.
        drop(frame);
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __len__(&self) -> usize {
        self.meta.len
    }

    fn __repr__(&self) -> String {
        let f = &self.meta.format;
        format!(
            "<camux.Frame seq={} {} {}x{} {} bytes{}>",
            self.meta.seq,
            f.fourcc.to_string().trim_end(),
            f.width,
            f.height,
            self.meta.len,
            if self.lock().frame.is_none() {
                " released"
            } else {
                ""
            }
        )
    }

    /// The buffer protocol: the payload as read-only bytes (format "B",
    /// 1-D, `length` long), straight into the ring.
    ///
    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut held = this.lock();
        let Some(frame) = &held.frame else {
            return Err(errors::released(py, this.meta.seq));
        };
        let payload = frame.payload();
        let len = isize::try_from(payload.len())
            .map_err(|_| PyBufferError::new_err("payload too large for a buffer"))?;
        // SAFETY: `view` is the Py_buffer CPython asked us to fill (the
        // caller's contract). `payload` points into the ring mapping, which
        // `frame` keeps mapped and held; it stays valid until this export is
        // released, because `release()` refuses while `exports` > 0 (both
        // under this lock) and the view's `obj` reference (taken by
        // PyBuffer_FillInfo) keeps `self`, hence `frame`, alive. readonly=1:
        // a request for a writable buffer fails with BufferError.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                payload.as_ptr() as *mut std::ffi::c_void,
                len,
                1,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        held.exports += 1;
        Ok(())
    }

    /// Ends one export started by `__getbuffer__`.
    ///
    /// # Safety
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.end_export();
    }
}
