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
echo "== the shim as shipped (hack/build-shim.sh: static musl, size-optimized)"
# The tests above ran the shim cargo built for them; the shim that
# hack/run-daemon.sh installs is another executable (another libc, profile
# and linking), so its integration tests run again against that one,
# installed as it would be: beside carapace-runtime (here the tests' own).
shipped=$PWD/target/shipped
hack/build-shim.sh "$shipped" >/dev/null
ln -sfn ../debug/carapace-runtime "$shipped/carapace-runtime"
file -L "$shipped/carapace-shim" | grep -q "statically linked" || { echo "hack/test.sh: the shipped shim is not static" >&2; exit 1; }
CARAPACE_TEST_SHIM=$shipped/carapace-shim cargo test -p carapace-shim --tests -- --test-threads="${TEST_THREADS:-2}"
echo "== cgroup v2 lane (qemu, Debian kernel, unified hierarchy only)"
hack/test-v2.sh
