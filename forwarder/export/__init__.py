"""Writing RRPairs out: JSONL (the proto3 JSON mapping), HAR 1.2, and pcap when available."""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterable
from typing import IO, Any

from forwarder.export import har
from nodetap import jsonl
from nodetap.errors import NodetapError
from nodetap.v1 import rrpair_pb2 as pb

FORMATS = ("jsonl", "har", "pcap")


def _pcap_writer() -> Any:
    try:
        mod = importlib.import_module("agent.packet.pcap_export")
    except ModuleNotFoundError:
        return None
    return getattr(mod, "write_pcap", None)


def write(pairs: Iterable[pb.RRPair], fp: IO[bytes], fmt: str, live: bool = False) -> int:
    """Write pairs to the binary stream fp in fmt; return how many were written. live: flush
    after every RRPair (a tail read by another program)."""
    if fmt == "pcap":
        writer = _pcap_writer()
        if writer is None:
            raise NodetapError("pcap export is not available in this build; use jsonl or har")
        counted = _Counting(pairs)
        writer(counted, fp)
        return counted.n
    text = io.TextIOWrapper(fp, encoding="utf-8", newline="\n", write_through=False)
    try:
        if fmt == "har":
            return har.write(pairs, text)
        if fmt == "jsonl":
            n = 0
            for pair in pairs:
                jsonl.write(text, pair)
                if live:
                    text.flush()
                    fp.flush()
                n += 1
            return n
        raise NodetapError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
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
