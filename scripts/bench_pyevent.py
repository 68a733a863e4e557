"""bench_pyevent.py DEPTH N: ns per socket()+close() from a Python call
DEPTH frames deep (the median of 5 rounds of N), for `make bench`'s
python-event section: plain vs closewatch, the difference is the cost of a
recorded event with Python frames (socket() is recorded with its stack,
close() without)."""
import socket
import statistics
import sys
import time


def churn(n):
    t = time.perf_counter_ns()
    for _ in range(n):
        socket.socket().close()
    return (time.perf_counter_ns() - t) / n


def deep(k, n):
    return churn(n) if k == 0 else deep(k - 1, n)


depth, n = int(sys.argv[1]), int(sys.argv[2])
deep(depth, n // 10)  # warm up: code records interned, pages touched
print(round(statistics.median(deep(depth, n) for _ in range(5))))
