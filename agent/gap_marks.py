"""Exchanges cut short by lost bytes are flagged `gap`, not only `incomplete`.

When a connection ends, the stitcher returns the requests that got no response (and
responses without a request) flagged "incomplete": the connection ended early. But when
the bytes of that direction went missing after the last message that began there (records
lost to a full ring buffer, bytes not copied), the answer may well have been sent: the
truth is that it was lost, and the RRPair must say so (`gap`) so that a reader counts it
among the losses, not among the exchanges the peer cut short.

The capture reports each gap fed to a connection (``note_gap``) and each exchange it emits
(``note_exchange``: a message that began after the gap shows that the parser found its
footing again), and passes the exchanges flushed at the connection's end through
``flag_unanswered``.
"""

from __future__ import annotations

from agent.connections import Connection
from agent.protocols.http1.types import HttpExchange


def note_gap(conn: Connection, d: int, ts_ns: int) -> None:
    """Bytes of direction d (NT_DIR_*) of conn were lost; ts_ns: wall-clock time of the
    bytes after the hole (or of the end that revealed it)."""
    conn.open_gaps[d] = max(conn.open_gaps[d], ts_ns)


def note_exchange(conn: Connection, ex: HttpExchange) -> None:
    """An exchange was emitted: a message that began at or after a direction's latest loss
    closes it (a message the loss cut into does not: the loss may reach beyond it)."""
    gaps = conn.open_gaps
    req_dir = conn.req_dir
    if gaps[req_dir] and ex.request is not None and ex.request.start_ts_ns >= gaps[req_dir]:
        gaps[req_dir] = 0
    res_dir = 1 - req_dir
    if gaps[res_dir] and ex.response is not None and ex.response.start_ts_ns >= gaps[res_dir]:
        gaps[res_dir] = 0


def flag_unanswered(conn: Connection, ex: HttpExchange) -> None:
    """An exchange flushed at the end of conn: if the side it lacks lost bytes after the
    last message that began there, flag it `gap`."""
    req_dir = conn.req_dir
    if (ex.response is None and conn.open_gaps[1 - req_dir]) or (
        ex.request is None and conn.open_gaps[req_dir]
    ):
        ex.flags.add("gap")
