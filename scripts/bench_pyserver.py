"""bench_pyserver.py - the Python thread-per-connection workload of scripts/bench.

    python3 bench_pyserver.py PORTFILE CONNS

A socketserver.ThreadingTCPServer (a new thread per connection) serving CONNS connections of
bench_churn's client, each: read the 64-byte request, write the 64-byte response, read until
EOF, close. Writes its port to PORTFILE when listening; when done prints the CPU time it used
(all threads, plus closewatch's sampler process, as bench_cpu.h counts it) in microseconds per
connection.
"""
import os
import socketserver
import sys
import threading

MSG = 64
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n".ljust(MSG, b"\0")


def sampler_cpu_s():
    """utime + stime of the closewatch sampler watching this process, in seconds."""
    want = b"closewatch-sampler\0%d\0" % os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read(128).startswith(want):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return 0.0


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s, got = self.request, 0
        while got < MSG:
            b = s.recv(MSG - got)
            if not b:
                return
            got += len(b)
        s.sendall(RESPONSE)
        while s.recv(MSG):  # the client's FIN: the recv() == 0 closewatch records
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096

    def __init__(self, conns):
        super().__init__(("127.0.0.1", 0), Handler)
        self.left = conns
        self.done = threading.Semaphore(0)

    def process_request_thread(self, request, client_address):
        super().process_request_thread(request, client_address)
        self.done.release()


def main():
    portfile, conns = sys.argv[1], int(sys.argv[2])
    server = Server(conns)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(portfile + ".tmp", portfile)
    for _ in range(conns):
        server.handle_request()
    for _ in range(conns):  # every handler thread finished
        server.done.acquire()
    server.server_close()
    t = os.times()
    print("%.3f" % ((t.user + t.system + sampler_cpu_s()) * 1e6 / conns))


if __name__ == "__main__":
    main()
