"""aiohttp as a client: concurrent keep-alive connections, each fetching large bodies.

    python -m tests.support.peers.aiohttp_fetch URL CONNS SIZE[,SIZE...]

Opens CONNS connections at once (one ClientSession with a single-connection pool each),
and on every connection GETs URL/bytes/SIZE for each SIZE in turn. Prints one JSON line:
a list, per connection, of {"port": the client's local port, "requests": [[path, status,
body bytes], ...]}: the client's own account of what it sent and got, which the tests
compare with what nodetap captured.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp


async def one_connection(url: str, sizes: list[int]) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=1, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    port = 0
    done: list[list[Any]] = []
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        for size in sizes:
            path = f"/bytes/{size}"
            async with session.get(url + path) as resp:
                if resp.connection is not None and resp.connection.transport is not None:
                    port = resp.connection.transport.get_extra_info("sockname")[1]
                body = await resp.read()
                done.append([path, resp.status, len(body)])
    return {"port": port, "requests": done}


async def main_async(url: str, conns: int, sizes: list[int]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(one_connection(url, sizes) for _ in range(conns))))


def main(argv: list[str]) -> int:
    url, conns, sizes = argv[0], int(argv[1]), [int(s) for s in argv[2].split(",")]
    print(json.dumps(asyncio.run(main_async(url, conns, sizes))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
