#!/usr/bin/env bash
# The cgroup v2 lane: build the test executables of the crates whose
# behaviour depends on the cgroup version and run them inside a qemu VM that
# boots Debian's kernel with only the unified hierarchy (hack/vm-test.sh).
# Usage: hack/test-v2.sh [--timeout SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
timeout=600
if [ "${1:-}" = "--timeout" ]; then timeout=${2:?--timeout needs seconds}; fi
[ "$(id -u)" = 0 ] || { echo "hack/test-v2.sh: needs root" >&2; exit 1; }
# Test executables (not the doc tests) of the cgroup-dependent crates
# (cgroups, runtime, shim), as
# cargo lists them; the runtime's lib unit tests need no kernel and are
# left to the host lane.
mapfile -t exes < <(cargo test --no-run --message-format=json -p carapace-cgroups -p carapace-runtime -p carapace-shim 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test == true) | .executable' \
    | sort -u \
    | grep -v '/containerd-[0-9a-f]*$')
# (The shim's containerd test is left to the host lane: it exercises
# containerd's side of the protocol, not the cgroup version, and the VM
# carries no containerd.)
[ ${#exes[@]} -gt 0 ] || { echo "hack/test-v2.sh: no test executables built" >&2; exit 1; }
args=()
for e in "${exes[@]}"; do
    [ ${#args[@]} -gt 0 ] && args+=(---)
    args+=("$e" --test-threads=2)
done
echo "cgroup v2 lane: ${#exes[@]} test executables"
# The shim's tests drive carapace-runtime from the same build (found
# beside their deps/ directory, not embedded) and Debian's runc: ship both.
cargo build -p carapace-runtime
runtime_bin=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug/carapace-runtime
exec hack/vm-test.sh --timeout "$timeout" --add "$runtime_bin" --add /usr/sbin/runc -- "${args[@]}"
