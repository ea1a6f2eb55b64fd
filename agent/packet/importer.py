"""Import a pcap or pcapng file: RRPairs out, a summary of what was read."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import BinaryIO

from agent.packet.http_session import Emit
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
    emit: Emit,
    ports: Collection[int] = (),
    max_body: int = 1 << 20,
    node: str = "",
    max_flows: int = 32768,
) -> ImportResult:
    """Read every record of `fp`, emit the RRPairs found; raises PcapFormatError when
    the stream is not a capture file at all."""
    reader = PcapReader(fp)
    pipe = PacketPipeline(
        emit, source="pcap", ports=ports, max_body=max_body, node=node, max_flows=max_flows
    )
    frame = pipe.frame
    for ts_ns, linktype, buf, _orig in reader:
        frame(ts_ns, linktype, buf)
    pipe.finish()
    counters = pipe.summary()
    return ImportResult(format=reader.format, counters=counters, error=reader.error)
