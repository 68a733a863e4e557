"""py_client.py - an HTTP keep-alive client for the `real` suite
(tests/test_real.c).

    python3 py_client.py leak|good PORT

Makes one request on an http.client.HTTPConnection kept for reuse (the pool
pattern), prints "idle", and exits cleanly when stdin reaches EOF.

In `leak` mode the idle connection just sits in the pool: when the server
times it out and closes, nothing looks at the socket, so it stays in
CLOSE_WAIT with the FIN unread. In `good` mode an idle-connection watcher
(what urllib3 and most pools do) waits for the socket to become readable
while idle, which for an idle keep-alive connection means the server closed
it, and closes it; it prints "reaped".
"""
import http.client
import selectors
import sys
import threading

LEAK = sys.argv[1] == "leak"
PORT = int(sys.argv[2])

pool = []


def watch_idle(conn):
    with selectors.DefaultSelector() as sel:
        sel.register(conn.sock, selectors.EVENT_READ)
        sel.select()
    conn.close()
    pool.remove(conn)
    print("reaped", flush=True)


def main():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    conn.request("GET", "/ping")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200 and body == b"ok", (resp.status, body)
    pool.append(conn)
    if not LEAK:
        threading.Thread(target=watch_idle, args=(conn,), daemon=True).start()
    print("idle", flush=True)
    sys.stdin.read()
    print("bye", len(pool), flush=True)


main()
