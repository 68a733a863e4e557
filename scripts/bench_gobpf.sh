#!/bin/sh
# bench_gobpf.sh - the bpf recorder's costs, for scripts/bench (BENCH_ONLY=gobpf), as root:
#   churn   tests/real/goserver (static Go, `good`: echo, close at EOF) driven by bench_churn's
#           client, a connection per request: connections/s plain and under
#           `closewatch run --recorder=bpf` (every connection: accept with a stack, close),
#           the ratio per run back to back, median of BENCH_RUNS; and the CPU time per
#           connection of the server (plain and traced), of closewatch and of the sampler.
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

# CPU time (ticks: utime + stime, all threads, from /proc) of a live process; 0 if none.
ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Microseconds per connection from two tick counts (100 Hz).
per_conn() { echo "$1 $2" | awk -v n="$CONNS" '{printf "%.1f", ($2 - $1) * 1e4 / n}'; }

# One churn of CONNS connections against the running server: sets RATE, and the CPU each
# process spent on it: SRV_US (the Go server), REC_US (closewatch: the drain thread and the
# rest of `closewatch run`), SAMP_US (the ring's sampler), in microseconds per connection.
# Steadier than the rate on a shared machine: other tenants stretch wall time, not CPU time.
churn() {
    srv=$SERVER rec=""
    if [ "$1" = bpf ]; then rec=$SERVER; srv=$(pgrep -P "$SERVER" -x goserver); fi
    samp=$(pgrep -f "^closewatch-sampler $srv " | head -1)
    s0=$(ticks "$srv") r0=$(ticks "$rec") p0=$(ticks "$samp")
    RATE=$("$B/bench_churn" client "$PORT" "$CONNS" 4 | awk '{print $1}')
    SRV_US=$(per_conn "$s0" "$(ticks "$srv")")
    REC_US=$(per_conn "$r0" "$(ticks "$rec")")
    SAMP_US=$(per_conn "$p0" "$(ticks "$samp")")
}

ratios=""
plain_all="" bpf_all=""
srv_plain="" srv_bpf="" rec_bpf="" samp_bpf=""
for i in $(seq "$RUNS"); do
    serve "$B/go/goserver" good
    churn plain
    p=$RATE
    srv_plain="$srv_plain $SRV_US"
    unserve
    serve "$CW" run --recorder=bpf --dir="$B/go" -- "$B/go/goserver" good
    churn bpf
    b=$RATE
    srv_bpf="$srv_bpf $SRV_US" rec_bpf="$rec_bpf $REC_US" samp_bpf="$samp_bpf $SAMP_US"
    unserve
    plain_all="$plain_all $p"
    bpf_all="$bpf_all $b"
    ratios="$ratios $(echo "$b $p" | awk '{printf "%.3f", $1 / $2}')"
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "gobpf churn: go server conns/s plain $(median $plain_all), bpf recorder $(median $bpf_all), ratio $(median $ratios) (median of $RUNS, $CONNS connections, 4 client threads)"
echo "gobpf churn cpu: us per connection: go server $(median $srv_plain) plain, $(median $srv_bpf) traced; closewatch $(median $rec_bpf), its sampler $(median $samp_bpf) (median of $RUNS; load average $(cut -d' ' -f1-3 /proc/loadavg))"

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
