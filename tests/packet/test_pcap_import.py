"""pcap import of real traffic (curl, wrk, a Python client; nginx and a Python server),
compared exchange by exchange with tshark, over every link type tcpdump writes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from agent.packet.decode import LinkType
from nodetap import jsonl
from tests.packet.conftest import BIG, UPLOAD, LoCapture
from tests.packet.support import (
    compare_with_tshark,
    nodetap_pairs,
    read_frames,
    rrpair_msgs,
    write_frames,
)

pytestmark = pytest.mark.root  # tcpdump

REPO = Path(__file__).resolve().parents[2]


def _summary(pairs: list) -> list[tuple]:  # type: ignore[type-arg]
    out = []
    for p in pairs:
        req, res = rrpair_msgs(p)
        out.append((p.client.port, p.server.port, req, res, tuple(p.flags)))
    return sorted(out, key=repr)


def _assert_same_exchanges(pairs: list, eth_pairs: list) -> None:  # type: ignore[type-arg]
    """The same exchanges as the Ethernet capture's; on failure, only the ones that differ."""
    ours, theirs = Counter(map(repr, _summary(pairs))), Counter(map(repr, _summary(eth_pairs)))
    only_ours, only_eth = ours - theirs, theirs - ours
    assert not only_ours and not only_eth, (
        f"{len(pairs)} vs {len(eth_pairs)} pairs; only here: {list(only_ours)[:3]}; "
        f"only in the Ethernet capture: {list(only_eth)[:3]}"
    )


def test_ethernet_capture_matches_tshark(lo_capture: LoCapture) -> None:
    pairs, counters = nodetap_pairs(lo_capture.eth)
    n = compare_with_tshark(lo_capture.eth, pairs)
    assert n > 100  # wrk made many
    assert counters["gaps"] == 0 and counters["malformed"] == 0
    bodies = {hashlib.sha256(p.http.res.body).hexdigest() for p in pairs}
    assert hashlib.sha256(BIG).hexdigest() in bodies
    uploads = [p for p in pairs if p.http.req.body == UPLOAD]
    assert {p.server.port for p in uploads} == {lo_capture.nginx_port, lo_capture.py_port}
    for p in pairs:
        assert p.direction == 3  # NETWORK
        assert p.meta.source == "pcap"
        assert "preexisting" not in p.flags
    chunked = [p for p in pairs if p.http.req.url == "/chunked/30"]
    assert len(chunked) == 1
    assert chunked[0].http.res.body == b"".join(f"chunk-{i}\n".encode() for i in range(30))
    assert [(h.name, h.value) for h in chunked[0].http.res.trailers] == [("X-Trailer", "done")]


@pytest.mark.parametrize("which", ["sll2", "sll"])
def test_cooked_captures_match_tshark(lo_capture: LoCapture, which: str) -> None:
    path = getattr(lo_capture, which)
    lt, _ = read_frames(path)
    assert lt == (LinkType.LINUX_SLL2 if which == "sll2" else LinkType.LINUX_SLL)
    pairs, counters = nodetap_pairs(path)
    assert compare_with_tshark(path, pairs) > 100
    assert counters["gaps"] == 0
    eth_pairs, _ = nodetap_pairs(lo_capture.eth)
    _assert_same_exchanges(pairs, eth_pairs)


def test_pcapng_same_as_pcap(lo_capture: LoCapture, tmp_path: Path) -> None:
    ng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(lo_capture.eth), str(ng)], check=True)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    pairs, _ = nodetap_pairs(ng)
    eth_pairs, _ = nodetap_pairs(lo_capture.eth)
    _assert_same_exchanges(pairs, eth_pairs)
    assert [p.ts.ToNanoseconds() for p in pairs] == [p.ts.ToNanoseconds() for p in eth_pairs]


def _vlan(frame: bytes) -> bytes:
    return frame[:12] + b"\x81\x00\x00\x64" + frame[12:]


