"""The llhttp fast path (fastpath.py) beside nodetap's own framing: which chunks it takes, what
it declines, its back-off, and that an idle connection keeps no message alive on either path.
"""

from __future__ import annotations

import pytest

from agent.protocols.http1 import Http1Stitcher
from tests.protocols.http1.helpers import GET, OK, run_stitcher, summary


def test_fast_path_takes_whole_message_chunks() -> None:
    reqs = [GET] * 5
    st = Http1Stitcher()
    out = []
    for i, q in enumerate(reqs):
        out += st.feed_request_bytes(q, 2 * i)
        out += st.feed_response_bytes(OK, 2 * i + 1)
    assert len(out) == 5 and st.stats.fast_chunks == 10
    st2, out2 = run_stitcher(GET * 5, OK * 5, fast=False)
    assert st2.stats.fast_chunks == 0
    assert [summary(e) for e in out2] == [summary(e) for e in out]


def test_fast_path_declines_what_needs_offsets() -> None:
    # HEAD answer pending, a message running past the chunk, an upgrade, a custom method:
    # all parsed by nodetap's own framing, with the same results as the unit tests above
    st = Http1Stitcher()
    st.feed_request_bytes(b"HEAD / HTTP/1.1\r\n\r\n", 1)
    out = st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 2)
    assert len(out) == 1 and out[0].response is not None and out[0].response.body == b""
    assert st.stats.fast_chunks == 1  # the request only
    st = Http1Stitcher()
    out = st.feed_request_bytes(b"PURGEALL /x HTTP/1.1\r\n\r\n", 1)  # llhttp: unknown method
    out += st.feed_response_bytes(OK, 2)
    assert [e.request.method for e in out if e.request] == ["PURGEALL"]
    assert st.stats.parse_errors == 0 and st.stats.fast_chunks == 1  # the response


def test_fast_path_backs_off_when_chunks_split_messages() -> None:
    st = Http1Stitcher()
    n = 0
    for i in range(40):  # headers and body in separate writes: the fast path cannot take them
        st.feed_request_bytes(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n", i)
        st.feed_request_bytes(b"ab", i)
        n += len(st.feed_response_bytes(OK, i))
    assert n == 40 and st.stats.parse_errors == 0
    assert st.stats.fast_chunks >= 30  # responses (whole) still go fast


@pytest.mark.parametrize("fast", [True, False])
def test_an_idle_connection_keeps_no_message_alive(fast: bool) -> None:
    import gc

    st = Http1Stitcher(fast=fast)
    body = b"x" * 5000
    out = st.feed_request_bytes(GET, 1)
    out += st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body, 2)
    assert len(out) == 1
    resp = out[0].response
    del out
    gc.collect()
    holders = [r for r in gc.get_referrers(resp) if r is not locals()]
    assert holders == [], holders  # only this test holds the response
    from agent.protocols.http1 import fastpath, state

    assert state.SPENT == [] and fastpath._SPENT == [] and fastpath._SPENT_PARTS == []
