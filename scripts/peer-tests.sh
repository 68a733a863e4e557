#!/bin/sh
# peer-tests.sh - owns the "peer tests": CPython's own socket-heavy test
# suites, run once without and once with build/libclosewatch.so preloaded.
# The preload must be invisible to the program, so any difference in a test's
# outcome (pass, fail, error, skip) is a bug in the preload.
#
#   scripts/peer-tests.sh [TEST-MODULE...]
#
# Default modules: test_selectors test_epoll test_poll test_httplib
# test_urllib2_localnet test_asyncio test_socket. A module that fails, crashes
# or hangs already WITHOUT the preload on this machine is left out of the
# comparison and listed as such. A difference is confirmed by running both
# sides of that module again (to tell a flaky test from a real one).
#
# Environment: PEER_JOBS (regrtest -j, default 2), PEER_TIMEOUT (seconds per
# module and side, default 1200), CW_BUILD (default: build/ beside scripts/),
# PEER_IGNORE (regrtest -i patterns, space-separated; default '*VSOCK*':
# ThreadedVSOCKSocketStreamTest waits forever in accept() on a virtual
# machine that has a vsock device but no vsock peer, preload or not).
# Exit: 0 same everywhere, 1 a confirmed difference, 2 setup error,
# 77 CPython's test package is not installed (skipped, loudly).
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
build=${CW_BUILD:-$here/build}
lib=$build/libclosewatch.so
jobs=${PEER_JOBS:-2}
limit=${PEER_TIMEOUT:-1200}
ignore=${PEER_IGNORE-*VSOCK*}
modules=${*:-test_selectors test_epoll test_poll test_httplib test_urllib2_localnet test_asyncio test_socket}

[ -r "$lib" ] || { echo "peer-tests: $lib missing: run make first" >&2; exit 2; }

# python3 may be a pyenv shim (a shell script): the preload must reach the
# interpreter itself, so run the real binary.
py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || py=""
[ -x "$py" ] || { echo "peer-tests: no python3 interpreter found" >&2; exit 2; }
if ! "$py" -m test --help >/dev/null 2>&1; then
    echo "peer-tests: SKIPPED: $py has no 'test' package (Debian: apt-get install libpython3-testsuite)" >&2
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/closewatch-peer-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
rings=$work/rings
mkdir -p "$rings"

# outcomes FILE.xml: one "test-id outcome" line per test case, sorted.
outcomes() {
    "$py" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    sys.exit(1)
rows = []
for tc in root.iter("testcase"):
    state = "pass"
    for tag, name in (("skipped", "skip"), ("failure", "fail"), ("error", "error")):
        if tc.find(tag) is not None:
            state = name
    rows.append("%s.%s %s" % (tc.get("classname", ""), tc.get("name", ""), state))
print("\n".join(sorted(rows)))
EOF
}

# counts FILE: "pass/fail+error/skip".
counts() {
    awk '{n[$2]++} END {printf "%d/%d/%d", n["pass"], n["fail"] + n["error"], n["skip"]}' "$1"
}

# run MODULE SIDE(without|with) TAG: regrtest on one module; leaves
# $work/MODULE.TAG.{log,xml,out}; returns regrtest's status (124: timeout).
run() {
    mod=$1 side=$2 tag=$3
    set -- "$py" -m test -j "$jobs" --timeout 600 --junit-xml "$work/$mod.$tag.xml"
    set -f # the patterns are for regrtest, not for the shell
    for pat in $ignore; do
        set -- "$@" -i "$pat"
    done
    set +f
    set -- "$@" "$mod"
    if [ "$side" = with ]; then
        LD_PRELOAD=$lib CLOSEWATCH_DIR=$rings timeout -k 10 "$limit" "$@" >"$work/$mod.$tag.log" 2>&1
    else
        env -u LD_PRELOAD timeout -k 10 "$limit" "$@" >"$work/$mod.$tag.log" 2>&1
    fi
    rc=$?
    outcomes "$work/$mod.$tag.xml" >"$work/$mod.$tag.out" 2>/dev/null || : >"$work/$mod.$tag.out"
    return $rc
}

result_line() { grep -E '^Tests? result:' "$1" | tail -1 | sed 's/^Tests\{0,1\} result: //'; }

start=$(date +%s)
status=0
printf '%-24s %-16s %-16s %s\n' module "without p/f/s" "with p/f/s" verdict
for mod in $modules; do
    run "$mod" without a
    rc=$?
    if [ "$rc" -ne 0 ]; then
        why="fails without the preload ($(result_line "$work/$mod.a.log"), status $rc)"
        [ "$rc" -eq 124 ] && why="hangs without the preload (timeout ${limit}s)"
        printf '%-24s %-16s %-16s %s\n' "$mod" "$(counts "$work/$mod.a.out")" - "EXCLUDED: $why"
        continue
    fi
    run "$mod" with b
    rcb=$?
    verdict=same
    if [ "$rcb" -ne 0 ] || ! cmp -s "$work/$mod.a.out" "$work/$mod.b.out"; then
        # Confirm: both sides once more; flaky tests differ only once.
        run "$mod" without c
        run "$mod" with d
        rcd=$?
        if [ "$rcd" -ne 0 ] || ! cmp -s "$work/$mod.c.out" "$work/$mod.d.out"; then
            verdict="DIFFERENT (status $rcb/$rcd; $(result_line "$work/$mod.d.log"))"
            status=1
        else
            verdict="same (a first difference did not repeat: flaky)"
        fi
    fi
    printf '%-24s %-16s %-16s %s\n' "$mod" "$(counts "$work/$mod.a.out")" "$(counts "$work/$mod.b.out")" "$verdict"
    if [ "$verdict" != same ] && [ "$status" -ne 0 ]; then
        echo "  tests whose outcome differs (without -> with):"
        join -a1 -a2 -e missing -o 0,1.2,2.2 "$work/$mod.c.out" "$work/$mod.d.out" |
            awk '$2 != $3 {print "    " $1 ": " $2 " -> " $3}' | head -40
        echo "  end of its log with the preload:"
        tail -30 "$work/$mod.d.log" | sed 's/^/    /'
    fi
done
end=$(date +%s)

# What closewatch itself made of it: information, not part of the verdict.
summary=$("$build/closewatch" report --dir="$rings" 2>/dev/null | grep '^SUMMARY' || true)
echo "closewatch on the preloaded runs: ${summary:-no report}"
echo "peer-tests: $(( end - start )) s, $( [ "$status" -eq 0 ] && echo "no difference" || echo "DIFFERENCES FOUND")"
exit "$status"
