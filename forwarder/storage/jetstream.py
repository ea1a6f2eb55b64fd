"""The scale-out store: RRPairs in a replicated NATS JetStream stream.

Several forwarders share one stream, so any forwarder serves any agent's data.

- Ingest publishes each RRPair of a batch with ``Nats-Msg-Id`` = agent id / batch seq / index
  and returns only after JetStream acknowledged every message (stored on a quorum of the R
  replicas). A batch resent to another forwarder within the duplicate window is stored once.
  The window: an agent resends an unacknowledged batch as soon as it reaches a forwarder again
  (its reconnect backoff is at most 2 s), so the window has to cover the longest time no
  forwarder is reachable after one stored a batch whose ack was lost: a forwarder pod being
  rescheduled. Default 10 minutes (``dup_window``); JetStream keeps the ids of that window in
  memory. NATS unreachable -> append raises, the servicer answers UNAVAILABLE, agents spool.
- Reads: an ordered (ephemeral) consumer with a filter subject, started at the range's start
  (messages arrive after they were captured, so it starts at ``since`` minus a clock-skew
  margin) and stopped at the stream's last message when the read began, or earlier at the
  first message that arrived ``late_margin`` after the range's end. Order: arrival order.
- Retention: the stream's max_age / max_bytes limits (age counts from arrival at NATS).
- Snapshots: the matching RRPairs copied into a stream of their own with no limits, sealed;
  deleting the snapshot deletes that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext

from forwarder.filters import matches, range_ns
from forwarder.storage import jetstream_subjects as names
from forwarder.storage.nats_loop import LoopThread
from nodetap.errors import ConfigError, PeerError, StorageError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

DUP_WINDOW_S = 600.0
START_SKEW_S = 60.0
LATE_MARGIN_S = 600.0
PUBLISH_TIMEOUT_S = 10.0
READ_IDLE_S = 10.0
READ_OPEN_TRIES = 3
READ_OPEN_TIMEOUT_S = 15.0
PING_INTERVAL_S = 2


def parse_servers(url: str) -> list[str]:
    """'nats://h1:4222,h2:4222' -> ['nats://h1:4222', 'nats://h2:4222']."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls") or not rest:
        raise ConfigError(f"bad NATS URL {url!r}; use nats://HOST:PORT[,HOST:PORT...]")
    servers = []
    for hp in rest.split(","):
        host, colon, port = hp.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad NATS server {hp!r} in {url!r}; use HOST:PORT")
        servers.append(f"{scheme}://{host}:{port}")
    return servers


