#!/usr/bin/env python3
"""CPU per frame of the Python reader vs the Rust reader, at 1920x1080 YUYV.

Each reader runs alone against its own `camux publish` (paced, every frame
received, `--wait-readers 1` so none is missed) and measures its own CPU
time (getrusage: user + system) from just after its first frame to just
after its last, so interpreter and process start-up are not counted.

Readers:
  rust        capi/examples/rust_reader.rs: camux's Subscriber, metadata only
  python      camux.Subscriber: recv(), read seq and length, release
  python-np   the same plus frame.array() (a NumPy view into the ring; no copy)
  python-copy the same plus bytes(frame) (a 4 MB copy per frame)
  python-iter python's reads in `for frame in sub:` (the README's loop),
              not recv() calls
  camux-tail  `camux tail` (whole process, start-up and printing included;
              stdout to /dev/null)
  c-floor     the limit for a native reader: capi/examples/pipe_reader.rs,
              a blocking one-byte read() of a pipe per frame, no camux
  python-floor the same loop in Python (os.read in a function): what a cold
              wake-up costs the interpreter before any camux code runs

The two floors get their ticks from a pinger process instead of a
publisher: at the same rate it writes the frame's bytes (cached stores, into
one of two buffers in turn, as the rendering publisher does when warm slot
reuse recycles recent slots) and then one byte into the pipe, so the readers
wake as cold as they do behind `camux publish`.

Python readers run with OPENBLAS_NUM_THREADS=1 (numpy's BLAS threads
would otherwise add their own CPU). Figures only: nothing here asserts a time. Needs the camux binary
($CAMUX_BIN or target/debug/camux), the Rust readers
(`cargo build --release --examples` in capi/: rust_reader, pipe_reader) and
the camux package installed.
Usage: bench_reader.py [--frames N] [--fps F] [--repeat N] [--only SCENARIO] [--json]
With --repeat N every reader runs once per round, N rounds; each figure is
the median over the rounds and each ratio also the median of the rounds'
own (paired) ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PY_READER = r"""
import json, resource, sys
import camux
def cpu_ns():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e9)
# The loop runs in a function, as a consumer's would: at module level every
# variable is a dict lookup, which cost 1-2 us per frame more here and
# would be counted against the binding.
def main(d, stream, n, kind):
    if kind == "np":
        # As an inference pod does, before the stream: `Frame.array()` would
        # otherwise import NumPy on the first frame, and while it loads
        # (0.1 s, far more on a cold page cache) the stream runs on and the
        # reader starts out lagged.
        import numpy  # noqa: F401
    sub = camux.Subscriber(stream, dir=d)
    print("registered", flush=True)
    frames = lagged = check = 0
    start = 0
    while frames + lagged < n:
        try:
            f = sub.recv()
        except camux.RecvError as e:  # a stale producer, say: not fatal
            if e.is_fatal:
                raise
            continue
        check ^= f.seq ^ f.length
        lagged += f.lagged
        if kind == "np":
            a = f.array()
            del a
        elif kind == "copy":
            b = bytes(f)
            check ^= b[100]
        f.release()
        frames += 1
        if frames == 1:
            start = cpu_ns()
    print(json.dumps({"frames": frames - 1, "cpu_ns": cpu_ns() - start, "lagged": lagged, "check": check}))
# The README's loop: `for frame in sub:`, the same attributes, release().
# (A non-fatal event such as a stale producer ends a for loop with its
# exception: start it again.)
def iterate(d, stream, n):
    sub = camux.Subscriber(stream, dir=d)
    print("registered", flush=True)
    frames = lagged = check = 0
    start = 0
    while frames + lagged < n:
        try:
            for f in sub:
                check ^= f.seq ^ f.length
                lagged += f.lagged
                f.release()
                frames += 1
                if frames == 1:
                    start = cpu_ns()
                if frames + lagged >= n:
                    break
        except camux.RecvError as e:
            if e.is_fatal:
                raise
    print(json.dumps({"frames": frames - 1, "cpu_ns": cpu_ns() - start, "lagged": lagged, "check": check}))
