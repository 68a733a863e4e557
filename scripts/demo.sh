#!/bin/sh
# demo.sh - `make demo`: runs a small echo server that forgets to close()
# sockets when clients hang up, under closewatch, and shows the report.
set -eu
cd "$(dirname "$0")/.."
rings=$(mktemp -d /tmp/closewatch-demo.XXXXXX)
trap 'rm -rf "$rings"' EXIT
echo "== build/fixtures/demo_server: an echo server whose handler returns on recv()==0 without close()"
echo "== running it under: build/closewatch run --grace=0.5 -- build/fixtures/demo_server"
echo
status=0
build/closewatch run --dir="$rings" --grace=0.5 --error-exitcode=1 -- build/fixtures/demo_server 3 1.5 || status=$?
echo
if [ "$status" -eq 1 ]; then
    echo "== closewatch caught the leak (exit status 1 from --error-exitcode=1)."
    echo "== The 'opened' stack names the accept() call, the 'EOF seen at' stack names the recv()"
    echo "== in handle_client() (tests/fixtures/demo_server.c) that returned without close()."
    echo "== (the demo removes its ring directory when it ends)"
else
    echo "== unexpected: closewatch exited with $status" >&2
    exit 1
fi
