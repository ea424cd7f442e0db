#!/bin/bash
# (Vendored copy of the workplace VM runner, shared/vm/run-in-vivid-vm.sh, so
# the project and its CI need nothing outside the repository.)
# run-in-vivid-vm.sh - run a test binary inside a throw-away QEMU VM that boots
# a stock Debian kernel with the `vivid` virtual V4L2 driver loaded, so V4L2
# capture code can be tested against real /dev/video* nodes without a camera.
#
# Usage: run-in-vivid-vm.sh [options] [--] BINARY [ARGS...]
#   -o OPTS     vivid module options (default: $VIVID_OPTS, else none)
#   -f SRC[:DST] copy an extra host file/binary into the guest (DST defaults
#               to /test/<basename>; dynamic ELF files get their libs too)
#   -e VAR=VAL  environment variable for the guest program (repeatable)
#   -m MB       guest memory (default 512)     -c N  guest CPUs (default 1)
#   -t SECS     overall timeout (default 300)  -k    keep the work directory
# BINARY (static or dynamic ELF, or a #!/bin/sh script) runs as PID-1's child
# in /test with /dev, /proc, /sys, /tmp mounted; busybox and v4l2-ctl (if
# installed on the host) are on PATH. The guest console (kernel messages at
# "quiet" level plus the program's stdout/stderr) is streamed to stdout, and
# this script exits with the program's exit status (124 on timeout, 125 if the
# VM died without reporting a status).
#
# Host needs only Debian packages:
#   apt-get install qemu-system-x86 busybox-static cpio kmod xz-utils [v4l-utils]
# The kernel comes from a Debian linux-image-*-amd64 .deb, fetched once with
# `apt-get download` (needs a prior `apt-get update`) and unpacked into a cache.
# Environment:
#   VIVID_VM_CACHE       cache dir (default ${XDG_CACHE_HOME:-~/.cache}/vivid-vm)
#   VIVID_VM_KERNEL_DEB  use this linux-image .deb instead of downloading one
#   VIVID_VM_KERNEL_PKG  package to download (default: what linux-image-amd64
#                        depends on, e.g. linux-image-6.1.0-57-amd64)
#   VIVID_VM_ACCEL       kvm | tcg | auto (default: kvm if /dev/kvm + vmx/svm)
#   VIVID_VM_APPEND      extra kernel command line arguments
#   VIVID_VM_TOOLS       host programs to add to the guest PATH (default v4l2-ctl)
set -euo pipefail

die() { echo "run-in-vivid-vm: $*" >&2; exit 125; }
log() { echo "run-in-vivid-vm: $*" >&2; }

mem=512 cpus=1 timeout_s=300 keep=0 vivid_opts=${VIVID_OPTS:-}
extra_files=() guest_env=()
while getopts "o:f:e:m:c:t:kh" opt; do
	case $opt in
	o) vivid_opts=$OPTARG ;;
	f) extra_files+=("$OPTARG") ;;
	e) guest_env+=("$OPTARG") ;;
	m) mem=$OPTARG ;;
	c) cpus=$OPTARG ;;
	t) timeout_s=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "usage: $0 [options] BINARY [ARGS...] (-h for help)"
test_bin=$1; shift
[ -f "$test_bin" ] || die "test binary '$test_bin' not found"

for c in qemu-system-x86_64 cpio modprobe dpkg-deb timeout; do
	command -v "$c" >/dev/null || die "missing '$c' (apt-get install qemu-system-x86 busybox-static cpio kmod)"
done
busybox=/bin/busybox
[ -x "$busybox" ] || die "missing /bin/busybox (apt-get install busybox-static)"

# --- 1. Kernel + modules from a Debian linux-image package (cached) ---------
cache=${VIVID_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vivid-vm}
mkdir -p "$cache"
deb=${VIVID_VM_KERNEL_DEB:-}
if [ -n "$deb" ]; then
	kroot="$cache/$(basename "$deb" .deb)"
