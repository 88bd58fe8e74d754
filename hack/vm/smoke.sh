#!/bin/sh
# hack/vm/smoke.sh — checks of the vm-test.sh guest itself: cgroup v2 alone
# at /sys/fs/cgroup with memory and pids, a child cgroup with memory.max,
# pivot_root inside a new mount namespace, overlayfs, lo up.
# Usage: hack/vm-test.sh -- hack/vm/smoke.sh
pass=0 failn=0
ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; failn=$((failn + 1)); }
check() { d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

# busybox stat names no cgroup2fs: compare the magic (CGROUP2_SUPER_MAGIC).
t=$(stat -f -c %t /sys/fs/cgroup)
check "/sys/fs/cgroup is cgroup2fs (magic $t)" [ "$t" = 63677270 ]
check "no cgroup v1 hierarchy mounted" sh -c '! grep -q " cgroup " /proc/mounts'
check "no v1 controllers in /proc/cgroups hierarchy column" sh -c '! awk "NR>1 && \$2 != 0" /proc/cgroups | grep -q .'
ctl=$(cat /sys/fs/cgroup/cgroup.controllers)
echo "# controllers: $ctl"
echo "# subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
for c in memory pids cpu io; do
    check "controller $c available" sh -c "echo ' $ctl ' | grep -q ' $c '"
done
cg=/sys/fs/cgroup/vmtest-smoke
rmdir $cg 2>/dev/null
check "mkdir child cgroup" mkdir $cg
check "child has memory.max" [ -f $cg/memory.max ]
check "child has pids.max" [ -f $cg/pids.max ]
check "write memory.max" sh -c "echo 67108864 > $cg/memory.max"
check "memory.max reads back 67108864" [ "$(cat $cg/memory.max)" = 67108864 ]
check "write pids.max" sh -c "echo 16 > $cg/pids.max"
check "process moves into child" sh -c "echo \$\$ > $cg/cgroup.procs && grep -qx '0::/vmtest-smoke' /proc/self/cgroup"
check "memory.current readable" sh -c "[ \$(cat $cg/memory.current) -ge 0 ]"
check "OOM in 16M cgroup is killed and counted" sh -c "
    echo +memory +pids > $cg/cgroup.subtree_control && mkdir $cg/oom && echo 16777216 > $cg/oom/memory.max && echo 0 > $cg/oom/memory.swap.max 2>/dev/null
    sh -c 'echo \$\$ > $cg/oom/cgroup.procs; exec dd if=/dev/zero bs=64M count=1 of=/dev/null' 2>/dev/null
    grep -q 'oom_kill [1-9]' $cg/oom/memory.events"
check "rmdir child cgroups" sh -c "rmdir $cg/oom && rmdir $cg"
check "/proc/self/cgroup is 0::/" [ "$(cat /proc/self/cgroup)" = "0::/" ]

# pivot_root in a new mount namespace (what container runtimes do).
check "pivot_root in unshare -m" unshare -m sh -c '
    set -e
    mount --make-rprivate /
    r=$(mktemp -d /tmp/pr.XXXXXX)
    mount -t tmpfs tmpfs $r
    mkdir -p $r/bin $r/old $r/proc
    cp /bin/busybox $r/bin/busybox
    cd $r
    pivot_root . old
    /bin/busybox umount -l /old
    [ "$(/bin/busybox ls /)" = "$(printf "bin\nold\nproc")" ]
    /bin/busybox echo pivoted'
check "overlayfs mounts" sh -c '
    d=$(mktemp -d /tmp/ov.XXXXXX); mkdir $d/l $d/u $d/w $d/m; echo hi > $d/l/f
    mount -t overlay overlay -o lowerdir=$d/l,upperdir=$d/u,workdir=$d/w $d/m &&
    [ "$(cat $d/m/f)" = hi ] && umount $d/m'
check "lo is up" sh -c 'ip addr show lo | grep -q "inet 127.0.0.1"'
check "CARAPACE_TEST_ROOTFS has busybox" [ -x "$CARAPACE_TEST_ROOTFS/bin/busybox" ]
check "/bin/sh /bin/true exist" sh -c '[ -x /bin/sh ] && /bin/true'
check "RUST_BACKTRACE=1" [ "$RUST_BACKTRACE" = 1 ]
echo "$pass passed, $failn failed"
[ $failn = 0 ]
