"""Live packet mode: a BPF socket filter on one interface feeds the packet pipeline.

The filter (bpf/packet_filter.c, compiled by BCC) keeps only TCP segments on the selected
ports, in the kernel; the AF_PACKET socket it is attached to has a TPACKET_V3 receive ring
(agent/packet/ring.py): each retired block of frames, with their kernel timestamps, goes
whole to the core, which decodes, reassembles and parses them (HTTP/1.x, HTTP/2, gRPC) as
for pcap import. Packets the kernel dropped because the ring was full are counted from the
socket's PACKET_STATISTICS and reported (``kernel_drops``).
"""

from __future__ import annotations

import ctypes
import importlib.resources
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from agent.packet.decode import LinkType
from agent.packet.pipeline import PacketPipeline
from agent.packet.ring import RxRing
from agent.rrpairs import CapturedExchange
from nodetap.errors import NodetapError
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

# package data of the ``bpf`` package (bpf/__init__.py): found in an installed copy too
BPF_SOURCE = importlib.resources.files("bpf") / "packet_filter.c"

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE
# Mirror of nt_counters in bpf/packet_filter.c.
CTR_SEEN, CTR_KEPT, CTR_NOT_TCP = 0, 1, 2

RCVBUF = 32 << 20  # the receive ring's size

PACKETS = Counter("nodetap_packet_frames_total", "Frames read from the live packet socket")
KERNEL_DROPS = Counter(
    "nodetap_packet_kernel_drops_total", "Frames the kernel dropped (packet socket buffer full)"
)
MALFORMED = Counter("nodetap_packet_malformed_total", "Frames that could not be decoded")
GAPS = Counter("nodetap_packet_gaps_total", "Holes in reassembled TCP streams")
PAIRS = Counter("nodetap_packet_rrpairs_total", "RRPairs made from live packets")
EVICTED = Counter(
    "nodetap_packet_flows_evicted_total",
    "Connections closed early to keep within the flow and buffer limits",
)
# Pipeline counters mirrored into metrics while the capture runs.
_SYNCED = (
    ("packets", PACKETS),
    ("malformed", MALFORMED),
    ("gaps", GAPS),
    ("evicted_limit", EVICTED),
    ("rrpairs", PAIRS),
)


class _MetricSync:
    """Adds the growth of the pipeline's counters to the Prometheus counters."""

    def __init__(self) -> None:
        self._last = dict.fromkeys((k for k, _ in _SYNCED), 0)

    def __call__(self, summary: dict[str, int]) -> None:
        for key, counter in _SYNCED:
            delta = summary[key] - self._last[key]
            if delta > 0:
                counter.inc(delta)
                self._last[key] = summary[key]


def _arphrd(interface: str) -> int:
    path = Path("/sys/class/net") / interface / "type"
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        raise NodetapError(
            f"interface {interface!r} not found in this network namespace; list them with: ip link"
        ) from None


def link_of(interface: str) -> tuple[int, int]:
    """(pcap link type, link header length) of an interface; NodetapError when unusable."""
    arphrd = _arphrd(interface)
    if arphrd in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return int(LinkType.ETHERNET), 14
    if arphrd == ARPHRD_NONE:
        return int(LinkType.RAW), 0
    raise NodetapError(
        f"interface {interface!r} has link type {arphrd}, which packet mode does not decode; "
        "use an Ethernet, veth, loopback or tun interface"
    )


def _cflags(interface: str) -> list[str]:
    _linktype, link_hdr = link_of(interface)
    flags = [f"-DLINK_HDR_LEN={link_hdr}"]
    if _arphrd(interface) == ARPHRD_LOOPBACK:
        flags.append("-DNT_SKIP_OUTGOING=1")
    return flags


def filter_program(interface: str) -> str:
    """The socket filter's C source as compiled for `interface` (for ``--ebpf``)."""
    defines = "".join("#define {} {}\n".format(*f[2:].split("=", 1)) for f in _cflags(interface))
    return defines + BPF_SOURCE.read_text()


