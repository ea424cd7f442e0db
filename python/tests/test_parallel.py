"""Two Python reader processes and one Rust reader (`camux tail`) on one stream."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import camux_bin

READER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import camux
    sys.path.insert(0, sys.argv[4])
    from conftest import check_stamp, ring_mappings
    d, stream, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sub = camux.Subscriber(stream, dir=d)
    print("registered", flush=True)
    maps = ring_mappings(os.path.realpath(f"{d}/{stream}.ring"))
    seqs, verified, lagged, in_ring = [], 0, 0, 0
    for frame in sub:
        with frame:
            a = np.asarray(frame)
            ptr = a.__array_interface__["data"][0]
            in_ring += any(s <= ptr and ptr + len(a) <= e for s, e in maps)
            frame.verify()
            if len(seqs) % 10 == 0:
                check_stamp(a, frame.seq)
            verified += 1
            lagged += frame.lagged
            seqs.append(frame.seq)
            del a
        if len(seqs) == n:
            break
    print(json.dumps({"seqs": seqs, "verified": verified, "lagged": lagged, "in_ring": in_ring}))
    """
)


def test_two_python_readers_and_a_rust_reader(publish, tmp_path):
    n = 120
    pub = publish(
        "cam0", "--width", "320", "--height", "240", "--fps", "50", "--slots", "32",
        "--frames", str(n), "--wait-readers", "3", "--linger", "20s",
    )
    tests_dir = str(Path(__file__).parent)
    py = [
        subprocess.Popen([sys.executable, "-c", READER, pub.dir, "cam0", str(n), tests_dir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for _ in range(2)
    ]
    rust = subprocess.Popen(
        [camux_bin(), "tail", "--dir", pub.dir, "cam0", "--count", str(n), "--verify", "--json",
         "--timeout-ms", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    results = []
    for p in py:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "registered"
        results.append(json.loads(lines[-1]))
    out, err = rust.communicate(timeout=120)
    assert rust.returncode == 0, err
    summary = [json.loads(l) for l in out.splitlines() if '"summary"' in l][-1]
    rust_seqs = [json.loads(l)["seq"] for l in out.splitlines() if l.startswith('{"seq"')]
    stopped = pub.stop()
    # --wait-readers 3: all three were registered before the first frame, so
    # each got every one of the n frames, verified, and nothing was dropped.
    expected = list(range(1, n + 1))
    for r in results:
        assert r["seqs"] == expected and r["verified"] == n and r["lagged"] == 0
        assert r["in_ring"] == n  # every view pointed into the ring mapping
    assert rust_seqs == expected
    assert summary["frames"] == n and summary["verified"] == n and summary["torn"] == 0
    assert stopped is not None and stopped["published"] == n and stopped["dropped"] == 0
