#!/usr/bin/env bash
# Pack a root filesystem directory as a one-layer OCI image archive
# (oci-layout, index.json, blobs/sha256) that `ctr images import` reads,
# for tests on machines without registry access.
# Usage: hack/build-oci-archive.sh ROOTFS OUT.tar REF [CMD...]
#   REF   image name recorded in the index (io.containerd.image.name),
#         e.g. carapace.test/busybox:latest
#   CMD   the image's default command (default: sh)
# The layer is reproducible: sorted names, mtime 0, numeric owners.
set -euo pipefail
rootfs=${1:?usage: build-oci-archive.sh ROOTFS OUT.tar REF [CMD...]}
out=${2:?usage: build-oci-archive.sh ROOTFS OUT.tar REF [CMD...]}
ref=${3:?usage: build-oci-archive.sh ROOTFS OUT.tar REF [CMD...]}
shift 3
[ -d "$rootfs" ] || { echo "build-oci-archive: $rootfs is not a directory" >&2; exit 1; }
for t in jq sha256sum gzip tar; do
    command -v "$t" >/dev/null || { echo "build-oci-archive: $t missing (hack/install-deps.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
blobs=$work/blobs/sha256
mkdir -p "$blobs"

# put FILE MEDIATYPE -> prints a descriptor and stores FILE as a blob
put() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$blobs/$d"
    jq -n -c --arg m "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$m,digest:$d,size:$s}'
}

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -c "$work/layer.tar" > "$work/layer.tgz"
rm "$work/layer.tar"
layer=$(put "$work/layer.tgz" application/vnd.oci.image.layer.v1.tar+gzip)

if [ $# -eq 0 ]; then set -- sh; fi
cmd=$(printf '%s\n' "$@" | jq -R . | jq -s -c .)
jq -n -c --arg diff "$diff_id" --argjson cmd "$cmd" '{
    architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
    config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: $cmd},
    rootfs: {type: "layers", diff_ids: [$diff]}
}' > "$work/config.json"
config=$(put "$work/config.json" application/vnd.oci.image.config.v1+json)

jq -n -c --argjson c "$config" --argjson l "$layer" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: $c, layers: [$l]
}' > "$work/manifest.json"
manifest=$(put "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)

tag=${ref##*:}
[ "$tag" != "$ref" ] || tag=latest
jq -n -c --argjson m "$manifest" --arg ref "$ref" --arg tag "$tag" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$m + {annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag},
                      platform: {architecture: "amd64", os: "linux"}}]
}' > "$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out" oci-layout index.json blobs
echo "build-oci-archive: $out ($ref, $(stat -c %s "$out") bytes)"
