#!/usr/bin/env bash
# Builds every fuzz target and runs each for ${FUZZ_SECONDS:-30} seconds,
# starting from the committed seeds (seeds/<target>/) plus whatever an earlier
# run left in corpus/<target>/ (not committed), after replaying every input
# that once crashed it (regressions/<target>/, committed). Fails on the first crash,
# leak, timeout or out-of-memory: the reproducer is in artifacts/<target>/.
# CI calls this from .ci/run; cargo-fuzz runs on stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs=${FUZZ_SECONDS:-30}

if ! command -v cargo-fuzz >/dev/null; then
	echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
	exit 1
fi

# Per-target libFuzzer options: the ring images are 16 KiB seeds.
max_len() {
	case "$1" in
	read_image) echo 32768 ;;
	daemon_config) echo 8192 ;;
	header_roundtrip) echo 1024 ;;
	*) echo 4096 ;;
	esac
}

targets=$(cargo fuzz list)
cargo fuzz build
mkdir -p logs
summary=()
for t in $targets; do
	mkdir -p "corpus/$t" "seeds/$t"
	echo "==> fuzz $t for ${secs}s"
	status=0
	# Inputs that once crashed a target are replayed first, every run.
	regress=()
	[ -d "regressions/$t" ] && regress=("regressions/$t")
	cargo fuzz run "$t" "corpus/$t" "seeds/$t" "${regress[@]}" -- \
		-max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1 || status=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
	if [ "$status" -ne 0 ]; then
		tail -n 60 "logs/$t.log" >&2
		echo "fuzz target $t FAILED (exit $status); reproducer under fuzz/artifacts/$t/" >&2
		exit 1
	fi
	summary+=("$t: ${execs:-?} executions in ${secs}s, no crash")
done
printf '%s\n' "${summary[@]}"
