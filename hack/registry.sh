#!/usr/bin/env bash
# Run the local OCI registries that Carapace's image pull tests and benchmarks
# use, and fill them with the test images from hack/build-test-images.sh.
# Both registries are Debian's docker-registry (distribution v2.8), listen on
# 127.0.0.1 only, and do not redirect blob requests:
#   127.0.0.1:5000  no auth
#   127.0.0.1:5001  htpasswd basic auth, user carapace, password carapace-test
# Usage: hack/registry.sh start|stop|status [DIR]     (as root)
#   DIR     state directory (default /var/tmp/carapace-registry): configs,
#           data-PORT/ storage, registry-PORT.log, registry-PORT.pid,
#           htpasswd, images/ (the OCI layouts, cached) and digests
#   start   installs missing packages and starts both registries (a running
#           one is kept). It then builds the test images and pushes each to
#           both registries as test/<name>:latest (busybox, nonroot, layered,
#           multiarch (an index of 2 manifests), big). busybox is also pushed
#           as test/busybox:v2s2 (a Docker schema2 manifest) and as
#           library/busybox:latest, so a docker.io mirror serves
#           docker.io/library/busybox. Writes DIR/digests with lines
#           "NAME DIGEST" for NAME in busybox nonroot layered multiarch big
#           busybox-v2s2 library-busybox multiarch-amd64 multiarch-arm64.
#   stop    stops the registries that this script started (by their PID files)
#   status  reports whether each registry is up; exits 3 if one is down
# Example:
#   skopeo inspect --tls-verify=false docker://127.0.0.1:5000/test/layered:latest
#   curl -u carapace:carapace-test http://127.0.0.1:5001/v2/_catalog
set -euo pipefail
export LC_ALL=C
prog=registry
die() { echo "$prog: $*" >&2; exit 1; }
log() { echo "$prog: $*"; }

usage="usage: registry.sh start|stop|status [DIR]"
action=${1:-}
dir=$(realpath -m -- "${2:-/var/tmp/carapace-registry}")
case $action in start|stop|status) ;; *) die "$usage" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"
case $dir in
    *[!A-Za-z0-9/._-]*) die "DIR '$dir' may only contain A-Z a-z 0-9 / . _ - (it goes into YAML)" ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=/usr/bin/docker-registry
ports=(5000 5001)
auth_port=5001
user=carapace
pass=carapace-test
images=(busybox nonroot layered multiarch big)
pkgs=(docker-registry skopeo apache2-utils curl jq zstd busybox-static)

pidfile() { echo "$dir/registry-$1.pid"; }
config() { echo "$dir/config-$1.yml"; }
logfile() { echo "$dir/registry-$1.log"; }

# ours PORT: print the PID of the registry that this script started on PORT,
# or fail. The PID file must name a live docker-registry serving our config.
ours() {
    local pid cmd
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == "$bin serve $(config "$1") " ]] || return 1
    echo "$pid"
}

# holders PORT: the `ss` lines of the TCP listeners on PORT (any address)
holders() { ss -Hltnp "sport = :$1" 2>/dev/null || true; }

# check_port PORT [PID]: fail unless PORT is free, or held only by PID
check_port() {
    local port=$1 want=${2:-} lines pids p cmd
    lines=$(holders "$port")
    [ -n "$lines" ] || return 0
    pids=$(grep -o 'pid=[0-9]*' <<<"$lines" | cut -d= -f2 | sort -u || true)
    if [ -n "$want" ] && [ "$pids" = "$want" ]; then return 0; fi
    echo "$prog: port $port is held by another process:" >&2
    echo "$lines" >&2
    for p in $pids; do
        cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null || true)
        echo "$prog:   pid $p: $cmd" >&2
        case $cmd in
            *"/etc/docker/registry/config.yml"*)
                echo "$prog:   that is Debian's docker-registry service: systemctl disable --now docker-registry" >&2 ;;
        esac
    done
    [ -n "$pids" ] || echo "$prog:   (the owner is not visible to ss -p)" >&2
    exit 1
}

ensure_packages() {
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
    [ -x "$bin" ] || die "$bin missing after installing docker-registry"
}

