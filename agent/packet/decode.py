"""Link-layer to TCP decoding with dpkt: one captured frame in, one TCP segment out.

Sans-IO: takes the frame bytes and the capture's link type, knows nothing of files or
sockets. Link types: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked captures
(SLL and SLL2, as ``tcpdump -i any`` writes), BSD loopback (DLT_NULL and DLT_LOOP) and
raw IP (v4 and v6).

The common frames (Ethernet with at most one VLAN tag, SLL, SLL2 or raw IP; one IPv4
header or an IPv6 header without extensions; TCP) take a struct fast path, about five
times cheaper than building dpkt objects; everything else, and anything the fast path
finds odd, goes through dpkt (``decode_dpkt``). tests/packet/test_decode.py checks that
both agree.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import dpkt
from dpkt import ethernet, ip, ip6, loopback, sll, sll2, tcp

# TCP flags
FIN = tcp.TH_FIN
SYN = tcp.TH_SYN
RST = tcp.TH_RST
ACK = tcp.TH_ACK


class LinkType(IntEnum):
    """The link types (pcap LINKTYPE_* values) the decoder understands."""

    NULL = 0
    ETHERNET = 1
    RAW_OPENBSD = 12
    RAW_BSD = 14
    RAW = 101
    LOOP = 108
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


SUPPORTED_LINKTYPES = frozenset(int(t) for t in LinkType)


@dataclass(slots=True)
class Segment:
    """One TCP segment as seen on the wire."""

    src: bytes  # packed IPv4 (4 bytes) or IPv6 (16 bytes) address
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    missing: int = 0  # payload bytes announced by the IP header but cut by the snap length


class NotTcp(Exception):
    """The frame is well formed but carries no TCP segment (ARP, UDP, fragments, ...)."""


class Malformed(Exception):
    """The frame cannot be decoded (truncated headers, bad lengths)."""


def _raw_ip(buf: bytes) -> dpkt.Packet:
    if not buf:
        raise Malformed("empty frame")
    version = buf[0] >> 4
    if version == 4:
        return ip.IP(buf)
    if version == 6:
        return ip6.IP6(buf)
    raise Malformed(f"IP version {version}")


_IP_ETHERTYPES = (ethernet.ETH_TYPE_IP, ethernet.ETH_TYPE_IP6)


def _network(linktype: int, buf: bytes) -> tuple[object, bool]:
    """The network-layer object of a frame, and whether the link layer announced IP."""
    if linktype == LinkType.ETHERNET:
        eth = ethernet.Ethernet(buf)
        return eth.data, eth.type in _IP_ETHERTYPES
    if linktype == LinkType.LINUX_SLL:
        cooked = sll.SLL(buf)
        return cooked.data, cooked.ethtype in _IP_ETHERTYPES
    if linktype == LinkType.LINUX_SLL2:
        cooked2 = sll2.SLL2(buf)
        return cooked2.data, cooked2.ethtype in _IP_ETHERTYPES
    if linktype in (LinkType.NULL, LinkType.LOOP):
        lo = loopback.Loopback(buf)
        if isinstance(lo.data, ethernet.Ethernet):
            return lo.data.data, lo.data.type in _IP_ETHERTYPES
        return lo.data, True
    if linktype in (LinkType.RAW, LinkType.RAW_OPENBSD, LinkType.RAW_BSD):
        return _raw_ip(buf), True
    if linktype == LinkType.IPV4:
        return ip.IP(buf), True
    if linktype == LinkType.IPV6:
        return ip6.IP6(buf), True
    raise Malformed(f"unsupported link type {linktype}")


_IPV4 = b"\x08\x00"
_IPV6 = b"\x86\xdd"
_VLANS = (b"\x81\x00", b"\x88\xa8")
_TCP_HDR = struct.Struct(">HHIIH")
_U16 = struct.Struct(">H")


def _fast(linktype: int, buf: bytes) -> Segment | None:
    """The common frames (one IPv4 or IPv6 header without extensions, then TCP) decoded
    with struct, about four times faster than building dpkt objects. Anything unusual
    returns None and goes through dpkt; tests check both paths agree."""
    if linktype == 1:
        et = buf[12:14]
        off = 14
        if et in _VLANS:
            et = buf[16:18]
            off = 18
    elif linktype == 113:
        et = buf[14:16]
        off = 16
    elif linktype == 276:
        et = buf[0:2]
        off = 20
    elif linktype in (101, 228, 229):
        v = buf[0] >> 4 if buf else 0
        et = _IPV4 if v == 4 else _IPV6 if v == 6 else b""
        off = 0
    else:
        return None
    n = len(buf)
    if et == _IPV4:
        if n < off + 20:
            return None
        vhl = buf[off]
        ihl = (vhl & 15) * 4
        if (
            vhl >> 4 != 4
            or ihl < 20
            or buf[off + 9] != 6
            or _U16.unpack_from(buf, off + 6)[0] & 0x3FFF
        ):
            return None
        total = _U16.unpack_from(buf, off + 2)[0]
        src = buf[off + 12 : off + 16]
        dst = buf[off + 16 : off + 20]
        th = off + ihl
        end = off + total if total else n
        if end < th:
            return None
    elif et == _IPV6:
        if n < off + 40 or buf[off + 6] != 6 or buf[off] >> 4 != 6:
            return None
        plen = _U16.unpack_from(buf, off + 4)[0]
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        th = off + 40
        end = th + plen if plen else n
    else:
        return None
    if n < th + 20:
        return None
    sport, dport, seq, ack, offflags = _TCP_HDR.unpack_from(buf, th)
    doff = (offflags >> 12) * 4
    if doff < 20 or th + doff > min(end, n):
        return None
    if end > n:
        return Segment(
            src, dst, sport, dport, seq, ack, offflags & 0x1FF, buf[th + doff :], end - n
        )
    return Segment(src, dst, sport, dport, seq, ack, offflags & 0x1FF, buf[th + doff : end])


def decode(linktype: int, buf: bytes) -> Segment:
    """Decode one frame; raise NotTcp or Malformed when it holds no usable TCP segment."""
    seg = _fast(linktype, buf)
    if seg is not None:
        return seg
    return decode_dpkt(linktype, buf)


def decode_dpkt(linktype: int, buf: bytes) -> Segment:
    """decode() with dpkt only (every link type and header the decoder supports)."""
    try:
        net, announced_ip = _network(linktype, buf)
    except (dpkt.UnpackError, IndexError, ValueError, struct.error) as e:
        raise Malformed(f"link/IP header: {e}") from None
    if isinstance(net, ip.IP):
        if net.p != ip.IP_PROTO_TCP:
            raise NotTcp("not TCP")
        if net.offset or net.mf:
            raise NotTcp("IP fragment")
        seg = net.data
        announced = net.len - net.hl * 4 if net.len else -1
    elif isinstance(net, ip6.IP6):
        if not hasattr(net, "p"):  # dpkt gives up inside bad extension headers, silently
            raise Malformed("IPv6 extension headers truncated or invalid")
        if net.p != ip.IP_PROTO_TCP:
            raise NotTcp("not TCP")
        if ip.IP_PROTO_FRAGMENT in net.extension_hdrs:
            raise NotTcp("IPv6 fragment")
        seg = net.data
        ext = sum(h.length for h in net.all_extension_headers)
        announced = net.plen - ext if net.plen else -1
    elif announced_ip:
        raise Malformed("IP header truncated or invalid")
    else:
        raise NotTcp("not IP")
    if not isinstance(seg, tcp.TCP):
        raise Malformed("TCP header truncated or invalid")
    hdr_len = seg.off * 4
    if hdr_len < 20:
        raise Malformed("TCP data offset below 20")
    payload = bytes(seg.data)
    missing = 0
    if announced >= 0:
        expect = announced - hdr_len
        if expect < 0:
            raise Malformed("IP length shorter than the TCP header")
        if len(payload) > expect:
            payload = payload[:expect]  # Ethernet padding
        missing = expect - len(payload)
    return Segment(
        src=net.src,
        dst=net.dst,
        sport=seg.sport,
        dport=seg.dport,
        seq=seg.seq,
        ack=seg.ack,
        flags=seg.flags,
        payload=payload,
        missing=missing,
    )
