#!/usr/bin/env bash
# Cold image pull, side by side in one run: Carapace vs containerd (Debian's,
# its CRI plugin), both pulling the same multi-layer image (test/big, ~60 MiB
# in 6 layers) from the local test registry (hack/registry.sh), N times each,
# the image removed after every pull so each pull is cold.
# Usage: sudo hack/bench-pull.sh [N]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/bench-lib.sh
n=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-pull: needs root" >&2; exit 1; }
for t in containerd ctr jq; do
    command -v "$t" >/dev/null || { echo "bench-pull: $t missing: run hack/install-deps.sh" >&2; exit 1; }
done
hack/registry.sh start >/dev/null
reg=127.0.0.1:5000
image=$reg/test/big:latest
cargo build --release -q -p carapace -p carapace-infra -p carapace-e2e
hack/build-shim.sh target/release >/dev/null  # the shim as shipped
hack/build-runtime.sh target/release >/dev/null  # the runtime as shipped
rel=$PWD/target/release
work=$(mktemp -d /var/tmp/carapace-bench-pull.XXXXXX)
car_pid= ctd_pid=
cleanup() {
    set +e
    [ -n "$car_pid" ] && kill "$car_pid" 2>/dev/null && wait "$car_pid" 2>/dev/null
    [ -n "$ctd_pid" ] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
    unmount_under "$work"
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/carapace.toml" <<CFG
socket = "$work/carapace.sock"
root = "$work/car/root"
state = "$work/car/state"
[registry]
insecure = ["$reg"]
[log]
level = "warn"
CFG
"$rel/carapace" --config "$work/carapace.toml" >"$work/carapace.log" 2>&1 &
car_pid=$!
wait_sock "$work/carapace.sock"
car_out=$("$rel/cri-bench" "$work/carapace.sock" "$n" pull "$image") || { cat "$work/carapace.log" >&2; exit 1; }
kill "$car_pid"; wait "$car_pid" 2>/dev/null || true; car_pid=

cat > "$work/containerd.toml" <<CFG
version = 2
root = "$work/ctd/root"
state = "$work/ctd/state"
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$reg"]
    endpoint = ["http://$reg"]
CFG
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
wait_sock "$work/containerd.sock"
sleep 1
ctd_out=$("$rel/cri-bench" "$work/containerd.sock" "$n" pull "$image") || { cat "$work/containerd.log" >&2; exit 1; }

echo "bench-pull: $image, N=$n cold pulls (ms)"
printf '%-20s %12s %12s %8s\n' measure carapace containerd ratio
for c in 2 3; do
    q=$([ "$c" = 2 ] && echo median || echo p95)
    a=$(field "$car_out" pull_image "$c"); b=$(field "$ctd_out" pull_image "$c")
    printf '%-20s %12s %12s %8s\n' "pull $q" "$a" "$b" "$(ratio "$a" "$b")"
done
