#!/bin/bash
# hack/vm/registry-setup.sh — the vm-test.sh --setup script of the cgroup v2
# lane's end-to-end tests: starts the two test registries inside the guest,
# as hack/registry.sh runs them on the host (127.0.0.1:5000 open,
# 127.0.0.1:5001 with basic auth), from the copy of their storage that
# hack/test-v2.sh ships in $VMTEST_REGISTRY_DIR (config-PORT.yml, data-PORT/,
# htpasswd), and waits until both answer. Any failure exits non-zero, so the
# VM runs no test and the lane fails.
set -euo pipefail
dir=${VMTEST_REGISTRY_DIR:?VMTEST_REGISTRY_DIR not set (hack/test-v2.sh sets it)}
bin=/usr/bin/docker-registry
[ -x "$bin" ] || { echo "registry-setup: $bin not in the guest"; exit 1; }
for port in 5000 5001; do
    [ -f "$dir/config-$port.yml" ] || { echo "registry-setup: $dir/config-$port.yml missing"; exit 1; }
    # setsid: the registry outlives this script (init2 goes on to the tests).
    setsid "$bin" serve "$dir/config-$port.yml" > "/run/registry-$port.log" 2>&1 < /dev/null &
    echo "$!" > "/run/registry-$port.pid"
done
# code PORT: the HTTP status of GET /v2/, or nothing. Bash's /dev/tcp, as
# busybox-static's wget segfaults on Debian 12.
code() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
        printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
        IFS=' ' read -r -t 5 _ c _ <&3 && echo "$c"
    ) 2>/dev/null || true
}
# Up to 60 s: Go's start-up under software emulation takes a second or two.
i=0
for port in 5000 5001; do
    want=200
    [ "$port" = 5001 ] && want=401
    while [ "$(code "$port")" != "$want" ]; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 "$(cat "/run/registry-$port.pid")" 2>/dev/null; then
            echo "registry-setup: registry on 127.0.0.1:$port does not answer HTTP $want; its log:"
            cat "/run/registry-$port.log"
            exit 1
        fi
        sleep 0.1
    done
    echo "registry-setup: 127.0.0.1:$port up (HTTP $want)"
done