# write_config PORT: (re)write the registry's config; succeed if it changed
write_config() {
    local port=$1 cfg new
    cfg=$(config "$port")
    new=$cfg.new
    cat > "$new" <<EOF
# Written by hack/registry.sh; edits are overwritten.
version: 0.1
log:
  level: warn
  formatter: text
  fields:
    service: carapace-registry-$port
storage:
  filesystem:
    rootdirectory: $dir/data-$port
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:$port
  secret: carapace-test-registry-$port
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if [ "$port" = "$auth_port" ]; then
        cat >> "$new" <<EOF
auth:
  htpasswd:
    realm: carapace-test-registry
    path: $dir/htpasswd
EOF
    fi
    if cmp -s "$new" "$cfg"; then rm -f "$new"; return 1; fi
    mv "$new" "$cfg"
}

# stop_one PORT: stop our registry on PORT, if it runs
stop_one() {
    local port=$1 pid i
    if ! pid=$(ours "$port"); then
        if [ -f "$(pidfile "$port")" ]; then
            rm -f "$(pidfile "$port")"
            log "127.0.0.1:$port not running (removed a stale PID file)"
        else
            log "127.0.0.1:$port not running"
        fi
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "127.0.0.1:$port (pid $pid) ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$(pidfile "$port")"
    log "127.0.0.1:$port stopped (pid $pid)"
}

# http_code PORT [CURL-ARGS...]: the status code of GET /v2/
http_code() {
    local port=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "http://127.0.0.1:$port/v2/" || true
}

# start_one PORT: start the registry on PORT unless it runs, and wait for it
start_one() {
    local port=$1 pid i code want=200
    if write_config "$port" && pid=$(ours "$port"); then
        log "127.0.0.1:$port: config changed, restarting"
        stop_one "$port"
    fi
    if pid=$(ours "$port"); then
        check_port "$port" "$pid"
        log "127.0.0.1:$port already running (pid $pid)"
    else
        check_port "$port"
        mkdir -p "$dir/data-$port"
        echo "=== $(date -Is) start" >> "$(logfile "$port")"
        # setsid: the registry outlives this shell's session. 9>&-: it must
        # not inherit the lock.
        setsid "$bin" serve "$(config "$port")" >> "$(logfile "$port")" 2>&1 < /dev/null 9>&- &
        pid=$!
        echo "$pid" > "$(pidfile "$port")"
        log "127.0.0.1:$port starting (pid $pid, log $(logfile "$port"))"
    fi
    [ "$port" = "$auth_port" ] && want=401
    for i in $(seq 100); do
        code=$(http_code "$port")
        [ "$code" = "$want" ] && break
        kill -0 "$pid" 2>/dev/null ||
            die "registry on 127.0.0.1:$port exited; $(logfile "$port") ends with: $(tail -5 "$(logfile "$port")")"
        sleep 0.1
    done
    [ "$code" = "$want" ] ||
        die "registry on 127.0.0.1:$port answers /v2/ with HTTP $code, expected $want; see $(logfile "$port")"
    # The listener must be our process, not some other one that got there first.
    check_port "$port" "$pid"
}

# copy SRC DEST-REPO:TAG [SKOPEO-ARGS...]: push to both registries
copy() {
    local src=$1 dest=$2 port
    shift 2
    for port in "${ports[@]}"; do
        local creds=()
        [ "$port" = "$auth_port" ] && creds=(--dest-creds "$user:$pass")
        skopeo copy -q --retry-times 2 --dest-tls-verify=false "${creds[@]}" "$@" \
            "$src" "docker://127.0.0.1:$port/$dest" ||
            die "skopeo copy $src -> 127.0.0.1:$port/$dest failed"
    done
}

# remote_digest PORT REPO:TAG
remote_digest() {
    local creds=()
    [ "$1" = "$auth_port" ] && creds=(--creds "$user:$pass")
    skopeo inspect --tls-verify=false "${creds[@]}" "docker://127.0.0.1:$1/$2" | jq -r .Digest
}

