"""The differential check of packet mode: the core path (agent/packet/pipeline.py, frames
decoded and TCP reassembled in Rust) and the Python path kept as its oracle
(tests/packet/oracle.py: decode.py, flows.py, reassembly.py) must give the same RRPairs,
byte for byte, and the same counters on a capture file.

support.tcpdump runs it on every capture the packet tests write, and support.nodetap_pairs
on every file they import (cut, holed, exported ones), so every pcap of tests/packet is
compared (test_core_path.py checks that the hook runs).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from agent.capture_core import CoreExchange
from agent.packet.pcapfile import PcapReader
from agent.packet.pipeline import PacketPipeline
from agent.rrpairs import CapturedExchange
from tests.packet.oracle import PyPacketPipeline

PREFIX = "diff"
# captures compared so far (test_core_path.py checks the hook ran)
compared: list[Path] = []


def _run(
    pcap: Path, core: bool, ports: Collection[int], max_body: int, jsonl: bool
) -> tuple[list[bytes], dict[str, int]]:
    out: list[bytes] = []

    def on_exchange(c: CapturedExchange) -> None:
        assert isinstance(c, CoreExchange)
        line = c.json_line()
        out.append(
            (line if isinstance(line, bytes) else line.encode())
            if jsonl
            else c.proto().SerializeToString()
        )

    pipe = (PacketPipeline if core else PyPacketPipeline)(
        on_exchange, source="pcap", ports=ports, max_body=max_body, jsonl=jsonl, id_prefix=PREFIX
    )
    with open(pcap, "rb") as fp:
        for ts_ns, linktype, buf, _orig in PcapReader(fp):
            pipe.frame(ts_ns, linktype, buf)
    pipe.finish()
    return out, pipe.summary()


def assert_same_paths(
    pcap: Path, ports: Collection[int] = (), max_body: int = 1 << 20, jsonl: bool = False
) -> None:
    """The core path and the Python oracle agree on `pcap` (RRPairs and counters)."""
    got, got_counters = _run(pcap, True, ports, max_body, jsonl)
    want, want_counters = _run(pcap, False, ports, max_body, jsonl)
    assert got_counters == want_counters, (pcap, got_counters, want_counters)
    assert len(got) == len(want), (pcap, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, (pcap, i, g[:300], w[:300])
    compared.append(pcap)
