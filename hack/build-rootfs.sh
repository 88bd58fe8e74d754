#!/usr/bin/env bash
# Build a minimal busybox root filesystem for runtime tests and benchmarks.
# Usage: hack/build-rootfs.sh DEST
# Applets are hard links (not symlinks), so masking one path never masks
# busybox itself. Needs Debian's busybox-static (hack/install-deps.sh).
set -euo pipefail
dest=${1:?usage: build-rootfs.sh DEST}
bb=/bin/busybox
if [ ! -x "$bb" ] || ! "$bb" true; then
    echo "build-rootfs: $bb missing or broken: install busybox-static (hack/install-deps.sh)" >&2
    exit 1
fi
if ldd "$bb" >/dev/null 2>&1; then
    echo "build-rootfs: $bb is dynamically linked: install busybox-static" >&2
    exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var/run,home}
chmod 1777 "$dest/tmp"
cp "$bb" "$dest/bin/busybox"
"$dest/bin/busybox" --install "$dest/bin"
cat > "$dest/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$dest/etc/group" <<'G'
root:x:0:
www-data:x:33:
nogroup:x:65534:
G
echo "rootfs ready at $dest ($(ls "$dest/bin" | wc -l) applets)"
