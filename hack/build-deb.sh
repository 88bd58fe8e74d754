#!/usr/bin/env bash
# Build the Debian package carapace_<version>_amd64.deb with dpkg-deb (part
# of dpkg, on every Debian machine; cargo-deb would add a tool to install
# and a second place for the package's metadata, for a package this small).
#
# It holds, from a release build of this tree:
#   /usr/bin/carapace, carapace-infra
#   /usr/bin/carapace-runtime     the runtime as shipped (hack/build-runtime.sh)
#   /usr/bin/carapace-shim        the shim as shipped (hack/build-shim.sh)
#   /usr/bin/containerd-shim-carapace-v2 -> carapace-shim, for containerd
#   /lib/systemd/system/carapace.service   (packaging/carapace.service)
#   /etc/carapace/config.toml     `carapace config default`: a conffile, so
#                                 an upgrade keeps the operator's edits
#   /usr/share/carapace/10-carapace.conflist  the default pod network, put
#                                 in /etc/cni/net.d by postinst only when
#                                 that directory holds no network
#   /usr/share/man/man8/          carapace(8), carapace-runtime(8) and a
#                                 page per subcommand, rendered from the
#                                 commands' own --help (`carapace man DIR`)
# Maintainer scripts: postinst enables and (re)starts the service where
# systemd runs (a restart leaves containers running: KillMode=process);
# prerm stops it on removal; postrm purge removes /var/lib/carapace and
# /run/carapace (a plain remove keeps containers' data).
#
# Usage: hack/build-deb.sh [OUTDIR] [VERSION]
#   OUTDIR defaults to target/deb; VERSION to the workspace version. Prints
#   the package's path. CARAPACE_BUILD in the environment names the build
#   (`carapace --version` says it), so two builds of one tree differ.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/deb}
version=${2:-$(cargo metadata --format-version 1 --no-deps | jq -r '.packages[] | select(.name == "carapace") | .version')}
[ -n "$version" ] || { echo "build-deb: no version" >&2; exit 1; }
maintainer=${DEB_MAINTAINER:-Carapace developers <carapace@example.org>}
for t in dpkg-deb dpkg-shlibdeps; do
    command -v $t >/dev/null || { echo "build-deb: $t missing (apt-get install dpkg-dev)" >&2; exit 1; }
done
cargo build --release -q -p carapace -p carapace-infra
shim=$(hack/build-shim.sh)
runtime=$(hack/build-runtime.sh)
rel=target/release
# dpkg-shlibdeps reads the daemon's libraries (libc, libgcc_s) into
# Depends (the other executables are static); it wants a debian/ tree
# around the package's root.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/debian/carapace
mkdir -p "$stage"
printf 'Source: carapace\n\nPackage: carapace\nArchitecture: amd64\n' > "$work/debian/control"
chmod 0755 "$stage" # it becomes the package's ./, i.e. /
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/etc/carapace" "$stage/usr/share/carapace" "$stage/usr/share/doc/carapace" \
    "$stage/usr/share/man/man8"
for b in carapace carapace-infra; do
    install -m 0755 "$rel/$b" "$stage/usr/bin/$b"
    # As Debian ships binaries: no symbols (panics keep their messages).
    strip --strip-unneeded "$stage/usr/bin/$b"
done
install -m 0755 "$shim" "$stage/usr/bin/carapace-shim"
install -m 0755 "$runtime" "$stage/usr/bin/carapace-runtime"
ln -s carapace-shim "$stage/usr/bin/containerd-shim-carapace-v2"
install -m 0644 packaging/carapace.service "$stage/lib/systemd/system/carapace.service"
"$rel/carapace" config default > "$stage/etc/carapace/config.toml"
chmod 0644 "$stage/etc/carapace/config.toml"
install -m 0644 packaging/10-carapace.conflist "$stage/usr/share/carapace/10-carapace.conflist"
man=$stage/usr/share/man/man8
"$rel/carapace" man "$man" >/dev/null
"$runtime" man "$man" >/dev/null
install -m 0644 packaging/carapace-shim.8 packaging/carapace-infra.8 "$man/"
ln -s carapace-shim.8.gz "$man/containerd-shim-carapace-v2.8.gz"
chmod 0644 "$man"/*.8
gzip -9n "$man"/*.8
install -m 0644 packaging/copyright "$stage/usr/share/doc/carapace/copyright"
# Debian wants a changelog in every package; the project's history is git's.
printf '%s\n' "carapace ($version) unstable; urgency=medium" "" \
    "  * Built from the Carapace tree; its history is in the project's git log." "" \
    " -- $maintainer  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}")" \
    | gzip -9n > "$stage/usr/share/doc/carapace/changelog.gz"
chmod 0644 "$stage/usr/share/doc/carapace/changelog.gz"
# The shim, runtime and infra are static by design (the shim runs beside
# every container, the runtime starts twice per command, the infra in an
# empty root): said once, for lintian.
install -d "$stage/usr/share/lintian/overrides"
install -m 0644 packaging/lintian-overrides "$stage/usr/share/lintian/overrides/carapace"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e debian/carapace/usr/bin/carapace \
    | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no libraries" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: carapace
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $size
Depends: $shlibs, containernetworking-plugins, iptables
Recommends: apparmor
Section: admin
Priority: optional
Description: Kubernetes container runtime (CRI) with its own OCI runtime
 Carapace serves kubelet's Container Runtime Interface on
 /run/carapace/carapace.sock: pod sandboxes with shared namespaces, one
 shim per container that owns its stdio, images pulled from registries,
 pods wired with CNI plugins, containers run by carapace-runtime.
CONTROL
echo /etc/carapace/config.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # A default pod network only where the node has none.
    if [ ! -d /etc/cni/net.d ] || [ -z "$(ls -A /etc/cni/net.d 2>/dev/null)" ]; then
        mkdir -p /etc/cni/net.d
        cp /usr/share/carapace/10-carapace.conflist /etc/cni/net.d/10-carapace.conflist
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable carapace.service >/dev/null 2>&1 || true
        # An upgrade restarts the daemon; its containers keep running.
        systemctl restart carapace.service
    fi
fi
exit 0
POSTINST
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
# Stopped for good only on removal (an upgrade restarts it in postinst);
# containers keep running either way (KillMode=process).
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop carapace.service || true
fi
exit 0
PRERM
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/carapace /run/carapace
fi
exit 0
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/carapace_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
