#!/usr/bin/env python3
"""Hold N slow HTTP/1.1-over-TLS connections open against one listener (bench/hostile.sh).

A third connect and send nothing, a third trickle request headers, a third send a POST's headers
and trickle its body; one byte per connection per second. A connection the server cuts is opened
again, so about N stay open. Prints `open N` each second on stdout.

    python3 bench/slow_clients.py HOST PORT N CA_FILE
"""
import asyncio
import ssl
import sys

HEAD = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"


async def one(i, host, port, ctx, state):
    while True:
        try:
            _, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
        except OSError:
            await asyncio.sleep(0.5)
            continue
        state["open"] += 1
        try:
            kind = i % 3
            if kind == 1:
                w.write(HEAD)
            elif kind == 2:
                w.write(HEAD + b"content-length: 1000000\r\n\r\n")
            await w.drain()
            while True:
                await asyncio.sleep(1)
                if kind == 1:
                    w.write(b"x")
                elif kind == 2:
                    w.write(b" ")
                else:
                    continue
                await w.drain()
        except (OSError, ssl.SSLError, ConnectionError):
            pass
        finally:
            state["open"] -= 1
            w.close()


async def main():
    host, port, n, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    state = {"open": 0}
    for i in range(n):
        asyncio.ensure_future(one(i, host, port, ctx, state))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    while True:
        print("open", state["open"], flush=True)
        await asyncio.sleep(1)


asyncio.run(main())
