"""Exchanges cut short by lost bytes are flagged `gap`, not only `incomplete`.

When a connection ends, the stitcher returns the requests that got no response (and
responses without a request) flagged "incomplete": the connection ended early. But when
the bytes of that direction went missing after the last message that came whole (records
lost to a full ring buffer, bytes not copied), the answer may well have been sent: the
truth is that it was lost, and the RRPair must say so (`gap`) so that a reader counts it
among the losses, not among the exchanges the peer cut short.

The capture reports each gap chunk fed to a connection (``note_gap``) and each exchange it
emits (``note_exchange``: a whole message after the gap closes it), and passes the exchanges
flushed at the connection's end through ``flag_unanswered``.
"""

from __future__ import annotations

from agent.connections import Connection
from agent.protocols.http1.types import HttpExchange


def note_gap(conn: Connection, d: int) -> None:
    """Bytes of direction d (NT_DIR_*) of conn were lost here."""
    conn.open_gaps |= 1 << d


def note_exchange(conn: Connection, ex: HttpExchange) -> None:
    """An exchange was emitted: a message of a direction that arrived without a gap
    closes that direction's open gap (whatever followed it came whole)."""
    if conn.open_gaps and "gap" not in ex.flags:
        if ex.request is not None:
            conn.open_gaps &= ~(1 << conn.req_dir)
        if ex.response is not None:
            conn.open_gaps &= ~(1 << (1 - conn.req_dir))


def flag_unanswered(conn: Connection, ex: HttpExchange) -> None:
    """An exchange flushed at the end of conn: if the side it lacks lost bytes after the
    last whole message, flag it `gap`."""
    if not conn.open_gaps:
        return
    res_dir = 1 - conn.req_dir
    if (ex.response is None and conn.open_gaps & (1 << res_dir)) or (
        ex.request is None and conn.open_gaps & (1 << conn.req_dir)
    ):
        ex.flags.add("gap")