push_images() {
    local n layout local_digest d5000 d5001 out=$dir/digests.new raw
    : > "$out"
    for n in "${images[@]}"; do
        layout=$dir/images/$n
        # --preserve-digests: push the manifests and layers byte for byte, so
        # the uncompressed and zstd layers stay as they are.
        if [ "$n" = multiarch ]; then
            copy "oci:$layout:latest" "test/$n:latest" --preserve-digests --all
        else
            copy "oci:$layout:latest" "test/$n:latest" --preserve-digests
        fi
        local_digest=$(jq -r '.manifests[0].digest' "$layout/index.json")
        d5000=$(remote_digest 5000 "test/$n:latest")
        d5001=$(remote_digest 5001 "test/$n:latest")
        [ "$d5000" = "$local_digest" ] && [ "$d5001" = "$local_digest" ] ||
            die "test/$n:latest: digests differ: layout $local_digest, :5000 $d5000, :5001 $d5001"
        echo "$n $d5000" >> "$out"
    done
    copy "oci:$dir/images/busybox:latest" test/busybox:v2s2 --format v2s2
    copy "oci:$dir/images/busybox:latest" library/busybox:latest --preserve-digests
    for n in test/busybox:v2s2 library/busybox:latest; do
        d5000=$(remote_digest 5000 "$n")
        d5001=$(remote_digest 5001 "$n")
        [ "$d5000" = "$d5001" ] || die "$n: digests differ: :5000 $d5000, :5001 $d5001"
        case $n in
            test/busybox:v2s2) echo "busybox-v2s2 $d5000" ;;
            library/busybox:latest) echo "library-busybox $d5000" ;;
        esac >> "$out"
    done
    raw=$(skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/test/multiarch:latest)
    jq -e '.manifests | length == 2' <<<"$raw" > /dev/null ||
        die "test/multiarch:latest is not an index of 2 manifests: $raw"
    jq -r '.manifests[] | "multiarch-\(.platform.architecture) \(.digest)"' <<<"$raw" >> "$out"
    mv "$out" "$dir/digests"
}

do_start() {
    local port t0=$SECONDS code
    ensure_packages
    mkdir -p "$dir"
    exec 9>"$dir/.lock"
    flock -w 600 9 || die "another registry.sh holds $dir/.lock"
    if ! htpasswd -vb "$dir/htpasswd" "$user" "$pass" >/dev/null 2>&1; then
        htpasswd -Bbn "$user" "$pass" > "$dir/htpasswd.new"
        mv "$dir/htpasswd.new" "$dir/htpasswd"
    fi
    for port in "${ports[@]}"; do start_one "$port"; done
    code=$(http_code "$auth_port" -u "$user:$pass")
    [ "$code" = 200 ] || die "127.0.0.1:$auth_port answers HTTP $code with credentials, expected 200"
    curl -fsS -o /dev/null "http://127.0.0.1:5000/v2/" || die "127.0.0.1:5000/v2/ does not answer"
    "$here/build-test-images.sh" "$dir/images"
    push_images
    log "up in $((SECONDS - t0))s: 127.0.0.1:5000 (no auth), 127.0.0.1:$auth_port ($user:$pass); digests in $dir/digests:"
    sed 's/^/  /' "$dir/digests"
}

do_stop() {
    local port
    [ -d "$dir" ] || { log "$dir does not exist: nothing to stop"; return 0; }
    exec 9>"$dir/.lock"
    flock -w 600 9 || die "another registry.sh holds $dir/.lock"
    for port in "${ports[@]}"; do stop_one "$port"; done
}

do_status() {
    local port pid code down=0 want
    for port in "${ports[@]}"; do
        want=200
        [ "$port" = "$auth_port" ] && want=401
        code=$(http_code "$port")
        if pid=$(ours "$port"); then
            if [ "$code" = "$want" ]; then
                echo "127.0.0.1:$port up (pid $pid)"
            else
                echo "127.0.0.1:$port running (pid $pid) but /v2/ answers HTTP $code, expected $want"
                down=1
            fi
        elif [ -n "$(holders "$port")" ]; then
            echo "127.0.0.1:$port down (the port is held by a process this script did not start)"
            down=1
        else
            echo "127.0.0.1:$port down"
            down=1
        fi
    done
    return $((down * 3))
}

"do_$action"