class JetStreamStore:
    """The Store interface on a JetStream stream (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        replicas: int | None = None,
        creds: str | None = None,
        tls_ca: str | None = None,
        max_age_s: float | None = None,
        max_bytes: int | None = None,
        dup_window: float = DUP_WINDOW_S,
        connect_timeout: float = 5.0,
    ) -> None:
        self.servers = parse_servers(url)
        for label, path in (("--nats-creds", creds), ("--nats-tls-ca", tls_ca)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{label} {path}: no such file")
        self._lt = LoopThread()
        self._write_failed = False
        self._dup_window = dup_window
        self._limits: tuple[float | None, int | None] = (max_age_s, max_bytes)
        try:
            self._nc: Client = self._lt.run(
                self._connect(creds, tls_ca, connect_timeout), 3 * connect_timeout + 5
            )
            self._js: JetStreamContext = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
            self.replicas = replicas or (3 if self._cluster_size() >= 3 else 1)
            self._lt.run(self._ensure_stream(), 30)
        except TimeoutError:
            self._shutdown()
            raise PeerError(
                f"NATS at {url} does not answer in time; is the cluster up (with JetStream)? "
                "A TLS server needs --nats-tls-ca (or a trusted certificate)"
            ) from None
        except BaseException:
            self._shutdown()
            raise

    # -- connection ---------------------------------------------------------------------------
    async def _connect(self, creds: str | None, tls_ca: str | None, timeout: float) -> Client:
        tls = None
        if tls_ca:
            tls = ssl.create_default_context(cafile=tls_ca)
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))
            log.debug("NATS: %s", e)

        async def on_disconnect() -> None:
            log.warning("NATS disconnected; ingest answers UNAVAILABLE until it is back")

        async def on_reconnect() -> None:
            log.info("NATS reconnected")

        where = ",".join(self.servers)
        common: dict[str, Any] = {
            "servers": self.servers,
            "user_credentials": creds,
            "tls": tls,
            "connect_timeout": int(max(1, timeout)),
            "allow_reconnect": True,
            "reconnect_time_wait": 0.2,
            # A server cut off (no RST) is noticed after ~2 missed pings, then the client
            # moves to another server; the default (2 min) would stall writes that long.
            "ping_interval": PING_INTERVAL_S,
            "max_outstanding_pings": 2,
            "error_cb": on_error,
        }
        try:
            # A first connection that gives up after one round of the servers: a clear error
            # at start. The one kept reconnects forever (agents spool meanwhile).
            probe = await nats.connect(**common, max_reconnect_attempts=1)
            await probe.close()
            common["reconnect_time_wait"] = 1
            return await nats.connect(
                **common,
                max_reconnect_attempts=-1,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        except Exception as e:
            text = " ".join([str(e), *errors]).lower()
            if "authorization" in text or "authentication" in text or "user" in text:
                raise ConfigError(
                    f"NATS at {where} refused the credentials; check --nats-creds"
                ) from None
            raise PeerError(
                f"cannot reach NATS at {where} ({e or type(e).__name__}); "
                "is the NATS cluster up and the address right?"
            ) from None

    def _cluster_size(self) -> int:
        """How many servers the cluster has (those the client learned of, plus itself)."""
        known = {str(u.netloc) for u in self._nc.servers}
        return max(len(known), len(self.servers))

    def healthy(self) -> bool:
        """Connected, and JetStream took the last write (or answers an API call now)."""
        if not self._nc.is_connected:
            return False
        if self._write_failed:
            try:
                self._lt.run(self._js.account_info(), 3)
                self._write_failed = False
            except Exception:
                return False
        return True

    # -- stream -------------------------------------------------------------------------------
    def _stream_config(self) -> api.StreamConfig:
        age, size = self._limits
        dup = min(self._dup_window, age) if age else self._dup_window
        return api.StreamConfig(
            name=names.STREAM,
            subjects=[names.PREFIX + ".>"],
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=dup,
            max_age=age or 0,
            max_bytes=size or -1,
            discard=api.DiscardPolicy.OLD,
        )

    async def _ensure_stream(self) -> None:
        cfg = self._stream_config()
        try:
            info = await self._js.stream_info(names.STREAM)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(cfg)
            log.info("created JetStream stream %s (R%d)", names.STREAM, self.replicas)
            return
        except nats.errors.TimeoutError:
            raise PeerError(
                "NATS answers but JetStream does not; is JetStream enabled (and has a leader)?"
            ) from None
        have = info.config
        if (have.max_age or 0, have.max_bytes or -1, have.duplicate_window) != (
            cfg.max_age,
            cfg.max_bytes,
            cfg.duplicate_window,
        ):
            cfg.num_replicas = have.num_replicas  # changing R is an operator's decision
            await self._js.update_stream(cfg)

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run coro on the loop; NATS failures become StorageError (UNAVAILABLE to agents)."""
        try:
            return self._lt.run(coro, timeout)
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None

    # -- writing ------------------------------------------------------------------------------
    async def _publish(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        if not self._nc.is_connected:
            raise StorageError("NATS is not connected; the agent keeps the batch and retries")
        acks = await asyncio.gather(
            *(
                self._js.publish(
                    names.subject(p),
                    p.SerializeToString(),
                    headers={"Nats-Msg-Id": names.msg_id(agent_id, seq, i)},
                )
                for i, p in enumerate(pairs)
            )
        )
        new = sum(1 for a in acks if not a.duplicate)
        return None if pairs and new == 0 else new

    def append(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        try:
            result: int | None = self._call(
                self._publish(agent_id, seq, pairs), PUBLISH_TIMEOUT_S + 5
            )
        except StorageError:
            self._write_failed = True  # e.g. no JetStream quorum: health says NOT_SERVING
            raise
        self._write_failed = False
        return result

    # -- reading ------------------------------------------------------------------------------
    def _read(
        self,
        stream: str,
        subject: str,
        flt: fpb.Filter,
        limit: int,
        start: dt.datetime | None,
    ) -> Iterator[pb.RRPair]:
        opened = self._open_read(stream, subject, start)
        if opened is None:
            return
        sub, last_seq, cinfo = opened
        _, until = range_ns(flt)
        stop_ns = until + int(LATE_MARGIN_S * 1e9) if until is not None else None
        n = 0
        try:
            if cinfo.num_pending == 0 and cinfo.delivered.consumer_seq == 0:
                return  # nothing matches (a push consumer counts delivered ones as not pending)
            while True:
                msgs: list[Msg] = self._call(_next_batch(sub, 256, READ_IDLE_S), READ_IDLE_S + 5)
                if not msgs:
                    raise StorageError(f"NATS JetStream: no message for {READ_IDLE_S}s mid-read")
                for msg in msgs:
                    md = msg.metadata
                    arrived_ns = int(md.timestamp.timestamp() * 1e9)
                    if stop_ns is not None and arrived_ns > stop_ns:
                        return
                    pair = pb.RRPair.FromString(msg.data)
                    if matches(flt, pair):
                        yield pair
                        n += 1
                        if limit and n >= limit:
                            return
                    if md.sequence.stream >= last_seq or md.num_pending == 0:
                        return
        finally:
            with contextlib.suppress(Exception):
                self._lt.run(sub.unsubscribe(), 5)

    def _open_read(
        self, stream: str, subject: str, start: dt.datetime | None
    ) -> tuple[Any, int, Any] | None:
        """An ordered consumer over stream (None when it is empty), its last sequence and
        consumer info. Tried up to READ_OPEN_TRIES times: just after a NATS node dies the
        client may still be moving to another server and the stream electing a new leader,
        and a request in that window can go unanswered."""
        for _ in range(READ_OPEN_TRIES - 1):
            try:
                return self._open_read_once(stream, subject, start)
            except StorageError as e:
                log.info("%s; trying again", e)
        return self._open_read_once(stream, subject, start)

    def _open_read_once(
        self, stream: str, subject: str, start: dt.datetime | None
    ) -> tuple[Any, int, Any] | None:
        info = self._call(self._js.stream_info(stream), READ_OPEN_TIMEOUT_S)
        if info.state.messages == 0:
            return None
        config = api.ConsumerConfig(opt_start_time=start) if start else None
        policy = api.DeliverPolicy.BY_START_TIME if start else api.DeliverPolicy.ALL
        sub = self._call(
            self._js.subscribe(
                subject,
                stream=stream,
                ordered_consumer=True,
                deliver_policy=policy,
                config=config,
                idle_heartbeat=2.0,
            ),
            READ_OPEN_TIMEOUT_S,
        )
        try:
            cinfo = self._call(sub.consumer_info(), READ_OPEN_TIMEOUT_S)
        except StorageError:
            with contextlib.suppress(Exception):
                self._lt.run(sub.unsubscribe(), 5)
            raise
        return sub, int(info.state.last_seq), cinfo

    def query(self, flt: fpb.Filter, limit: int = 0) -> Iterator[pb.RRPair]:
        since, _ = range_ns(flt)
        start = None
        if since is not None:
            start = dt.datetime.fromtimestamp(since / 1e9 - START_SKEW_S, tz=dt.UTC)
        yield from self._read(names.STREAM, names.filter_subject(flt), flt, limit, start)

    def open_tail(self, flt: fpb.Filter) -> Tail:
        """A live tail of new RRPairs matching flt, through an ephemeral ordered consumer."""
        sub = self._call(
            self._js.subscribe(
                names.filter_subject(flt),
                stream=names.STREAM,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
                idle_heartbeat=2.0,
            )
        )
        return Tail(self, sub, flt)

    # -- snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, name: str, flt: fpb.Filter) -> fpb.Snapshot:
        sid = "snap-" + secrets.token_hex(6)
        created = time.time_ns()
        stream = names.snapshot_stream(sid)
        prefix = names.snapshot_prefix(sid)
        desc = {
            "id": sid,
            "name": name,
            "created_ns": created,
            "filter": flt.SerializeToString().hex(),
        }
        cfg = api.StreamConfig(
            name=stream,
            subjects=[prefix + ".>"],
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            description=json.dumps(desc),
        )
        self._call(self._js.add_stream(cfg))
        count = 0
        chunk: list[pb.RRPair] = []
        try:
            for pair in self.query(flt):
                chunk.append(pair)
                if len(chunk) >= 256:
                    count += self._call(self._copy(prefix, chunk))
                    chunk = []
            if chunk:
                count += self._call(self._copy(prefix, chunk))
            desc["count"] = count
            cfg.description = json.dumps(desc)
            cfg.sealed = True  # frozen: no more writes, no deletes
            self._call(self._js.update_stream(cfg))
        except BaseException:
            with contextlib.suppress(Exception):
                self._call(self._js.delete_stream(stream))
            raise
        return _snapshot(desc)

    async def _copy(self, prefix: str, pairs: list[pb.RRPair]) -> int:
        await asyncio.gather(
            *(self._js.publish(names.subject(p, prefix), p.SerializeToString()) for p in pairs)
        )
        return len(pairs)

    async def _snapshot_descs(self) -> list[dict[str, Any]]:
        out = []
        for info in await self._js.streams_info():
            if info.config.name and info.config.name.startswith(names.SNAP_STREAM_PREFIX):
                with contextlib.suppress(ValueError, TypeError):
                    d = json.loads(info.config.description or "")
                    if "count" in d:  # a finished (sealed) snapshot
                        out.append(d)
        return out

    def list_snapshots(self) -> list[fpb.Snapshot]:
        descs = self._call(self._snapshot_descs())
        snaps = [_snapshot(d) for d in descs]
        snaps.sort(key=lambda s: s.created.ToNanoseconds(), reverse=True)
        return snaps

    def get_snapshot(self, snapshot_id: str) -> fpb.Snapshot | None:
        try:
            info = self._lt.run(self._js.stream_info(names.snapshot_stream(snapshot_id)), 30)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as e:
            raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None
        d = json.loads(info.config.description or "{}")
        return _snapshot(d) if "count" in d else None

    def snapshot_pairs(
        self, snapshot_id: str, flt: fpb.Filter, limit: int = 0
    ) -> Iterator[pb.RRPair]:
        prefix = names.snapshot_prefix(snapshot_id)
        subject = names.filter_subject(flt, prefix)
        yield from self._read(names.snapshot_stream(snapshot_id), subject, flt, limit, None)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        try:
            return bool(
                self._lt.run(self._js.delete_stream(names.snapshot_stream(snapshot_id)), 30)
            )
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, TimeoutError) as e:
            raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None

    # -- retention, stats ---------------------------------------------------------------------
    def enforce_retention(
        self, max_age_s: float | None, max_bytes: int | None, now_ns: int | None = None
    ) -> int:
        """Retention is the stream's own limits: set them when they changed; NATS deletes."""
        if (max_age_s, max_bytes) != self._limits:
            self._limits = (max_age_s, max_bytes)
            self._call(self._ensure_stream())
        return 0

    def stats(self) -> fpb.StatsResponse:
        info = self._call(self._js.stream_info(names.STREAM))
        snaps = len(self._call(self._snapshot_descs()))
        st = info.state
        resp = fpb.StatsResponse(pairs=st.messages, bytes=st.bytes, snapshots=snaps)
        if st.messages:
            # Capture times of the first and last stored RRPairs (arrival order).
            for seq, field in ((st.first_seq, resp.oldest), (st.last_seq, resp.newest)):
                with contextlib.suppress(nats.errors.Error, StorageError):
                    raw = self._call(self._js.get_msg(names.STREAM, seq))
                    field.CopyFrom(pb.RRPair.FromString(raw.data or b"").ts)
        return resp

    def close(self) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        nc = getattr(self, "_nc", None)
        if nc is not None:
            with contextlib.suppress(Exception):
                self._lt.run(nc.close(), 5)
        self._lt.close()


class Tail:
    """A live tail: ``next(timeout)`` returns the RRPairs that arrived (maybe none)."""

    def __init__(self, store: JetStreamStore, sub: Any, flt: fpb.Filter) -> None:
        self._store = store
        self._sub = sub
        self._flt = flt

    def next(self, timeout: float) -> list[pb.RRPair]:
        msgs: list[Msg] = self._store._call(_next_batch(self._sub, 256, timeout), timeout + 10)
        pairs = (pb.RRPair.FromString(m.data) for m in msgs)
        return [p for p in pairs if matches(self._flt, p, check_time=False)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._store._lt.run(self._sub.unsubscribe(), 5)


async def _next_batch(sub: Any, most: int, timeout: float) -> list[Msg]:
    """Up to most messages: waits up to timeout for the first, then takes what is queued."""
    try:
        msgs = [await sub.next_msg(timeout=timeout)]
    except nats.errors.TimeoutError:
        return []
    while len(msgs) < most and sub.pending_msgs > 0:
        msgs.append(await sub.next_msg(timeout=1.0))
    return msgs


def _snapshot(d: dict[str, Any]) -> fpb.Snapshot:
    snap = fpb.Snapshot(id=d["id"], name=d["name"], count=int(d.get("count", 0)))
    snap.filter.ParseFromString(bytes.fromhex(d["filter"]))
    snap.created.FromNanoseconds(int(d["created_ns"]))
    return snap
