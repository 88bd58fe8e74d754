#!/usr/bin/env bash
# Install everything Carapace's build, tests and benchmarks need on a fresh
# Debian 12 machine (run as root). Idempotent: skips what is present.
set -euo pipefail
pkgs=(
    busybox-static        # test rootfs
    protobuf-compiler     # CRI/ttrpc code generation
    libseccomp-dev        # seccomp filters (libseccomp crate)
    pkg-config
    runc crun containerd  # side-by-side benchmark peers; containerd also runs the shim as its runtime in tests
    jq                    # scripts
    iproute2 procps util-linux rsync
    file                  # infra tests check the binary is static
    binutils dpkg-dev     # strip and dpkg-shlibdeps (hack/build-deb.sh)
    lintian               # checks the Debian package in the systemd lane
    libssl-dev            # the TLS tests' certificates and client (dev-dependencies openssl, native-tls)
    docker-registry skopeo apache2-utils curl zstd openssl  # test registries and images (hack/registry.sh)
    containernetworking-plugins iptables  # pod networking (bridge, host-local, loopback, portmap)
    criu tar              # checkpoint/restore; CRIU dumps tmpfs contents with GNU tar (both shipped into the VM lane, whose kernel CRIU runs on)
    apparmor              # apparmor_parser: loads the default profile where the kernel enforces AppArmor (the VM lane)
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi
# The shipped shim is a static musl executable (hack/build-shim.sh); the
# target's standard library comes from rustup's distribution server.
musl=x86_64-unknown-linux-musl
command -v rustup >/dev/null ||
    { echo "install-deps: rustup not found: the shim's $musl target is added with rustup" >&2; exit 1; }
if ! rustup target list --installed | grep -qx "$musl"; then
    echo "install-deps: adding the Rust target $musl"
    rustup target add "$musl" >/dev/null ||
        { echo "install-deps: rustup target add $musl failed" >&2; exit 1; }
fi
echo "install-deps: ok"
