#!/usr/bin/env bash
# Run test executables inside a throwaway VM whose kernel (Debian's
# linux-image-amd64) has cgroup v2 alone at /sys/fs/cgroup: the cgroup-v2
# test lane, for hosts that mount cgroup v1.
#
# Usage (as root):
#   hack/vm-test.sh [OPTIONS] -- TEST_EXE [ARGS...] [--- TEST_EXE2 [ARGS...]] ...
# Options:
#   --timeout SECONDS   kill the VM and fail after this long (default 600)
#   --mem MB            guest memory (default 4096)
#   --smp N             guest CPUs (default 2)
#   --env NAME=VALUE    export into the tests' environment (repeatable)
#   --add PATH          also copy PATH (file or directory) into the guest at
#                       the same absolute path, with the shared libraries of
#                       its executables; a directory is copied as a tree
#                       (symlinks, empty directories and modes kept)
#   --setup SCRIPT      run SCRIPT (an executable with a #! line; the guest
#                       has busybox's /bin/sh and /bin/bash) once the guest
#                       is up, before the tests, in their environment; if it
#                       exits non-zero no test runs and the lane fails
#   --modules A,B       extra kernel modules to load (besides overlay, veth,
#                       bridge, br_netfilter, tun, loop)
#   --strip             strip debug info from copied executables (smaller,
#                       faster to pack; backtraces lose file:line)
#   --systemd           run the tests under systemd as PID 1 (the host's
#                       /lib/systemd/systemd, with systemctl): after the
#                       usual set-up and --setup, the guest execs systemd,
#                       which runs the tests as its only unit
# Environment: VMTEST_KERNEL=VERSION picks /boot/vmlinuz-VERSION (default: the
# newest with /lib/modules/VERSION); VMTEST_APPEND adds kernel arguments;
# VMTEST_LANE_START (date +%s.%N) is when the reported lane wall time starts;
# VMTEST_CPU overrides qemu's -cpu (default max,-erms,-fsrm, see below).
#
# Each TEST_EXE runs in order inside the VM, as root, at its own absolute
# host path, in a scratch cwd, with RUST_BACKTRACE=1 and
# CARAPACE_TEST_ROOTFS pointing at a busybox rootfs built by
# hack/build-rootfs.sh. A cargo test executable in .../target/PROFILE/deps/
# also gets those binaries of .../target/PROFILE/ whose path it embeds (its
# CARGO_BIN_EXE_* binaries), at the same path. The guest runs from a tmpfs
# root (so pivot_root works), mounts proc, sysfs, devtmpfs, devpts, /run,
# /tmp, and cgroup2 at /sys/fs/cgroup with every controller enabled in the
# root's cgroup.subtree_control, and has lo up. Kernel is booted with
# cgroup_no_v1=all. Qemu runs in software emulation (TCG).
#
# The serial console streams to stdout; the script exits non-zero if any
# test failed, if the guest did not finish (no VMTEST-DONE), or on timeout.
# Installs what it needs (qemu-system-x86 from backports, linux-image-amd64,
# busybox-static, cpio; systemd with --systemd) when missing. Caches the
# kernel/busybox part of the (uncompressed) initramfs under hack/.cache/vm. The last console log is kept at
# hack/.cache/vm/last-console.log.
set -euo pipefail

# A wrapper (hack/test-v2.sh) may pass its own start time, so the "lane wall
# time" reported at the end covers its build and staging too.
lane_start=${VMTEST_LANE_START:-$(date +%s.%N)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$here/.cache/vm
self=$here/vm-test.sh

say() { echo "vm-test: $*" >&2; }
die() { say "$*"; exit 2; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'; }
usage() { sed -n '2,/^set -euo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

timeout_s=600
mem=4096
smp=2
envs=()
adds=()
setup=
extra_modules=
strip=0
systemd=0
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout_s=${2:?--timeout needs SECONDS}; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --mem) mem=${2:?}; shift 2 ;;
        --smp) smp=${2:?}; shift 2 ;;
        --env) envs+=("${2:?}"); shift 2 ;;
        --add) adds+=("${2:?}"); shift 2 ;;
        --setup) setup=${2:?--setup needs SCRIPT}; shift 2 ;;
        --modules) extra_modules=${2:?}; shift 2 ;;
        --strip) strip=1; shift ;;
        --systemd) systemd=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        *) say "unknown option $1"; usage ;;
    esac
