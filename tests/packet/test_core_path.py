"""The core path of packet mode (frames, flows and reassembly in Rust) against the Python
path kept as its oracle: same RRPairs byte for byte, same counters (differential.py; the
same check also runs on every capture the packet tests write, from support.tcpdump)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from agent.packet.decode import LinkType
from tests.packet import differential
from tests.packet.conftest import LoCapture
from tests.packet.support import read_frames, write_frames


def test_core_and_python_paths_agree_on_every_link_type(lo_capture: LoCapture) -> None:
    for pcap in (lo_capture.eth, lo_capture.sll2, lo_capture.sll):
        differential.assert_same_paths(pcap)
        differential.assert_same_paths(pcap, jsonl=True)
        differential.assert_same_paths(pcap, ports=(lo_capture.py_port,), max_body=100)
    assert lo_capture.eth in differential.compared


def test_core_and_python_paths_agree_on_shuffled_cut_and_repeated_frames(
    lo_capture: LoCapture, tmp_path: Path
) -> None:
    """Reordered, duplicated, dropped and snapped frames: the reassembly's every branch."""
    lt, frames = read_frames(lo_capture.eth)
    assert lt == LinkType.ETHERNET
    rng = random.Random(19)
    for trial in range(4):
        out: list[tuple[int, bytes]] = []
        for ts, f in frames:
            r = rng.random()
            if r < 0.03:
                continue  # lost
            if r < 0.06:
                out.append((ts, f))  # retransmitted
            if r < 0.09 and len(f) > 80:
                f = f[: rng.randrange(60, len(f))]  # snapped
            out.append((ts, f))
        for i in range(0, len(out) - 1, 7):  # swap neighbours now and then
            if rng.random() < 0.3:
                out[i], out[i + 1] = out[i + 1], out[i]
        pcap = tmp_path / f"mixed-{trial}.pcap"
        write_frames(pcap, lt, out)
        differential.assert_same_paths(pcap)


def test_core_and_python_paths_agree_on_garbage(tmp_path: Path) -> None:
    rng = random.Random(7)
    frames = [(i, rng.randbytes(rng.randrange(120))) for i in range(2000)]
    hdr = (
        bytes(12)
        + b"\x08\x00"
        + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 60, 0, 0, 64, 6, 0, bytes(4), bytes(4))
    )
    frames += [(i, hdr + rng.randbytes(rng.randrange(40))) for i in range(2000)]
    pcap = tmp_path / "garbage.pcap"
    write_frames(pcap, LinkType.ETHERNET, frames)
    differential.assert_same_paths(pcap)