def _null(frame: bytes) -> bytes:
    family = 2 if frame[12:14] == b"\x08\x00" else 30
    return family.to_bytes(4, sys.byteorder) + frame[14:]


def _loop(frame: bytes) -> bytes:
    family = 2 if frame[12:14] == b"\x08\x00" else 24
    return family.to_bytes(4, "big") + frame[14:]


def _raw(frame: bytes) -> bytes:
    return frame[14:]


@pytest.mark.parametrize(
    ("name", "linktype", "rewrite"),
    [
        ("vlan", LinkType.ETHERNET, _vlan),
        ("null", LinkType.NULL, _null),
        ("loop", LinkType.LOOP, _loop),
        ("raw", LinkType.RAW, _raw),
    ],
)
def test_other_link_layers(
    lo_capture: LoCapture, tmp_path: Path, name: str, linktype: int, rewrite: object
) -> None:
    lt, frames = read_frames(lo_capture.eth)
    assert lt == LinkType.ETHERNET
    out = tmp_path / f"{name}.pcap"
    write_frames(out, linktype, [(ts, rewrite(f)) for ts, f in frames])  # type: ignore[operator]
    pairs, counters = nodetap_pairs(out)
    eth_pairs, _ = nodetap_pairs(lo_capture.eth)
    assert counters["malformed"] == 0 and counters["not_tcp"] == 0
    _assert_same_exchanges(pairs, eth_pairs)
    assert compare_with_tshark(out, pairs) > 100


def test_cli_port_filter_output_and_summary(lo_capture: LoCapture, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "import", str(lo_capture.eth), "-o", str(out),
         "--port", str(lo_capture.py_port)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8  # curl: 1 upload, chunked + 404; the Python client: 5
    assert {x["server"]["port"] for x in lines} == {lo_capture.py_port}
    assert all(x["direction"] == "NETWORK" and x["meta"]["source"] == "pcap" for x in lines)
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("nodetap import: ")
    assert "8 RRPairs" in summary and "0 gaps" in summary and "0 malformed packets" in summary
    # stdout by default, same lines
    proc2 = subprocess.run(
        [sys.executable, "-m", "cli", "import", str(lo_capture.eth), "--port",
         str(lo_capture.py_port), "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc2.returncode == 0 and proc2.stderr == ""
    assert len(proc2.stdout.splitlines()) == 8
    # from a pipe
    with open(lo_capture.eth, "rb") as fin:
        piped = subprocess.run(
            [sys.executable, "-m", "cli", "import", "-", "--port", str(lo_capture.py_port)],
            stdin=fin, capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
    assert piped.returncode == 0 and "<stdin>" not in piped.stderr
    assert len(piped.stdout.splitlines()) == 8
    # the CLI writes JSON straight from the exchanges: the same as the messages' JSON
    pairs, _ = nodetap_pairs(lo_capture.eth, ports=(lo_capture.py_port,))
    want = [json.loads(jsonl.dumps(p)) for p in pairs]
    got = [json.loads(line) for line in proc2.stdout.splitlines()]
    for d in want + got:
        del d["id"]
    assert got == want


def test_pcapng_with_two_link_types(lo_capture: LoCapture, tmp_path: Path) -> None:
    """mergecap of the Ethernet and the SLL2 capture: one pcapng, two interfaces with
    different link types, every packet twice; the copies fold into the same exchanges."""
    merged = tmp_path / "merged.pcapng"
    subprocess.run(
        ["mergecap", "-F", "pcapng", "-w", str(merged), str(lo_capture.eth), str(lo_capture.sll2)],
        check=True,
    )
    pairs, counters = nodetap_pairs(merged)
    eth_pairs, eth_counters = nodetap_pairs(lo_capture.eth)
    assert counters["packets"] > eth_counters["packets"]
    assert counters["duplicate_bytes"] > 0 and counters["gaps"] == 0
    _assert_same_exchanges(pairs, eth_pairs)