done
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds, got '$timeout_s'"
[ $# -gt 0 ] || usage
[ "$(id -u)" = 0 ] || die "must run as root (installs packages, builds an initramfs with device nodes)"
if [ -n "$setup" ]; then
    if [ ! -f "$setup" ] || [ ! -x "$setup" ]; then die "--setup: '$setup' is not an executable file"; fi
    head -c 2 "$setup" | grep -q '^#!' || die "--setup: '$setup' has no #! line"
fi

# Split "EXE ARGS --- EXE ARGS ..." into tests[] (each a quoted command line).
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
tests=()      # shell lines for the guest
test_names=()
test_exes=()
cur=()
flush_test() {
    [ ${#cur[@]} -gt 0 ] || die "empty test command (stray ---?)"
    local exe=${cur[0]} abs line a
    abs=$(realpath -s -- "$exe" 2>/dev/null) || true
    [ -n "$abs" ] && [ -f "$abs" ] && [ -x "$abs" ] || die "test executable '$exe' not found or not executable"
    line="vmtest_run $(sq "$(basename "$abs")") $(sq "$abs")"
    for a in "${cur[@]:1}"; do line+=" $(sq "$a")"; done
    tests+=("$line")
    test_names+=("$(basename "$abs")")
    test_exes+=("$abs")
    cur=()
}
for a in "$@"; do
    if [ "$a" = "---" ]; then flush_test; else cur+=("$a"); fi
done
flush_test

# ---------------------------------------------------------------- packages
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { apt-get update -qq; apt_updated=1; }; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
ensure_backports() {
    if grep -rqsE "(^|[[:space:]])$codename-backports([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return
    fi
    local uri
    uri=$(grep -rhsE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        grep -v security | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | sed 's/[[:space:]]*$//' | head -1 || true)
    uri=${uri:-http://deb.debian.org/debian}
    say "adding $codename-backports ($uri) to /etc/apt/sources.list.d"
    cat > "/etc/apt/sources.list.d/$codename-backports.sources" <<EOF
Types: deb
URIs: $uri
Suites: $codename-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=0
}
if ! installed qemu-system-x86 || ! command -v qemu-system-x86_64 >/dev/null; then
    ensure_backports
    apt_update
    # Match qemu-utils (installed from backports on the project's machines).
    say "installing qemu-system-x86 from $codename-backports"
    apt-get install -y -qq --no-install-recommends -t "$codename-backports" qemu-system-x86 >/dev/null
fi
missing=()
pkgs=(linux-image-amd64 busybox-static cpio kmod xz-utils binutils)
[ $systemd = 0 ] || pkgs+=(systemd) # /lib/systemd/systemd and systemctl for the guest
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    say "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian kernel (not the host's): newest /boot/vmlinuz-V with /lib/modules/V.
kver=${VMTEST_KERNEL:-}
if [ -z "$kver" ]; then
    for v in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -rV); do
        if [ -d "/lib/modules/$v/kernel" ]; then kver=$v; break; fi
    done
fi
[ -n "$kver" ] && [ -f "/boot/vmlinuz-$kver" ] && [ -d "/lib/modules/$kver/kernel" ] ||
    die "no Debian kernel with modules found (/boot/vmlinuz-V + /lib/modules/V); is linux-image-amd64 installed?"
vmlinuz=/boot/vmlinuz-$kver
mkdir -p "$cache"

# The bzImage decompresses itself in ~5 s under TCG; the bare ELF vmlinux
# boots through its PVH entry at once. Extract it once per kernel.
kernel=$cache/vmlinux-$kver
if [ ! -s "$kernel" ]; then
    rm -f "$cache"/vmlinux-*
    for fmt in xz zstd gzip; do
        case $fmt in
            xz) magic=$'\xfd7zXZ' ;;
            zstd) magic=$'\x28\xb5\x2f\xfd' ;;
            gzip) magic=$'\x1f\x8b\x08' ;;
        esac
        command -v $fmt >/dev/null || continue
        for off in $(LC_ALL=C grep -abo "$magic" "$vmlinuz" 2>/dev/null | cut -d: -f1 | head -5); do
            tail -c +$((off + 1)) "$vmlinuz" | $fmt -dc > "$kernel.tmp.$$" 2>/dev/null || true
            if [ "$(head -c 4 "$kernel.tmp.$$" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && readelf -n "$kernel.tmp.$$" 2>/dev/null | grep -q Xen; then
                mv "$kernel.tmp.$$" "$kernel"
                break 2
            fi
        done
    done
    rm -f "$kernel.tmp.$$"
    if [ ! -s "$kernel" ]; then
        say "could not extract an ELF vmlinux with a PVH entry from $vmlinuz: booting the bzImage (slower)"
        kernel=$vmlinuz
    fi
fi
work=$(mktemp -d "$cache/run.XXXXXX")
qemu_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill -9 "$qemu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copy file $1 into staging dir $2 at the same absolute path (dereferenced).
put() {
    local src=$1 root=$2 dst
    dst=$root$src
    [ -e "$dst" ] && return 0
    # The guest's own files (busybox /bin/sh, /bin/true, ...) stay.
    if [ -n "${baselist_ready:-}" ] && grep -qxF -- "$src" "$baselist"; then return 0; fi
    mkdir -p "$(dirname "$dst")"
    cp -L --preserve=mode,timestamps "$src" "$dst"
}
# Shared libraries (and the loader) of ELF file $1, copied into $2.
put_libs() {
    local f=$1 root=$2 out lib
    out=$(ldd "$f" 2>&1) || return 0 # static, or not ELF
    if grep -q 'not found' <<<"$out"; then
        die "$f needs libraries missing on this host: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    for lib in $(grep -oE '(^|[[:space:]])/[^[:space:]]+' <<<"$out"); do put "$lib" "$root"; done
}
pack() { # pack DIR -> stdout (newc cpio, owned by root)
    (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet)
}

# ------------------------------------------- base initramfs part (cached)
modules="overlay veth bridge br_netfilter tun loop ${extra_modules//,/ }"
bb_ver=$(dpkg-query -W -f='${Version}' busybox-static)
key=$( { echo "$kver $bb_ver $modules"; cat "$self" "$here/vm/init" "$here/vm/init2" "$here/build-rootfs.sh"; } | sha256sum | cut -c1-16)
base=$cache/base-$key.cpio
baselist=$cache/base-$key.list # files the base provides: never overridden
t0=$(date +%s.%N)
if [ ! -s "$base" ] || [ ! -s "$baselist" ]; then
    say "building the base initramfs (kernel $kver modules, busybox $bb_ver, test rootfs)"
    st=$work/base
    mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/vmtest,root,tmp,run,proc,sys,dev,var/tmp,opt}
    ln -s ../run "$st/var/run"
    chmod 1777 "$st/tmp" "$st/var/tmp"
    chmod 0700 "$st/root"
    mknod -m 600 "$st/dev/console" c 5 1
    mknod -m 666 "$st/dev/null" c 1 3
    cp /bin/busybox "$st/bin/busybox"
    chroot "$st" /bin/busybox --install -s
    cp "$here/vm/init" "$st/init"
    cp "$here/vm/init2" "$st/init2"
    chmod 755 "$st/init" "$st/init2"
    # bash too, for tests that want it.
    put /bin/bash "$st"
    put_libs /bin/bash "$st"
    for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
        [ -e "$lib" ] && put "$lib" "$st"
    done
    cat > "$st/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat > "$st/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