def _load_filter(interface: str, ports: Iterable[int]) -> tuple[Any, Any]:
    if os.geteuid() != 0:
        raise NodetapError("packet mode needs root (BPF socket filter); run it with sudo")
    try:
        from bcc import BPF
    except ImportError:
        raise NodetapError(
            "BCC is not importable; install python3-bpfcc and use a venv made with "
            "--system-site-packages (scripts/setup.sh)"
        ) from None
    try:
        with importlib.resources.as_file(BPF_SOURCE) as source:  # BCC reads a file on disk
            bpf = BPF(src_file=str(source).encode(), cflags=_cflags(interface))
        fn = bpf.load_func(b"nodetap_port_filter", BPF.SOCKET_FILTER)
    except Exception as e:
        raise NodetapError(
            f"cannot load the packet filter: {e}; check kernel headers (README)"
        ) from None
    table = bpf[b"nt_ports"]
    selected = list(ports) or [0]
    for port in selected:
        table[ctypes.c_int(port)] = ctypes.c_uint8(1)
    try:
        BPF.attach_raw_socket(fn, interface.encode())
    except Exception as e:
        bpf.cleanup()
        raise NodetapError(f"cannot attach the packet filter to {interface}: {e}") from None
    return bpf, fn


def _bpf_counters(bpf: Any) -> dict[str, int]:
    table = bpf[b"nt_counters"]
    out = {}
    for name, idx in (("filter_seen", CTR_SEEN), ("filter_kept", CTR_KEPT)):
        out[name] = int(sum(table[ctypes.c_int(idx)]))
    return out


def run_packet_capture(
    interface: str,
    ports: list[int],
    emit: Callable[[pb.RRPair], None],
    stop: threading.Event,
    max_body: int,
    node: str = "",
    ready: threading.Event | None = None,
    rcvbuf: int = RCVBUF,
    on_exchange: Callable[[CapturedExchange], None] | None = None,
    jsonl: bool = False,
) -> dict[str, int]:
    """Capture `interface` until `stop` is set, emitting RRPairs; returns the counters
    (packets, flows, rrpairs, gaps, malformed, kernel_drops, filter_seen, filter_kept...).

    `ready` (optional) is set once the filter is attached and packets are being read;
    `rcvbuf` is the size of the receive ring (the kernel drops packets beyond it);
    `on_exchange`, when given, receives each exchange as a CapturedExchange instead of
    `emit` its RRPair message (``.json_line()`` writes JSONL without building the message);
    `jsonl`: the receiver only writes JSON lines (the core encodes no protobuf).
    """
    linktype, _link_hdr = link_of(interface)
    bpf, fn = _load_filter(interface, ports)
    sock = socket.socket(fileno=os.dup(fn.sock))
    os.close(fn.sock)
    kernel_packets = kernel_drops = 0

    def to_emit(captured: CapturedExchange) -> None:
        emit(captured.proto())

    # the RRPairs metric follows the pipeline's count (_MetricSync), not a lock per pair
    pipe = PacketPipeline(
        on_exchange or to_emit,
        source="packet",
        ports=ports,
        max_body=max_body,
        node=node,
        jsonl=jsonl,
    )
    ring: RxRing | None = None
    try:
        ring = RxRing(sock, rcvbuf)
        block = pipe.block
        sync = _MetricSync()
        last_expire = time.monotonic()
        if ready is not None:
            ready.set()
        while not stop.is_set():
            fed = False
            for view in ring.blocks(100, ring.block_nr):
                announced, walked = block(linktype, view)
                fed = True
                if walked != announced:
                    log.debug("ring block: %d frames announced, %d walked", announced, walked)
            if fed:
                pipe.flush()
            now = time.monotonic()
            if now - last_expire > 1.0:
                last_expire = now
                pipe.expire(time.time_ns())
                sync(pipe.summary())
                p, d = ring.kernel_stats()
                kernel_packets += p
                kernel_drops += d
                KERNEL_DROPS.inc(d)
        # what the ring still holds
        for view in ring.blocks(0, ring.block_nr):
            block(linktype, view)
        pipe.finish()
        sync(pipe.summary())
    finally:
        if ring is not None:
            p, d = ring.kernel_stats()
            kernel_packets += p
            kernel_drops += d
            KERNEL_DROPS.inc(d)
            ring.close()
        counters = _bpf_counters(bpf)
        sock.close()
        bpf.cleanup()
    summary = pipe.summary()
    summary.update(counters)
    summary["kernel_packets"] = kernel_packets
    summary["kernel_drops"] = kernel_drops
    if kernel_drops:
        log.warning("the kernel dropped %d packets (socket buffer full)", kernel_drops)
    return summary
