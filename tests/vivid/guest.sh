#!/bin/sh
# Runs inside the vivid VM (tests/vivid.rs boots it): exercises `camux
# publish --v4l2` against the kernel's vivid driver and prints what
# happened as JSON lines between "@@case NAME" and "@@end NAME" markers,
# for the host side to check. Nothing is asserted here: the host does it.
# Expects the camux binary on PATH and /dev/video0 (vivid capture).
D=/run/camux
mkdir -p $D /tmp/w
cd /tmp/w

section() { # NAME FILE...: print files between markers
	name=$1; shift
	echo "@@case $name"
	for f in "$@"; do
		# awk ends every line, also a file's last one without a newline.
		[ -s "$f" ] && awk -v f="$f" '{ print f ": " $0 }' "$f"
	done
	echo "@@end $name"
}

# Starts a publisher with its stdout on a FIFO and waits for its first line
# (ready, or nothing if it failed): no sleeping, the read blocks until then.
start_pub() { # NAME ARGS...
	name=$1; shift
	rm -f pub.$name.fifo; mkfifo pub.$name.fifo
	camux publish --dir $D "$@" >pub.$name.fifo 2>pub.$name.err &
	echo $! >pub.$name.pid
	exec 3<pub.$name.fifo
	read -r line <&3
	echo "$line" >pub.$name.out
}

stop_pub() { # NAME: SIGTERM, then collect the rest of its output
	kill -TERM "$(cat pub.$1.pid)" 2>/dev/null
	finish_pub "$1"
}

finish_pub() { # NAME: collect the rest of its output as it ends by itself
	name=$1
	cat <&3 >>pub.$name.out
	exec 3<&-
	wait "$(cat pub.$name.pid)"
	echo "{\"exit\":$?}" >>pub.$name.out
}

# 1-2. USERPTR and MMAP at 640x480 YUYV 25 fps, two readers each.
for io in userptr mmap; do
	start_pub $io --stream $io --v4l2 /dev/video0 --format YUYV --width 640 \
		--height 480 --fps 25 --io $io
	for r in 1 2; do
		camux tail --dir $D $io --count 60 --json --hash --timeout-ms 20000 \
			>tail.$io.$r 2>tail.$io.$r.err &
		echo $! >tail.$io.$r.pid
	done
	for r in 1 2; do
		wait "$(cat tail.$io.$r.pid)"
		echo "{\"exit\":$?}" >>tail.$io.$r
	done
	camux inspect $D/$io.ring --json >inspect.$io 2>&1
	stop_pub $io
	section $io pub.$io.out pub.$io.err tail.$io.1 tail.$io.2 tail.$io.1.err \
		tail.$io.2.err inspect.$io
done

# 3. auto picks USERPTR on vivid.
start_pub auto --stream auto --v4l2 /dev/video0 --format YUYV --width 640 \
	--height 480 --fps 25 --frames 5
finish_pub auto
section auto pub.auto.out pub.auto.err

# 4. MJPG: vivid substitutes YUYV; an error unless substitution is allowed.
camux publish --dir $D --stream mjpg --v4l2 /dev/video0 --format MJPG \
	--frames 3 >mjpg.out 2>mjpg.err
echo "{\"exit\":$?}" >>mjpg.out
camux publish --dir $D --stream mjpg2 --v4l2 /dev/video0 --format MJPG \
	--allow-substitution --frames 3 >mjpg2.out 2>mjpg2.err
echo "{\"exit\":$?}" >>mjpg2.out
section mjpg mjpg.out mjpg.err
section mjpg_allowed mjpg2.out mjpg2.err

# 5. A busy device: a second producer on the same node while one streams.
start_pub holder --stream holder --v4l2 /dev/video0 --format YUYV --width 640 \
	--height 480 --fps 25
camux publish --dir $D --stream second --v4l2 /dev/video0 --frames 3 \
	>busy.out 2>busy.err
echo "{\"exit\":$?}" >>busy.out
stop_pub holder
section busy busy.out busy.err pub.holder.out

# 6. A missing device.
camux publish --dir $D --stream gone --v4l2 /dev/video9 --frames 3 \
	>missing.out 2>missing.err
echo "{\"exit\":$?}" >>missing.out
section missing missing.out missing.err

# 7. A stable name (udev makes these on real nodes; the VM has no udev).
mkdir -p /dev/v4l/by-path
ln -sf ../../video0 /dev/v4l/by-path/platform-vivid.0-video-index0
camux publish --dir $D --stream bypath --v4l2 \
	/dev/v4l/by-path/platform-vivid.0-video-index0 --frames 3 \
	>bypath.out 2>bypath.err
echo "{\"exit\":$?}" >>bypath.out
camux devices --json >devices.json 2>devices.err
section bypath bypath.out bypath.err devices.json devices.err