tty:x:5:
www-data:x:33:
nogroup:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' > "$st/etc/nsswitch.conf"
    printf '127.0.0.1 localhost vmtest\n::1 localhost ip6-localhost ip6-loopback\n' > "$st/etc/hosts"
    echo vmtest > "$st/etc/hostname"
    : > "$st/etc/resolv.conf"
    echo "0123456789abcdef0123456789abcdef" > "$st/etc/machine-id"
    # Kernel modules in dependency order; compressed ones are unpacked.
    : > "$st/etc/vmtest/modules"
    for m in $modules; do
        deps=$(modprobe -S "$kver" --show-depends "$m" 2>/dev/null) || die "kernel $kver has no module '$m'"
        while read -r kind ko _; do
            [ "$kind" = insmod ] || continue # builtin
            dst=${ko%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
            grep -qxF "$dst" "$st/etc/vmtest/modules" && continue
            mkdir -p "$(dirname "$st$dst")"
            case "$ko" in
                *.xz) xz -dc "$ko" > "$st$dst" ;;
                *.zst) zstd -qdc "$ko" > "$st$dst" ;;
                *.gz) gzip -dc "$ko" > "$st$dst" ;;
                *) cp "$ko" "$st$dst" ;;
            esac
            echo "$dst" >> "$st/etc/vmtest/modules"
        done <<<"$deps"
    done
    # The project's busybox test rootfs.
    bash "$here/build-rootfs.sh" "$st/opt/carapace-test-rootfs" >/dev/null
    (cd "$st" && find . ! -type d | sed 's|^\.||') > "$baselist.tmp.$$"
    mv "$baselist.tmp.$$" "$baselist"
    pack "$st" > "$base.tmp.$$"
    mv "$base.tmp.$$" "$base"
    rm -rf "$st"
    # Drop stale bases.
    find "$cache" -maxdepth 1 -name 'base-*' ! -name "base-$key.*" -delete
