"""The scale-out store: RRPairs in a replicated NATS JetStream stream.

Several forwarders share one stream, so any forwarder serves any agent's data. This module is
the Store interface; its parts: ``nats_session`` (connection, credentials, TLS),
``jetstream_stream`` (stream limits and the duplicate window, with how it is sized),
``jetstream_subjects`` (subjects, message ids), ``jetstream_read`` (range reads and live
tails), ``jetstream_snapshots`` (sealed snapshot streams).

- Ingest publishes each RRPair of a batch with ``Nats-Msg-Id`` = agent id / batch seq / index
  and returns only after JetStream acknowledged every message (stored on a quorum of the R
  replicas). A batch resent to any forwarder within the duplicate window is stored once.
  NATS unreachable -> append raises StorageError, the servicer answers UNAVAILABLE, agents
  keep the batch in their spool.
- Retention: the stream's max_age / max_bytes limits (age counts from arrival at NATS).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import nats.errors
from nats.js import api

from forwarder.storage import jetstream_snapshots as snapshots
from forwarder.storage import jetstream_subjects as names
from forwarder.storage.jetstream_read import Tail, read_range, read_start
from forwarder.storage.jetstream_stream import DUP_WINDOW_S, ensure_stream, stream_config
from forwarder.storage.nats_session import PUBLISH_TIMEOUT_S, NatsSession
from nodetap.errors import PeerError, StorageError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb


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
        self._s = NatsSession(url, creds=creds, tls_ca=tls_ca, connect_timeout=connect_timeout)
        self.servers = self._s.servers
        self._write_failed = False
        self._dup_window = dup_window
        self._limits: tuple[float | None, int | None] = (max_age_s, max_bytes)
        try:
            self.replicas = replicas or (3 if self._s.cluster_size() >= 3 else 1)
            self._s.lt.run(ensure_stream(self._s.js, self._config()), 30)
        except TimeoutError:
            self._s.close()
            raise PeerError(
                f"NATS at {url} does not answer in time; is JetStream enabled (with a leader)?"
            ) from None
        except BaseException:
            self._s.close()
            raise

    def _config(self) -> api.StreamConfig:
        age, size = self._limits
        return stream_config(self.replicas, age, size, self._dup_window)

    def healthy(self) -> bool:
        """Connected, and JetStream took the last write (or answers an API call now)."""
        if not self._s.nc.is_connected:
            return False
        if self._write_failed:
            try:
                self._s.lt.run(self._s.js.account_info(), 3)
                self._write_failed = False
            except Exception:
                return False
        return True

    # -- writing ------------------------------------------------------------------------------
    async def _publish(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        """Publish every RRPair of the batch (pipelined, acks on one reply subscription) and
        wait for all of JetStream's acks, at most PUBLISH_TIMEOUT_S (append's timeout cancels
        a publish stalled on publish_async's bound of pending acks)."""
        if not self._s.nc.is_connected:
            raise StorageError("NATS is not connected; the agent keeps the batch and retries")
        js = self._s.js
        futures: list[asyncio.Future[Any]] = []
        try:
            for i, p in enumerate(pairs):
                futures.append(
                    await js.publish_async(
                        names.subject(p),
                        p.SerializeToString(),
                        headers={"Nats-Msg-Id": names.msg_id(agent_id, seq, i)},
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
        except BaseException:
            for f in futures:
                f.cancel()  # frees its slot of publish_async's pending bound
            raise
        new = sum(1 for a in acks if not a.duplicate)
        return None if pairs and new == 0 else new

    def append(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        try:
            result = self._s.call(self._publish(agent_id, seq, pairs), PUBLISH_TIMEOUT_S + 5)
        except StorageError:
            self._write_failed = True  # e.g. no JetStream quorum: health says NOT_SERVING
            raise
        self._write_failed = False
        return result

    # -- reading ------------------------------------------------------------------------------
    def query(self, flt: fpb.Filter, limit: int = 0) -> Iterator[pb.RRPair]:
        subject = names.filter_subject(flt)
        yield from read_range(self._s, names.STREAM, subject, flt, limit, read_start(flt))

    def open_tail(self, flt: fpb.Filter) -> Tail:
        """A live tail of new RRPairs matching flt, through an ephemeral ordered consumer."""
        return Tail(self._s, names.STREAM, names.filter_subject(flt), flt)

    # -- snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, name: str, flt: fpb.Filter) -> fpb.Snapshot:
        return snapshots.create(self._s, self.replicas, name, flt, self.query(flt))

    def list_snapshots(self) -> list[fpb.Snapshot]:
        return snapshots.list_all(self._s)

    def get_snapshot(self, snapshot_id: str) -> fpb.Snapshot | None:
        return snapshots.get(self._s, snapshot_id)

    def snapshot_pairs(
        self, snapshot_id: str, flt: fpb.Filter, limit: int = 0
    ) -> Iterator[pb.RRPair]:
        yield from snapshots.pairs(self._s, snapshot_id, flt, limit)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        return snapshots.delete(self._s, snapshot_id)

    # -- retention, stats ---------------------------------------------------------------------
    def enforce_retention(
        self, max_age_s: float | None, max_bytes: int | None, now_ns: int | None = None
    ) -> int:
        """Retention is the stream's own limits: set them when they changed; NATS deletes."""
        if (max_age_s, max_bytes) != self._limits:
            self._limits = (max_age_s, max_bytes)
            self._s.call(ensure_stream(self._s.js, self._config()))
        return 0

    def stats(self) -> fpb.StatsResponse:
        js = self._s.js
        st = self._s.call(js.stream_info(names.STREAM)).state
        resp = fpb.StatsResponse(
            pairs=st.messages, bytes=st.bytes, snapshots=snapshots.count(self._s)
        )
        if st.messages:
            # Capture times of the first and last stored RRPairs (arrival order).
            for seq, field in ((st.first_seq, resp.oldest), (st.last_seq, resp.newest)):
                with contextlib.suppress(nats.errors.Error, StorageError):
                    raw = self._s.call(js.get_msg(names.STREAM, seq))
                    field.CopyFrom(pb.RRPair.FromString(raw.data or b"").ts)
        return resp

    def close(self) -> None:
        self._s.close()
