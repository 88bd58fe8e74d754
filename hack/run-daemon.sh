#!/usr/bin/env bash
# Set this machine up as a Carapace node and run the CRI daemon in the
# foreground on /run/carapace/carapace.sock (Ctrl-C or SIGTERM stops it;
# pods keep running and are picked up again on the next start):
#   * installs what the daemon needs (hack/install-deps.sh: CNI plugins,
#     iptables, runc/crun for other runtime handlers, …);
#   * builds the release binaries (carapace, carapace-infra, and the shim
#     and runtime as shipped by hack/build-shim.sh and hack/build-runtime.sh
#     sit side by side in target/release);
#   * writes a default pod network (bridge cni0 + host-local 10.88.0.0/16 +
#     portmap) to /etc/cni/net.d if that directory holds no network yet;
#   * starts the daemon with /etc/carapace/config.toml if present.
# Usage: sudo hack/run-daemon.sh [carapace arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run-daemon: needs root (namespaces, mounts, cgroups, CNI)" >&2; exit 1; }
hack/install-deps.sh
cargo build --release -p carapace -p carapace-infra
hack/build-shim.sh target/release >/dev/null
hack/build-runtime.sh target/release >/dev/null
confdir=/etc/cni/net.d
mkdir -p "$confdir"
if ! ls "$confdir"/*.conf "$confdir"/*.conflist "$confdir"/*.json >/dev/null 2>&1; then
    # The default pod network, the one the Debian package installs.
    install -m 0644 packaging/10-carapace.conflist "$confdir/10-carapace.conflist"
    echo "run-daemon: wrote the default pod network to $confdir/10-carapace.conflist"
fi
exec target/release/carapace "$@"
