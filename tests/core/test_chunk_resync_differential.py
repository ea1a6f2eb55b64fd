"""A gap inside a chunked body: the Rust core finds the framing again as the Python path
does (agent/protocols/http1/chunk_resync.py, core/src/http1/chunk_resync.rs): the same
RRPairs, byte for byte (flags, bodies, body_size bounds, trailers, timestamps), for the
cases of tests/protocols/http1/test_chunk_resync.py and for seeded random chunked bodies
full of framing lookalikes, holes anywhere (one or two, the second while the framing is
still lost), and the bytes after a hole cut into records anywhere, on both sides."""

from __future__ import annotations

import itertools
import random

import pytest

from agent import bpf_layout as L
from tests.core.paths import Conn, assert_same, conversation

GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
POST = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
ROLES = pytest.mark.parametrize(
    "role", [L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT], ids=["server", "client"]
)
Steps = list[tuple[str, bytes | int]]


def chunked(parts: list[bytes], trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailers + b"\r\n"


def _cut(side: str, data: bytes, cuts: list[int]) -> Steps:
    edges = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [(side, data[a:b]) for a, b in itertools.pairwise(edges) if b > a]


def response_case(body: bytes, holes: list[tuple[int, int]], cuts: list[int], then: bytes) -> Steps:
    """Two GETs; the first answered chunked with ``body`` whose ``holes`` (start, end;
    sorted, apart) are lost, the second with ``then``; bytes after the first hole cut."""
    steps: Steps = [("req", GET + GET_B)]
    at = 0
    for i, (a, b) in enumerate(holes):
        piece = (HEAD if i == 0 else b"") + body[at:a]
        steps += _cut("res", piece, cuts) if i else [("res", piece)]
        steps.append(("res", b - a))
        at = b
    steps += _cut("res", body[at:] + then, cuts)
    return [s for s in steps if s[1] != b""]


def request_case(body: bytes, holes: list[tuple[int, int]], cuts: list[int]) -> Steps:
    """A chunked POST whose ``holes`` are lost, answered; then a GET, answered."""
    steps: Steps = []
    at = 0
    for i, (a, b) in enumerate(holes):
        piece = (POST if i == 0 else b"") + body[at:a]
        steps += _cut("req", piece, cuts) if i else [("req", piece)]
        steps.append(("req", b - a))
        at = b
    steps += _cut("req", body[at:] + GET_B, cuts)
    steps += [("res", NO_CONTENT), ("res", OK)]
    return [s for s in steps if s[1] != b""]


def same(steps: Steps, role: int, max_body: int = 1 << 20) -> None:
    """One batch, and one batch per record (the core may join adjacent records)."""
    recs = conversation(Conn(7, role=role), steps)
    assert_same([b"".join(recs)], max_body)
    assert_same(recs, max_body)


PARTS = [bytes(range(256)) + b"\r\n0\r\n\r\n" + b"z" * 41, b"x" * 17, b"y" * 4000, b"tail data"]
LOOKALIKE = b"line\r\n0\r\n\r\nmore\r\n5\r\nabc\r\nend"
CASES: dict[str, tuple[bytes, tuple[int, int], bytes]] = {
    "hole-across-chunks": (chunked(PARTS), (100, 340), OK),
    "trailers-and-no-next-message": (
        chunked([b"a" * 50, b"b" * 50], b"X-Checksum: 1\r\n"),
        (10, 60),
        b"",
    ),
    "lookalikes-in-chunk-data": (chunked([b"p" * 40, LOOKALIKE, b"q" * 30]), (20, 50), OK),
    "hex-text-before-the-next-status-line": (
        chunked([b"a" * 50, b"text\r\ncafe\r\nmore"]),
        (10, 60),
        OK,
    ),
    "hole-ends-at-a-chunk-boundary": (chunked([b"a" * 30, b"b" * 30, b"c" * 5]), (10, 37), OK),
    "hole-ends-mid-size-line": (chunked([b"a" * 30, b"b" * 300, b"c" * 5]), (10, 37), OK),
    "hole-takes-the-last-chunk": (chunked([b"a" * 30, b"b" * 30]), (10, 76), OK),
}
CUTS = [[], [1], [2, 3, 4, 5, 6, 7, 8], [5, 9, 300], list(range(1, 5000, 97))]


@ROLES
@pytest.mark.parametrize("cuts", CUTS, ids=lambda c: f"{len(c)}cuts")
@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_of_the_python_tests(name: str, cuts: list[int], role: int) -> None:
    body, hole, then = CASES[name]
    same(response_case(body, [hole], cuts, then), role)
    same(request_case(body, [hole], cuts), role)


@ROLES
def test_a_hex_line_then_the_close_is_gap_not_incomplete(role: int) -> None:
    steps: Steps = [("req", GET), ("res", HEAD + b"40\r\nabc"), ("res", 100)]
    same([*steps, ("res", b"xx\r\ncafe\r\nyy")], role)
    same([*steps, ("res", b"xx\r\ncafe\r")], role)  # a CR at the end, then the close


def _random_part(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    n = rng.choice([1, 2, 5, 16, 100, 1000, 5000])
    if kind == 0:
        return rng.randbytes(n)
    if kind == 1:  # hex text and CRLFs: candidates everywhere
        return bytes(rng.choice(b"0123456789abcdef\r\n;") for _ in range(n))
    if kind == 2:
        return b"\r\n%x\r\n" % rng.randrange(1, 64) + rng.randbytes(n)
    if kind == 3:
        return b"\r\n0\r\n\r\n" + rng.choice([b"", b"GET ", b"HTTP/1.1 ", b"junk"])
    if kind == 4:
        return b"\r\n0\r\nX-T: 1\r\n\r\n" + rng.randbytes(n)
    return b"q" * n


@pytest.mark.parametrize("seed", range(60))
def test_seeded_random_bodies_holes_and_cuts(seed: int) -> None:
    rng = random.Random(seed)
    parts = [_random_part(rng) for _ in range(rng.randrange(1, 6))]
    trailers = rng.choice([b"", b"X-Sum: 42\r\n", b"A: 1\r\nB: 2\r\n"])
    body = chunked(parts, trailers)
    holes: list[tuple[int, int]] = []
    at = 0
    for _ in range(rng.choice([1, 1, 2])):
        a = rng.randrange(at, max(at + 1, len(body) - 1))
        b = min(len(body), a + rng.choice([1, 2, 3, 7, 50, 300, 3000]))
        if a >= b:
            break
        holes.append((a, b))
        at = b + 1
        if at >= len(body):
            break
    n = len(body) + len(OK)
    cuts = sorted(rng.randrange(1, n) for _ in range(rng.choice([0, 1, 3, 20])))
    role = rng.choice([L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT])
    max_body = rng.choice([1 << 20, 64])
    same(response_case(body, holes, cuts, rng.choice([OK, b"", b"HTTP/1."])), role, max_body)
    same(request_case(body, holes, cuts), role, max_body)
