"""Write the differential tests' HTTP/1.x cases as seeds of the core's fuzz targets
(core/fuzz): `python -m tests.core.fuzz_seeds core/fuzz/corpus` (scripts/test.sh does); the
`rules` target's seeds come from tests/core/rules_pairs.py.

A seed is pieces separated by 0xff (target http1) or 0xfe (target records); the first
byte of a piece steers: bit 0 the direction (1: response), bit 1 a gap of that many bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.core.rules_pairs import fuzz_seeds as rules_seeds
from tests.core.test_chunk_resync_differential import CASES as CHUNK_CASES
from tests.core.test_chunk_resync_differential import response_case
from tests.core.test_differential import CASES


def seed(pieces: list[tuple[str, bytes | int]], sep: bytes) -> bytes:
    out = []
    for side, p in pieces:
        d = 0 if side == "req" else 1
        if isinstance(p, int):
            out.append(bytes([0x10 | d | 2]) + bytes(min(p, 200)))
        else:
            out.append(bytes([0x10 | d]) + p)
    return sep.join(out)


# HTTP/2 (target h2: pieces of [ctl, length (2 bytes), bytes]): the client preface,
# SETTINGS, a HEADERS of static-table entries and a literal, and the server's answer.
H2_CLIENT = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + bytes([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0])
    + bytes([0, 0, 7, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 2]) + b"hx"
)  # fmt: skip
H2_SERVER = bytes([0, 0, 2, 1, 4, 0, 0, 0, 1, 0x88, 0xBE, 0, 0, 3, 0, 1, 0, 0, 0, 1]) + b"abc"


def h2_seed() -> bytes:
    return b"".join(
        bytes([ctl]) + len(b).to_bytes(2, "big") + b for ctl, b in ((0, H2_CLIENT), (1, H2_SERVER))
    )


def main(root: str) -> None:
    d = Path(root) / "h2"
    d.mkdir(parents=True, exist_ok=True)
    (d / "seed-get").write_bytes(h2_seed())
    for target, sep in (("http1", b"\xff"), ("records", b"\xfe")):
        d = Path(root) / target
        d.mkdir(parents=True, exist_ok=True)
        for name, pieces in CASES.items():
            (d / f"seed-{name}").write_bytes(seed(pieces, sep))
        for name, (body, hole, then) in CHUNK_CASES.items():  # gaps in chunked bodies
            pieces = response_case(body, [hole], [], then)
            (d / f"seed-chunk-resync-{name}").write_bytes(seed(pieces, sep))
    d = Path(root) / "rules"
    d.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(rules_seeds()):
        (d / f"seed-{i}").write_bytes(data)


if __name__ == "__main__":
    main(sys.argv[1])
