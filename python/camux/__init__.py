"""camux: read camera/sensor frames from a camux ring with no copy.

A producer (``camux publish`` or the camux daemon) publishes every frame once
into a shared-memory ring file; this package maps that file read-only and
hands out :class:`Frame` objects whose bytes are read in place::

    import camux, numpy as np

    with camux.Subscriber("cam0", dir="/run/camux") as sub:
        for frame in sub:                       # futex sleep, GIL released
            with frame:                         # the hold ends at the block's end
                img = frame.array()             # (h, w, 2) uint8 view into the ring
                infer(frame.seq, img)
                del img                         # views must be gone before release

Holds and views: a frame is *held* (the producer does not overwrite its
slot) from ``recv`` until ``release()`` (or the end of its ``with`` block,
or its garbage collection). ``numpy.asarray(frame)``, ``memoryview(frame)``
and ``frame.array()`` are read-only views of the bytes in the ring; while
any of them exists ``release()`` raises ``BufferError`` (as
``memoryview.release()`` and ``mmap.close()`` do), so no view can ever
outlive its hold. After release, asking for the bytes again
(``frame.array()``, ``memoryview(frame)``, ``frame.verify()``) raises
:class:`FrameReleased`; the metadata attributes stay readable. Copy what you
keep beyond the frame (``img.copy()``, ``bytes(frame)``).

Lag: an every-frame reader that fell behind is told exactly how many frames
it missed, on the next frame's ``lagged`` attribute (and in
``Subscriber.lagged_total``), or as a :class:`Lagged` exception with
``Subscriber(..., raise_lagged=True)``.

Errors are exceptions under :class:`Error`, one class per Rust error
variant; ``is_fatal`` says whether the stream ended (:class:`Corrupt`,
:class:`Refused`) or the next call continues.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

__all__ = [
    "Subscriber", "Frame", "Error", "OpenError", "StreamNotFound",
    "InvalidStreamName", "BadRing", "RecvError", "Lagged", "Timeout", "Stale",
    "FormatChanged", "HoldLimit", "Corrupt", "Refused", "ReopenFailed",
    "FrameReleased", "VerifyError", "Closed",
]


class Error(Exception):
    """Base of every camux exception. Keyword arguments become attributes."""

    #: Whether the stream has ended (reopen or stop); otherwise the next
    #: call continues.
    is_fatal = False

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        self.message = message
        for k, v in attrs.items():
            setattr(self, k, v)


class OpenError(Error):
    """The stream could not be opened."""


class StreamNotFound(OpenError, FileNotFoundError):
    """No ring file: the producer has not created it, or the directory is
    not mounted here. Attributes: ``path``, ``stream``."""


class InvalidStreamName(OpenError, ValueError):
    """The stream name is not a valid file name."""


class BadRing(OpenError):
    """The file exists but is not a valid camux ring. Attribute: ``path``."""


class RecvError(Error):
    """A receive returned without a frame."""


class Lagged(RecvError):
    """(``raise_lagged=True`` only) this every-frame reader fell behind:
    exactly ``missed`` frames were overwritten before it read them. The
    next ``recv`` returns the oldest frame still in the ring."""

    missed: int


class Timeout(RecvError, TimeoutError):
    """Nothing arrived within the timeout."""


class Stale(RecvError):
    """The producer has given no sign of life for ``since`` seconds.
    Reported once; keep calling ``recv`` to wait for its return."""

    since: float


class FormatChanged(RecvError):
    """The ring was replaced by one of another format (``old`` and ``new``
    are format dicts); the subscriber remapped it and the next ``recv``
    returns new frames."""


class HoldLimit(RecvError):
    """This reader already holds ``limit`` frames: release some first."""

    limit: int


class Corrupt(RecvError):
    """The ring holds data that breaks the format. Fatal."""

    is_fatal = True


class Refused(RecvError, OpenError):
    """The producer refused this reader for good (too many readers). Fatal."""

    is_fatal = True


class ReopenFailed(RecvError):
    """A replaced ring could not be reopened."""


class FrameReleased(Error, ValueError):
    """The frame's bytes were asked for after ``release()``. Attribute: ``seq``."""


class VerifyError(Error):
    """A synthetic frame's stamp does not match its bytes (``Frame.verify``)."""


class Closed(Error, ValueError):
    """The subscriber was closed."""


from ._native import Frame, __version__  # noqa: E402
from ._native import Subscriber as _NativeSubscriber  # noqa: E402

#: The longest blocking slice of an ``arecv`` worker: a cancelled ``arecv``
#: gives the subscriber back within this long.
_ASYNC_SLICE = 0.1


class Subscriber(_NativeSubscriber):
    """A reader of one stream: ``Subscriber(stream, dir="/run/camux",
    mode="every"|"latest", *, raise_lagged=False, handshake_timeout=2.0,
    spin=None)``. ``spin`` is how long (seconds) a blocking ``recv`` polls
    before it sleeps when frames come less than 50 us apart; ``None`` is
    the library's default (100 us), 0 never polls.

    ``recv(timeout=None)`` blocks (GIL released) for the next frame;
    ``try_recv()`` and ``latest()`` never block; ``for frame in sub:``
    receives forever; ``await sub.arecv()`` waits without blocking the
    asyncio event loop. One subscriber is for one thread at a time (a
    concurrent call raises ``RuntimeError: Already borrowed``); open one per
    thread or task instead, they are cheap.
    """

    _executor: Optional[ThreadPoolExecutor] = None

    async def arecv(self, timeout: Optional[float] = None) -> Frame:
        """Like ``recv`` but awaitable: the blocking wait (a futex sleep,
        GIL released) runs on this subscriber's own worker thread through
        ``loop.run_in_executor``, so the event loop keeps running other
        tasks. If the awaiting task is cancelled, the worker stops within
        0.1 s, and a frame it got meanwhile is released, not returned."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"camux-arecv-{self.stream}"
            )
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._recv_until_cancelled, timeout, cancelled)
        try:
            frame = await asyncio.shield(fut)
            assert frame is not None
            return frame
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _recv_until_cancelled(
        self, timeout: Optional[float], cancelled: threading.Event
    ) -> Optional[Frame]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not cancelled.is_set():
            left = _ASYNC_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                frame = self.recv(min(left, _ASYNC_SLICE))
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            if cancelled.is_set():
                break
            return frame
        # Nobody awaits the result any more: end quietly, holding nothing.
        return None

    def close(self) -> None:
        """Closes the subscriber (frames already received stay valid until
        released) and its ``arecv`` worker thread."""
        super().close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False
