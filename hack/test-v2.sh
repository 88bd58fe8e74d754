#!/usr/bin/env bash
# The cgroup v2 lane: build the test executables whose behaviour depends on
# the cgroup version and run them inside a qemu VM that boots Debian's
# kernel with only the unified hierarchy (hack/vm-test.sh):
#   1. the test executables of the cgroups, runtime and shim crates, with
#      the runtime's checkpoint tests (CRIU, ignored on other kernels);
#   2. the end-to-end suites of carapace-e2e that drive the daemon's cgroup
#      code (pod and container cgroups, stats, metrics, live resource
#      updates, OOM), against the daemon, shim, infra and runtime from the
#      same build, Debian's CNI plugins, and the test registries
#      (hack/registry.sh) started inside the guest from a copy of their
#      storage (hack/vm/registry-setup.sh); the guest's kernel enforces
#      AppArmor (Debian's default LSM) and has apparmor_parser, so these
#      suites run under the daemon's default profile and the apparmor suite
#      checks the enforced behaviour;
#   3. the systemd lane: a second VM, same kernel, whose PID 1 is Debian's
#      systemd (vm-test.sh --systemd), runs the tests of the systemd cgroup
#      driver — every crate's tests/systemd.rs, ignored elsewhere — with
#      --ignored; among them the service tests: the shipped unit, and the
#      Debian package (hack/build-deb.sh, this version and a next one)
#      installed, restarted and upgraded with dpkg under a running pod.
# Usage: hack/test-v2.sh [--timeout SECONDS] [--lane v2|systemd]
#   (--lane runs one of the two VMs only; both run by default)
# Needs root; installs what it lacks (hack/install-deps.sh's packages, qemu,
# the kernel) and starts the host's test registries (hack/registry.sh start,
# idempotent) for their storage. Fails if any test fails or cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
timeout=600
lanes="v2 systemd"
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
        --lane)
            lanes=${2:?--lane needs v2 or systemd}
            [[ $lanes =~ ^(v2|systemd)$ ]] || { echo "hack/test-v2.sh: --lane v2 or --lane systemd" >&2; exit 2; }
            shift 2
            ;;
        *) echo "hack/test-v2.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() { echo "hack/test-v2.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
lane_start=$SECONDS
export VMTEST_LANE_START
VMTEST_LANE_START=$(date +%s.%N) # vm-test.sh's "lane wall time" counts from here
hack/install-deps.sh > /dev/null

# test_exes CARGO-TEST-ARGS...: set array built to the test executables
# (not the doc tests) cargo builds for those arguments; a failed build
# stops the lane with cargo's errors on stderr.
test_exes() {
    local json
    json=$(cargo test --no-run --message-format=json "$@") || die "cargo test --no-run $* failed"
    mapfile -t built < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test == true) | .executable' <<<"$json" | sort -u)
}

