#!/usr/bin/env bash
# Build the test images that Carapace's image pull tests and benchmarks use.
# Each one is an OCI image layout (oci-layout, index.json, blobs/sha256) under
# OUTDIR. The content comes from Debian packages only (busybox-static); no image
# is downloaded. hack/registry.sh pushes them to the local test registries.
# Usage: hack/build-test-images.sh OUTDIR [NAME...]     (as root)
#   busybox    busybox rootfs (hack/build-rootfs.sh), Cmd ["sh"]
#   nonroot    busybox plus user app (1000:1000), User "app",
#              WorkingDir /home/app (owned 1000:1000)
#   layered    3 layers: gzip, zstd, uncompressed. Layer 1 is busybox plus
#              /data/{keep,gone}, /opq/{a,b}, /replace ("old"). Layer 2 has the
#              whiteout /data/.wh.gone and the opaque marker /opq/.wh..wh..opq,
#              adds /opq/c and sets /replace to "new". Layer 3 adds
#              /links/{target,hard (hard link),sym -> target,abs -> /bin/busybox},
#              /perm/owned (0640, 1000:1000), /xattr/file (user.carapace=test,
#              stored as a PAX header) and /private (mode 0700).
#   multiarch  image index: linux/amd64 and linux/arm64/v8. Both use the host's
#              busybox, and /arch holds "amd64" or "arm64".
#   big        busybox plus 5 gzip layers of 12 MiB incompressible data each
#              (/big/data-N.bin), for the pull benchmark
# Small files are written without a trailing newline, so /replace is "new" and
# /arch is "amd64". Each layout tags its image `latest` through the
# org.opencontainers.image.ref.name annotation, e.g.
#   skopeo inspect --raw oci:OUTDIR/layered:latest
# The layers are reproducible: sorted names, mtime 0, numeric owners and
# gzip -n. The big layers come from AES-CTR with fixed keys (openssl), or from
# /dev/urandom (cached in OUTDIR/.cache) when openssl is missing.
# Idempotent: an image is rebuilt only when this script, build-rootfs.sh or
# /bin/busybox changes (stamps are in OUTDIR/.stamps). FORCE=1 rebuilds all.
# Needs: busybox-static jq zstd skopeo (hack/registry.sh installs them).
set -euo pipefail
export LC_ALL=C
umask 022
prog=build-test-images
die() { echo "$prog: $*" >&2; exit 1; }

usage="usage: build-test-images.sh OUTDIR [busybox|nonroot|layered|multiarch|big ...]"
out=${1:?$usage}
shift
all=(busybox nonroot layered multiarch big)
if [ $# -eq 0 ]; then set -- "${all[@]}"; fi
for n in "$@"; do
    case " ${all[*]} " in *" $n "*) ;; *) die "unknown image '$n'; $usage" ;; esac
done

[ "$(id -u)" = 0 ] || die "must run as root (layers hold files owned by 1000:1000 and an xattr)"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for t in jq sha256sum gzip zstd tar skopeo flock; do
    command -v "$t" >/dev/null ||
        die "$t missing: apt-get install -y --no-install-recommends busybox-static jq zstd skopeo (or run hack/registry.sh start)"
done
tar --version | head -1 | grep -q 'GNU tar' || die "tar is not GNU tar"
[ -x /bin/busybox ] || die "/bin/busybox missing: apt-get install -y busybox-static"

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock -w 900 9 || die "another build holds $out/.lock"

# The stamp covers every input. If it changes, the images are rebuilt.
stamp=$( { cat "${BASH_SOURCE[0]}" "$here/build-rootfs.sh" /bin/busybox
           zstd --version; gzip --version | head -1; tar --version | head -1; } | sha256sum | cut -d' ' -f1)
case $(dpkg --print-architecture 2>/dev/null || uname -m) in
    amd64|x86_64) host_arch=amd64 ;;
    arm64|aarch64) host_arch=arm64 ;;
    *) die "unsupported host architecture $(uname -m)" ;;
esac

