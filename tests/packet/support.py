"""Helpers for the packet tests: tcpdump captures, the tshark oracle, comparisons."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.packet.importer import import_pcap
from nodetap.v1 import rrpair_pb2 as pb


@contextlib.contextmanager
def tcpdump(
    path: Path, iface: str, bpf_filter: str, netns: str | None = None, extra: tuple[str, ...] = ()
) -> Iterator[None]:
    """Run tcpdump writing `path` for the duration of the block; stopped by PID."""
    # In immediate mode libpcap's ring has one slot per snapshot length: the default (262144)
    # leaves 256 slots in 64 MiB, which a loaded machine fills (-i any also queues each
    # loopback packet's outgoing copy). No TCP segment here exceeds 64 KiB (lo's and veths'
    # gso_max_size) plus a link header, so 65600 bytes capture them whole in four times the slots.
    argv = ["tcpdump", "-i", iface, "-w", str(path), "-U", "--immediate-mode", "-n", "-B", "65536"]
    argv += ["-s", "65600"]
    argv += extra
    argv += bpf_filter.split()
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    errlog = tcpdump_log(path)
    done = False
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while b"listening on" not in errlog.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {errlog.read_text()}")
            time.sleep(0.02)
        yield
        # let the last packets reach the file: on a loaded machine tcpdump lags, and what
        # it has not read when it stops is lost (and would look like a capture gap)
        last, deadline = -1, time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.4)
            size = path.stat().st_size if path.exists() else 0
            if size == last:
                break
            last = size
        done = True
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if done and path.exists():
        from tests.packet.differential import assert_same_paths

        assert_same_paths(path)  # the core path against the Python oracle


def tcpdump_log(path: Path) -> Path:
    """Where the tcpdump that writes `path` writes its stderr."""
    return path.with_suffix(".tcpdump.log")


def kernel_drops(path: Path) -> int:
    """How many packets the kernel dropped for the tcpdump that wrote `path` (its own count)."""
    log = tcpdump_log(path).read_text()
    found = re.search(r"(\d+) packets? dropped by kernel", log)
    return int(found.group(1)) if found else 0


@dataclass
class Msg:
    """One HTTP message as a comparable record."""

    first: tuple[str, ...]  # (method, url) or (status,)
    headers: tuple[str, ...]  # "Name: value" lines in wire order
    body_sha: str
    body_len: int


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
    return dict(pairs)


def tshark_messages(pcap: Path, ports: tuple[int, ...] = ()) -> dict[tuple[int, int], list[Msg]]:
    """HTTP messages by (client port, TCP stream index), in order, as tshark (the oracle)
    decodes them.

    Out-of-order reassembly is switched on and body decompression off (nodetap keeps
    content codings as sent)."""
    argv = [
        "tshark", "-r", str(pcap), "-n",
        "-o", "tcp.reassemble_out_of_order:TRUE",
        "-o", "http.decompress_body:FALSE",
        "-Y", "http", "-T", "json", "-x", "--no-duplicate-keys", "-J", "tcp http",
    ]  # fmt: skip
    for port in ports:  # servers on free ports: tell tshark they speak HTTP
        argv[3:3] = ["-d", f"tcp.port=={port},http"]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout
    frames = json.loads(out or b"[]")
    streams: dict[tuple[int, int], list[Msg]] = {}
    for frame in frames:
        layers = frame["_source"]["layers"]
        tcp = layers["tcp"]
        stream = int(_first(tcp["tcp.stream"]))
        https = layers["http"]
        for http in https if isinstance(https, list) else [https]:
            msg = _tshark_msg(http)
            if msg is not None:
                is_request = len(msg.first) == 2
                client = int(_first(tcp["tcp.srcport" if is_request else "tcp.dstport"]))
                streams.setdefault((client, stream), []).append(msg)
    return streams


def _first(v: object) -> str:
    return str(v[0] if isinstance(v, list) else v)


def _tshark_msg(http: dict[str, Any]) -> Msg | None:
    first: tuple[str, ...] | None = None
    for value in http.values():
        if isinstance(value, dict) and "http.request.method" in value:
            first = (_first(value["http.request.method"]), _first(value["http.request.uri"]))
        elif isinstance(value, dict) and "http.response.code" in value:
            first = (_first(value["http.response.code"]),)
    if first is None:
        return None
    lines = http.get("http.request.line") or http.get("http.response.line") or []
    if isinstance(lines, str):
        lines = [lines]
    headers = tuple(str(x).removesuffix("\r\n") for x in lines)
    raw = http.get("http.file_data_raw")
    body = b""
    if raw:
        hexdata = raw[0] if isinstance(raw[0], str) else raw[0][0]
        body = bytes.fromhex(str(hexdata))
    return Msg(first, headers, hashlib.sha256(body).hexdigest(), len(body))


def nodetap_pairs(
    pcap: Path, ports: tuple[int, ...] = (), max_body: int = 64 << 20
) -> tuple[list[pb.RRPair], dict[str, int]]:
    """RRPairs and counters of `nodetap import` (in process) of `pcap`."""
    pairs: list[pb.RRPair] = []
    with open(pcap, "rb") as fp:
        res = import_pcap(fp, pairs.append, ports=ports, max_body=max_body)
    assert res.error is None, res.error
    from tests.packet.differential import assert_same_paths

    assert_same_paths(pcap, ports, max_body)  # the core path against the Python oracle
    return pairs, res.counters


def rrpair_msgs(pair: pb.RRPair) -> tuple[Msg | None, Msg | None]:
    req = res = None
    if pair.http.HasField("req"):
        r = pair.http.req
        req = Msg(
            (r.method, r.url),
            tuple(f"{h.name}: {h.value}" for h in r.headers),
            hashlib.sha256(r.body).hexdigest(),
            len(r.body),
        )
    if pair.http.HasField("res"):
        s = pair.http.res
        res = Msg(
            (str(s.status_code),),
            tuple(f"{h.name}: {h.value}" for h in s.headers),
            hashlib.sha256(s.body).hexdigest(),
            len(s.body),
        )
    return req, res


def compare_with_tshark(pcap: Path, pairs: list[pb.RRPair], ports: tuple[int, ...] = ()) -> int:
    """Assert nodetap's exchanges equal tshark's, connection by connection: the requests
    in order and the responses in order (a server may answer before the request's body
    has fully arrived, so tshark's frame order interleaves them differently). Returns the
    number of messages compared."""
    oracle = tshark_messages(pcap, ports or tuple({p.server.port for p in pairs}))
    by_conn: dict[tuple[int, int], list[Msg]] = {}
    for pair in sorted(pairs, key=lambda p: (p.meta.conn_id, p.ts.ToNanoseconds())):
        req, res = rrpair_msgs(pair)
        msgs = by_conn.setdefault((pair.client.port, pair.meta.conn_id), [])
        msgs.extend(m for m in (req, res) if m is not None)
    ours = [by_conn[k] for k in sorted(by_conn)]
    theirs = [oracle[k] for k in sorted(oracle)]
    assert len(ours) == len(theirs), (sorted(by_conn), sorted(oracle))
    n = 0
    for a, b in zip(ours, theirs, strict=True):
        for kind in (2, 1):  # requests (method, url), then responses (status,)
            mine = [m for m in a if len(m.first) == kind]
            other = [m for m in b if len(m.first) == kind]
            assert len(mine) == len(other), (mine[:3], other[:3])
            for x, y in zip(mine, other, strict=True):
                assert x == y
            n += len(mine)
    return n


def read_frames(pcap: Path) -> tuple[int, list[tuple[int, bytes]]]:
    """(link type, [(ts_ns, frame)]) of a single-link-type capture."""
    from agent.packet.pcapfile import PcapReader

    with open(pcap, "rb") as fp:
        reader = PcapReader(fp)
        frames = [(ts, buf) for ts, _lt, buf, _orig in reader]
        assert reader.error is None, reader.error
        return reader.linktypes[0], frames


def write_frames(pcap: Path, linktype: int, frames: list[tuple[int, bytes]]) -> None:
    """A nanosecond pcap with these frames."""
    with open(pcap, "wb") as fp:
        fp.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 1 << 18, linktype))
        for ts, buf in frames:
            fp.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(buf), len(buf)))
            fp.write(buf)
