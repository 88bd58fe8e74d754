# Helpers shared by the CRI benchmarks (hack/bench-cri.sh, hack/bench-pull.sh,
# hack/bench-streaming.sh); sourced, not run.

# wait_sock PATH: waits (bounded) for a daemon's socket to appear.
wait_sock() {
    for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done
    echo "$(basename "$0"): $1 never appeared" >&2; return 1
}

# unmount_under DIR: lazily unmounts everything mounted below DIR, deepest first.
unmount_under() {
    for p in $(awk -v r="$1" '$5 ~ "^"r {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$p"; done
}

# field TEXT NAME COLUMN: column COLUMN of cri-bench's line NAME.
field() { echo "$1" | awk -v k="$2" -v c="$3" '$1 == k {print $c}'; }

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# rss PID: a process's resident set in KiB.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# --- Carapace next to containerd, one run, one machine ----------------------
#
# bench_setup NAME prepares what both daemons share: checks for root,
# containerd, runc and the CNI plugins; builds the release binaries
# (daemon, shim, runtime, infra, cri-bench); starts the test registry;
# makes a work dir and one bridge + host-local + portmap CNI config
# (bridge cbench0, 10.95.0.0/16) for both. Sets rel (release dir), reg,
# image (the test busybox), work; everything is undone on exit
# (bench_cleanup). Then start_carapace / stop_carapace and
# start_containerd run each daemon on $work/carapace.sock and
# $work/containerd.sock, logging to $work/<daemon>.log.
bench_setup() {
    bench_name=$1
    [ "$(id -u)" = 0 ] || { echo "$bench_name: needs root" >&2; exit 1; }
    for t in containerd ctr runc jq; do
        command -v "$t" >/dev/null || { echo "$bench_name: $t missing: run hack/install-deps.sh" >&2; exit 1; }
    done
    [ -x /usr/lib/cni/bridge ] || { echo "$bench_name: CNI plugins missing: run hack/install-deps.sh" >&2; exit 1; }
    cargo build --release -q -p carapace -p carapace-infra -p carapace-e2e
    hack/build-shim.sh target/release >/dev/null  # the shim as shipped
    hack/build-runtime.sh target/release >/dev/null  # the runtime as shipped
    hack/registry.sh start >/dev/null
    reg=127.0.0.1:5000
    image=$reg/test/busybox:latest
    rel=$PWD/target/release
    work=$(mktemp -d "/var/tmp/carapace-$bench_name.XXXXXX")
    car_pid= ctd_pid=
    trap bench_cleanup EXIT
    mkdir -p "$work/cni"
    cat > "$work/cni/10-bench.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "cbench0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.95.0.0/16"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
}

# bench_cleanup: stops the daemons bench_setup's caller started, unmounts
# what they left, removes the bridge and the work dir.
bench_cleanup() {
    set +e
    [ -n "$car_pid" ] && kill "$car_pid" 2>/dev/null && wait "$car_pid" 2>/dev/null
    [ -n "$ctd_pid" ] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
    unmount_under "$work"
    ip link del cbench0 2>/dev/null
    rm -rf "$work"
}

# start_carapace [TOML]: the release daemon with carapace-runtime on the
# shared CNI config, TOML appended to its config; sets car_pid.
start_carapace() {
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
${1:-}
CFG
    "$rel/carapace" --config "$work/carapace.toml" >"$work/carapace.log" 2>&1 &
    car_pid=$!
    wait_sock "$work/carapace.sock"
}

# stop_carapace: stops the daemon start_carapace started.
stop_carapace() {
    kill "$car_pid"; wait "$car_pid" 2>/dev/null || true; car_pid=
}

# start_containerd: Debian's containerd, its CRI plugin and runc on the
# shared CNI config; its pause image is our static carapace-infra packed
# as an OCI image (hack/build-oci-archive.sh); sets ctd_pid.
start_containerd() {
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
}
