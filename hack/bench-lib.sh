# Helpers shared by the CRI benchmarks (hack/bench-cri.sh, hack/bench-pull.sh);
# sourced, not run.

# wait_sock PATH: waits (bounded) for a daemon's socket to appear.
wait_sock() {
    for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done
    echo "$(basename "$0"): $1 never appeared" >&2; return 1
}

# unmount_under DIR: lazily unmounts everything mounted below DIR, deepest first.
unmount_under() {
    for p in $(awk -v r="$1" '$5 ~ "^"r {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$p"; done
}

# field TEXT NAME COLUMN: column COLUMN of cri-bench's line NAME.
field() { echo "$1" | awk -v k="$2" -v c="$3" '$1 == k {print $c}'; }

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
