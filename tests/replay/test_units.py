"""Request rebuilding, rewrite rules, comparison and statistics (no network)."""

from __future__ import annotations

import math

from nodetap.v1 import rrpair_pb2 as pb
from replay.compare import Actual, Comparer, digest, json_diff
from replay.model import Expected, Item, encode_request, item_from_rrpair
from replay.plan import Plan, parse_rate, parse_speed
from replay.rewrite import Rules
from replay.stats import Histogram


def _pair() -> pb.RRPair:
    p = pb.RRPair(id="x-1", l7protocol="http")
    r = p.http.req
    r.method, r.url, r.version = "POST", "http://old.example/api/v1?q=TOKEN", "HTTP/1.1"
    for n, v in [
        ("Host", "old.example"),
        ("Connection", "keep-alive"),
        ("X-Auth", "TOKEN"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "99"),
        ("X-Drop", "1"),
    ]:
        r.headers.add(name=n, value=v)
    r.body = b"id=TOKEN"
    p.http.res.status_code = 200
    p.http.res.body = b'{"a": 1}'
    p.http.res.headers.add(name="Connection", value="close")
    return p


def test_rebuild_fixes_host_length_and_hop_by_hop() -> None:
    item = item_from_rrpair(_pair(), 0)
    assert item is not None and item.recorded_close
    wire = encode_request(item, "new:8080", keep_alive=True).decode()
    head, body = wire.split("\r\n\r\n", 1)
    lines = head.split("\r\n")
    assert lines[0] == "POST /api/v1?q=TOKEN HTTP/1.1"
    assert lines[1:] == ["Host: new:8080", "X-Auth: TOKEN", "X-Drop: 1", "Content-Length: 8"]
    assert body == "id=TOKEN"
    assert "Connection: close" in encode_request(item, "h", keep_alive=False).decode()


def test_rewrite_rules() -> None:
    item = item_from_rrpair(_pair(), 0)
    assert item is not None
    rules = Rules.parse(
        ["old.example=mapped:1"], ["X-Auth: fresh", "X-New: 2"], ["x-drop"], ["TOKEN=NEWTOK"]
    )
    rules.apply(item)
    assert rules.host_for("old.example", "default") == "mapped:1"
    assert item.headers == [("Host", "old.example"), ("X-Auth", "fresh"), ("X-New", "2")]
    assert item.target.endswith("q=NEWTOK") and item.body == b"id=NEWTOK"


def test_get_has_no_content_length() -> None:
    item = Item(0, "", 0, 0, "GET", "/", "HTTP/1.1", [], b"", False, None)
    assert b"Content-Length" not in encode_request(item, "h", True)


def test_compare_status_headers_json_paths() -> None:
    exp = Expected(
        200,
        [("X-A", "1"), ("Date", "x")],
        b'{"id": 5, "ts": 1, "v": [1, 2]}',
        digest(b'{"id": 5, "ts": 1, "v": [1, 2]}'),
        30,
    )
    body = b'{"id": 6, "ts": 2, "v": [1, 3]}'
    act = Actual(201, [("X-A", "2"), ("Date", "y")], body, digest(body), len(body))
    diffs = Comparer(ignore_json_paths=["$.ts", "$..id"]).compare(exp, act)
    assert diffs == [
        "status: recorded 200, replayed 201",
        "header x-a: recorded '1', replayed '2'",
        "body $.v[1]: recorded 2, replayed 3",
    ]
    same = Actual(200, [("X-A", "1")], exp.body, exp.body_sha256, 30)
    assert Comparer().compare(exp, same) == []
    big = Expected(200, [], None, digest(b"a" * 10), 10)
    assert (
        Comparer().compare(big, Actual(200, [], None, digest(b"b" * 10), 10))[0].startswith("body")
    )
    assert json_diff({"a": [{"id": 1}]}, {"a": [{"id": 2}]}, ["$.a[*].id"]) == []


def test_histogram_quantiles_and_merge() -> None:
    h, g = Histogram(), Histogram()
    for i in range(1, 1001):
        (h if i % 2 else g).add(i / 1000)
    h.merge(g)
    assert h.count == 1000 and h.max == 1.0
    assert math.isclose(h.quantile(0.5), 0.5, rel_tol=0.02)
    assert math.isclose(h.quantile(0.99), 0.99, rel_tol=0.02)
    assert Histogram.from_wire(h.to_wire()).quantile(0.9) == h.quantile(0.9)


def test_plan_parsing_and_json_round_trip() -> None:
    assert parse_rate("600/m") == 10 and parse_rate("5/s") == 5 and parse_speed("2x") == 2
    p = Plan(capture="c", target="http://[::1]:81", rules=Rules.parse(None, None, ["a"], ["x=y"]))
    assert (p.host, p.port, p.authority) == ("::1", 81, "[::1]:81")
    q = Plan.from_json(p.to_json())
    assert q.rules.tokens == [("x", "y")] and q.rules.remove_headers == {"a"}


def test_json_fast_path_equals_protobuf_path() -> None:
    import json

    from nodetap import jsonl
    from replay.model import item_from_json

    p = _pair()
    p.ts.FromNanoseconds(1_795_000_000_123_456_789)
    p.meta.conn_id = 42
    p.flags.append("truncated")
    p.http.res.body_size = 100
    p.http.res.headers.add(name="X-R", value="é")
    q = pb.RRPair(id="y")
    q.http.req.method, q.http.req.url, q.http.req.version = "GET", "/", "HTTP/1.0"
    for pair in (p, q):
        line = jsonl.dumps(pair)
        for summary in (False, True):
            fast = item_from_json(json.loads(line), 3, 4, summary)
            slow = item_from_rrpair(jsonl.loads(line), 3, 4, summary)
            assert fast == slow
    fast = item_from_json(json.loads(jsonl.dumps(p)), 0)
    assert fast is not None and fast.ts_ns == 1_795_000_000_123_456_789 and fast.conn_id == 42
    assert item_from_json({"id": "no-http"}, 0) is None
