"""What JetStream's duplicate window costs: nats-server's resident memory per remembered
message id, for ids of the JetStream store's shape (agent / batch seq / index).

    .venv/bin/python bench/jetstream_dup_window.py [--count N]

Publishes N RRPair-sized messages to a one-node nats-server (Debian's) with a 10-minute window,
once without ids and once with ids, and prints the memory each run added per message and the
difference (the ids' cost) measured in the same run; no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
from nats.js import api

from tests.support.nats_cluster import NatsCluster, nats_cluster


def resident(c: NatsCluster) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{c.nodes[0].http}/varz", timeout=5) as r:
        return int(json.load(r)["mem"])


async def fill(url: str, count: int, with_ids: bool) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    cfg = api.StreamConfig(name="S", subjects=["s.>"], duplicate_window=600)
    await js.add_stream(cfg)
    for k in range(0, count, 1000):
        await asyncio.gather(
            *(
                js.publish(
                    "s.x",
                    b"x" * 100,
                    headers={"Nats-Msg-Id": f"node-1234-abcdef12/{(k + i) // 16}/{(k + i) % 16}"}
                    if with_ids
                    else None,
                )
                for i in range(min(1000, count - k))
            )
        )
    await nc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200_000)
    args = ap.parse_args()
    per: dict[bool, float] = {}
    for with_ids in (False, True):
        with nats_cluster(1) as c:
            before = resident(c)
            asyncio.run(fill(c.nodes[0].url, args.count, with_ids))
            time.sleep(1)
            per[with_ids] = (resident(c) - before) / args.count
        print(f"{'with ids' if with_ids else 'no ids':>9}: {per[with_ids]:6.0f} B per message")
    print(f"the window's ids: {per[True] - per[False]:.0f} B each (nats-server resident memory)")


if __name__ == "__main__":
    main()