if sys.argv[4] == "iter":
    iterate(sys.argv[1], sys.argv[2], int(sys.argv[3]))
else:
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
"""


PY_PIPE_READER = r"""
import json, os, resource, sys
def cpu_ns():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e9)
def main(fd, n):
    print("registered", flush=True)
    ticks = check = 0
    start = 0
    while ticks < n:
        b = os.read(fd, 1)
        if not b:
            raise SystemExit("the pipe closed early")
        check ^= b[0]
        ticks += 1
        if ticks == 1:
            start = cpu_ns()
    print(json.dumps({"frames": ticks - 1, "cpu_ns": cpu_ns() - start, "lagged": 0, "check": check}))
main(int(sys.argv[1]), int(sys.argv[2]))
"""

# The floors' tick source: writes a frame's worth of bytes, then one byte
# into the pipe, `n` times at `fps`, on absolute deadlines.
PINGER = r"""
import ctypes, os, sys, time
fd, n, fps, nbytes = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
bufs = [bytearray(nbytes) for _ in range(2)]
addrs = [ctypes.addressof((ctypes.c_char * nbytes).from_buffer(b)) for b in bufs]
period, t = 1.0 / fps, time.monotonic()
for i in range(n):
    ctypes.memset(addrs[i % 2], i & 255, nbytes)
    os.write(fd, b"x")
    t += period
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
"""

FLOORS = ("c-floor", "python-floor")


def run_floor(kind: str, cmd: list[str], frames: int, fps: float, nbytes: int) -> dict:
    """One floor reader alone against its own pinger (see the docstring)."""
    r, w = os.pipe()
    try:
        argv = [a.replace("{fd}", str(r)) for a in cmd]
        reader = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, pass_fds=(r,))
        assert reader.stdout is not None
        # Ticks start only once the reader waits: queued ones would be read
        # back to back, warm.
        first = reader.stdout.readline()
        if "registered" not in first:
            raise SystemExit(f"{kind} did not start: {first!r} {reader.stderr.read()}")
        os.close(r)
        r = -1
        pinger = subprocess.Popen([sys.executable, "-c", PINGER, str(w), str(frames), str(fps),
                                   str(nbytes)], pass_fds=(w,))
        os.close(w)
        w = -1
        out, err = reader.communicate(timeout=600)
        if pinger.wait(timeout=60) != 0 or reader.returncode != 0:
            raise SystemExit(f"{kind} failed: {err}")
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    res = json.loads(out.splitlines()[-1])
    res["cpu_us_per_frame"] = res["cpu_ns"] / max(1, res["frames"]) / 1000
    return res


def camux_bin() -> str:
    """$CAMUX_BIN, else the main crate's debug build (the one the tests use:
    built from the same source as the bindings)."""
    return os.environ.get("CAMUX_BIN") or str(REPO / "target" / "debug" / "camux")


def run(kind: str, cmd: list[str], frames: int, fps: float, width: int, height: int,
        copy: bool) -> dict:
    if kind in FLOORS:
        return run_floor(kind, cmd, frames, fps, width * height * 2)
    with tempfile.TemporaryDirectory(prefix="camux-bench-") as d:
        pub = subprocess.Popen(
            [camux_bin(), "publish", "--dir", d, "--stream", "b", "--width", str(width),
             "--height", str(height), "--fps", str(fps), "--frames", str(frames),
             "--wait-readers", "1", "--linger", "30s"] + (["--copy"] if copy else []),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert pub.stdout is not None
        ready = pub.stdout.readline()
        if '"ready"' not in ready:
            raise SystemExit(f"camux publish did not start: {ready!r}")
        argv = [a.replace("{dir}", d) for a in cmd]
        if kind == "camux-tail":
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               timeout=600)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                raise SystemExit(f"{kind} failed: {p.stderr}")
            # Whole-process CPU (start-up included): an upper bound.
            cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e9
            res = {"frames": frames, "cpu_ns": int(cpu), "lagged": 0}
        else:
            # One OpenBLAS thread: `import numpy` otherwise starts a worker thread
            # per CPU whose spinning would be counted as the reader's CPU.
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            p = subprocess.run(argv, capture_output=True, text=True, cwd=d, timeout=600, env=env)
            if p.returncode != 0:
                raise SystemExit(f"{kind} failed: {p.stderr}")
            res = json.loads(p.stdout.splitlines()[-1])
        pub.wait(timeout=60)
    res["cpu_us_per_frame"] = res["cpu_ns"] / max(1, res["frames"]) / 1000
    return res


def scenario(title: str, n: int, fps: float, width: int, height: int, kinds: list[str],
             repeat: int, copy: bool = False) -> dict:
    examples = REPO / "capi" / "target" / "release" / "examples"
    rust_reader = os.environ.get("CAMUX_RUST_READER") or str(examples / "rust_reader")
    pipe_reader = os.environ.get("CAMUX_PIPE_READER") or str(examples / "pipe_reader")
    readers = {
        "rust": [rust_reader, "{dir}", "b", str(n)],
        "python": [sys.executable, "-c", PY_READER, "{dir}", "b", str(n), "meta"],
        "python-iter": [sys.executable, "-c", PY_READER, "{dir}", "b", str(n), "iter"],
        "python-np": [sys.executable, "-c", PY_READER, "{dir}", "b", str(n), "np"],
        "python-copy": [sys.executable, "-c", PY_READER, "{dir}", "b", str(n), "copy"],
        "camux-tail": [camux_bin(), "tail", "--dir", "{dir}", "b", "--count", str(n)],
        "c-floor": [pipe_reader, "{fd}", str(n)],
        "python-floor": [sys.executable, "-c", PY_PIPE_READER, "{fd}", str(n)],
    }
    # Round after round (every reader once per round), so a busy spell of a
    # shared machine hits every reader alike; each figure is then the median
    # over the rounds, and each ratio also the median of the rounds' own
    # ratios (paired: a reader against the Rust reader of the same round).
    rounds = [{k: run(k, readers[k], n, fps, width, height, copy) for k in kinds}
              for _ in range(repeat)]
    results = {}
    for k in kinds:
        per_round = [r[k]["cpu_us_per_frame"] for r in rounds]
        results[k] = dict(rounds[0][k], cpu_us_per_frame=statistics.median(per_round),
                          cpu_us_per_frame_runs=per_round,
                          lagged=max(r[k]["lagged"] for r in rounds))
    per = {k: r["cpu_us_per_frame"] for k, r in results.items()}

    def ratio(a: str, b: str) -> dict:
        paired = [r[a]["cpu_us_per_frame"] / r[b]["cpu_us_per_frame"] for r in rounds]
        return {"of_medians": per[a] / per[b], "median_paired": statistics.median(paired),
                "paired_runs": paired}

    ratios = {}
    if per.get("rust"):
        ratios["python/rust"] = ratio("python", "rust")
        if "python-iter" in per:
            ratios["python-iter/rust"] = ratio("python-iter", "rust")
        ratios["python-np/rust"] = ratio("python-np", "rust")
    if "python-copy" in per and per.get("python"):
        ratios["python-copy/python"] = ratio("python-copy", "python")
    above = {}
    if per.get("c-floor") and per.get("python-floor"):
        ratios["python-floor/c-floor"] = ratio("python-floor", "c-floor")
        # What camux adds on top of each language's own cold wake-up.
        for reader, floor in (("rust", "c-floor"), ("python", "python-floor"),
                              ("python-iter", "python-floor")):
            if reader in per:
                above[reader] = statistics.median(
                    r[reader]["cpu_us_per_frame"] - r[floor]["cpu_us_per_frame"] for r in rounds)
    return {"title": title, "frame": f"{width}x{height} YUYV", "fps": fps, "frames": n,
            "publisher": "publish --copy" if copy else "publish (render into a loan)",
            "rounds": repeat, "readers": results, "ratios": ratios,
            "above_floor_us": above}


def cpu_id():
    """Model name, family/model/stepping and L3 of CPU 0: a VM's model name
    alone ("AMD EPYC") does not tell two host generations apart."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
    except OSError:
        return "unknown CPU"
    l3 = ""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            l3 = f", L3 {f.read().strip()}"
    except OSError:
        pass
    return (f"{info.get('model name', 'unknown CPU')}, family {info.get('cpu family', '?')} "
            f"model {info.get('model', '?')} stepping {info.get('stepping', '?')}{l3}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds per scenario (every reader once per round); figures are medians")
    ap.add_argument("--only", choices=["paced", "copy", "warm"],
                    help="run one scenario: paced (render into a loan, with the floors), "
                         "copy (publish --copy) or warm (64x48 at 1000 fps)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    plan = [
        ("paced", "paced 1920x1080 (cold wake-ups)", args.frames, args.fps, 1920, 1080,
         ["rust", "python", "python-iter", "python-np", "python-copy", "camux-tail", "c-floor",
          "python-floor"], {}),
        # The same with the publisher copying each frame in (`publish --copy`,
        # as the daemon's V4L2 MMAP path does): rendering 4 MB straight into
        # a new slot each frame with cached stores evicts most of the
        # readers' caches between frames, which a camera's DMA (USERPTR) or
        # the streaming copy does not; the Python reader, with the larger
        # working set, pays more for it.
        ("copy", "paced 1920x1080, copy-in publisher", args.frames, args.fps, 1920, 1080,
         ["rust", "python", "python-iter", "python-np", "python-copy"], {"copy": True}),
        # Frame size does not matter to a metadata-only reader; small frames
        # let even a debug publisher run at 1000 fps, so each wake-up finds
        # the reader's caches warm.
        ("warm", "1000 fps 64x48 (warm wake-ups)", 1000, 1000, 64, 48,
         ["rust", "python", "python-iter", "python-np"], {}),
    ]
    runs = [scenario(title, n, fps, w, h, kinds, args.repeat, **kw)
            for name, title, n, fps, w, h, kinds, kw in plan if args.only in (None, name)]
    out = {
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_id(), "platform": platform.platform(),
                    "python": platform.python_version(), "load": os.getloadavg()},
        "publisher": camux_bin(),
        "runs": runs,
        "note": "camux-tail is whole-process CPU (start-up and printing included)",
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    m = out["machine"]
    print(f"{m['cpus']} CPUs ({m['cpu']}), load {m['load'][0]:.2f}, Python {m['python']}, publisher {out['publisher']}")
    for r in runs:
        print(f"{r['title']}: {r['frame']} at {r['fps']:g} fps, {r['frames']} frames per reader, "
              f"{r['publisher']}, {r['rounds']} round(s)")
        for k, v in r["readers"].items():
            runs_ = " ".join(f"{x:.1f}" for x in v["cpu_us_per_frame_runs"])
            print(f"  {k:12} {v['cpu_us_per_frame']:9.2f} us CPU/frame  (rounds: {runs_}; lagged {v['lagged']})")
        for k, v in r["ratios"].items():
            paired = " ".join(f"{x:.2f}" for x in v["paired_runs"])
            print(f"  {k:20} {v['of_medians']:6.2f}x of medians, {v['median_paired']:.2f}x median paired "
                  f"(rounds: {paired})")
        for k, v in r["above_floor_us"].items():
            print(f"  {k} above its floor: {v:.1f} us CPU/frame (median of the rounds)")


if __name__ == "__main__":
    main()
