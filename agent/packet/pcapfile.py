"""Reading pcap and pcapng files: records with nanosecond timestamps and their link type.

A damaged file is read up to the damage: the reader stops there and says where and why
(``PcapReader.error``), and what came before is kept. Reads in large blocks; the caller
decodes the frames.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microseconds, little endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
BT_IDB = 1
BT_PB = 2
BT_SPB = 3
BT_EPB = 6
# Larger records than this are taken as corruption (the largest real frames are 256 KiB).
MAX_RECORD = 16 << 20
# Timestamps an RRPair can carry: from 1970 to the end of year 9999 (RFC 3339), in ns.
MAX_TS_NS = 253_402_300_800 * 1_000_000_000 - 1
BLOCK = 1 << 20

Record = tuple[int, int, bytes, int]  # (timestamp ns, link type, frame bytes, original length)


class PcapFormatError(ValueError):
    """The file is not a pcap or pcapng file at all."""


class PcapReader:
    """Iterates the records of a pcap or pcapng stream; see `error` after iterating."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self._buf = b""
        self._pos = 0
        self._consumed = 0  # file offset of _buf[0]
        self.error: str | None = None  # why reading stopped early, if it did
        self.records = 0
        head = self._peek(4)
        if len(head) < 4:
            raise PcapFormatError("file is empty or shorter than any capture header")
        if head in PCAP_MAGICS:
            self.format = "pcap"
        elif struct.unpack("<I", head)[0] == PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raise PcapFormatError(f"not a pcap or pcapng file (starts with {head.hex()})")
        self.linktypes: list[int] = []

    # -- buffering ---------------------------------------------------------------------------

    def _peek(self, n: int) -> bytes:
        """At least n bytes from the current position if the file has them."""
        if len(self._buf) - self._pos < n:
            rest = self._buf[self._pos :]
            self._consumed += self._pos
            more = self._fp.read(max(BLOCK, n - len(rest)))
            self._buf = rest + more if rest else more
            self._pos = 0
            while len(self._buf) < n:
                more = self._fp.read(n - len(self._buf))
                if not more:
                    break
                self._buf += more
        return self._buf[self._pos : self._pos + n]

    @property
    def offset(self) -> int:
        return self._consumed + self._pos

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        if self.format == "pcap":
            return self._pcap()
        return self._pcapng()

    def _pcap(self) -> Iterator[Record]:
        hdr = self._peek(24)
        if len(hdr) < 24:
            self.error = f"pcap header truncated ({len(hdr)} of 24 bytes)"
            return
        order, mult = PCAP_MAGICS[hdr[:4]]
        linktype = struct.unpack(order + "I", hdr[20:24])[0] & 0xFFFF
        self.linktypes.append(linktype)
        self._pos += 24
        rec = struct.Struct(order + "IIII")
        unpack_from = rec.unpack_from
        while True:
            if len(self._buf) - self._pos < 16:
                h = self._peek(16)
                if not h:
                    return
                if len(h) < 16:
                    self.error = f"record header truncated at byte {self.offset}"
                    return
            sec, frac, incl, orig = unpack_from(self._buf, self._pos)
            if incl > MAX_RECORD:
                self.error = f"corrupt record at byte {self.offset}: captured length {incl}"
                return
            start = self._pos + 16
            end = start + incl
            if end > len(self._buf):
                self._peek(16 + incl)
                start = self._pos + 16
                end = start + incl
                if end > len(self._buf):
                    self.error = (
                        f"record truncated at byte {self.offset}: "
                        f"{len(self._buf) - start} of {incl} bytes"
                    )
                    return
            self._pos = end
            self.records += 1
            yield (sec * 1_000_000_000 + frac * mult, linktype, self._buf[start:end], orig)

    def _pcapng(self) -> Iterator[Record]:
        order = "<"
        ifaces: list[tuple[int, int, int]] = []  # (link type, ticks per second, offset s)
        while True:
            h = self._peek(12)
            if not h:
                return
            if len(h) < 12:
                self.error = f"block header truncated at byte {self.offset}"
                return
            btype = struct.unpack_from("<I", h)[0]
            if btype == PCAPNG_SHB:
                bom = h[8:12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    self.error = f"bad section header at byte {self.offset}"
                    return
                ifaces = []
            btype, blen = struct.unpack_from(order + "II", h)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                self.error = f"corrupt block at byte {self.offset}: length {blen}"
                return
            block = self._peek(blen)
            if len(block) < blen:
                self.error = f"block truncated at byte {self.offset}: {len(block)} of {blen} bytes"
                return
            self._pos += blen
            body = block[8 : blen - 4]
            try:
                if btype == BT_IDB:
                    ifaces.append(self._idb(order, body))
                    self.linktypes.append(ifaces[-1][0])
                elif btype == BT_EPB:
                    iface, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", body)
                    if iface >= len(ifaces) or 20 + cap > len(body):
                        raise ValueError("bad interface id or captured length")
                    lt, tps, off = ifaces[iface]
                    ts = _ns((hi << 32) | lo, tps, off, iface)
                    self.records += 1
                    yield (ts, lt, body[20 : 20 + cap], orig)
                elif btype == BT_SPB:
                    (orig,) = struct.unpack_from(order + "I", body)
                    if not ifaces:
                        raise ValueError("simple packet before any interface")
                    cap = min(orig, len(body) - 4)
                    self.records += 1
                    yield (0, ifaces[0][0], body[4 : 4 + cap], orig)
                elif btype == BT_PB:
                    iface, _drops, hi, lo, cap, orig = struct.unpack_from(order + "HHIIII", body)
                    if iface >= len(ifaces) or 20 + cap > len(body):
                        raise ValueError("bad interface id or captured length")
                    lt, tps, off = ifaces[iface]
                    ts = _ns((hi << 32) | lo, tps, off, iface)
                    self.records += 1
                    yield (ts, lt, body[20 : 20 + cap], orig)
            except (struct.error, ValueError) as e:
                self.error = f"corrupt block at byte {self.offset - blen}: {e}"
                return

    @staticmethod
    def _idb(order: str, body: bytes) -> tuple[int, int, int]:
        linktype, _res, _snap = struct.unpack_from(order + "HHI", body)
        tps = 1_000_000
        offset = 0
        pos = 8
        while pos + 4 <= len(body):
            code, length = struct.unpack_from(order + "HH", body, pos)
            value = body[pos + 4 : pos + 4 + length]
            if code == 0:
                break
            if code == 9 and length >= 1:  # if_tsresol
                r = value[0]
                tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** (r & 0x7F)
            elif code == 14 and length >= 8:  # if_tsoffset (seconds)
                offset = struct.unpack(order + "q", value[:8])[0]
            pos += 4 + ((length + 3) & ~3)
        return linktype, tps, offset


def _ns(ticks: int, tps: int, offset_s: int, iface: int = 0) -> int:
    """Nanoseconds since 1970 of a pcapng timestamp; ValueError when no calendar date between
    1970 and 9999 has it (a damaged or hostile if_tsresol or if_tsoffset)."""
    if tps == 1_000_000_000:
        ns = ticks + offset_s * 1_000_000_000
    else:
        ns = ticks * 1_000_000_000 // tps + offset_s * 1_000_000_000
    if not 0 <= ns <= MAX_TS_NS:
        raise ValueError(
            f"timestamp out of range (years 1970 to 9999): check if_tsresol ({tps} ticks/s) "
            f"and if_tsoffset ({offset_s} s) of interface {iface}"
        )
    return ns
