"""Writing RRPairs out: JSONL (the proto3 JSON mapping), HAR 1.2, and pcap through a writer the
caller passes (the command line passes agent/packet/pcap_export.py's, when that is installed)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import IO, Any

from forwarder.export import har
from nodetap import jsonl, rrpair_json
from nodetap.errors import ConfigError, HostError
from nodetap.v1 import rrpair_pb2 as pb

FORMATS = ("jsonl", "har", "pcap")

PcapWriter = Callable[[Iterable[pb.RRPair], Any], Any]  # (pairs, binary stream)


def write(
    pairs: Iterable[pb.RRPair],
    fp: IO[bytes],
    fmt: str,
    live: bool = False,
    pcap_writer: PcapWriter | None = None,
    render: Any = None,
) -> int:
    """Write pairs to the binary stream fp in fmt; return how many were written. live: flush
    after every RRPair (a tail read by another program). pcap needs pcap_writer. render (a
    nodetap.grpc_json.Renderer, --proto-descriptors): gRPC messages also as JSON."""
    if fmt == "pcap":
        writer = pcap_writer
        if writer is None:
            raise HostError("pcap export is not available in this build; use jsonl or har")
        counted = _Counting(pairs)
        writer(counted, fp)
        return counted.n
    text = io.TextIOWrapper(fp, encoding="utf-8", newline="\n", write_through=False)
    try:
        if fmt == "har":
            return har.write(pairs, text, render)
        if fmt == "jsonl":
            n = 0
            for pair in pairs:
                if render is not None and pair.HasField("grpc"):
                    text.write(json.dumps(render.annotate(rrpair_json.to_dict(pair))) + "\n")
                else:
                    jsonl.write(text, pair)
                if live:
                    text.flush()
                    fp.flush()
                n += 1
            return n
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    finally:
        text.flush()
        text.detach()


class _Counting:
    def __init__(self, pairs: Iterable[pb.RRPair]) -> None:
        self._pairs = pairs
        self.n = 0

    def __iter__(self) -> Any:
        for p in self._pairs:
            self.n += 1
            yield p