# The work dir sits under OUTDIR, so the final rename is atomic and the
# filesystem that must carry the xattr is the same one.
work=$out/.work
rm -rf "$work"
mkdir -p "$work" "$out/.stamps"
trap 'rm -rf "$work"' EXIT

# base_rootfs: $work/rootfs, a busybox rootfs (built once per run)
base_rootfs() {
    [ -d "$work/rootfs" ] || "$here/build-rootfs.sh" "$work/rootfs" >/dev/null
}

# copy_rootfs DEST: a private copy of the base rootfs (hard links preserved)
copy_rootfs() {
    base_rootfs
    cp -a "$work/rootfs" "$1"
}

# layout_begin NAME: start a new layout in $L
layout_begin() {
    L=$work/layout-$1
    rm -rf "$L"
    mkdir -p "$L/blobs/sha256"
    echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
}

# put FILE MEDIATYPE: move FILE into $L's blobs and print its descriptor
put() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv -f "$1" "$L/blobs/sha256/$d"
    jq -n -c --arg m "$2" --arg d "sha256:$d" --argjson s "$s" '{mediaType:$m,digest:$d,size:$s}'
}

# blob DESCRIPTOR: the path of a blob in $L
blob() { echo "$L/blobs/sha256/$(jq -r '.digest | sub("^sha256:"; "")' <<<"$1")"; }

# image_begin: start collecting the layers of one image
image_begin() { : > "$work/layers"; : > "$work/diffids"; }

# add_layer gzip|zstd|none DIR MEMBERS [TAR-OPTION...]
#   packs DIR as the next layer. If MEMBERS is ".", entries are named ./x and
#   the root directory is included. If MEMBERS is "*", the sorted top-level
#   names are packed without a ./ prefix.
add_layer() {
    local comp=$1 dir=$2 members=$3 tarf=$work/layer.tar diff mt list
    shift 3
    if [ "$members" = "*" ]; then
        mapfile -t list < <(cd "$dir" && ls -A | sort)
    else
        list=("$members")
    fi
    tar --create --file="$tarf" --sort=name --mtime=@0 --numeric-owner "$@" -C "$dir" -- "${list[@]}"
    diff=sha256:$(sha256sum "$tarf" | cut -d' ' -f1)
    case $comp in
        gzip) gzip -n -c "$tarf" > "$tarf.c"; mt=application/vnd.oci.image.layer.v1.tar+gzip ;;
        zstd) zstd -q -3 -c "$tarf" > "$tarf.c"; mt=application/vnd.oci.image.layer.v1.tar+zstd ;;
        none) mv "$tarf" "$tarf.c"; mt=application/vnd.oci.image.layer.v1.tar ;;
        *) die "add_layer: bad compression $comp" ;;
    esac
    rm -f "$tarf"
    put "$tarf.c" "$mt" >> "$work/layers"
    echo "$diff" >> "$work/diffids"
}

# config_json [JQ-FILTER]: the image config's "config" object; a filter adds to it
config_json() {
    jq -n -c '{Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"]} | '"${1:-.}"
}

# image_end ARCH VARIANT CONFIG: write the config and the manifest of the
# layers added since image_begin; print the manifest's descriptor with platform
image_end() {
    local arch=$1 variant=$2 cfg=$3 config manifest
    jq -n -c --arg arch "$arch" --arg variant "$variant" --argjson cfg "$cfg" \
        --slurpfile diffs <(jq -R . "$work/diffids") '
        {created: "1970-01-01T00:00:00Z", architecture: $arch, os: "linux"}
        + (if $variant == "" then {} else {variant: $variant} end)
        + {config: $cfg,
           rootfs: {type: "layers", diff_ids: $diffs},
           history: [range($diffs | length) | {created: "1970-01-01T00:00:00Z",
                     created_by: "hack/build-test-images.sh layer \(. + 1)"}]}' > "$work/config.json"
    config=$(put "$work/config.json" application/vnd.oci.image.config.v1+json)
    jq -n -c --argjson c "$config" --slurpfile l "$work/layers" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: $c, layers: $l
    }' > "$work/manifest.json"
    manifest=$(put "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
    jq -c --arg arch "$arch" --arg variant "$variant" \
        '. + {platform: ({architecture: $arch, os: "linux"}
                         + (if $variant == "" then {} else {variant: $variant} end))}' <<<"$manifest"
}

