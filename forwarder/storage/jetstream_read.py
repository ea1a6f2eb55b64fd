"""Reading a JetStream stream of RRPairs: range reads (Export, queries, snapshot contents)
through an ordered ephemeral consumer, and live tails (Subscribe) through another.

A range read starts at the range's start (messages arrive after they were captured, so at
``since`` minus a clock-skew margin) and stops at the last message under its subject when the
read began (asked of the stream's leader), or earlier at the first message that arrived
``LATE_MARGIN_S`` after the range's end. A read that stalls is an error, never a short answer.
Order: arrival order. Filters the subject did not apply run here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from prometheus_client import Counter

from forwarder.filters import matches, range_ns
from forwarder.storage.nats_session import NatsSession
from nodetap.errors import StorageError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

START_SKEW_S = 60.0
LATE_MARGIN_S = 600.0
READ_IDLE_S = 10.0
READ_OPEN_TRIES = 3
READ_OPEN_TIMEOUT_S = 15.0
# A read that stalls (a NATS node lost mid-read) tries to go on for this long without getting
# a message before it fails: after a node is SIGKILLed, NATS can leave JetStream requests
# unanswered for one or two of nats-py's 10 s request timeouts while leaders are elected.
READ_RESUME_S = 60.0
BATCH = 256

READ_MESSAGES = Counter(
    "nodetap_forwarder_jetstream_read_messages_total",
    "Messages JetStream delivered to range reads (the filter subject and start time apply in "
    "NATS; the rest of the filter here), by what became of them",
    ["result"],
)


READ_RESUMED = Counter(
    "nodetap_forwarder_jetstream_read_resumes_total",
    "Range reads that stalled (a NATS node lost mid-read) and went on from a new consumer",
)


def read_start(flt: fpb.Filter) -> dt.datetime | None:
    """Where a read of flt's time range starts in arrival time (None: the stream's start)."""
    since, _ = range_ns(flt)
    if since is None:
        return None
    return dt.datetime.fromtimestamp(since / 1e9 - START_SKEW_S, tz=dt.UTC)


def read_range(
    session: NatsSession,
    stream: str,
    subject: str,
    flt: fpb.Filter,
    limit: int = 0,
    start: dt.datetime | None = None,
) -> Iterator[pb.RRPair]:
    """The RRPairs of stream under subject that match flt, in arrival order."""
    opened = _open(session, stream, subject, start)
    if opened is None:
        return
    sub: Any
    sub, last_seq = opened
    _, until = range_ns(flt)
    stop_ns = until + int(LATE_MARGIN_S * 1e9) if until is not None else None
    n = 0
    next_seq = 0  # the stream sequence after the last message delivered (0: none yet)
    give_up_at: float | None = None  # while stalled: when the read stops trying
    try:
        while True:
            try:
                if sub is None:
                    sub = _subscribe(session, stream, subject, start, next_seq)
                msgs = session.call(next_batch(sub, BATCH, READ_IDLE_S), READ_IDLE_S + 5)
                if not msgs:
                    raise StorageError(f"NATS JetStream: no message for {READ_IDLE_S}s mid-read")
            except StorageError as e:
                # A NATS node that dies mid-read can leave the consumer waiting on it while
                # the client moves to another server: start a new consumer where this one
                # stopped, for up to READ_RESUME_S without a message, before the read fails.
                # The new consumer may be asked for while the stream still elects a leader: a
                # refusal is waited out the same way, a moment later.
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + READ_RESUME_S
                elif now > give_up_at:
                    raise
                log.info("%s; resuming the read at sequence %d", e, next_seq)
                READ_RESUMED.inc()
                if sub is None:
                    time.sleep(1.0)
                else:
                    with contextlib.suppress(Exception):
                        session.lt.run(sub.unsubscribe(), 5)
                    sub = None
                continue
            give_up_at = None
            for msg in msgs:
                md = msg.metadata
                next_seq = md.sequence.stream + 1
                arrived_ns = int(md.timestamp.timestamp() * 1e9)
                if stop_ns is not None and arrived_ns > stop_ns:
                    READ_MESSAGES.labels("past_range").inc()
                    return
                pair = pb.RRPair.FromString(msg.data)
                selected = matches(flt, pair)
                READ_MESSAGES.labels("selected" if selected else "filtered").inc()
                if selected:
                    yield pair
                    n += 1
                    if limit and n >= limit:
                        return
                if md.sequence.stream >= last_seq:
                    return  # not num_pending == 0: a lagging replica's count can be short
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                session.lt.run(sub.unsubscribe(), 5)


def _open(
    session: NatsSession, stream: str, subject: str, start: dt.datetime | None
) -> tuple[Any, int] | None:
    """An ordered consumer over stream's messages under subject and the sequence of the last
    of them (None when there is none in the range). Tried up to READ_OPEN_TRIES times: just
    after a NATS node dies the client may still be moving to another server and the stream
    electing a new leader, and a request in that window can go unanswered."""
    for attempt in range(READ_OPEN_TRIES - 1):
        try:
            return _open_once(session, stream, subject, start)
        except StorageError as e:
            # "JetStream system temporarily unavailable" (503) lasts while a leader is
            # elected: give it a moment, longer each time
            log.info("%s; trying again", e)
            time.sleep(1.0 + attempt)
    return _open_once(session, stream, subject, start)


def _open_once(
    session: NatsSession, stream: str, subject: str, start: dt.datetime | None
) -> tuple[Any, int] | None:
    if not session.nc.is_connected:
        # asked now, the request would wait out its whole timeout in the client's buffer
        raise StorageError("NATS JetStream: not connected to any NATS server (reconnecting)")
    js = session.js
    # Where the read ends: the last message under subject, asked of the stream's leader (a
    # consumer's pending count comes from whichever replica serves it, maybe one catching up).
    try:
        last = session.lt.run(js.get_last_msg(stream, subject), READ_OPEN_TIMEOUT_S)
    except nats.js.errors.NotFoundError:
        return None  # no message under subject
    except (nats.errors.Error, TimeoutError, OSError) as e:
        raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None
    if start is not None and last.time is not None and last.time < start:
        return None  # the last one arrived before the range starts
    return _subscribe(session, stream, subject, start, 0), int(last.seq or 0)


def _subscribe(
    session: NatsSession, stream: str, subject: str, start: dt.datetime | None, from_seq: int
) -> Any:
    """An ordered consumer over subject from stream sequence from_seq (a resumed read), else
    from start's arrival time, else from the stream's first message."""
    if from_seq:
        config = api.ConsumerConfig(opt_start_seq=from_seq)
        policy = api.DeliverPolicy.BY_START_SEQUENCE
    elif start:
        config, policy = api.ConsumerConfig(opt_start_time=start), api.DeliverPolicy.BY_START_TIME
    else:
        config, policy = None, api.DeliverPolicy.ALL
    return session.call(
        session.js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=policy,
            config=config,
            idle_heartbeat=2.0,
        ),
        READ_OPEN_TIMEOUT_S,
    )


class Tail:
    """A live tail of new RRPairs matching a filter: ``next(timeout)`` returns those that
    arrived (maybe none). Every forwarder's ingest shows, not only this one's."""

    def __init__(self, session: NatsSession, stream: str, subject: str, flt: fpb.Filter) -> None:
        self._session = session
        self._flt = flt
        self._sub = session.call(
            session.js.subscribe(
                subject,
                stream=stream,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
                idle_heartbeat=2.0,
            )
        )

    def next(self, timeout: float) -> list[pb.RRPair]:
        msgs = self._session.call(next_batch(self._sub, BATCH, timeout), timeout + 10)
        pairs = (pb.RRPair.FromString(m.data) for m in msgs)
        return [p for p in pairs if matches(self._flt, p, check_time=False)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._session.lt.run(self._sub.unsubscribe(), 5)


async def next_batch(sub: Any, most: int, timeout: float) -> list[Msg]:
    """Up to most messages: waits up to timeout for the first, then takes what is queued."""
    try:
        msgs = [await sub.next_msg(timeout=timeout)]
    except nats.errors.TimeoutError:
        return []
    while len(msgs) < most and sub.pending_msgs > 0:
        msgs.append(await sub.next_msg(timeout=1.0))
    return msgs
