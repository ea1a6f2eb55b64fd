"""`nodetap snapshot` habits (issue 25): `list --json` writes counts as numbers and zeros,
snapshots are addressed by name or id, against a real forwarder process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder.server import ForwarderHandle, serve
from nodetap import jsonl, transport
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fwd(tmp_path: Path) -> Iterator[ForwarderHandle]:
    h = serve("127.0.0.1:0", str(tmp_path / "data"))
    try:
        yield h
    finally:
        h.stop(0)


def nodetap(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def _ingest(addr: str, n: int) -> None:
    from forwarder import client

    pairs = []
    for i in range(n):
        p = pb.RRPair(id=f"p{i}", l7protocol="http", direction=pb.INBOUND, duration_us=1500)
        p.ts.FromNanoseconds(time.time_ns() - 1000 + i)
        p.http.req.method = "POST" if i % 2 else "GET"
        p.http.req.url = f"/items/{i}"
        p.http.res.status_code = 200
        pairs.append(p)
    ch = transport.channel(addr)
    try:
        acks = list(
            client.stub(ch).Ingest(iter([fpb.IngestBatch(agent_id="t", seq=1, pairs=pairs)]))
        )
    finally:
        ch.close()
    assert acks[0].stored == n


def test_snapshot_list_json_numbers_and_by_name(fwd: ForwarderHandle) -> None:
    addr = f"127.0.0.1:{fwd.port}"
    _ingest(addr, 4)
    sid = nodetap("snapshot", "create", "--forwarder", addr, "--name", "posts",
                  "--filter", "method=POST").stdout.strip()  # fmt: skip
    empty = nodetap("snapshot", "create", "--forwarder", addr, "--name", "nothing",
                    "--filter", "method=PATCH").stdout.strip()  # fmt: skip
    listed = {
        d["id"]: d
        for d in map(json.loads, nodetap("snapshot", "list", "--forwarder", addr, "--json")
                     .stdout.splitlines())
    }  # fmt: skip
    assert listed[sid]["count"] == 2 and listed[sid]["name"] == "posts"
    assert listed[empty]["count"] == 0  # present when zero, a number
    # jq reads it as numbers
    r = subprocess.run(
        ["jq", "-r", "select(.count > 1) | .name"],
        input="\n".join(json.dumps(d) for d in listed.values()),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert r.stdout.split() == ["posts"]

    by_name = nodetap("snapshot", "export", "posts", "--forwarder", addr).stdout
    assert sorted(jsonl.loads(x).id for x in by_name.splitlines()) == ["p1", "p3"]
    by_id = nodetap("snapshot", "export", sid, "--forwarder", addr).stdout
    assert by_id == by_name

    missing = nodetap("snapshot", "export", "no-such", "--forwarder", addr, check=False)
    assert missing.returncode == 2
    assert "no snapshot with the id or name 'no-such'" in missing.stderr

    nodetap("snapshot", "create", "--forwarder", addr, "--name", "posts")
    twice = nodetap("snapshot", "delete", "posts", "--forwarder", addr, check=False)
    assert twice.returncode == 2 and "2 snapshots are named 'posts'" in twice.stderr

    nodetap("snapshot", "delete", "nothing", "--forwarder", addr)
    left = nodetap("snapshot", "list", "--forwarder", addr, "--json").stdout
    assert empty not in left
