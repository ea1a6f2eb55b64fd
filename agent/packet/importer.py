"""Import a pcap or pcapng file: RRPairs out, a summary of what was read."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import BinaryIO

from agent.packet.http_session import Emit, OnExchange, emitting
from agent.packet.pcapfile import PcapReader
from agent.packet.pipeline import PacketPipeline


@dataclass(slots=True)
class ImportResult:
    """What an import read, and why it stopped early if it did."""

    format: str
    counters: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the damage that stopped reading, if any


def import_pcap(
    fp: BinaryIO,
    emit: Emit | None = None,
    ports: Collection[int] = (),
    max_body: int = 1 << 20,
    node: str = "",
    max_flows: int = 32768,
    on_exchange: OnExchange | None = None,
    jsonl: bool = False,
) -> ImportResult:
    """Read every record of `fp`; hand each exchange found to `on_exchange` (as a
    CapturedExchange), or its RRPair message to `emit`. Raises PcapFormatError when the
    stream is not a capture file at all. `jsonl`: the receiver only writes JSON lines
    (CapturedExchange.json_line(); the core then encodes no protobuf)."""
    if on_exchange is None:
        if emit is None:
            raise TypeError("import_pcap needs emit or on_exchange")
        on_exchange = emitting(emit)
    reader = PcapReader(fp)
    pipe = PacketPipeline(
        on_exchange,
        source="pcap",
        ports=ports,
        max_body=max_body,
        node=node,
        max_flows=max_flows,
        jsonl=jsonl,
    )
    frame = pipe.frame
    for ts_ns, linktype, buf, _orig in reader:
        frame(ts_ns, linktype, buf)
    pipe.finish()
    counters = pipe.summary()
    return ImportResult(format=reader.format, counters=counters, error=reader.error)
