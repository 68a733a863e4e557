"""Daemon threads making and closing sockets as fast as they can, from
frames of different depths, while the main thread returns and the
interpreter finalizes under them (it frees their thread states): the run
must end as it does without the preload, status 0 after "bye"."""
import socket
import threading
import time


def churn(depth):
    if depth:
        return churn(depth - 1)
    while True:
        socket.socket().close()


for k in range(4):
    threading.Thread(target=churn, args=(k * 7,), daemon=True).start()
time.sleep(0.05)  # let them churn: this is the workload, not synchronisation
print("bye", flush=True)
