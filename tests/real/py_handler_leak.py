"""A threading (or, with the argument "fork", forking) socketserver server
whose handler returns on recv() == b"" and never closes the connection
(shutdown_request does nothing): the leak whose Python frames
tests/test_lang.c looks for. Prints its port, then "eof" once the handler
saw the peer's FIN; then waits to be killed."""
import signal
import socketserver
import sys

MIXIN = socketserver.ForkingMixIn if "fork" in sys.argv[1:] else socketserver.ThreadingMixIn


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1024)  # MARK-EOF
            if data == b"":
                print("eof", flush=True)
                return


class LeakyServer(MIXIN, socketserver.TCPServer):
    def shutdown_request(self, request):
        pass  # the bug: the socket is never closed and sits in CLOSE_WAIT


server = LeakyServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.handle_request()  # MARK-ACCEPT
signal.pause()
