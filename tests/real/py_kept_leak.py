"""A thread-per-connection server that keeps every connection whose peer
hung up and never closes it: the CLOSE_WAIT leak of a Python service that
parks finished sessions in a list. Prints its port, then "eof" per client
that hung up; runs until killed."""
import socket
import threading

kept = []


def handle(conn):
    while True:
        data = conn.recv(1024)  # MARK-EOF
        if not data:
            print("eof", flush=True)
            kept.append(conn)  # the bug: kept, never closed
            return


srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()  # MARK-ACCEPT
    threading.Thread(target=handle, args=(conn,)).start()
