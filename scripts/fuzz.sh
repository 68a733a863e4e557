#!/bin/sh
# fuzz.sh - builds and runs the ring-reader fuzz target (tests/fuzz/fuzz_ring.c).
# Owned by the fuzzing work; `make fuzz` runs it.
#
#   sh scripts/fuzz.sh [SECONDS]     (make fuzz FUZZ_SECONDS=N; default 600)
#
# Environment: FUZZ_JOBS (parallel workers, default 2: the machines have 2
# cores), FUZZ_ENGINE=afl to force the AFL++ fallback.
#
# Output under build/fuzz/: fuzz_ring (the target), seeds/ (regenerated each
# run), corpus/ (kept across runs, grows), artifacts/ (crashing inputs),
# fuzz.log. Exits 1 when a crash was found, so a crash cannot go unnoticed.
set -eu
cd "$(dirname "$0")/.."

SECS=${1:-600}
JOBS=${FUZZ_JOBS:-2}
B=build/fuzz
SRC="tests/fuzz/fuzz_ring.c common/shm_reader.c analyzer/dump.c analyzer/lang_frames.c"
# -fno-sanitize-recover: a UBSan finding must stop the run and leave an artifact.
# The quotes around fuzz are meant literally: CW_VERSION is a C string.
# shellcheck disable=SC2089,SC2090
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -DCW_VERSION=\"fuzz\" -fno-sanitize-recover=undefined"
mkdir -p "$B/artifacts" "$B/corpus"
touch "$B/.start" # artifacts newer than this are this run's

# Installs Debian packages as root, or says which command would (and fails).
install_pkgs() {
    if [ "$(id -u)" -eq 0 ]; then
        echo "fuzz.sh: installing: $*" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || true
        apt-get install -y -qq --no-install-recommends "$@" >&2
    else
        echo "fuzz.sh: missing: $*; run:  sudo apt-get install -y $*" >&2
        return 1
    fi
}

command -v clang >/dev/null 2>&1 || install_pkgs clang
CLANG_MAJOR=$(clang -dumpversion | cut -d. -f1)

# Does -fsanitize=fuzzer link? Debian ships its runtime (libclang_rt.fuzzer)
# in libclang-rt-N-dev, which `clang` alone does not always pull in.
libfuzzer_works() {
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
        >"$B/probe.c"
    clang -fsanitize=fuzzer,address,undefined "$B/probe.c" -o "$B/probe" 2>"$B/probe.log"
}

ENGINE=${FUZZ_ENGINE:-libfuzzer}
if [ "$ENGINE" = libfuzzer ] && ! libfuzzer_works; then
    install_pkgs "libclang-rt-$CLANG_MAJOR-dev" || true
    if ! libfuzzer_works; then
        echo "fuzz.sh: libFuzzer does not link with clang $CLANG_MAJOR (see $B/probe.log);" \
            "falling back to AFL++" >&2
        ENGINE=afl
    fi
fi

# Seeds: synthetic rings, plus a real ring shrunk below 64 KB when the
# preload library is built (optional: `make` builds it).
cc -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$B/make_seed" \
    tests/fuzz/make_seed.c common/shm_reader.c
rm -rf "$B/seeds"
REAL=""
PY=$(command -v python3 || true)
if [ -f build/libclosewatch.so ] && [ -n "$PY" ]; then
    RING_DIR=$(mktemp -d)
    # A listener, a connection whose peer closes (EOF), shutdown, socketpair, dup.
    CLOSEWATCH_DIR=$RING_DIR CLOSEWATCH_RING_MB=1 CLOSEWATCH_MAX_FDS=64 \
        LD_PRELOAD="$PWD/build/libclosewatch.so" "$PY" -c '