# layout_end NAME DESCRIPTOR: tag DESCRIPTOR `latest` in index.json, check the
# layout with skopeo and move it to OUTDIR/NAME
layout_end() {
    local name=$1 desc=$2
    jq -n -c --argjson m "$desc" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": "latest"}}]
    }' > "$L/index.json"
    skopeo inspect --raw "oci:$L:latest" > /dev/null ||
        die "$name: skopeo cannot read the layout $L"
    skopeo inspect "oci:$L:latest" > /dev/null ||
        die "$name: skopeo cannot read the image config in $L"
    rm -rf "${out:?}/$name"
    mv "$L" "$out/$name"
    echo "$stamp" > "$out/.stamps/$name"
    echo "$prog: $name built ($(du -sh "$out/$name" | cut -f1), $(jq -r '.manifests[0].digest' "$out/$name/index.json"))"
}

cached() {
    [ -z "${FORCE:-}" ] && [ -f "$out/$1/index.json" ] &&
        [ "$(cat "$out/.stamps/$1" 2>/dev/null)" = "$stamp" ]
}

build_busybox() {
    base_rootfs
    layout_begin busybox
    image_begin
    add_layer gzip "$work/rootfs" .
    layout_end busybox "$(image_end "$host_arch" "" "$(config_json)")"
}

build_nonroot() {
    local r=$work/nonroot
    copy_rootfs "$r"
    echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> "$r/etc/passwd"
    echo 'app:x:1000:' >> "$r/etc/group"
    echo 'staff:x:50:app' >> "$r/etc/group"
    mkdir -p "$r/home/app"
    chmod 0755 "$r/home/app"
    chown 1000:1000 "$r/home/app"
    layout_begin nonroot
    image_begin
    add_layer gzip "$r" .
    layout_end nonroot "$(image_end "$host_arch" "" "$(config_json '. + {User: "app", WorkingDir: "/home/app"}')")"
}

build_layered() {
    local l1=$work/layered1 l2=$work/layered2 l3=$work/layered3 x=$work/xattr m layers
    # Layer 1 (gzip): busybox and the files that the later layers change
    copy_rootfs "$l1"
    mkdir -p "$l1/data" "$l1/opq"
    printf keep > "$l1/data/keep"
    printf gone > "$l1/data/gone"
    printf a > "$l1/opq/a"
    printf b > "$l1/opq/b"
    printf old > "$l1/replace"
    # Layer 2 (zstd): a whiteout, an opaque directory and a replaced file
    mkdir -p "$l2/data" "$l2/opq"
    chmod 0755 "$l2"
    : > "$l2/data/.wh.gone"
    : > "$l2/opq/.wh..wh..opq"
    printf c > "$l2/opq/c"
    printf new > "$l2/replace"
    # Layer 3 (uncompressed, PAX format): links, an owner, a mode and an xattr
    mkdir -p "$l3/links" "$l3/perm" "$l3/xattr" "$l3/private"
    chmod 0755 "$l3"
    printf target > "$l3/links/target"
    ln "$l3/links/target" "$l3/links/hard"
    ln -s target "$l3/links/sym"
    ln -s /bin/busybox "$l3/links/abs"
    printf owned > "$l3/perm/owned"
    chown 1000:1000 "$l3/perm/owned"
    chmod 0640 "$l3/perm/owned"
    printf private > "$l3/private/file"
    chmod 0700 "$l3/private"
    # Set user.carapace=test without the attr package. GNU tar writes the
    # keyword into a one-file archive, and extracting that archive sets it.
    mkdir -p "$x"
    printf xattr > "$x/file"
    tar --create --file="$x.tar" --format=posix --pax-option='SCHILY.xattr.user.carapace:=test' -C "$x" file
    tar --extract --file="$x.tar" --xattrs --xattrs-include='user.*' -C "$l3/xattr" 2>"$x.err" ||
        die "cannot set user.carapace on $l3/xattr/file: $(cat "$x.err")"

    layout_begin layered
    image_begin
    add_layer gzip "$l1" .
    add_layer zstd "$l2" '*'
    add_layer none "$l3" '*' --format=posix --xattrs --xattrs-include='user.*' \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
    m=$(image_end "$host_arch" "" "$(config_json)")

    # Check what the layers hold before publishing them.
    mapfile -t layers < <(jq -c '.layers[]' "$(blob "$m")")
    [ "${#layers[@]}" = 3 ] || die "layered: expected 3 layers"
    zstd -q -dc "$(blob "${layers[1]}")" | tar -tf - > "$x.l2"
    grep -qx 'data/.wh.gone' "$x.l2" && grep -qx 'opq/.wh..wh..opq' "$x.l2" ||
        die "layered: layer 2 lacks its whiteouts: $(tr '\n' ' ' < "$x.l2")"
    tar --xattrs -tvvf "$(blob "${layers[2]}")" > "$x.l3"
    grep -q 'x: 4 user.carapace' "$x.l3" ||
        die "layered: layer 3 lacks the user.carapace xattr (does the filesystem under $out support user xattrs?): $(cat "$x.l3")"
    grep -Eq '^hrw-r--r-- +0/0 .*links/target link to links/hard$' "$x.l3" ||
        die "layered: layer 3 lacks the hard link: $(cat "$x.l3")"
    grep -Eq '^-rw-r----- +1000/1000 .*perm/owned$' "$x.l3" ||
        die "layered: layer 3 lacks perm/owned 0640 1000:1000: $(cat "$x.l3")"
    layout_end layered "$m"
}

