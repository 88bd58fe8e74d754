#!/usr/bin/env bash
# Side-by-side benchmark of the per-container shim, under one private
# containerd (Debian's) in one run:
#   * RSS of N idle shims, each holding a running busybox `sleep`
#     container: carapace-shim (as shipped: hack/build-shim.sh, as containerd-shim-carapace-v2,
#     driving carapace-runtime) beside containerd-shim-runc-v2 (driving runc);
#   * shim start latency: the `start` command (spawn the server, serve the
#     socket, print the address), run directly, same arguments for both;
#   * `ctr run -d` latency per container (shim start + create + start).
# Usage: hack/bench-shim.sh [N]     (default 20)
# Prints per-shim VmRSS, RssAnon and Pss (mean, KiB; file pages of the binary
# are shared between shims, so Pss is the fair per-shim cost), start latency
# (median/p95, ms) and the
# ratios carapace/runc-v2.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
[ "$(id -u)" = 0 ] || { echo "bench-shim: needs root" >&2; exit 1; }
for t in containerd ctr containerd-shim-runc-v2 runc jq; do
    command -v "$t" >/dev/null || { echo "bench-shim: $t missing: run hack/install-deps.sh" >&2; exit 1; }
done
hack/build-runtime.sh target/release >/dev/null  # the runtime as shipped
hack/build-shim.sh target/release >/dev/null  # the shim as shipped (static musl)
rel=$PWD/target/release
work=$(mktemp -d /var/tmp/carapace-bench-shim.XXXXXX)
ctd_pid=
cleanup() {
    [ -n "${BENCH_KEEP:-}" ] && return
    set +e
    if [ -n "$ctd_pid" ]; then
        for c in $(ctr_ tasks list -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1; done
        sleep 1
        for c in $(ctr_ containers list -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1; ctr_ containers delete "$c" >/dev/null 2>&1; done
        kill "$ctd_pid" 2>/dev/null; wait "$ctd_pid" 2>/dev/null
    fi
    for p in $(awk -v r="$work" '$5 ~ "^"r {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$p"; done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin"
ln -s "$rel/carapace-shim" "$work/bin/containerd-shim-carapace-v2"
cat > "$work/config.toml" <<CFG
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
CFG
PATH=$work/bin:$PATH containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
ctr_() { ctr --address "$work/c.sock" --namespace bench "$@"; }
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null || { echo "bench-shim: containerd did not start" >&2; cat "$work/containerd.log" >&2; exit 1; }
hack/build-rootfs.sh "$work/rootfs" >/dev/null
hack/build-oci-archive.sh "$work/rootfs" "$work/bb.tar" carapace.bench/busybox:latest >/dev/null
ctr_ images import "$work/bb.tar" >/dev/null

# Times are microseconds from bash itself ($EPOCHREALTIME): a `date` per
# sample would add a fork+exec (1-3 ms here) to every measurement.
stat() { tr ' ' '\n' | grep . | sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(NR*q+0.999); if(i<1)i=1; printf "%.2f", a[i]/1000}'; }
declare -A run_us
shims=(carapace runc)
rt_of() { case $1 in carapace) echo io.containerd.carapace.v2;; runc) echo io.containerd.runc.v2;; esac; }
for i in $(seq 1 "$n"); do
    for s in "${shims[@]}"; do
        t0=${EPOCHREALTIME/./}
        ctr_ run -d --runtime "$(rt_of "$s")" carapace.bench/busybox:latest "$s-$i" sleep 3600 >/dev/null
        t1=${EPOCHREALTIME/./}
        run_us[$s]+="$(( t1 - t0 )) "
    done
done
sleep 2  # let every shim settle to idle
rss_of() {  # mean VmRSS, RssAnon and Pss (KiB) of the shim servers whose command is $1
    local rss=0 anon=0 pss=0 count=0 pid
    for pid in $(pgrep -f "$1 -namespace bench -id "); do
        rss=$(( rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") ))
        anon=$(( anon + $(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status") ))
        pss=$(( pss + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup") ))
        count=$(( count + 1 ))
    done
    [ "$count" -gt 0 ] || { echo "bench-shim: no $1 processes" >&2; exit 1; }
    echo "$(( rss / count )) $(( anon / count )) $(( pss / count )) $count"
}
read -r rss_c anon_c pss_c cnt_c < <(rss_of "$rel/carapace-shim")
read -r rss_r anon_r pss_r cnt_r < <(rss_of /usr/bin/containerd-shim-runc-v2)

# Shim start alone: `start` in a fresh bundle dir against the same
# containerd (the server is then told to shut down through containerd's
# own cleanup path: we kill it by the PID its socket names).
declare -A start_us
start_once() {  # shim-binary id
    local b=$work/start/$2
    mkdir -p "$b"
    (cd "$b" && "$rel/carapace-runtime" spec)
    local t0 t1 addr
    t0=${EPOCHREALTIME/./}
    addr=$(cd "$b" && TTRPC_ADDRESS=$work/c.sock.ttrpc "$1" -namespace bench-start -id "$2" -address "$work/c.sock" -publish-binary /bin/false start </dev/null)
    t1=${EPOCHREALTIME/./}
    echo "$(( t1 - t0 ))"
    addr=${addr#unix://}
    addr=$(echo "$addr" | jq -r '.address? // .' 2>/dev/null | sed 's|^unix://||' || echo "$addr")
    for pid in $(pgrep -f -- "-namespace bench-start -id $2 "); do kill -9 "$pid"; done
    rm -f "$addr"
}
for i in $(seq 1 "$n"); do
    start_us[carapace]+="$(start_once "$rel/carapace-shim" "sc$i") "
    start_us[runc]+="$(start_once "$(command -v containerd-shim-runc-v2)" "sr$i") "
done

printf '%-10s %8s %8s %8s %16s %12s %12s\n' shim "VmRSS" "RssAnon" "Pss" "start med/p95" "ctr-run med" "ctr-run p95"
for s in "${shims[@]}"; do
    case $s in carapace) r="$rss_c $anon_c $pss_c";; runc) r="$rss_r $anon_r $pss_r";; esac
    read -r a b c <<<"$r"
    printf '%-10s %8s %8s %8s %16s %12s %12s\n' "$s" "$a" "$b" "$c" \
        "$(echo "${start_us[$s]}" | stat 0.5)/$(echo "${start_us[$s]}" | stat 0.95)" \
        "$(echo "${run_us[$s]}" | stat 0.5)" "$(echo "${run_us[$s]}" | stat 0.95)"
done
echo "(KiB per idle shim, mean over carapace $cnt_c / runc-v2 $cnt_r shims; times in ms, N=$n)"
awk -v a="$rss_c" -v b="$rss_r" -v aa="$anon_c" -v ab="$anon_r" -v pa="$pss_c" -v pb="$pss_r" \
    -v sa="$(echo "${start_us[carapace]}" | stat 0.5)" -v sb="$(echo "${start_us[runc]}" | stat 0.5)" \
    -v ra="$(echo "${run_us[carapace]}" | stat 0.5)" -v rb="$(echo "${run_us[runc]}" | stat 0.5)" \
    'BEGIN {printf "ratio carapace/runc-v2: VmRSS %.2f  RssAnon %.2f  Pss %.2f  shim start %.2f  ctr run -d %.2f\n", a/b, aa/ab, pa/pb, sa/sb, ra/rb}'
