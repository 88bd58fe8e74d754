#!/usr/bin/env bash
# Side-by-side CRI benchmark, one run, same machine, same requests:
#   Carapace (release build, carapace-runtime)  vs  containerd (Debian's,
#   its CRI plugin, runc), both with the same bridge + host-local CNI
#   config and the Debian CNI plugins; containerd's pause image is our
#   static carapace-infra packed as an OCI image (hack/build-oci-archive.sh).
# Measures, over N pods run one after another (test/e2e's cri-bench):
#   RunPodSandbox, and StopPodSandbox + RemovePodSandbox: median and p95 ms;
#   then N busybox containers (test image from hack/registry.sh), each in
#   its own pod: CreateContainer, StartContainer, ExecSync of `true` (5 per
#   container), StopContainer + RemoveContainer;
#   each daemon's RSS when idle (after start) and after the run.
# Usage: sudo hack/bench-cri.sh [N]   (default 20)
# Prints the figures and the ratios carapace/containerd (lower is better).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-20}
[ "$(id -u)" = 0 ] || { echo "bench-cri: needs root" >&2; exit 1; }
for t in containerd ctr runc jq; do
    command -v "$t" >/dev/null || { echo "bench-cri: $t missing: run hack/install-deps.sh" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "bench-cri: CNI plugins missing: run hack/install-deps.sh" >&2; exit 1; }
cargo build --release -q -p carapace -p carapace-shim -p carapace-runtime -p carapace-infra -p carapace-e2e
hack/registry.sh start >/dev/null
reg=127.0.0.1:5000
image=$reg/test/busybox:latest
rel=$PWD/target/release
work=$(mktemp -d /var/tmp/carapace-bench-cri.XXXXXX)
car_pid= ctd_pid=
cleanup() {
    set +e
    [ -n "$car_pid" ] && kill "$car_pid" 2>/dev/null && wait "$car_pid" 2>/dev/null
    [ -n "$ctd_pid" ] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
    unmount_under "$work"
    ip link del cbench0 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/cni"
cat > "$work/cni/10-bench.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "cbench0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.95.0.0/16"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# --- Carapace ---
cat > "$work/carapace.toml" <<CFG
socket = "$work/carapace.sock"
root = "$work/car/root"
state = "$work/car/state"
[runtime_handlers.carapace]
path = "$rel/carapace-runtime"
root = "$work/car/runtime"
[cni]
conf_dir = "$work/cni"
bin_dirs = ["/usr/lib/cni"]
[registry]
insecure = ["$reg"]
[log]
level = "${BENCH_LOG:-warn}"
CFG
"$rel/carapace" --config "$work/carapace.toml" >"$work/carapace.log" 2>&1 &
car_pid=$!
wait_sock "$work/carapace.sock"
sleep 1
car_idle=$(rss "$car_pid")
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n") || { cat "$work/carapace.log" >&2; exit 1; }
car_out+=$'\n'$("$rel/cri-bench" "$work/carapace.sock" "$n" containers "$image") || { cat "$work/carapace.log" >&2; exit 1; }
car_after=$(rss "$car_pid")
kill "$car_pid"; wait "$car_pid" 2>/dev/null || true; car_pid=

# --- containerd + runc ---
mkdir -p "$work/pause"
cp "$rel/carapace-infra" "$work/pause/pause"
hack/build-oci-archive.sh "$work/pause" "$work/pause.tar" carapace.bench/pause:latest /pause >/dev/null
cat > "$work/containerd.toml" <<CFG
version = 2
root = "$work/ctd/root"
state = "$work/ctd/state"
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "carapace.bench/pause:latest"
  stream_server_port = "0"
  # This machine lacks CAP_SYS_RESOURCE: keep oom_score_adj at or above
  # containerd's own (the sandbox's default -998 would fail).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$reg"]
    endpoint = ["http://$reg"]
CFG
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
wait_sock "$work/containerd.sock"
for _ in $(seq 100); do ctr --address "$work/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address "$work/containerd.sock" -n k8s.io images import "$work/pause.tar" >/dev/null
sleep 1
ctd_idle=$(rss "$ctd_pid")
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n") || { cat "$work/containerd.log" >&2; exit 1; }
ctd_out+=$'\n'$("$rel/cri-bench" "$work/containerd.sock" "$n" containers "$image") || { cat "$work/containerd.log" >&2; exit 1; }
ctd_after=$(rss "$ctd_pid")

echo "bench-cri: N=$n pods, N=$n containers, $((n * 5)) execs (median / p95 ms; RSS KiB)"
printf '%-28s %16s %16s %8s\n' measure carapace containerd ratio
for m in run_pod_sandbox stop_remove_pod_sandbox create_container start_container exec_sync stop_remove_container; do
    for c in 2 3; do
        q=$([ "$c" = 2 ] && echo median || echo p95)
        a=$(field "$car_out" "$m" "$c"); b=$(field "$ctd_out" "$m" "$c")
        printf '%-28s %16s %16s %8s\n' "$m $q" "$a" "$b" "$(ratio "$a" "$b")"
    done
done
printf '%-28s %16s %16s %8s\n' "daemon RSS idle" "$car_idle" "$ctd_idle" "$(ratio "$car_idle" "$ctd_idle")"
printf '%-28s %16s %16s %8s\n' "daemon RSS after run" "$car_after" "$ctd_after" "$(ratio "$car_after" "$ctd_after")"
