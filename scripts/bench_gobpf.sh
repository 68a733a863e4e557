#!/bin/sh
# bench_gobpf.sh - the bpf recorder's costs, for scripts/bench (BENCH_ONLY=gobpf), as root:
#   churn   tests/real/goserver (static Go, `good`: echo, close at EOF) driven by bench_churn's
#           client, a connection per request: connections/s plain and under
#           `closewatch run --recorder=bpf` (every connection: accept with a stack, close),
#           the ratio per run back to back, median of BENCH_RUNS.
#   read    ns per read() and getpid() of an UNTRACED process (bench_micro read_sock,
#           read_pipe, getpid) while the recorder traces another one: every system call on the
#           machine runs the sys_enter and sys_exit programs (a test of the call number).
# Usage: sh scripts/bench_gobpf.sh BUILD_BENCH_DIR
set -u
B=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${BENCH_RUNS:-5}
CONNS=${BENCH_GO_CONNS:-20000}
CW=$ROOT/build/closewatch
[ "$(id -u)" -eq 0 ] || { echo "gobpf: skipped: the bpf recorder needs root"; exit 0; }
command -v go >/dev/null || { echo "gobpf: skipped: go is not installed"; exit 0; }
mkdir -p "$B/go"
(cd "$B/go" && GOCACHE=$B/go/cache GOPATH=$B/go/path GO111MODULE=off CGO_ENABLED=0 \
    go build -o goserver "$ROOT/tests/real/goserver/main.go") || exit 1
gcc -O2 -o "$B/bench_churn" "$ROOT/scripts/bench_churn.c" -pthread || exit 1
gcc -O2 -o "$B/bench_micro" "$ROOT/scripts/bench_micro.c" -pthread || exit 1

# Starts "$@" with stdin on a fifo (closing it ends the server); sets PORT and HOLD.
serve() {
    mkdir -p "$B/go"
    rm -f "$B/go/in" "$B/go/out"
    mkfifo "$B/go/in"
    "$@" < "$B/go/in" > "$B/go/out" 2>/dev/null &
    SERVER=$!
    exec 7> "$B/go/in"
    PORT=
    while [ -z "$PORT" ]; do
        PORT=$(awk '/listening/{print $2}' "$B/go/out" 2>/dev/null)
        kill -0 $SERVER 2>/dev/null || { echo "gobpf: server did not start"; exit 1; }
        sleep 0.05
    done
}
unserve() { exec 7>&-; wait $SERVER; }

churn() { "$B/bench_churn" client "$PORT" "$CONNS" 4 | awk '{print $1}'; }

ratios=""
plain_all=""
bpf_all=""
for i in $(seq "$RUNS"); do
    serve "$B/go/goserver" good
    p=$(churn)
    unserve
    serve "$CW" run --recorder=bpf --dir="$B/go" -- "$B/go/goserver" good
    b=$(churn)
    unserve
    plain_all="$plain_all $p"
    bpf_all="$bpf_all $b"
    ratios="$ratios $(echo "$b $p" | awk '{printf "%.3f", $1 / $2}')"
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "gobpf churn: go server conns/s plain $(median $plain_all), bpf recorder $(median $bpf_all), ratio $(median $ratios) (median of $RUNS, $CONNS connections, 4 client threads)"

# read() of an untraced process, with and without the recorder loaded.
for case in read_sock read_pipe getpid; do
    off="" on=""
    for i in $(seq "$RUNS"); do
        off="$off $("$B/bench_micro" all 1 | awk -v c=$case '$1 == c {print $2}')"
        serve "$CW" run --recorder=bpf --dir="$B/go" -- "$B/go/goserver" good
        on="$on $("$B/bench_micro" all 1 | awk -v c=$case '$1 == c {print $2}')"
        unserve
    done
    mo=$(median $off); mn=$(median $on)
    echo "gobpf untraced $case: ${mo} ns plain, ${mn} ns while the recorder runs: +$(echo "$mn $mo" | awk '{printf "%.0f", $1 - $2}') ns"
done