fi

# ---------------------------------------------- per-run part: tests + libs
baselist_ready=1
st=$work/run
mkdir -p "$st/etc/vmtest"
files=("${test_exes[@]}")
for exe in "${test_exes[@]}"; do
    d=$(dirname "$exe")
    [ "$(basename "$d")" = deps ] || continue
    # CARGO_BIN_EXE_* binaries: executables next to deps/ whose path the test embeds.
    for b in "$(dirname "$d")"/*; do
        [ -f "$b" ] && [ -x "$b" ] || continue
        case "$b" in *.so|*.d|*.rlib) continue ;; esac
        if grep -qaF -- "$b" "$exe"; then files+=("$b"); fi
    done
done
for a in ${adds[@]+"${adds[@]}"}; do
    [ -e "$a" ] || die "--add: '$a' not found"
    a=$(readlink -f -- "$a") || die "--add: '$a' not found"
    if [ -d "$a" ]; then
        # The tree as it is (a registry's storage, say: empty directories
        # and relative symlinks matter), then the libraries its executables
        # need.
        mkdir -p "$st$(dirname "$a")"
        cp -a -- "$a" "$st$(dirname "$a")/"
        while IFS= read -r -d '' f; do
            [ -x "$f" ] && put_libs "$f" "$st"
        done < <(find "$a" -type f -perm /111 -print0)
    else
        files+=("$a")
    fi
done
if [ $systemd = 1 ]; then
    for f in /lib/systemd/systemd /bin/systemctl; do
        [ -x "$f" ] || die "--systemd: $f missing after installing systemd"
        files+=("$f")
    done
    put /etc/os-release "$st"
    touch "$st/etc/vmtest/systemd"
fi
for f in "${files[@]}"; do
    if [ -e "$st$f" ]; then continue; fi
    put "$f" "$st"
    if [ $strip = 1 ] && [ -x "$f" ]; then objcopy --strip-debug "$st$f" 2>/dev/null || true; fi
    [ -x "$f" ] && put_libs "$f" "$st"
done
{
    echo "export CARAPACE_TEST_ROOTFS=/opt/carapace-test-rootfs"
    echo "export RUST_BACKTRACE=1"
    for e in ${envs[@]+"${envs[@]}"}; do
        [[ $e == *=* ]] || die "--env wants NAME=VALUE, got '$e'"
        echo "export ${e%%=*}=$(sq "${e#*=}")"
    done
} > "$st/etc/vmtest/env"
printf '%s\n' "${tests[@]}" > "$st/etc/vmtest/tests.sh"
if [ -n "$setup" ]; then
    cp "$setup" "$st/etc/vmtest/setup.sh"
    chmod 755 "$st/etc/vmtest/setup.sh"
fi
# Uncompressed on purpose: the guest unpacks it ~2 s faster than a gzip'd one
# under TCG, and qemu loads 60 MB in no time. Two cpio archives back to back.
initrd=$work/initrd.cpio
cp "$base" "$initrd"
pack "$st" >> "$initrd"
say "initramfs ready in $(elapsed "$t0") s ($(du -h "$initrd" | cut -f1), kernel $kver)"

# -------------------------------------------------------------------- boot
log=$work/console.log
: > "$log"
append="console=ttyS0 panic=-1 oops=panic quiet loglevel=4 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 mitigations=off rdinit=/init ${VMTEST_APPEND:-}"
say "booting (qemu TCG, ${mem}M, $smp CPUs, timeout ${timeout_s}s); console follows"
boot_start=$(date +%s.%N)
# CPU: every feature TCG emulates except ERMS/FSRM. With those, the guest
# kernel (copy_user, clear_page) and glibc (memcpy, memset) copy with
# `rep movsb`, which TCG runs an iteration at a time: fork, exec and page
# faults get ~2x slower (ExecSync 1.5 s instead of 0.6 s, measured).
qemu-system-x86_64 -machine q35 -accel tcg -cpu "${VMTEST_CPU:-max,-erms,-fsrm}" -m "$mem" -smp "$smp" \
    -nodefaults -no-user-config -display none -vga none -monitor none -no-reboot \
    -serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append" \
    </dev/null > >(tee -a "$log") 2>&1 &
qemu_pid=$!
timed_out=0
deadline=$(( $(date +%s) + timeout_s ))
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        kill -9 "$qemu_pid" 2>/dev/null || true
        break
    fi
    sleep 0.5
done
qemu_rc=0
{ wait "$qemu_pid"; } 2>/dev/null || qemu_rc=$? # no "Killed" job notice
qemu_pid=
sleep 0.2 # let tee drain
vm_time=$(elapsed "$boot_start")
cp "$log" "$cache/last-console.log"

# ------------------------------------------------------------------ verdict
clean=$(tr -d '\r' < "$log")
echo
echo "================ vm-test summary ================"
booted=$(grep -aoE 'VMTEST-BOOTED [0-9.]+' <<<"$clean" | head -1 | cut -d' ' -f2 || true)
mapfile -t results < <(grep -aoE 'VMTEST-RESULT [^ ]+ [0-9]+ [0-9.]+s' <<<"$clean" || true)
fail=0
for i in "${!test_names[@]}"; do
    r=${results[$i]:-}
    if [ -z "$r" ]; then
        printf '  %-50s %s\n' "${test_names[$i]}" "NO RESULT"
        fail=1
        continue
    fi
    read -r _ name code secs <<<"$r"
    if [ "$code" = 0 ]; then st_txt="ok"; else st_txt="FAILED (exit $code)"; fail=1; fi
    printf '  %-50s %-20s %s\n' "$name" "$st_txt" "$secs"
done
grep -aoE 'VMTEST-FATAL.*' <<<"$clean" | sed 's/^/  /' || true
rc=0
if [ $timed_out = 1 ]; then
    echo "vm-test: timed out after $timeout_s s"
    rc=124
elif ! grep -aq '^VMTEST-DONE' <<<"$clean"; then
    echo "vm-test: the VM stopped before VMTEST-DONE (qemu exit $qemu_rc): kernel panic, crash or init failure; see the log above"
    rc=3
elif [ $fail = 1 ]; then
    rc=1
fi
setup_s=$(grep -aoE 'VMTEST-SETUP done in [0-9.]+s' <<<"$clean" | head -1 | grep -oE '[0-9.]+s$' || true)
echo "  guest boot to tests: ${booted:-?} s (guest uptime)${setup:+, then setup ${setup_s:-(did not finish)}}; VM wall time: $vm_time s"
echo "  lane wall time: $(elapsed "$lane_start") s; console log: $cache/last-console.log"
# Individual test counts from the cargo test summaries inside the guest,
# closed by the plain "N passed, N failed" line CI reads.
read -r npass nfail < <(grep -aoE 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' <<<"$clean" |
    awk '{p += $4; f += $6} END {print p + 0, f + 0}')
if [ $rc = 0 ]; then echo "vm-test: all ${#test_names[@]} test executable(s) passed"; else echo "vm-test: FAILED"; fi
echo "vm-test: $npass passed, $nfail failed"
exit $rc
