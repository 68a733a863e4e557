"""py_server.py - a socketserver echo server for the `real` suite
(tests/test_real.c), with a session registry that owns client sockets.

    python3 py_server.py leak|good

Prints "listening PORT" once it accepts connections and exits cleanly when
stdin reaches EOF (the test closes its end: no sleeps, no signals).

The bug in `leak` mode is a common one: the server's shutdown_request is
overridden because "the registry owns the socket", and the handler returns
on an empty read (the peer's FIN) without dropping the session. The socket
stays referenced, so nothing ever closes it: CLOSE_WAIT. `good` mode closes
on that path.
"""
import socketserver
import sys
import threading

LEAK = sys.argv[1] == "leak"
sessions = {}
lock = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with lock:
            sessions[self.client_address] = self.request
        while True:
            data = self.request.recv(4096)
            if not data:
                if LEAK:
                    return  # the bug: the session (and its socket) stays registered
                with lock:
                    sessions.pop(self.client_address).close()
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def shutdown_request(self, request):
        pass  # sessions own their sockets


def main():
    server = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    print("listening", server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
    print("bye", len(sessions), flush=True)


main()
