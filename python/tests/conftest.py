"""Fixtures: a real `camux publish` process per test, in a fresh directory.

The binary is $CAMUX_BIN, or the main crate's target/debug/camux (build it
with `cargo build --bin camux` at the repository root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def camux_bin() -> str:
    path = os.environ.get("CAMUX_BIN") or str(REPO / "target" / "debug" / "camux")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no camux binary at {path}: run `cargo build --bin camux` in {REPO} or set CAMUX_BIN"
        )
    return path


class Publisher:
    """`camux publish` started and waited for (its "ready" line), stopped at teardown."""

    def __init__(self, directory: Path, stream: str, *args: str) -> None:
        self.dir = str(directory)
        self.stream = stream
        self.ring = os.path.realpath(os.path.join(self.dir, f"{stream}.ring"))
        cmd = [camux_bin(), "publish", "--dir", self.dir, "--stream", stream, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        # Blocks until the publisher says readers can connect (or exits).
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"camux publish exited before ready: {' '.join(cmd)}\n{err}")
        self.ready = json.loads(line)
        assert self.ready["event"] == "ready", line

    def stop(self) -> dict | None:
        """SIGTERM, wait, and return its "stopped" line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        for line in out.splitlines():
            ev = json.loads(line)
            if ev.get("event") == "stopped":
                return ev
        return None


@pytest.fixture
def publish(tmp_path: Path):
    """publish(stream, *args) -> Publisher; all are stopped at teardown."""
    started: list[Publisher] = []

    def start(stream: str = "cam0", *args: str) -> Publisher:
        p = Publisher(tmp_path, stream, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def ring_mappings(ring_path: str) -> list[tuple[int, int]]:
    """(start, end) of this process's mappings of the ring file, from /proc/self/maps."""
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].rstrip("\n") == ring_path:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end))
    return out


# The synthetic stamp (src/source/stamp.rs), reimplemented independently:
# bytes 0..8 b"CAMUXSYN", 8..16 seq, 16..24 length, 24..32 checksum of
# payload[32:] seeded with seq; all little-endian.
_M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, word: int) -> int:
    return (_rotl((acc + word * P2) & _M, 31) * P1) & _M


def _merge(h: int, v: int) -> int:
    return ((_rotl(h ^ _round(0, v), 27) * P1) + P4) & _M


def stamp_checksum(seed: int, data: bytes | memoryview) -> int:
    data = bytes(data)
    lanes = [(seed + P1 + P2) & _M, (seed + P2) & _M, seed, (seed - P1) & _M]
    full = len(data) // 32 * 32
    for off in range(0, full, 32):
        for i in range(4):
            lanes[i] = _round(lanes[i], int.from_bytes(data[off + 8 * i : off + 8 * i + 8], "little"))
    h = ((seed + P5) & _M) ^ ((len(data) * P3) & _M)
    for lane in lanes:
        h = _merge(h, lane)
    for off in range(full, len(data), 8):
        h = _merge(h, int.from_bytes(data[off : off + 8], "little"))
    h ^= h >> 33
    h = (h * P2) & _M
    h ^= h >> 29
    h = (h * P3) & _M
    return h ^ (h >> 32)


def check_stamp(payload, seq: int) -> None:
    """Asserts the payload (any buffer) carries a valid stamp for `seq`."""
    b = memoryview(payload).cast("B")
    assert bytes(b[:8]) == b"CAMUXSYN"
    assert int.from_bytes(b[8:16], "little") == seq
    assert int.from_bytes(b[16:24], "little") == len(b)
    assert int.from_bytes(b[24:32], "little") == stamp_checksum(seq, b[32:])
