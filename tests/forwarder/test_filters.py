"""Selections (Filter), their command-line form, times, sizes and ages."""

from __future__ import annotations

import pytest

from forwarder.filters import matches, parse_filters, parse_time
from nodetap.errors import NodetapError
from nodetap.v1 import rrpair_pb2 as pb


def _pair(method: str = "GET", url: str = "/a", status: int = 200, ns: str = "shop") -> pb.RRPair:
    p = pb.RRPair(id="x", l7protocol="http", direction=pb.INBOUND)
    p.ts.FromNanoseconds(1_800_000_000 * 10**9)
    p.http.req.method, p.http.req.url = method, url
    p.http.res.status_code = status
    p.meta.namespace, p.meta.pod, p.meta.node = ns, "web-1", "n1"
    return p


def test_parse_filters_and_match() -> None:
    f = parse_filters(
        [
            "namespace=shop,db",
            "method=post",
            "url=/api/",
            "status=5xx",
            "direction=inbound",
            "protocol=http",
            "pod=web-1",
            "node=n1",
        ]
    )
    assert list(f.namespaces) == ["shop", "db"] and list(f.methods) == ["POST"]
    assert (f.status_min, f.status_max) == (500, 599)
    assert matches(f, _pair("POST", "/api/x", 503))
    assert not matches(f, _pair("POST", "/api/x", 404))
    assert not matches(f, _pair("GET", "/api/x", 503))
    assert not matches(f, _pair("POST", "/web", 503))
    assert not matches(f, _pair("POST", "/api/x", 503, ns="other"))
    assert matches(parse_filters(["status=404"]), _pair(status=404))
    assert matches(parse_filters(["status=400-"]), _pair(status=503))


def test_time_range() -> None:
    t = 1_800_000_000
    assert matches(parse_filters([], since=str(t - 1), until=str(t + 1)), _pair())
    assert not matches(parse_filters([], since=str(t + 1)), _pair())
    assert not matches(parse_filters([], until=str(t)), _pair())  # until is exclusive
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000 * 10**9
    assert parse_time("2027-01-15T09:00:00+01:00") == 1_800_000_000 * 10**9
    assert parse_time("2027-01-15T08:00:00") == 1_800_000_000 * 10**9  # UTC when no zone
    assert parse_time("10m", now=1000.0) == 400 * 10**9
    assert parse_time("now", now=5.0) == 5 * 10**9


@pytest.mark.parametrize("bad", ["color=red", "status=abc", "direction=sideways", "nokey"])
def test_bad_filters_are_user_errors(bad: str) -> None:
    with pytest.raises(NodetapError):
        parse_filters([bad])


def test_listen_address_forms() -> None:
    from forwarder.server import normalize_listen

    assert normalize_listen(":7070") == "[::]:7070"
    assert normalize_listen("7070") == "[::]:7070"
    assert normalize_listen("127.0.0.1:7070") == "127.0.0.1:7070"
    assert normalize_listen("[::1]:7070") == "[::1]:7070"