# 8. The daemon with a camera and a camera that is not there.
mkdir -p /run/camux-d
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up # the initramfs leaves lo down
cat >daemon.yaml <<'YAML'
dir: /run/camux-d
listen: 127.0.0.1:9470
streams:
  - name: vcam
    source: { type: v4l2, device: /dev/video0, format: YUYV, width: 640, height: 480, fps: 25 }
  - name: gone
    required: false
    source: { type: v4l2, device: /dev/video9 }
YAML
rm -f daemon.fifo; mkfifo daemon.fifo
camux daemon --config daemon.yaml >daemon.fifo 2>daemon.err &
DPID=$!
exec 4<daemon.fifo
read -r line <&4
echo "$line" >daemon.out
camux tail --dir /run/camux-d vcam --count 30 --json --hash --timeout-ms 20000 >tail.daemon 2>&1
wget -qO- http://127.0.0.1:9470/status >status.daemon 2>&1
wget -qO- http://127.0.0.1:9470/metrics 2>&1 |
	grep -E '^camux_(frames_published_total|stream_up|source_restarts_total)' >metrics.daemon
kill -TERM $DPID
cat <&4 >>daemon.out
exec 4<&-
wait $DPID
echo "{\"exit\":$?}" >>daemon.out
section daemon daemon.out tail.daemon status.daemon metrics.daemon daemon.err

# 9. Unplug (vivid's "disconnect" error-injection control) while streaming:
# the producer stops with its device-lost error. Last: the node is gone.
start_pub unplug --stream unplug --v4l2 /dev/video0 --format YUYV --width 640 \
	--height 480 --fps 25
camux tail --dir $D unplug --count 5 --json --timeout-ms 20000 >tail.unplug 2>&1
v4l2-ctl -d /dev/video0 --set-ctrl disconnect=1 >ctl.unplug 2>&1
echo "{\"ctl_exit\":$?}" >>ctl.unplug
finish_pub unplug
section unplug pub.unplug.out pub.unplug.err tail.unplug ctl.unplug

# 10. The daemon through an unplug and a replug: the camera stream goes to
# retrying and publishes again when the device returns (vivid reloaded),
# with no daemon restart; a synthetic stream beside it never stops.
vko=$(find /lib/modules -name 'vivid.ko*' | head -n 1)
replug() { # rmmod may race a retry that has the node open: try a few times
	i=0
	until rmmod vivid 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 50 ] || { echo "rmmod vivid failed"; return 1; }
		sleep 0.1
	done
	insmod "$vko" || return 1
	i=0; while [ ! -e /dev/video0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	echo "replugged: $(ls /dev/video0)"
}
vcam_state() { # the vcam stream's state word from /status
	wget -qO- http://127.0.0.1:9471/status 2>/dev/null |
		grep -o '"name":"vcam","source":"v4l2","required":[a-z]*,"state":"[a-z]*"' |
		sed 's/.*"state":"//; s/"$//'
}
wait_state() { # STATE SECONDS: poll /status (HTTP state can only be polled)
	i=0
	while [ "$(vcam_state)" != "$1" ]; do
		i=$((i + 1)); [ $i -lt $(($2 * 10)) ] || { echo "{\"never\":\"$1\"}"; return 1; }
		sleep 0.1
	done
	echo "{\"reached\":\"$1\",\"polls\":$i}"
}
replug >replug.log 2>&1 # case 9 left the node unplugged
# The earlier cases' rings fill the VM's memory: free it, and give this
# case a tmpfs of its own.
rm -rf /run/camux /run/camux-d
mkdir -p /run/camux-r && mount -t tmpfs -o size=64m tmpfs /run/camux-r
cat >replug.yaml <<'YAML'
dir: /run/camux-r
listen: 127.0.0.1:9471
streams:
  - name: vcam
    source: { type: v4l2, device: /dev/video0, format: YUYV, width: 640, height: 480, fps: 25 }
  - name: syn
    source: { type: synthetic, width: 64, height: 48, fps: 25 }
YAML
rm -f replug.fifo; mkfifo replug.fifo
camux daemon --config replug.yaml >replug.fifo 2>replug.err &
RPID=$!
exec 5<replug.fifo
read -r line <&5
echo "$line" >replug.out
wait_state publishing 60 >wait.log
camux tail --dir /run/camux-r vcam --count 10 --json --timeout-ms 20000 >tail.before 2>&1
wget -qO- http://127.0.0.1:9471/status >status.before 2>&1
v4l2-ctl -d /dev/video0 --set-ctrl disconnect=1 >ctl.replug 2>&1
echo "{\"ctl_exit\":$?}" >>ctl.replug
wait_state retrying 30 >>wait.log
replug >>replug.log 2>&1
wait_state publishing 90 >>wait.log
camux tail --dir /run/camux-r vcam --count 10 --json --timeout-ms 20000 >tail.after 2>&1
wget -qO- http://127.0.0.1:9471/status >status.after 2>&1
kill -TERM $RPID
cat <&5 >>replug.out
exec 5<&-
wait $RPID
echo "{\"exit\":$?}" >>replug.out
section replug replug.out tail.before tail.after status.before status.after ctl.replug wait.log replug.log replug.err
