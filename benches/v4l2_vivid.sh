#!/usr/bin/env bash
# Producer CPU per frame, V4L2 USERPTR (zero copy) against MMAP + one copy,
# capturing from the kernel's vivid driver in a QEMU VM. Both modes run
# alternately in the same VM boot, twice per size; the figure is the
# capture thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per frame after a
# warm-up of two passes over the ring (a slot's first trip to the driver
# pins its pages once). Prints a table and the USERPTR/MMAP ratio.
#
# Needs: cargo, qemu-system-x86, busybox-static, cpio, kmod, xz-utils
# (see tests/vivid/run-in-vivid-vm.sh). Usage: benches/v4l2_vivid.sh [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
# CAMUX_FEATURES (.ci/run sets it) lets CI reuse its one release build.
cargo build --release --quiet --features "${CAMUX_FEATURES:-v4l2}" --bin camux
out=$(bash tests/vivid/run-in-vivid-vm.sh -t 600 -m 1024 -c "${VIVID_CPUS:-1}" \
	-f target/release/camux:/test/camux benches/v4l2_vivid_guest.sh \
	1280x720@12.5:100 1920x1080@5:60)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
accel=tcg
[ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && accel=kvm
runs=$(printf '%s\n' "$out" | sed -n 's/^@@bench //p')
RUNS=$runs python3 - "$cpu" "$(nproc)" "$accel" "${1:-}" <<'PY'
import json, os, sys, statistics
cpu, cores, accel, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = [json.loads(l) for l in os.environ["RUNS"].splitlines() if l.strip()]
assert runs, "no benchmark output from the VM"
sizes = {}
for r in runs:
    s = r["stopped"]
    assert s.get("error") is None, s
    per = s.get("steady_cpu_us_per_frame")
    assert per is not None, f"run too short for a steady figure: {s}"
    sizes.setdefault((r["width"], r["height"]), {}).setdefault(s["io"], []).append(
        (per, s["bytes_copied_per_frame"]))
machine = f"{cpu}, {cores} cores, guest under QEMU {accel.upper()}"
results = []
for (w, h), modes in sorted(sizes.items()):
    u = statistics.median(p for p, _ in modes["userptr"])
    m = statistics.median(p for p, _ in modes["mmap"])
    results.append({"width": w, "height": h, "userptr_cpu_us_per_frame": u,
                    "mmap_cpu_us_per_frame": m, "ratio": u / m,
                    "userptr_bytes_copied_per_frame": modes["userptr"][0][1],
                    "mmap_bytes_copied_per_frame": modes["mmap"][0][1]})
if mode == "--json":
    print(json.dumps({"machine": machine, "results": results}))
    sys.exit(0)
print(f"V4L2 capture from vivid: producer CPU per frame (median of 2 runs each)")
print(f"machine: {machine}")
print(f"{'size':>10} {'USERPTR us':>11} {'MMAP+copy us':>13} {'ratio':>6} {'copied/frame U/M':>22}")
for r in results:
    print(f"{r['width']:>5}x{r['height']:<4} {r['userptr_cpu_us_per_frame']:>11.0f} "
          f"{r['mmap_cpu_us_per_frame']:>13.0f} {r['ratio']:>6.2f} "
          f"{r['userptr_bytes_copied_per_frame']:>10.0f}/{r['mmap_bytes_copied_per_frame']:<10.0f}")
PY
