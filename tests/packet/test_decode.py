"""Frame decoding: the struct fast path agrees with dpkt on every frame it takes."""

from __future__ import annotations

import pytest
from dpkt import ethernet, ip, ip6, tcp

from agent.packet.decode import LinkType, Malformed, NotTcp, Segment, _fast, decode, decode_dpkt
from tests.packet.conftest import LoCapture
from tests.packet.support import read_frames


def _both(linktype: int, frame: bytes) -> Segment | type[Exception]:
    try:
        want: Segment | type[Exception] = decode_dpkt(linktype, frame)
    except (NotTcp, Malformed) as e:
        want = type(e)
    try:
        got: Segment | type[Exception] = decode(linktype, frame)
    except (NotTcp, Malformed) as e:
        got = type(e)
    assert got == want
    return got


@pytest.mark.root
@pytest.mark.parametrize("which", ["eth", "sll", "sll2"])
def test_fast_path_agrees_with_dpkt_on_real_frames(lo_capture: LoCapture, which: str) -> None:
    lt, frames = read_frames(getattr(lo_capture, which))
    taken = 0
    for _, f in frames:
        assert isinstance(_both(lt, f), Segment)
        taken += _fast(lt, f) is not None
    assert taken == len(frames)  # the fast path took every one of them
    if lt == LinkType.ETHERNET:
        for _, f in frames[:200]:
            vlan = f[:12] + b"\x81\x00\x00\x07" + f[12:]
            qinq = f[:12] + b"\x88\xa8\x00\x05\x81\x00\x00\x07" + f[12:]
            assert _both(lt, vlan) == _both(lt, f)
            assert _fast(lt, qinq) is None  # two tags: dpkt's job
            assert _both(lt, qinq) == _both(lt, f)
            assert _both(LinkType.RAW, f[14:]) == _both(lt, f)


def _v6(ext: bytes = b"", nxt: int = 6, payload: bytes = b"hello") -> bytes:
    seg = tcp.TCP(sport=1234, dport=80, seq=7, ack=9, flags=tcp.TH_ACK | tcp.TH_PUSH, data=payload)
    body = ext + bytes(seg)
    net = ip6.IP6(src=b"\xfd" + b"\0" * 14 + b"\x01", dst=b"\xfd" + b"\0" * 14 + b"\x02",
                  nxt=nxt, hlim=64, plen=len(body))  # fmt: skip
    return bytes(ethernet.Ethernet(type=ethernet.ETH_TYPE_IP6)) + bytes(net)[:40] + body


def test_ipv6_with_and_without_extension_headers() -> None:
    plain = _v6()
    hop = _v6(ext=bytes([6, 0, 1, 4, 0, 0, 0, 0]), nxt=0)  # hop-by-hop, then TCP
    frag = _v6(ext=bytes([6, 0, 0, 8, 0, 0, 0, 1]), nxt=44)  # a later fragment
    s1, s2 = _both(LinkType.ETHERNET, plain), _both(LinkType.ETHERNET, hop)
    assert isinstance(s1, Segment) and s1 == s2
    assert s1.payload == b"hello" and (s1.sport, s1.dport, s1.seq, s1.ack) == (1234, 80, 7, 9)
    assert _fast(LinkType.ETHERNET, hop) is None
    assert _both(LinkType.ETHERNET, frag) is NotTcp


def test_ipv4_oddities() -> None:
    seg = tcp.TCP(sport=1, dport=2, seq=3, ack=4, flags=tcp.TH_ACK, data=b"abc")
    net = ip.IP(src=b"\x01\x02\x03\x04", dst=b"\x05\x06\x07\x08", p=6, data=seg)
    net.len = len(net)
    frame = bytes(ethernet.Ethernet(type=ethernet.ETH_TYPE_IP, data=net))
    padded = frame + b"\0" * 20  # Ethernet padding after the IP packet
    assert _both(LinkType.ETHERNET, padded) == _both(LinkType.ETHERNET, frame)
    fragment = bytearray(frame)
    fragment[14 + 6 : 14 + 8] = b"\x00\x10"  # fragment offset 16
    assert _both(LinkType.ETHERNET, bytes(fragment)) is NotTcp
    udp = bytearray(frame)
    udp[14 + 9] = 17
    assert _both(LinkType.ETHERNET, bytes(udp)) is NotTcp
    tso = bytearray(frame)
    tso[16:18] = b"\0\0"  # total length 0 (segmentation offload): use what was captured
    s = _both(LinkType.ETHERNET, bytes(tso))
    assert isinstance(s, Segment) and s.payload == b"abc"


def test_ipv6_with_broken_extension_headers_is_malformed() -> None:
    """dpkt stops inside a garbled extension header chain without raising and leaves no next
    protocol: that is a malformed frame, not an AttributeError (found by random frames)."""
    frame = bytes.fromhex(
        "6000000606063281060045060660600600006045290045ff126006ffff2d450645450060451760008906"
        "e74506ff600060ff063660d2000045cb4500ff004500ffff06ff0645ff60ffff60"
    )
    for lt in (LinkType.RAW, LinkType.IPV6):
        assert _both(lt, frame) is Malformed
