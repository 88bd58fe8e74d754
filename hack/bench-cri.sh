#!/usr/bin/env bash
# Side-by-side CRI benchmark, one run, same machine, same requests:
#   Carapace (release build, carapace-runtime as shipped)  vs  containerd
#   (Debian's, its CRI plugin, runc), both with the same bridge +
#   host-local CNI config and the Debian CNI plugins; containerd's pause image is our
#   static carapace-infra packed as an OCI image (hack/build-oci-archive.sh).
#   The shared setup is in hack/bench-lib.sh.
# Measures, over N pods run one after another (test/e2e's cri-bench):
#   RunPodSandbox, and StopPodSandbox + RemovePodSandbox (and each alone):
#   median and p95 ms;
#   then N busybox containers (test image from hack/registry.sh), each in
#   its own pod: CreateContainer, StartContainer, ExecSync of `true` (5 per
#   container), StopContainer + RemoveContainer;
#   each daemon's RSS when idle (after start) and after the run;
#   and first the CNI plugin chain alone on N fresh network namespaces
#   (cni-bench: ADD, then DEL), the floor under RunPodSandbox and
#   StopPodSandbox that both daemons pay: the pod calls are also shown
#   above it. The chain alone runs in its own window, and its DEL (the
#   kernel's veth deletion) moves by several ms between windows: the
#   differences are a guide, not a measure.
# Usage: sudo hack/bench-cri.sh [N]   (default 20)
# Prints the figures and the ratios carapace/containerd (lower is better).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-20}
bench_setup bench-cri

# --- The CNI plugin chain alone ---
cni_out=$("$rel/cni-bench" "$work/cni" /usr/lib/cni "$work" "$n")

# --- Carapace ---
start_carapace
sleep 1
car_idle=$(rss "$car_pid")
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n") || { cat "$work/carapace.log" >&2; exit 1; }
car_out+=$'\n'$("$rel/cri-bench" "$work/carapace.sock" "$n" containers "$image") || { cat "$work/carapace.log" >&2; exit 1; }
car_after=$(rss "$car_pid")
stop_carapace

# --- containerd + runc ---
start_containerd
sleep 1
ctd_idle=$(rss "$ctd_pid")
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n") || { cat "$work/containerd.log" >&2; exit 1; }
ctd_out+=$'\n'$("$rel/cri-bench" "$work/containerd.sock" "$n" containers "$image") || { cat "$work/containerd.log" >&2; exit 1; }
ctd_after=$(rss "$ctd_pid")

echo "bench-cri: N=$n pods, N=$n containers, $((n * 5)) execs (median / p95 ms; RSS KiB)"
printf '%-34s %12s %12s %8s\n' measure carapace containerd ratio
for m in run_pod_sandbox stop_remove_pod_sandbox stop_pod_sandbox remove_pod_sandbox create_container start_container exec_sync stop_remove_container; do
    for c in 2 3; do
        q=$([ "$c" = 2 ] && echo median || echo p95)
        a=$(field "$car_out" "$m" "$c"); b=$(field "$ctd_out" "$m" "$c")
        printf '%-34s %12s %12s %8s\n' "$m $q" "$a" "$b" "$(ratio "$a" "$b")"
    done
done
# The CNI chain's own time, taken off both daemons' pod calls.
for pair in "run_pod_sandbox cni_add" "stop_pod_sandbox cni_del"; do
    set -- $pair
    f=$(field "$cni_out" "$2" 2)
    a=$(awk -v x="$(field "$car_out" "$1" 2)" -v f="$f" 'BEGIN {printf "%.2f", x - f}')
    b=$(awk -v x="$(field "$ctd_out" "$1" 2)" -v f="$f" 'BEGIN {printf "%.2f", x - f}')
    printf '%-34s %12s %12s %8s\n' "$2 chain alone median" "$f" "$f" ""
    printf '%-34s %12s %12s %8s\n' "$1 above it" "$a" "$b" "$(ratio "$a" "$b")"
done
printf '%-34s %12s %12s %8s\n' "daemon RSS idle" "$car_idle" "$ctd_idle" "$(ratio "$car_idle" "$ctd_idle")"
printf '%-34s %12s %12s %8s\n' "daemon RSS after run" "$car_after" "$ctd_after" "$(ratio "$car_after" "$ctd_after")"
