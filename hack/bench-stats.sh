#!/usr/bin/env bash
# Side-by-side stats benchmark, one run, same machine, same client:
#   Carapace (release build, carapace-runtime as shipped) vs containerd
#   (Debian's, its CRI plugin, runc), set up as hack/bench-cri.sh does
#   (hack/bench-lib.sh).
#   With C busybox `sleep` containers running (default 50, five to a pod),
#   test/e2e's cri-bench times N ListContainerStats calls over every
#   container (median and p95 ms; one untimed warm-up call first;
#   containerd 1.6 cannot answer ListPodSandboxStats for pods without a
#   cgroup_parent, so that call is not compared), then sums the memory of the
#   daemon's shims (Pss and VmRSS from /proc, while the containers run).
#   Carapace runs one shim per container and one per pod infra;
#   containerd's runc-v2 shim serves a whole pod, so the totals (and the
#   totals per container) are what compare, not the per-shim figures.
# Usage: sudo hack/bench-stats.sh [N] [C]   (defaults 20, 50)
# Prints the figures and the ratios carapace/containerd (lower is better).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-20}
c=${2:-50}
bench_setup bench-stats

start_carapace
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n" stats "$image" "$c") || { cat "$work/carapace.log" >&2; exit 1; }
stop_carapace

start_containerd
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n" stats "$image" "$c") || { cat "$work/containerd.log" >&2; exit 1; }

echo "bench-stats: $c containers in $(((c + 4) / 5)) pods, N=$n calls each (median / p95 ms; shim memory KiB)"
printf '%-32s %12s %12s %8s\n' measure carapace containerd ratio
for m in list_container_stats; do
    for col in 2 3; do
        q=$([ "$col" = 2 ] && echo median || echo p95)
        a=$(field "$car_out" "$m" "$col"); b=$(field "$ctd_out" "$m" "$col")
        printf '%-32s %12s %12s %8s\n' "$m $q" "$a" "$b" "$(ratio "$a" "$b")"
    done
done
a=$(field "$car_out" shims 2); b=$(field "$ctd_out" shims 2)
printf '%-32s %12s %12s\n' "shim processes" "$a" "$b"
for col in 3:Pss 4:VmRSS; do
    IFS=: read -r k name <<<"$col"
    a=$(field "$car_out" shims "$k"); b=$(field "$ctd_out" shims "$k")
    printf '%-32s %12s %12s %8s\n' "shims total $name" "$a" "$b" "$(ratio "$a" "$b")"
    printf '%-32s %12s %12s %8s\n' "shims $name per container" "$((a / c))" "$((b / c))" "$(ratio "$a" "$b")"
done
