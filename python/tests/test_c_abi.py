"""The C ABI: include/camux.h compiles cleanly as C11 and C++, and
examples/c/consumer.c, linked against libcamux.a, receives and verifies
frames from a real publisher (each frame checked twice: camux_frame_verify,
camux's own stamp code, and the example's own C implementation of it).

Needs the static library: `cargo build --release` in capi/ (or
$CAMUX_CAPI_LIB pointing at a libcamux.a).
"""

import os
import shutil
import subprocess

import pytest

from conftest import REPO

HEADER_DIR = REPO / "include"
EXAMPLE = REPO / "examples" / "c" / "consumer.c"


def capi_lib() -> str:
    lib = os.environ.get("CAMUX_CAPI_LIB") or str(REPO / "capi" / "target" / "release" / "libcamux.a")
    if not os.path.exists(lib):
        pytest.fail(f"no {lib}: run `cargo build --release` in {REPO / 'capi'} or set CAMUX_CAPI_LIB")
    return lib


def compiler(*names: str) -> str:
    for n in names:
        if shutil.which(n):
            return n
    pytest.fail(f"none of {names} is installed")


def test_header_compiles_as_c11_and_cpp(tmp_path):
    cc, cxx = compiler("cc", "gcc"), compiler("g++", "c++")
    hdr = str(HEADER_DIR / "camux.h")
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                    "-x", "c", hdr], check=True)
    subprocess.run([cxx, "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-fsyntax-only", hdr], check=True)


def test_c_consumer_receives_and_verifies(publish, tmp_path):
    exe = tmp_path / "consumer"
    subprocess.run(
        [compiler("cc", "gcc"), "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2",
         f"-I{HEADER_DIR}", str(EXAMPLE), capi_lib(), "-lpthread", "-ldl", "-lm", "-o", str(exe)],
        check=True,
    )
    n = 60
    pub = publish("cam0", "--width", "320", "--height", "240", "--fps", "50", "--slots", "32", "--frames", str(n),
                  "--wait-readers", "1", "--linger", "20s")
    p = subprocess.run([str(exe), pub.dir, "cam0", str(n)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == f"{n} frames, {n} verified"
    frames = [l for l in lines if l.startswith("#")]
    assert [int(l.split()[0][1:]) for l in frames] == list(range(1, n + 1))
    assert all("YUYV 320x240 stride 640 153600 bytes verified" in l for l in frames)
    stopped = pub.stop()
    assert stopped is not None and stopped["published"] == n


def test_c_consumer_reports_errors(tmp_path):
    exe = tmp_path / "consumer"
    subprocess.run(
        [compiler("cc", "gcc"), "-std=c11", f"-I{HEADER_DIR}", str(EXAMPLE), capi_lib(),
         "-lpthread", "-ldl", "-lm", "-o", str(exe)],
        check=True,
    )
    p = subprocess.run([str(exe), str(tmp_path), "nope", "1"], capture_output=True, text=True)
    assert p.returncode == 1
    assert "CAMUX_ERR_NOT_FOUND" in p.stderr and "no ring" in p.stderr
