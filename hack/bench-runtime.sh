#!/usr/bin/env bash
# Side-by-side benchmark of the low-level runtimes: `run` (create + start +
# wait + delete) of /bin/true in the same busybox bundle, for
# carapace-runtime (as shipped: hack/build-runtime.sh), runc and crun,
# interleaved in one run.
# Usage: hack/bench-runtime.sh [N]        (N >= 50 recommended; default 50)
# Prints median and p95 per runtime and the ratios to crun and runc.
#
# carapace-runtime runs twice per sample, as its callers run it:
#   carapace-shim  from a read-only overlay of its directory, as
#                  carapace-shim runs it (carapace-exe), so it does not
#                  re-execute itself (CVE-2019-5736 defence already met);
#   carapace-path  by its path, as from a shell: it re-executes itself
#                  from such a copy first, a second process start.
# runc and crun run by their paths, as containerd's shim runs them (both
# re-execute themselves from a protected copy too).
#
# Debian's crun 1.8 refuses this machine's hybrid cgroup layout, so all three
# run inside a private mount namespace with the controller-less v2 mount at
# /sys/fs/cgroup/unified unmounted (the host is not changed).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
if [ -z "${CARAPACE_BENCH_INNER:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "bench-runtime: needs root" >&2; exit 1; }
    for t in runc crun jq; do
        command -v "$t" >/dev/null || { echo "bench-runtime: $t missing: run hack/install-deps.sh" >&2; exit 1; }
    done
    CARAPACE_BENCH_RUNTIME=$(hack/build-runtime.sh)
    export CARAPACE_BENCH_RUNTIME CARAPACE_BENCH_INNER=1
    exec unshare -m --propagation private "$0" "$n"
fi
umount /sys/fs/cgroup/unified 2>/dev/null || true
work=$(mktemp -d /tmp/carapace-bench.XXXXXX)
trap 'umount "$work/ro" 2>/dev/null || true; rm -rf "$work"' EXIT
hack/build-rootfs.sh "$work/rootfs" >/dev/null
carapace=$CARAPACE_BENCH_RUNTIME
# The shim's copy is a detached mount; here an attached one in this private
# namespace: the same read-only overlayfs with no upper layer.
mkdir -p "$work/empty" "$work/ro"
mount -t overlay overlay -o "ro,lowerdir=$(dirname "$carapace"):$work/empty" "$work/ro"
(cd "$work" && "$carapace" spec && jq '.process.terminal=false | .process.args=["/bin/true"] | .root.path="rootfs"' config.json > c && mv c config.json)
declare -A times
runtimes=(carapace-shim carapace-path runc crun)
bin_of() {
    case $1 in
    carapace-shim) echo "$work/ro/$(basename "$carapace")" ;;
    carapace-path) echo "$carapace" ;;
    *) command -v "$1" ;;
    esac
}
for r in "${runtimes[@]}"; do  # warm-up
    "$(bin_of "$r")" --root "$work/state-$r" run --bundle "$work" "warm-$r" >/dev/null
done
# Times are microseconds from bash itself ($EPOCHREALTIME): a `date` per
# sample would add a fork+exec (1-3 ms here) to every measurement.
for i in $(seq 1 "$n"); do
    for r in "${runtimes[@]}"; do
        b=$(bin_of "$r")
        t0=${EPOCHREALTIME/./}
        "$b" --root "$work/state-$r" run --bundle "$work" "b$i" >/dev/null
        t1=${EPOCHREALTIME/./}
        times[$r]+="$(( t1 - t0 )) "
    done
done
stat() { tr ' ' '\n' | grep . | sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(NR*q+0.999); if(i<1)i=1; printf "%.2f", a[i]/1000}'; }
printf '%-14s %10s %10s   (ms, N=%s, run of /bin/true)\n' runtime median p95 "$n"
declare -A med
for r in "${runtimes[@]}"; do
    med[$r]=$(echo "${times[$r]}" | stat 0.5)
    printf '%-14s %10s %10s\n' "$r" "${med[$r]}" "$(echo "${times[$r]}" | stat 0.95)"
done
for c in carapace-shim carapace-path; do
    awk -v k="$c" -v c="${med[$c]}" -v u="${med[crun]}" -v r="${med[runc]}" \
        'BEGIN {printf "ratio %s/crun = %.2f   %s/runc = %.2f\n", k, c/u, k, c/r}'
done
