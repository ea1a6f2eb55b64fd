"""Reads of the JetStream store in-process, against a real nats-server with JetStream: the
node, namespace and direction of a filter run in NATS (the consumer's filter subject: the
forwarder is delivered only matching messages), the rest in the forwarder; a time range starts
the consumer at its start and stops the read past its end; a live tail with a filter; Stats.
What NATS delivered is counted by nodetap_forwarder_jetstream_read_messages_total."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from forwarder.storage import jetstream_read
from forwarder.storage.jetstream import JetStreamStore
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.nats_cluster import nats_cluster

NODES, NAMESPACES = ("n-a", "n-b", "n-c"), ("shop", "pay")
DIRECTIONS = (pb.INBOUND, pb.OUTBOUND)


@pytest.fixture
def store() -> Iterator[JetStreamStore]:
    with nats_cluster(1) as c:
        s = JetStreamStore(c.url)
        try:
            yield s
        finally:
            s.close()


def grid(tag: str) -> list[pb.RRPair]:
    """One RRPair per node x namespace x direction x method, captured now."""
    out = []
    for node in NODES:
        for ns in NAMESPACES:
            for d in DIRECTIONS:
                for method in ("GET", "POST"):
                    p = pb.RRPair(id=f"{tag}-{node}-{ns}-{d}-{method}", direction=d)
                    p.ts.FromNanoseconds(time.time_ns())
                    p.meta.node, p.meta.namespace = node, ns
                    p.http.req.method, p.http.req.url = method, "/x"
                    out.append(p)
    return out


def delivered() -> dict[str, float]:
    name = "nodetap_forwarder_jetstream_read_messages_total"
    results = ("selected", "filtered", "past_range")
    return {r: REGISTRY.get_sample_value(name, {"result": r}) or 0.0 for r in results}


def read(store: JetStreamStore, flt: fpb.Filter) -> tuple[list[str], dict[str, float]]:
    """The ids a query returns, and what NATS delivered for it."""
    before = delivered()
    ids = sorted(p.id for p in store.query(flt))
    after = delivered()
    return ids, {k: after[k] - before[k] for k in after}


def test_node_namespace_direction_filters_run_in_nats(store: JetStreamStore) -> None:
    pairs = grid("g")
    assert store.append("agent-g", 1, pairs) == len(pairs)

    def want(pred: object) -> list[str]:
        return sorted(p.id for p in pairs if pred(p))  # type: ignore[operator]

    flt = fpb.Filter(nodes=["n-b"], namespaces=["pay"], directions=[pb.OUTBOUND])
    ids, got = read(store, flt)
    assert ids == want(
        lambda p: p.meta.node == "n-b" and p.meta.namespace == "pay" and p.direction == pb.OUTBOUND
    )
    assert got == {"selected": 2, "filtered": 0, "past_range": 0}  # only matches delivered

    ids, got = read(store, fpb.Filter(nodes=["n-a"], methods=["POST"]))  # method: here
    assert ids == want(lambda p: p.meta.node == "n-a" and p.http.req.method == "POST")
    assert got == {"selected": 4, "filtered": 4, "past_range": 0}  # n-a's 8, none other

    ids, got = read(store, fpb.Filter(nodes=["n-a", "n-c"]))  # two values: '*' in NATS
    assert ids == want(lambda p: p.meta.node in ("n-a", "n-c"))
    assert got["selected"] + got["filtered"] == len(pairs)

    st = store.stats()
    assert st.pairs == len(pairs) and st.bytes > 0
    assert st.oldest.ToNanoseconds() == pairs[0].ts.ToNanoseconds()
    assert st.newest.ToNanoseconds() == pairs[-1].ts.ToNanoseconds()


def test_a_time_range_starts_in_nats_and_stops_past_its_end(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No clock-skew margins (defaults: start 60 s early, stop 10 min late), so one second
    # between the batches tells what NATS delivered.
    monkeypatch.setattr(jetstream_read, "START_SKEW_S", 0.0)
    monkeypatch.setattr(jetstream_read, "LATE_MARGIN_S", 0.0)
    early = grid("early")
    assert store.append("agent-t", 1, early) == len(early)
    time.sleep(1.0)
    mid = time.time_ns()
    time.sleep(1.0)
    late = grid("late")
    assert store.append("agent-t", 2, late) == len(late)

    since = fpb.Filter()
    since.since.FromNanoseconds(mid)
    ids, got = read(store, since)
    assert ids == sorted(p.id for p in late)
    assert got == {"selected": len(late), "filtered": 0, "past_range": 0}  # started at mid

    until = fpb.Filter(namespaces=["shop"])
    until.until.FromNanoseconds(mid)
    ids, got = read(store, until)
    assert ids == sorted(p.id for p in early if p.meta.namespace == "shop")
    assert got == {"selected": len(ids), "filtered": 0, "past_range": 1}  # stopped at late


def test_live_tail_with_a_filter(store: JetStreamStore) -> None:
    tail = store.open_tail(fpb.Filter(namespaces=["pay"], methods=["GET"]))
    try:
        pairs = grid("t")
        store.append("agent-l", 1, pairs)
        seen: list[str] = []
        deadline = time.monotonic() + 20
        want = sorted(
            p.id for p in pairs if p.meta.namespace == "pay" and p.http.req.method == "GET"
        )
        while len(seen) < len(want) and time.monotonic() < deadline:
            seen += [p.id for p in tail.next(1.0)]
        assert sorted(seen) == want
        assert tail.next(0.5) == []
    finally:
        tail.close()