import os, socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept(); a.close()
c.recv(1); c.shutdown(socket.SHUT_WR)
u = socket.socketpair(); d = os.dup(c.fileno()); c.close(); l.close()
' || echo "fuzz.sh: the real-ring program failed; synthetic seeds only" >&2
    REAL=$(ls "$RING_DIR"/*.ring 2>/dev/null || true)
else
    echo "fuzz.sh: build/libclosewatch.so not built: synthetic seeds only (run make first for a real one)" >&2
fi
# shellcheck disable=SC2086 # REAL is a list of paths without spaces (mktemp)
"$B/make_seed" "$B/seeds" ${REAL:+--shrink $REAL}
if [ -n "${RING_DIR:-}" ]; then rm -rf "$RING_DIR"; fi

# Inputs that crashed before must stay fixed.
REGRESS=$(ls tests/fuzz/regress/*.bin 2>/dev/null || true)

if [ "$ENGINE" = libfuzzer ]; then
    # shellcheck disable=SC2086,SC2090
    clang $CFLAGS -fsanitize=fuzzer,address,undefined -o "$B/fuzz_ring" $SRC
    if [ -n "$REGRESS" ]; then
        # shellcheck disable=SC2086
        "$B/fuzz_ring" $REGRESS >"$B/regress.log" 2>&1 ||
            { cat "$B/regress.log" >&2; echo "fuzz.sh: a regression input crashes again" >&2; exit 1; }
    fi
    echo "fuzz.sh: libFuzzer, $JOBS worker(s), $SECS s, seeds $B/seeds, corpus $B/corpus" >&2
    # -fork: workers in child processes with one aggregated "#N:" status line;
    # -ignore_crashes: a crash is saved and fuzzing goes on for the full time.
    set +e
    "$B/fuzz_ring" -fork="$JOBS" -ignore_crashes=1 -max_total_time="$SECS" -max_len=65536 \
        -timeout=30 -rss_limit_mb=2048 -artifact_prefix="$B/artifacts/" -print_final_stats=1 \
        "$B/corpus" "$B/seeds" >"$B/fuzz.log" 2>&1
    rc=$?
    set -e
    tail -n 5 "$B/fuzz.log" >&2
    # Fork mode prints "#N: cov: ..." with N the executions summed over workers.
    EXECS=$(grep -Eo '^#[0-9]+' "$B/fuzz.log" | tail -n 1 | tr -d '#')
    [ -n "$EXECS" ] || EXECS=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$B/fuzz.log" |
        awk '{s += $2} END {print s + 0}')
    LAST=$(grep -E '^#[0-9]+' "$B/fuzz.log" | tail -n 1)
    echo "fuzz.sh: libFuzzer exit status $rc; last status: $LAST"
else
    command -v afl-fuzz >/dev/null 2>&1 || install_pkgs afl++
    AFLCC=$(command -v afl-clang-fast || command -v afl-cc)
    # shellcheck disable=SC2086,SC2090
    AFL_QUIET=1 "$AFLCC" $CFLAGS -DCW_FUZZ_STANDALONE -fsanitize=address,undefined \
        -o "$B/fuzz_ring_afl" $SRC
    if [ -n "$REGRESS" ]; then
        # shellcheck disable=SC2086
        "$B/fuzz_ring_afl" $REGRESS >"$B/regress.log" 2>&1 ||
            { cat "$B/regress.log" >&2; echo "fuzz.sh: a regression input crashes again" >&2; exit 1; }
    fi
    echo "fuzz.sh: AFL++ (FUZZ_ENGINE=afl, or libFuzzer unavailable), 1 worker, $SECS s" >&2
    set +e
    AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 afl-fuzz -m none -V "$SECS" -i "$B/seeds" -o "$B/afl" \
        -- "$B/fuzz_ring_afl" @@ >"$B/fuzz.log" 2>&1
    rc=$?
    set -e
    for f in "$B"/afl/default/crashes/id:*; do
        [ -f "$f" ] && cp "$f" "$B/artifacts/crash-afl-$(basename "$f" | cut -d, -f1 | tr -d 'id:')"
    done
    EXECS=$(awk -F: '/^execs_done/ {gsub(/ /, "", $2); print $2}' "$B/afl/default/fuzzer_stats" 2>/dev/null)
    echo "fuzz.sh: afl-fuzz exit status $rc"
fi

CRASHES=$(find "$B/artifacts" -type f -newer "$B/.start" | wc -l)
echo "fuzz.sh: total executions: ${EXECS:-unknown}"
echo "fuzz.sh: crashes: $CRASHES (new files in $B/artifacts/)"
if [ "$CRASHES" -gt 0 ]; then
    # Once a crashing input is in the corpus every worker keeps re-finding
    # it, and fork mode logs only the first line of each report: replaying
    # the new artifacts gives the distinct sites (file:line), i.e. the bugs.
    echo "fuzz.sh: distinct crash sites (count, sanitizer summary):" >&2
    TARGET="$B/fuzz_ring"
    [ "$ENGINE" = libfuzzer ] || TARGET="$B/fuzz_ring_afl"
    find "$B/artifacts" -type f -newer "$B/.start" | head -n 200 | while read -r f; do
        "$TARGET" "$f" 2>&1 | grep -E '^SUMMARY: ' | head -n 1 | sed "s|\$| (e.g. $f)|"
    done | sort -k2 | awk '{key = $0; sub(/ \(e\.g\. .*/, "", key); n[key]++; if (!(key in ex)) ex[key] = $0}
        END {for (k in n) print n[k], ex[k]}' | sort -rn >&2
    echo "fuzz.sh: minimize one with:" \
        "$B/fuzz_ring -minimize_crash=1 -runs=100000 -exact_artifact_path=tests/fuzz/regress/NAME.bin $B/artifacts/FILE" >&2
    exit 1
fi