# ------------------------------------------- 1. cgroups, runtime, shim
# The runtime's lib unit tests need no kernel and are left to the host lane.
# So is the shim's containerd test: it exercises containerd's side of the
# protocol, not the cgroup version, and the VM carries no containerd.
test_exes -p carapace-cgroups -p carapace-runtime -p carapace-shim
exes=()
for e in "${built[@]}"; do [[ $e == */containerd-* ]] || exes+=("$e"); done
[ ${#exes[@]} -gt 0 ] || die "no test executables built"

# -------------------------------------------- 2. end-to-end suites
# Suites run in the VM: NAME runs test/e2e/tests/NAME.rs whole,
# NAME:TEST[,TEST...] only the named tests of it.
e2e_suites=(
    stats      # ContainerStats/PodSandboxStats from the v2 files
    metrics    # ListPodSandboxMetrics (cAdvisor names) from the v2 files
    containers # container cgroups, UpdateContainerResources, ExecSync
    pods       # pod cgroups made and removed, restarts, rollback
    daemon     # start-up, RuntimeConfig's cgroup driver (cheap)
    apparmor   # the guest kernel enforces AppArmor: RuntimeDefault, Localhost profiles
    # The OOMKilled reason (memory.events of a v2 cgroup). The rest of that
    # suite (env, capabilities, seccomp, read-only rootfs, tty, PID
    # namespaces) does not touch cgroups and would add over a minute.
    security:a_container_over_its_memory_limit_is_oom_killed
    # CheckpointContainer and restore with CRIU, which runs on this
    # kernel (its tests are ignored elsewhere, so they run with --ignored)
    checkpoint
    # A runtime handler that is containerd's runc shim (v2): runc makes
    # the containers' v2 cgroups, the daemon reads their stats
    shim_v2
)
# Suites whose tests are all #[ignore]d outside this lane.
e2e_ignored=(checkpoint)
# Suites left to the host lane, which runs every suite (a new suite runs
# here only once it is added above):
#   images     pulls and the registry protocol, no cgroup code; one test
#              needs skopeo and a private registry of its own
#   image_cli  `carapace image` import/pull, no cgroup code; needs skopeo
#   streaming  Exec/Attach/PortForward transports (SPDY, WebSocket); the
#              cgroup side of exec is covered by the containers suite
#   prometheus the daemon's own /metrics endpoint, no cgroup code
# Tests of the suites above that cannot run in the VM, skipped by exact
# name (each one is named in the lane's output):
e2e_skip=(
    # Port mapping: the portmap plugin's DNAT rules need iptables and the
    # netfilter NAT modules, which the VM does not carry (and the test reads
    # `iptables -t nat -S`).
    pods_reach_each_other_and_a_port_mapping_reaches_a_pod_from_the_host
)
suite_args=()
for s in "${e2e_suites[@]}"; do suite_args+=(--test "${s%%:*}"); done
test_exes -p carapace-e2e "${suite_args[@]}"
skip_args=()
for t in "${e2e_skip[@]}"; do skip_args+=(--skip "$t"); done
# e2e_runs: one command line per suite, separated by ---.
e2e_runs=()
for s in "${e2e_suites[@]}"; do
    name=${s%%:*}
    exe=
    for e in "${built[@]}"; do
        if [[ $(basename "$e") =~ ^${name}-[0-9a-f]+$ ]]; then exe=$e; fi
    done
    [ -n "$exe" ] || die "cargo built no test executable for e2e suite '$name'"
    only=()
    if [[ $s == *:* ]]; then
        IFS=, read -r -a only <<<"${s#*:}"
        # A renamed test would otherwise silently drop out of the lane.
        listed=$("$exe" --list 2>/dev/null) || die "$exe --list failed"
        for t in "${only[@]}"; do
            grep -qxF "$t: test" <<<"$listed" || die "e2e suite '$name' has no test '$t'"
        done
    fi
    # One e2e test at a time: one test's daemon, shims and runtimes already
    # keep both emulated CPUs busy, so a second one in parallel saves
    # nothing and stretches the tests' own time limits (ExecSync timeouts
    # of 10 s).
    [ ${#e2e_runs[@]} -gt 0 ] && e2e_runs+=(---)
    ignored=()
    for i in "${e2e_ignored[@]}"; do [ "$i" = "$name" ] && ignored=(--ignored); done
    e2e_runs+=("$exe" --test-threads=1 --exact ${ignored[@]+"${ignored[@]}"} "${skip_args[@]}" ${only[@]+"${only[@]}"})
done
# The daemon and its helpers: the harness finds the daemon beside deps/,
# the daemon finds carapace-shim, carapace-infra and carapace-runtime
# beside itself.
cargo build -p carapace -p carapace-shim -p carapace-infra -p carapace-runtime
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
bins=()
for b in carapace carapace-shim carapace-infra carapace-runtime; do
    [ -x "$target/debug/$b" ] || die "$target/debug/$b missing after cargo build"
    bins+=(--add "$target/debug/$b")
done
# apparmor_parser (Debian's `apparmor`): the guest's kernel enforces
# AppArmor, so the daemon loads its default profile there and every e2e
# container of the lane runs under it.
[ -x /usr/sbin/apparmor_parser ] || die "/usr/sbin/apparmor_parser missing: apt-get install apparmor"
bins+=(--add /usr/sbin/apparmor_parser)
# The CNI plugins the harness's network uses (bridge + host-local +
# portmap; loopback for completeness), and jq for the pods suite's plugin.
cni=()
for p in bridge host-local portmap loopback; do
    [ -x "/usr/lib/cni/$p" ] || die "/usr/lib/cni/$p missing: apt-get install containernetworking-plugins"
    cni+=(--add "/usr/lib/cni/$p")
done

# -------------------------------- the test registries' storage, for the guest
# registry.sh is idempotent (a second run keeps the registries and images)
# and leaves the pushed images in /var/tmp/carapace-registry/data-PORT.
hack/registry.sh start > /dev/null
reg=/var/tmp/carapace-registry
vmreg=$root/hack/.cache/vm/registry
rm -rf "$vmreg"
mkdir -p "$vmreg"
cp "$reg/htpasswd" "$vmreg/htpasswd"
# Copy (as hard links, so it costs nothing) each registry's storage without
# test/big (60 MiB that no suite run here pulls): the repositories, and the
# blobs their link files name.
for port in 5000 5001; do
    src=$reg/data-$port/docker/registry/v2
    dst=$vmreg/data-$port/docker/registry/v2
    [ -d "$src/repositories/test/busybox/_manifests" ] ||
        die "$src has no test/busybox: hack/registry.sh start did not push the test images"
    mkdir -p "$dst/repositories" "$dst/blobs/sha256"
    while IFS= read -r repo; do
        case $repo in test/big) continue ;; esac
        mkdir -p "$dst/repositories/$(dirname "$repo")"
        cp -al "$src/repositories/$repo" "$dst/repositories/$repo"
    done < <(cd "$src/repositories" && find . -type d -name _manifests -prune -printf '%h\n' | sed 's|^\./||')
    while IFS= read -r digest; do
        hex=${digest#sha256:}
        [[ $hex =~ ^[0-9a-f]{64}$ ]] || die "odd link '$digest' in $dst/repositories"
        [ -d "$dst/blobs/sha256/${hex:0:2}/$hex" ] && continue
        mkdir -p "$dst/blobs/sha256/${hex:0:2}"
        cp -al "$src/blobs/sha256/${hex:0:2}/$hex" "$dst/blobs/sha256/${hex:0:2}/$hex"
    done < <(find "$dst/repositories" -type f -name link -exec awk 1 {} + | sort -u) # (no newline in a link file)
    # hack/registry.sh's configuration, with the storage here.
    {
        echo "version: 0.1"
        echo "log: {level: warn, formatter: text}"
        echo "storage:"
        echo "  filesystem: {rootdirectory: $vmreg/data-$port}"
        echo "  delete: {enabled: true}"
        echo "  redirect: {disable: true}"
        echo "http: {addr: 127.0.0.1:$port, secret: carapace-test-registry-$port}"
        if [ "$port" = 5001 ]; then
            echo "auth: {htpasswd: {realm: carapace-test-registry, path: $vmreg/htpasswd}}"
        fi
    } > "$vmreg/config-$port.yml"
done

# ------------------------------------------------------------------ run
args=()
add() { [ ${#args[@]} -gt 0 ] && args+=(---); args+=("$@"); }
for e in "${exes[@]}"; do
    case $(basename "$e") in
        # CRIU cannot run on every kernel, so these are ignored elsewhere;
        # here it can.
        checkpoint-*) add "$e" --ignored --test-threads=1 ;;
        *) add "$e" --test-threads=2 ;;
    esac
done
args+=(--- "${e2e_runs[@]}")

# -------------------------------------------- 3. the systemd lane
test_exes -p carapace-cgroups -p carapace-runtime -p carapace-e2e --test systemd
systemd_args=()
for e in "${built[@]}"; do
    [[ $(basename "$e") =~ ^systemd-[0-9a-f]+$ ]] || die "unexpected test executable $e for the systemd lane"
    [ ${#systemd_args[@]} -gt 0 ] && systemd_args+=(---)
    systemd_args+=("$e" --ignored --test-threads=1)
done
[ ${#built[@]} = 3 ] || die "expected 3 systemd test executables (cgroups, runtime, e2e), got ${#built[@]}"
echo "cgroup v2 lane: ${#exes[@]} test executables + e2e suites ${e2e_suites[*]}; skipped e2e tests: ${e2e_skip[*]}"
echo "cgroup v2 lane: build and staging took $((SECONDS - lane_start)) s"
# --strip: debug info would make the initramfs ~2 GB (the guest copies it
# twice into RAM); panics keep their file:line, backtraces lose theirs.
# The shim's tests drive carapace-runtime from the same build (found beside
# their deps/ directory, not embedded) and Debian's runc: ship both.
# CRIU (checkpoint/restore) with GNU tar, which it runs to dump tmpfs
# contents (the guest's busybox tar lacks the options), and the kernel
# modules its dump needs: the socket diag modules (it lists sockets with
# them), nf_tables (it locks the network with nftables) and
# nf_conntrack_netlink (it reads conntrack entries of a netns).
for f in /usr/sbin/criu /bin/tar /usr/bin/containerd-shim-runc-v2; do
    [ -x "$f" ] || die "$f missing: hack/install-deps.sh installs criu, tar and containerd"
done
criu_modules=unix_diag,inet_diag,tcp_diag,udp_diag,netlink_diag,af_packet_diag,nf_tables,nfnetlink,nf_conntrack_netlink
vm=(hack/vm-test.sh --strip --timeout "$timeout" --modules "$criu_modules"
    --add /usr/sbin/criu --add /bin/tar
    "${bins[@]}" --add /usr/sbin/runc --add /usr/bin/containerd-shim-runc-v2 "${cni[@]}" --add /usr/bin/jq
    --add /usr/bin/docker-registry --add "$vmreg"
    --env "VMTEST_REGISTRY_DIR=$vmreg" --setup hack/vm/registry-setup.sh)
rc=0
if [[ $lanes == *v2* ]]; then
    "${vm[@]}" -- "${args[@]}" || rc=$?
fi
src=0
if [[ $lanes == *systemd* ]]; then
    # The Debian package and the next version's, a build of its own (the
    # daemon says "build upgrade1": its binary differs), which the e2e
    # package test installs over it with dpkg in the guest. lintian checks
    # the package: errors fail the lane, warnings are printed.
    version=$(cargo metadata --format-version 1 --no-deps | jq -r '.packages[] | select(.name == "carapace") | .version')
    deb1=$(CARAPACE_BUILD= hack/build-deb.sh target/deb/v1 "$version")
    deb2=$(CARAPACE_BUILD=upgrade1 hack/build-deb.sh target/deb/v2 "$version+upgrade1")
    command -v lintian >/dev/null || die "lintian missing: hack/install-deps.sh installs it"
    lintian --fail-on error "$deb1" || die "lintian found errors in $deb1"
    pkg=(--add "$root/$deb1" --add "$root/$deb2" --env "CARAPACE_DEB_V1=$root/$deb1" --env "CARAPACE_DEB_V2=$root/$deb2")
    # Debian's dpkg, what it insists on finding in PATH and GNU tar, in a
    # directory of their own: the guest's busybox has applets named dpkg
    # and dpkg-deb in /usr/bin that would shadow them.
    tools=$root/target/deb/dpkg
    rm -rf "$tools"
    mkdir -p "$tools"
    for b in /usr/bin/dpkg /usr/bin/dpkg-deb /usr/bin/dpkg-query /usr/bin/dpkg-split /usr/bin/dpkg-trigger \
        /usr/bin/dpkg-divert /usr/bin/dpkg-statoverride /sbin/ldconfig /sbin/start-stop-daemon /bin/tar; do
        cp "$b" "$tools/"
        pkg+=(--add "$tools/$(basename "$b")")
    done
    pkg+=(--env "CARAPACE_DPKG_DIR=$tools")
    echo "systemd lane: ${#built[@]} test executables (tests/systemd.rs of cgroups, runtime, e2e) under systemd as PID 1; packages $deb1 $deb2"
    VMTEST_LANE_START=$(date +%s.%N)
    "${vm[@]}" "${pkg[@]}" --systemd -- "${systemd_args[@]}" || src=$?
fi
if [ $rc != 0 ] || [ $src != 0 ]; then
    echo "hack/test-v2.sh: FAILED (cgroup v2 lane exit $rc, systemd lane exit $src)"
    exit 1
fi