build_multiarch() {
    local arch variant d descs=() idx
    base_rootfs
    layout_begin multiarch
    for arch in amd64 arm64; do
        variant=
        [ "$arch" = arm64 ] && variant=v8
        d=$work/arch-$arch
        mkdir -p "$d"
        chmod 0755 "$d"
        printf %s "$arch" > "$d/arch"
        image_begin
        add_layer gzip "$work/rootfs" .
        add_layer gzip "$d" '*'
        descs+=("$(image_end "$arch" "$variant" "$(config_json)")")
    done
    printf '%s\n' "${descs[@]}" | jq -s -c '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .
    }' > "$work/index.json"
    idx=$(put "$work/index.json" application/vnd.oci.image.index.v1+json)
    layout_end multiarch "$idx"
}

# random_file N SIZE FILE: SIZE bytes of incompressible data, the same for a
# given N on every machine (openssl AES-CTR), or cached random bytes
random_file() {
    local n=$1 size=$2 f=$3 key cache
    if command -v openssl >/dev/null; then
        key=$(printf 'carapace-big-%s' "$n" | sha256sum | cut -c1-32)
        head -c "$size" /dev/zero |
            openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 > "$f"
    else
        cache=$out/.cache/big-data-$n.bin
        if [ "$(stat -c %s "$cache" 2>/dev/null || echo 0)" != "$size" ]; then
            mkdir -p "$out/.cache"
            head -c "$size" /dev/urandom > "$cache.tmp"
            mv "$cache.tmp" "$cache"
        fi
        cp "$cache" "$f"
    fi
    [ "$(stat -c %s "$f")" = "$size" ] || die "big: could not generate $size bytes of data"
}

build_big() {
    local i d
    base_rootfs
    layout_begin big
    image_begin
    add_layer gzip "$work/rootfs" .
    for i in 1 2 3 4 5; do
        d=$work/big$i
        mkdir -p "$d/big"
        chmod 0755 "$d"
        random_file "$i" $((12 << 20)) "$d/big/data-$i.bin"
        add_layer gzip "$d" '*'
        rm -rf "$d"
    done
    layout_end big "$(image_end "$host_arch" "" "$(config_json)")"
}

for name in "$@"; do
    if cached "$name"; then
        echo "$prog: $name up to date"
    else
        "build_$name"
    fi
done
