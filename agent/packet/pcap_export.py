"""Synthesise a pcap from RRPairs, so that a capture opens in Wireshark or tcpdump.

Each RRPair becomes one TCP connection between its client and server endpoints (Ethernet,
IPv4 or IPv6 by address): handshake, the request, the response, FIN from both sides, with
checksums and timestamps from the RRPair (ts, ttfb_us, duration_us). Bodies are written as
captured: a chunked message is re-chunked into one chunk, a body cut to the body limit stays
cut (its Content-Length then promises more than follows).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
import zlib
from collections.abc import Iterable
from typing import BinaryIO

from dpkt import ethernet, ip, ip6, tcp

from nodetap.errors import InputError
from nodetap.v1 import rrpair_pb2 as pb

MSS = 1448
CLIENT_MAC = b"\x02\x00\x00\x00\x00\x01"
SERVER_MAC = b"\x02\x00\x00\x00\x00\x02"
DEFAULT_CLIENT = ("10.0.0.1", 40000)
DEFAULT_SERVER = ("10.0.0.2", 80)
MAX_PCAP_SECONDS = 0xFFFFFFFF  # pcap's 32-bit seconds: 2106-02-07T06:28:15Z


class NotLatin1(InputError):
    """An RRPair text field with a character a byte cannot hold: a pair that was not captured
    (header names and values, method and URL are wire bytes decoded as ISO-8859-1)."""

    def __init__(self, what: str, err: UnicodeEncodeError) -> None:
        ch = err.object[err.start]
        super().__init__(
            f"{what} holds {ch!r} (U+{ord(ch):04X}), which is not ISO-8859-1; a pcap carries "
            "the wire bytes, and captured fields hold only ISO-8859-1: fix that pair, or "
            "export as JSONL or HAR"
        )
        self.what = what


def _latin1(text: str, what: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as e:
        raise NotLatin1(what, e) from None


def _headers(headers: Iterable[pb.Header]) -> bytes:
    return b"".join(
        _latin1(h.name, "a header name")
        + b": "
        + _latin1(h.value, f"header {h.name[:40]!r}")
        + b"\r\n"
        for h in headers
    )


def _is_chunked(headers: Iterable[pb.Header]) -> bool:
    return any(
        h.name.lower() == "transfer-encoding" and "chunked" in h.value.lower() for h in headers
    )


def _body(body: bytes, headers: Iterable[pb.Header], trailers: Iterable[pb.Header]) -> bytes:
    if not _is_chunked(headers):
        return body
    out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return out + b"0\r\n" + _headers(trailers) + b"\r\n"


def request_bytes(req: pb.HttpRequest) -> bytes:
    """The request as it went on the wire (as far as the RRPair keeps it)."""
    line = (
        _latin1(req.method, "the method")
        + b" "
        + _latin1(req.url, "the URL")
        + b" "
        + _latin1(req.version or "HTTP/1.1", "the version")
        + b"\r\n"
    )
    return line + _headers(req.headers) + b"\r\n" + _body(req.body, req.headers, req.trailers)


def response_bytes(res: pb.HttpResponse) -> bytes:
    """The response as it went on the wire (as far as the RRPair keeps it)."""
    version = res.version or "HTTP/1.1"
    line = _latin1(f"{version} {res.status_code} {res.status_message}\r\n", "the status line")
    return line + _headers(res.headers) + b"\r\n" + _body(res.body, res.headers, res.trailers)


class _Conn:
    """Builds the frames of one synthetic TCP connection."""

    def __init__(self, pair: pb.RRPair, index: int) -> None:
        cip = pair.client.ip or DEFAULT_CLIENT[0]
        sip = pair.server.ip or DEFAULT_SERVER[0]
        self.cport = pair.client.port or DEFAULT_CLIENT[1] + index % 20000
        self.sport = pair.server.port or DEFAULT_SERVER[1]
        ca, sa = ipaddress.ip_address(cip), ipaddress.ip_address(sip)
        if ca.version != sa.version:  # mixed families cannot share a packet: map v4 to v6
            ca = ipaddress.IPv6Address(f"::ffff:{ca}") if ca.version == 4 else ca
            sa = ipaddress.IPv6Address(f"::ffff:{sa}") if sa.version == 4 else sa
        self.v6 = ca.version == 6
        self.caddr, self.saddr = ca.packed, sa.packed
        seed = zlib.crc32(f"{pair.id}/{index}".encode())
        self.cseq = seed
        self.sseq = (seed * 2654435761) & 0xFFFFFFFF

    def frame(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        seg = tcp.TCP(
            sport=self.cport if from_client else self.sport,
            dport=self.sport if from_client else self.cport,
            seq=seq,
            ack=ack if flags & tcp.TH_ACK else 0,
            flags=flags,
            win=65535,
            data=payload,
        )
        src, dst = (self.caddr, self.saddr) if from_client else (self.saddr, self.caddr)
        net: ip.IP | ip6.IP6
        if self.v6:
            net = ip6.IP6(src=src, dst=dst, nxt=ip.IP_PROTO_TCP, hlim=64, data=seg)
            net.plen = len(seg)
            etype = ethernet.ETH_TYPE_IP6
        else:
            net = ip.IP(src=src, dst=dst, p=ip.IP_PROTO_TCP, ttl=64, data=seg)
            net.len = len(net)
            etype = ethernet.ETH_TYPE_IP
        smac, dmac = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
        advance = len(payload) + (1 if flags & (tcp.TH_SYN | tcp.TH_FIN) else 0)
        if from_client:
            self.cseq = (self.cseq + advance) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + advance) & 0xFFFFFFFF
        return bytes(ethernet.Ethernet(src=smac, dst=dmac, type=etype, data=net))

    def data(self, from_client: bool, payload: bytes, split_last: bool = False) -> list[bytes]:
        """MSS-sized segments; `split_last` sends the last byte on its own, so a message
        can have distinct first-byte and last-byte times even when it is small."""
        cuts = list(range(0, len(payload), MSS))
        if split_last and len(payload) > 1 and len(payload) - cuts[-1] > 1:
            cuts.append(len(payload) - 1)
        cuts.append(len(payload))
        return [
            self.frame(from_client, tcp.TH_ACK | tcp.TH_PUSH, payload[a:b])
            for a, b in itertools.pairwise(cuts)
        ]


def _frames(pair: pb.RRPair, index: int) -> list[tuple[int, bytes]]:
    """The timestamped frames of one RRPair's synthetic connection."""
    conn = _Conn(pair, index)
    start = pair.ts.ToNanoseconds() if pair.HasField("ts") else index * 1_000_000
    ttfb = pair.ttfb_us * 1000
    end = start + max(pair.duration_us * 1000, ttfb)
    syn, ack, fin = tcp.TH_SYN, tcp.TH_ACK, tcp.TH_FIN
    frames: list[tuple[int, bytes]] = [
        (start - 3000, conn.frame(True, syn)),
        (start - 2000, conn.frame(False, syn | ack)),
        (start - 1000, conn.frame(True, ack)),
    ]
    if pair.http.HasField("req"):
        frames += [(start, f) for f in conn.data(True, request_bytes(pair.http.req))]
        frames.append((start + 1, conn.frame(False, ack)))
    if pair.http.HasField("res"):
        segs = conn.data(False, response_bytes(pair.http.res), split_last=end > start + ttfb)
        frames += [(start + ttfb, f) for f in segs[:-1]]
        frames.append((end if len(segs) > 1 else start + ttfb, segs[-1]))
        frames.append((end, conn.frame(True, ack)))
    frames += [
        (end + 1000, conn.frame(True, fin | ack)),
        (end + 2000, conn.frame(False, fin | ack)),
        (end + 3000, conn.frame(True, ack)),
    ]
    return frames


def write_pcap(pairs: Iterable[pb.RRPair], fp: BinaryIO) -> int:
    """Write the pairs as a pcap (Ethernet, nanosecond timestamps) to `fp`; returns the
    number of RRPairs written (pairs without an HTTP payload are skipped)."""
    fp.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 1 << 18, 1))  # ns, Ethernet
    written = 0
    for index, pair in enumerate(pairs):
        if not pair.HasField("http"):
            continue
        try:
            frames = _frames(pair, index)
        except NotLatin1 as e:
            raise InputError(f"RRPair {pair.id or index + 1}: {e}") from None
        last = frames[-1][0] // 10**9
        if last > MAX_PCAP_SECONDS:
            raise InputError(
                f"RRPair {pair.id or index + 1}: its time ({pair.ts.ToJsonString()} plus its "
                "duration) is past 2106-02-07, the last second a pcap can hold; fix its ts, "
                "or export as JSONL"
            )
        for ts, frame in frames:
            ts = max(ts, 0)
            fp.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
            fp.write(frame)
        written += 1
    fp.flush()
    return written
