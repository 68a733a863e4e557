#!/bin/sh
# install-test-deps.sh - owns the installation of what the `real` test suite
# (tests/test_real.c), the monitoring tests (tests/test_monitor.c: a real
# Prometheus, tmux) and the HTML report's (tests/test_html.c: a real browser)
# run: real servers, clients, runtimes and tools.
#
#   scripts/install-test-deps.sh            install what is missing (apt-get as root,
#                                           else print the command and exit 1)
#   scripts/install-test-deps.sh --check    exit 1 if anything is missing, install nothing
#   scripts/install-test-deps.sh TOOL...    only what these tools need (nginx, redis,
#                                           wrk, curl, go, node, java, python, perl, ruby,
#                                           prometheus, tmux, chromium, requests,
#                                           httpclient)
#
# Tools are checked by command, not by package name: a machine that already
# has node or a JDK from elsewhere needs no Debian package for them.
set -eu

# tool -> command that proves it is there -> Debian package(s)
pkgs_for() {
    case "$1" in
    nginx)  # the light flavour where the archive still has it (bookworm), else nginx
            if apt-cache show nginx-light >/dev/null 2>&1; then echo nginx-light; else echo nginx; fi ;;
    redis)  echo "redis-server redis-tools" ;;
    wrk)    echo wrk ;;
    curl)   echo curl ;;
    go)     echo golang-go ;;
    node)   echo nodejs ;;
    java)   echo openjdk-17-jdk-headless ;;
    python) echo python3 ;;
    requests) echo python3-requests ;;
    httpclient) echo libhttpclient-java ;; # Apache HttpClient 4, for tests/test_lang_java.c
    perl)   echo perl ;;
    ruby)   echo ruby ;;
    prometheus) echo prometheus ;;
    tmux)   echo tmux ;;
    chromium) echo chromium ;;
    esac
}

have() {
    case "$1" in
    nginx)  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;; # tests add /usr/sbin to PATH
    redis)  command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 ;;
    wrk)    command -v wrk >/dev/null 2>&1 ;;
    curl)   command -v curl >/dev/null 2>&1 ;;
    go)     command -v go >/dev/null 2>&1 ;;
    node)   command -v node >/dev/null 2>&1 ;;
    java)   command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1 ;;
    python) command -v python3 >/dev/null 2>&1 ;;
    requests) /usr/bin/python3 -c 'import requests' >/dev/null 2>&1 ;;
    httpclient) [ -r /usr/share/java/httpclient.jar ] && [ -r /usr/share/java/httpcore.jar ] ;;
    perl)   command -v perl >/dev/null 2>&1 ;;
    ruby)   command -v ruby >/dev/null 2>&1 ;;
    prometheus) [ -x /usr/bin/prometheus ] ;;
    tmux)   command -v tmux >/dev/null 2>&1 ;;
    chromium) command -v chromium >/dev/null 2>&1 ;;
    esac
}

check=0
if [ "${1:-}" = "--check" ]; then
    check=1
    shift
fi
tools="${*:-nginx redis wrk curl go node java python perl ruby prometheus tmux chromium requests httpclient}"
for t in $tools; do
    case "$t" in
    nginx | redis | wrk | curl | go | node | java | python | perl | ruby | prometheus | tmux | chromium | requests | httpclient) ;;
    *) echo "install-test-deps: unknown tool '$t' (known: nginx redis wrk curl go node java python perl ruby prometheus tmux chromium requests httpclient)" >&2
       exit 2 ;;
    esac
done

missing=""
for t in $tools; do
    have "$t" || missing="$missing $(pkgs_for "$t")"
done

[ -z "$missing" ] && exit 0
[ "$check" = 1 ] && exit 1

if [ "$(id -u)" -eq 0 ]; then
    # Tests run in parallel and each asks for its own tool: one apt-get at a
    # time (dpkg's lock would fail the others), then look again, since the
    # one before us may have installed what we need.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"${TMPDIR:-/tmp}/closewatch-install-test-deps.lock"
        flock 9
        missing=""
        for t in $tools; do
            have "$t" || missing="$missing $(pkgs_for "$t")"
        done
        [ -z "$missing" ] && exit 0
    fi
    echo "install-test-deps: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    # An nginx or redis package must not start a system-wide service that
    # would hold ports and outlive the tests: policy-rc.d refuses starts for
    # the duration of the install.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    rc=0
    apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $missing >&2 ||
        { apt-get update -qq >&2 || true; apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $missing >&2; } ||
        rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    exit "$rc"
else
    echo "install-test-deps: missing packages:$missing" >&2
    echo "install-test-deps: run:  sudo apt-get install -y$missing" >&2
    exit 1
fi
