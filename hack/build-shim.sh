#!/usr/bin/env bash
# Build carapace-shim as shipped: a static, position-dependent musl
# executable, optimized for size with whole-program LTO (profile `shim` in
# Cargo.toml, rustflags in .cargo/config.toml). One shim runs per container,
# so every page of code it maps is paid in every shim's RSS (docs/shim.md).
# Usage: hack/build-shim.sh [DIR]
#   Prints the built binary's path; with DIR, also installs it as
#   DIR/carapace-shim (e.g. target/release, beside the daemon, which runs the
#   carapace-shim found beside itself).
# Needs the x86_64-unknown-linux-musl Rust target (hack/install-deps.sh adds
# it); fails if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" ||
    { echo "build-shim: Rust target $target missing: run hack/install-deps.sh (rustup target add $target)" >&2; exit 1; }
cargo build -q --profile shim --target "$target" -p carapace-shim
dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
bin=$dir/$target/shim/carapace-shim
[ -x "$bin" ] || { echo "build-shim: $bin missing after cargo build" >&2; exit 1; }
if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    # Replace, never write through: a running shim keeps the old inode.
    install -m 0755 "$bin" "$1/carapace-shim.new"
    mv -f "$1/carapace-shim.new" "$1/carapace-shim"
fi
echo "$bin"
