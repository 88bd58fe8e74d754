#!/usr/bin/env bash
# Build carapace-runtime as shipped: a static-pie glibc executable with
# libseccomp linked in and whole-program LTO (profile `runtime` in
# Cargo.toml). A runtime process lives a few milliseconds and starts twice
# per command when run by its path (it re-executes itself from a protected
# copy, CVE-2019-5736; the shim runs it from one), so the dynamic
# loader's work at every start (loading libc, libseccomp and libgcc_s,
# relocating them, resolving symbols) was a visible share of `run`:
# `--version` took 0.95 ms of CPU dynamic, 0.71 ms static-pie and 0.57 ms
# static-pie with the `runtime` profile here (perf stat -r 300).
# Position independent on purpose: the runtime runs as root and reads the
# bundle, so it keeps ASLR (a position-dependent build started 0.05 ms
# faster).
# Usage: hack/build-runtime.sh [DIR]
#   Prints the built binary's path; with DIR, also installs it as
#   DIR/carapace-runtime (e.g. target/release, beside the daemon, which
#   runs the carapace-runtime found beside itself).
# Needs libseccomp's static library (libseccomp-dev, hack/install-deps.sh);
# fails if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
case $target in
*-linux-gnu) ;;
*) echo "build-runtime: host target $target is not a glibc Linux target" >&2; exit 1 ;;
esac
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
libdir=/usr/lib/${multiarch:-x86_64-linux-gnu}
[ -f "$libdir/libseccomp.a" ] ||
    { echo "build-runtime: $libdir/libseccomp.a missing: run hack/install-deps.sh (libseccomp-dev)" >&2; exit 1; }
# An explicit --target keeps these flags off build scripts and proc macros
# (host artifacts).
var=CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
env "$var=-C target-feature=+crt-static" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$libdir" \
    cargo build -q --profile runtime --target "$target" -p carapace-runtime
dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
bin=$dir/$target/runtime/carapace-runtime
[ -x "$bin" ] || { echo "build-runtime: $bin missing after cargo build" >&2; exit 1; }
file -L "$bin" | grep -q "static-pie linked" ||
    { echo "build-runtime: $bin is not a static-pie executable: $(file -L "$bin")" >&2; exit 1; }
if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    # Replace, never write through: a running runtime keeps the old inode.
    install -m 0755 "$bin" "$1/carapace-runtime.new"
    mv -f "$1/carapace-runtime.new" "$1/carapace-runtime"
fi
echo "$bin"
