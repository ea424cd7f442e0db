#!/usr/bin/env bash
# The daemon's own CPU, side by side with the standalone publisher doing
# the same work, in one run:
#  - idle: a daemon whose one stream waits on a silent sensor FIFO (no
#    frames, no readers): what the daemon costs doing nothing (main loop
#    tick, HTTP server, heartbeats);
#  - per frame: a daemon publishing a 64-byte RAW test pattern at 1000 fps
#    with no readers, against `camux publish` with the same source, rate
#    and ring: the difference is the daemon's supervision, status board and
#    HTTP, and the ratio says what it adds. (Rendering a 64-byte stamped
#    record is a few hundred ns of it, the same in both.)
# CPU is the scheduler's exact run time of every thread of the process
# (/proc/PID/task/*/schedstat, ns; /proc/PID/stat counts 10 ms ticks) over
# a fixed window. Usage: benches/daemon_cpu.sh [SECONDS] (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
# CAMUX_FEATURES (e.g. v4l2, as .ci/run sets it) lets CI reuse its one release build.
cargo build --release --quiet --features "${CAMUX_FEATURES:-}" --bin camux
bin=target/release/camux
work=$(mktemp -d /dev/shm/camux-daemon-cpu.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cpu_s() { # PID -> CPU seconds so far, all threads
	cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.9f\n", s / 1e9 }'
}
measure() { # PID -> CPU seconds over the window
	local a b
	a=$(cpu_s "$1"); sleep "$secs"; b=$(cpu_s "$1")
	awk -v a="$a" -v b="$b" 'BEGIN { print b - a }'
}
wait_line() { # FILE PATTERN: block until the file has a matching line
	while ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.05; done
}

# Idle daemon.
mkfifo "$work/gps"
exec 7<>"$work/gps" # an open, silent writer: the stream publishes nothing
cat >"$work/idle.yaml" <<YAML
dir: $work/idle
streams:
  - name: gps
    source: { type: sensor, path: $work/gps, lines: true }
YAML
"$bin" daemon --config "$work/idle.yaml" --listen 127.0.0.1:0 >"$work/idle.out" 2>/dev/null &
idle_pid=$!
wait_line "$work/idle.out" started
idle=$(measure $idle_pid)
kill -TERM $idle_pid; wait $idle_pid || true

# Per frame: daemon against the standalone publisher.
cat >"$work/busy.yaml" <<YAML
dir: $work/busy
streams:
  - name: imu
    source: { type: synthetic, format: RAW, width: 64, height: 1, fps: 1000 }
YAML
"$bin" daemon --config "$work/busy.yaml" --listen 127.0.0.1:0 >"$work/busy.out" 2>/dev/null &
d_pid=$!
wait_line "$work/busy.out" started
addr=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$work/busy.out")
published() { # daemon /status -> frames published
	python3 -c 'import json,sys,urllib.request; s=json.load(urllib.request.urlopen("http://'"$1"'/status")); print(s["streams"][0]["published"])'
}
sleep 1 # let the stream reach its rate before the window
f0=$(published "$addr"); d_cpu=$(measure $d_pid); f1=$(published "$addr")
kill -TERM $d_pid; wait $d_pid || true

"$bin" publish --dir "$work/pub" --stream imu --format RAW --width 64 --height 1 --fps 1000 \
	>"$work/pub.out" 2>/dev/null &
p_pid=$!
wait_line "$work/pub.out" ready
sleep 1
p_cpu=$(measure $p_pid)
kill -TERM $p_pid; wait $p_pid || true
p_frames=$(sed -n 's/.*"event":"stopped","published":\([0-9]*\).*/\1/p' "$work/pub.out")

python3 - "$idle" "$secs" "$d_cpu" "$((f1 - f0))" "$p_cpu" "$p_frames" <<'PY'
import platform, sys
idle, secs, d_cpu, d_frames, p_cpu, p_frames = map(float, sys.argv[1:])
# The publisher's frame count is over its whole run (window + ramp): use the rate.
p_rate = 1000.0
d_us = d_cpu / max(d_frames, 1) * 1e6
p_us = p_cpu / (p_rate * secs) * 1e6
cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
print(f"machine: {cpu}, {platform.release()}")
print(f"daemon idle (one silent sensor stream, no readers): {idle / secs * 100:.3f} % of a core")
print(f"64 B RAW at 1000 fps, no readers: daemon {d_us:.2f} us/frame "
      f"({d_frames / secs:.0f} fps measured), camux publish {p_us:.2f} us/frame, ratio {d_us / p_us:.2f}")
PY
