#!/usr/bin/env bash
# Run every test of the project: formatting, lints, unit tests and the
# kernel-level integration tests (these need root: namespaces, cgroups,
# mounts). This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "hack/test.sh: the integration tests need root (namespaces, cgroups, mounts)" >&2
    exit 1
fi
hack/install-deps.sh
export CARAPACE_TEST_ROOTFS=${CARAPACE_TEST_ROOTFS:-$PWD/target/test-rootfs}
hack/build-rootfs.sh "$CARAPACE_TEST_ROOTFS"
# The image tests pull from local registries filled with the test images.
hack/registry.sh start
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
echo "== the shim and runtime as shipped (hack/build-shim.sh, hack/build-runtime.sh)"
# The tests above ran the shim and runtime cargo built for them; the ones
# hack/run-daemon.sh and the Debian package install are other executables
# (static, another libc for the shim, other profiles and linking), so their
# integration tests run again against those, installed side by side as
# they would be (the shim runs the carapace-runtime beside itself).
shipped=$PWD/target/shipped
hack/build-shim.sh "$shipped" >/dev/null
hack/build-runtime.sh "$shipped" >/dev/null
file -L "$shipped/carapace-shim" | grep -q "statically linked" || { echo "hack/test.sh: the shipped shim is not static" >&2; exit 1; }
file -L "$shipped/carapace-runtime" | grep -q "static-pie linked" || { echo "hack/test.sh: the shipped runtime is not static-pie" >&2; exit 1; }
CARAPACE_TEST_RUNTIME=$shipped/carapace-runtime cargo test -p carapace-runtime --tests -- --test-threads="${TEST_THREADS:-2}"
CARAPACE_TEST_SHIM=$shipped/carapace-shim cargo test -p carapace-shim --tests -- --test-threads="${TEST_THREADS:-2}"
echo "== cgroup v2 lane (qemu, Debian kernel, unified hierarchy only)"
hack/test-v2.sh
