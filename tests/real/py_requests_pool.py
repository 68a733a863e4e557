"""A requests Session (urllib3's connection pool) whose server closes
connections after each answer: the pooled connection sits in CLOSE_WAIT in
the client until the pool is used again, which it never is. The finding
must name the line that made the request. Prints "got 200", then waits for
stdin to close."""
import http.server
import sys
import threading

import requests


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True  # the server hangs up after each answer

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
session = requests.Session()
r = session.get("http://127.0.0.1:%d/" % server.server_address[1])  # MARK-REQUEST
print("got", r.status_code, flush=True)
sys.stdin.read()