else
	pkg=${VIVID_VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (run apt-get update?)"
	kroot="$cache/$pkg"
fi
if [ ! -e "$kroot/.done" ]; then
	rm -rf "$kroot" && mkdir -p "$kroot/dl"
	if [ -z "$deb" ]; then
		log "downloading $pkg with apt-get download"
		(cd "$kroot/dl" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
		deb=$(ls "$kroot/dl/"*.deb)
	fi
	log "unpacking $(basename "$deb")"
	dpkg-deb -x "$deb" "$kroot"
	rm -rf "$kroot/dl"
	kver=$(ls "$kroot/lib/modules" | head -n1)
	depmod -b "$kroot" "$kver"   # the .deb ships no modules.dep (postinst makes it)
	# Keep only vivid and its dependencies (~3 MB instead of ~400 MB).
	modprobe -C /dev/null -d "$kroot" -S "$kver" --show-depends vivid |
		awk '$1 == "insmod" {print $2}' >"$kroot/keep"
	[ -s "$kroot/keep" ] || die "vivid.ko not in $(basename "$deb")"
	find "$kroot/lib/modules/$kver/kernel" -type f | grep -vxFf "$kroot/keep" | xargs rm -f
	depmod -b "$kroot" "$kver"
	# Unpack the bzImage payload to an ELF vmlinux: QEMU boots it via PVH,
	# skipping the in-guest decompressor (~5 s under TCG emulation).
	bz="$kroot/boot/vmlinuz-$kver"
	if grep -q '^CONFIG_PVH=y' "$kroot/boot/config-$kver"; then
		for m in '\xfd7zXZ\x00:xz -dcq --single-stream' '\x28\xb5\x2f\xfd:zstd -dcq' \
			'\x1f\x8b\x08:gzip -dcq'; do
			off=$(LC_ALL=C grep -obUaP "${m%%:*}" "$bz" | head -n1 | cut -d: -f1)
			[ -n "$off" ] || continue
			tail -c +$((off + 1)) "$bz" | ${m#*:} >"$kroot/vmlinux" 2>/dev/null || true
			[ "$(head -c4 "$kroot/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
				[ "$(stat -c %s "$kroot/vmlinux")" -gt 4000000 ] && break
			rm -f "$kroot/vmlinux"
		done
	fi
	echo "$kver" >"$kroot/.done"
fi
kver=$(cat "$kroot/.done")
kernel="$kroot/vmlinux"
[ -r "$kernel" ] || { kernel="$kroot/boot/vmlinuz-$kver"; log "note: no vmlinux, booting bzImage (slower)"; }
[ -r "$kernel" ] || die "no readable kernel in $kroot"

# --- 2. initramfs tree --------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vivid-vm.XXXXXX")
[ "$keep" = 1 ] && log "work dir: $work" || trap 'rm -rf "$work"' EXIT
tree=$work/root
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,test,etc}

# Copy an ELF/script to DST inside the tree, plus the shared libs ldd reports.
add_file() {
	local src=$1 dst=$2 lib
	mkdir -p "$tree$(dirname "$dst")"
	cp -L "$src" "$tree$dst"
	ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
		[ -e "$tree$lib" ] || { mkdir -p "$tree$(dirname "$lib")"; cp -L "$lib" "$tree$lib"; }
	done || true
}
add_file "$busybox" /bin/busybox
add_file "$test_bin" "/test/$(basename "$test_bin")"
chmod +x "$tree/test/$(basename "$test_bin")"
for t in ${VIVID_VM_TOOLS-v4l2-ctl}; do
	if p=$(command -v "$t"); then add_file "$p" "/usr/bin/$t"; else log "note: no '$t' on host"; fi
done
for f in "${extra_files[@]}"; do
	add_file "${f%%:*}" "$([[ $f == *:* ]] && echo "${f#*:}" || echo "/test/$(basename "$f")")"
done

# vivid and its dependencies, in load order (ignore host modprobe.d config).
insmods=$(modprobe -C /dev/null -d "$kroot" -S "$kver" --show-depends vivid) ||
	die "vivid not found in $kver"
load_cmds=""
while read -r kind path _; do
	[ "$kind" = insmod ] || continue
	rel=${path#"$kroot"}
	mkdir -p "$tree$(dirname "$rel")"
	cp "$path" "$tree$rel"
	case $rel in */vivid.ko*) load_cmds+="insmod $rel $vivid_opts"$'\n' ;;
		*) load_cmds+="insmod $rel"$'\n' ;; esac
done <<<"$insmods"

# Quote the program + args for the guest's POSIX sh.
q() { printf "'%s' " "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }
cmd="$(q "/test/$(basename "$test_bin")")"
for a in "$@"; do cmd+="$(q "$a")"; done
envs=""
for e in "${guest_env[@]}"; do envs+="export $(q "$e")"$'\n'; done
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
marker="@@vivid-vm-exit-$nonce"

cat >"$tree/init" <<EOF
#!/bin/busybox sh
/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1   # initramfs has no /dev/console node
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t tmpfs tmp /tmp
mkdir -p /dev/pts /dev/shm; mount -t devpts pts /dev/pts; mount -t tmpfs shm /dev/shm
export PATH=/test:/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp TMPDIR=/tmp
$load_cmds
i=0; while [ ! -e /dev/video0 ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
$envs
cd /test
$cmd
echo "$marker \$?@@"
sync
poweroff -f
EOF
chmod +x "$tree/init"
# Uncompressed cpio: gunzip inside an emulated guest costs more than it saves.
(cd "$tree" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/initrd.cpio"

# --- 3. boot ------------------------------------------------------------------
accel=${VIVID_VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
	# Needs a usable /dev/kvm *and* hardware virt: some sandboxes expose a
	# /dev/kvm (e.g. kvm_pvm) that only runs PVM-aware guest kernels.
	accel=tcg
	[ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && accel=kvm
fi
case $accel in
kvm) qaccel=(-accel kvm -cpu host) ;;
*) qaccel=(-accel tcg -cpu max) ;;
esac
log "booting $kver $(basename "$kernel") ($accel, ${mem}M, $cpus cpu) initrd $(du -h "$work/initrd.cpio" | cut -f1)"
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 "${qaccel[@]}" -m "$mem" -smp "$cpus" \
	-nodefaults -no-user-config -display none -serial stdio -no-reboot \
	-kernel "$kernel" -initrd "$work/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 cryptomgr.notests ${VIVID_VM_APPEND:-}" </dev/null |
	sed -u 's/\r$//' | tee "$work/console.log"
qrc=${PIPESTATUS[0]}
set -e
[ "$qrc" = 124 ] && { log "timeout after ${timeout_s}s"; exit 124; }
rc=$(sed -n "s/^.*$marker \([0-9]*\)@@.*$/\1/p" "$work/console.log" | tail -n1)
[ -n "$rc" ] || die "guest did not report an exit status (qemu rc=$qrc)"
exit "$rc"
