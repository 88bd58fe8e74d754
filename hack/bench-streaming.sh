#!/usr/bin/env bash
# Side-by-side streaming benchmark, one run, same machine, same client:
#   Carapace (release build) vs containerd (Debian's, its CRI plugin and
#   kubelet's streaming server, runc), set up as hack/bench-cri.sh does
#   (hack/bench-lib.sh). test/e2e's cri-bench plays kubectl with the e2e
#   SPDY/3.1 client, in one busybox pod per daemon:
#   exec: N round trips, each CRI Exec → URL → SPDY upgrade → `true` run
#     → its Success status received (median and p95 ms);
#   port-forward: one connection at a time (3 each way), MIB MiB
#     (default 256) pushed into an `nc` sink in the pod, and pulled from an
#     `nc` source in the pod (median and worst MiB/s).
# Usage: sudo hack/bench-streaming.sh [N] [MIB]   (defaults 20, 256)
# Prints the figures and the ratios carapace/containerd: for exec lower is
# better, for throughput higher is better.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-20}
mib=${2:-256}
bench_setup bench-streaming

start_carapace
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n" streaming "$image" "$mib") || { cat "$work/carapace.log" >&2; exit 1; }
stop_carapace

start_containerd
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n" streaming "$image" "$mib") || { cat "$work/containerd.log" >&2; exit 1; }

echo "bench-streaming: N=$n execs (ms), 3 x $mib MiB each way through one port-forward connection (MiB/s)"
printf '%-28s %12s %12s %8s\n' measure carapace containerd ratio
for m in exec_stream:median:p95 portforward_push:median:worst portforward_pull:median:worst; do
    IFS=: read -r name q2 q3 <<<"$m"
    for c in 2 3; do
        q=$([ "$c" = 2 ] && echo "$q2" || echo "$q3")
        a=$(field "$car_out" "$name" "$c"); b=$(field "$ctd_out" "$name" "$c")
        printf '%-28s %12s %12s %8s\n' "$name $q" "$a" "$b" "$(ratio "$a" "$b")"
    done
done
