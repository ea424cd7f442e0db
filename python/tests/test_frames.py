"""Frames from a real publisher: metadata, zero copy, verification, holds."""

import time

import numpy as np
import pytest

import camux
from conftest import check_stamp, ring_mappings


def test_metadata_of_received_frames(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200", "--slots", "32")
    with camux.Subscriber("cam0", dir=pub.dir) as sub:
        assert sub.format["fourcc"] == "YUYV"
        frames = []
        for _ in range(10):
            f = sub.recv(timeout=10)
            frames.append((f.seq, f.fourcc, f.width, f.height, f.stride, f.length, f.lagged,
                           f.capture_mono_ns, f.publish_mono_ns, f.publish_real_ns, f.epoch))
            f.verify()
            f.release()
    seqs = [x[0] for x in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 10)), "every frame, in order"
    for seq, fourcc, w, h, stride, length, lagged, cap, pub_mono, pub_real, epoch in frames:
        assert (fourcc, w, h, stride, length, lagged) == ("YUYV", 64, 48, 128, 64 * 48 * 2, 0)
        assert 0 < cap <= pub_mono
        assert abs(pub_real - time.time_ns()) < 60e9
        assert epoch == pub.ready["epoch"]


def test_numpy_view_is_in_the_ring_mapping_and_verifies(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200")
    sub = camux.Subscriber("cam0", dir=pub.dir)
    maps = ring_mappings(pub.ring)
    assert maps, f"{pub.ring} is not mapped in this process"
    for _ in range(5):
        with sub.recv(timeout=10) as frame:
            img = frame.array()
            flat = np.asarray(frame)
            assert img.shape == (48, 64, 2) and img.dtype == np.uint8
            assert not img.flags.writeable and not flat.flags.writeable
            assert flat.shape == (frame.length,)
            # Proof of zero copy: both views start inside a mapping of the
            # ring file and end within it.
            for a in (img, flat):
                ptr = a.__array_interface__["data"][0]
                assert any(s <= ptr and ptr + frame.length <= e for s, e in maps), (
                    hex(ptr), [(hex(s), hex(e)) for s, e in maps])
            assert img.__array_interface__["data"][0] == flat.__array_interface__["data"][0]
            assert img.strides == (128, 2, 1) and np.array_equal(img.reshape(-1), flat[:img.size])
            # The bytes of the view check out against the stamp, by an
            # independent Python implementation and by camux's own.
            check_stamp(flat, frame.seq)
            frame.verify()
            with pytest.raises(ValueError):
                flat[0] = 1  # read-only
            del img, flat, a
    sub.close()


@pytest.mark.parametrize(
    "fourcc, shape",
    [("NV12", (48 * 3 // 2, 64)), ("RGB3", (48, 64, 3)), ("GREY", (48, 64)), ("YU12", (72, 64))],
)
def test_array_is_shaped_for_the_format(publish, fourcc, shape):
    pub = publish("s", "--format", fourcc, "--width", "64", "--height", "48", "--fps", "200")
    with camux.Subscriber("s", dir=pub.dir) as sub, sub.recv(timeout=10) as f:
        a = f.array()
        assert f.fourcc == fourcc and a.shape == shape
        check_stamp(np.asarray(f), f.seq)
        del a


def test_use_after_release_raises(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200")
    sub = camux.Subscriber("cam0", dir=pub.dir)
    frame = sub.recv(timeout=10)
    view = frame.array()[4:, 8:]  # a derived view keeps the export alive too
    with pytest.raises(BufferError, match="still exist"):
        frame.release()
    assert not frame.released and view.sum() >= 0  # still readable: still held
    del view
    mv = memoryview(frame)
    with pytest.raises(BufferError):
        frame.release()
    mv.release()
    frame.release()
    assert frame.released
    frame.release()  # idempotent
    for use in (frame.array, lambda: np.asarray(frame), lambda: memoryview(frame),
                lambda: bytes(frame), frame.verify, frame.is_intact):
        with pytest.raises(camux.FrameReleased):
            use()
    assert frame.seq > 0 and frame.width == 64  # metadata is a copy: still there
    # The with block releases, and a view escaping it is refused loudly.
    with sub.recv(timeout=10) as f2:
        pass
    assert f2.released
    with pytest.raises(BufferError):
        with sub.recv(timeout=10) as f3:
            kept = f3.array()
    del kept
    f3.release()


def test_release_gives_the_hold_back(publish):
    pub = publish("cam0", "--width", "64", "--height", "48", "--fps", "200", "--hold-limit", "3")
    sub = camux.Subscriber("cam0", dir=pub.dir)
    held = [sub.recv(timeout=10) for _ in range(3)]
    with pytest.raises(camux.HoldLimit) as e:
        sub.recv(timeout=10)
    assert e.value.limit == 3 and not e.value.is_fatal
    held.pop(0).release()
    sub.recv(timeout=10).release()
    # Garbage collection of a frame (no views left) releases its hold too.
    del held[0]
    sub.recv(timeout=10).release()
    # A frame outlives its subscriber: still held, readable and intact.
    sub.close()
    last = held[0]
    last.verify()
    assert last.is_intact() and np.asarray(last).shape == (last.length,)
    last.release()


def test_errors_are_exceptions(publish, tmp_path):
    with pytest.raises(camux.StreamNotFound) as e:
        camux.Subscriber("nope", dir=str(tmp_path))
    assert isinstance(e.value, FileNotFoundError) and e.value.stream == "nope"
    with pytest.raises(camux.InvalidStreamName):
        camux.Subscriber("../x", dir=str(tmp_path))
    with pytest.raises(ValueError):
        camux.Subscriber("nope", dir=str(tmp_path), mode="sometimes")
    pub = publish("slow", "--width", "64", "--height", "48", "--fps", "1")
    sub = camux.Subscriber("slow", dir=pub.dir)
    sub.recv(timeout=10).release()
    # At 1 fps a 50 ms window without a frame comes within a few tries (the
    # pacer may send its first frames back to back).
    for _ in range(5):
        try:
            sub.recv(timeout=0.05).release()
        except camux.Timeout as t:
            assert isinstance(t, TimeoutError) and not t.is_fatal
            break
    else:
        raise AssertionError("no 50 ms gap in a 1 fps stream")
    assert sub.try_recv() is None  # right after a timeout: nothing is ready
    sub.close()
    with pytest.raises(camux.Closed):
        sub.recv()
