"""An asyncio stream server whose handler returns on EOF without
writer.close(): each connection stays in CLOSE_WAIT. accept() and the
EOF's recv() run in the event loop, not in the handler, so the accepted
socket's own stacks end in asyncio.run(); the listener's stack names the
start_server line, which the report must show. Clients in the same loop
connect N times, then it prints "leaked N" and waits for stdin to close."""
import asyncio
import sys


async def handle(reader, writer):
    while await reader.read(100):
        pass
    # the bug: no writer.close()


async def main(n):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)  # MARK-START-SERVER
    port = server.sockets[0].getsockname()[1]
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        await w.drain()
        w.close()
        await w.wait_closed()
    print("leaked", n, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main(int(sys.argv[1])))
