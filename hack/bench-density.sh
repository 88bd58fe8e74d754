#!/usr/bin/env bash
# Side-by-side density benchmark, one run, same machine, same client:
#   Carapace (release build, carapace-runtime as shipped) vs containerd
#   (Debian's, its CRI plugin, runc), set up as hack/bench-cri.sh does
#   (hack/bench-lib.sh).
# N pods with one busybox `sleep` container each, started C at a time
# (kubelet starts pods in parallel), then with all N running: the List*
# calls (median / p95 ms of 10), the memory of what the node runs for
# the pods beyond the containers' own processes (the daemon's shims and
# the pods' infra/pause processes, Pss and VmRSS from /proc; Carapace runs
# a shim per container and one per pod infra, containerd one runc-v2 shim
# per pod; containerd's pause is our own carapace-infra packed as an
# image, so the infra side is alike), the daemon's Pss and RSS right after
# the List calls and again 5 s later (at rest: both daemons return freed
# memory in the background); then all N removed, C at a time. test/e2e's
# cri-bench (density mode) does the work.
# Usage: sudo hack/bench-density.sh [N] [C]   (defaults 100, 4)
# Prints the figures and the ratios carapace/containerd (lower is better).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-100}
c=${2:-4}
bench_setup bench-density

start_carapace
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n" density "$image" "$c" "$car_pid") || { cat "$work/carapace.log" >&2; exit 1; }
stop_carapace

start_containerd
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n" density "$image" "$c" "$ctd_pid") || { cat "$work/containerd.log" >&2; exit 1; }

echo "bench-density: $n pods with a container each, $c at a time (wall ms; List* median / p95 ms of 10; memory KiB)"
printf '%-34s %12s %12s %8s\n' measure carapace containerd ratio
row() { printf '%-34s %12s %12s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row "up (run+create+start), wall" "$(field "$car_out" up_ms 2)" "$(field "$ctd_out" up_ms 2)"
row "down (stop+remove pod), wall" "$(field "$car_out" down_ms 2)" "$(field "$ctd_out" down_ms 2)"
for m in list_pod_sandbox list_containers list_container_stats; do
    row "$m median" "$(field "$car_out" "$m" 2)" "$(field "$ctd_out" "$m" 2)"
    row "$m p95" "$(field "$car_out" "$m" 3)" "$(field "$ctd_out" "$m" 3)"
done
printf '%-34s %12s %12s\n' "shim processes" "$(field "$car_out" shims 2)" "$(field "$ctd_out" shims 2)"
printf '%-34s %12s %12s\n' "infra processes" "$(field "$car_out" infra 2)" "$(field "$ctd_out" infra 2)"
for col in 3:Pss 4:VmRSS; do
    IFS=: read -r k name <<<"$col"
    as=$(field "$car_out" shims "$k"); bs=$(field "$ctd_out" shims "$k")
    ai=$(field "$car_out" infra "$k"); bi=$(field "$ctd_out" infra "$k")
    row "shims $name per pod" "$((as / n))" "$((bs / n))"
    row "shims+infra $name per pod" "$(((as + ai) / n))" "$(((bs + bi) / n))"
done
row "daemon Pss at $n pods" "$(field "$car_out" daemon 2)" "$(field "$ctd_out" daemon 2)"
row "daemon VmRSS at $n pods" "$(field "$car_out" daemon 3)" "$(field "$ctd_out" daemon 3)"
row "daemon Pss, 5 s later" "$(field "$car_out" daemon_settled 2)" "$(field "$ctd_out" daemon_settled 2)"
row "daemon VmRSS, 5 s later" "$(field "$car_out" daemon_settled 3)" "$(field "$ctd_out" daemon_settled 3)"
