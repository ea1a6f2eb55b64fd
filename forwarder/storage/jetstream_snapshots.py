"""Snapshots in JetStream: the matching RRPairs copied into a stream of their own
(``NODETAP_SNAP_<id>``, no limits, so retention never touches it), then sealed (no more
writes, no deletes). The snapshot's id, name, filter and count are the stream's description;
deleting the snapshot deletes that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from forwarder.storage import jetstream_subjects as names
from forwarder.storage.jetstream_read import read_range
from forwarder.storage.nats_session import NatsSession
from nodetap.errors import StorageError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

COPY_CHUNK = 256


def create(
    session: NatsSession, replicas: int, name: str, flt: fpb.Filter, pairs: Iterable[pb.RRPair]
) -> fpb.Snapshot:
    """A sealed snapshot stream holding pairs (those of the live stream matching flt)."""
    sid = "snap-" + secrets.token_hex(6)
    stream = names.snapshot_stream(sid)
    prefix = names.snapshot_prefix(sid)
    desc: dict[str, Any] = {
        "id": sid,
        "name": name,
        "created_ns": time.time_ns(),
        "filter": flt.SerializeToString().hex(),
    }
    cfg = api.StreamConfig(
        name=stream,
        subjects=[prefix + ".>"],
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        description=json.dumps(desc),
    )
    session.call(session.js.add_stream(cfg))
    count = 0
    chunk: list[pb.RRPair] = []
    try:
        for pair in pairs:
            chunk.append(pair)
            if len(chunk) >= COPY_CHUNK:
                count += session.call(_copy(session, prefix, chunk))
                chunk = []
        if chunk:
            count += session.call(_copy(session, prefix, chunk))
        desc["count"] = count
        cfg.description = json.dumps(desc)
        cfg.sealed = True  # frozen: no more writes, no deletes
        session.call(session.js.update_stream(cfg))
    except BaseException:
        with contextlib.suppress(Exception):
            session.call(session.js.delete_stream(stream))
        raise
    return _snapshot(desc)


async def _copy(session: NatsSession, prefix: str, pairs: list[pb.RRPair]) -> int:
    js = session.js
    await asyncio.gather(
        *(js.publish(names.subject(p, prefix), p.SerializeToString()) for p in pairs)
    )
    return len(pairs)


async def _descs(session: NatsSession) -> list[dict[str, Any]]:
    out = []
    for info in await session.js.streams_info():
        if info.config.name and info.config.name.startswith(names.SNAP_STREAM_PREFIX):
            with contextlib.suppress(ValueError, TypeError):
                d = json.loads(info.config.description or "")
                if "count" in d:  # a finished (sealed) snapshot
                    out.append(d)
    return out


def count(session: NatsSession) -> int:
    return len(session.call(_descs(session)))


def list_all(session: NatsSession) -> list[fpb.Snapshot]:
    snaps = [_snapshot(d) for d in session.call(_descs(session))]
    snaps.sort(key=lambda s: s.created.ToNanoseconds(), reverse=True)
    return snaps


def get(session: NatsSession, snapshot_id: str) -> fpb.Snapshot | None:
    try:
        info = session.lt.run(session.js.stream_info(names.snapshot_stream(snapshot_id)), 30)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, TimeoutError) as e:
        raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None
    d = json.loads(info.config.description or "{}")
    return _snapshot(d) if "count" in d else None


def pairs(
    session: NatsSession, snapshot_id: str, flt: fpb.Filter, limit: int = 0
) -> Iterator[pb.RRPair]:
    subject = names.filter_subject(flt, names.snapshot_prefix(snapshot_id))
    yield from read_range(session, names.snapshot_stream(snapshot_id), subject, flt, limit)


def delete(session: NatsSession, snapshot_id: str) -> bool:
    try:
        return bool(
            session.lt.run(session.js.delete_stream(names.snapshot_stream(snapshot_id)), 30)
        )
    except nats.js.errors.NotFoundError:
        return False
    except (nats.errors.Error, TimeoutError) as e:
        raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None


def _snapshot(d: dict[str, Any]) -> fpb.Snapshot:
    snap = fpb.Snapshot(id=d["id"], name=d["name"], count=int(d.get("count", 0)))
    snap.filter.ParseFromString(bytes.fromhex(d["filter"]))
    snap.created.FromNanoseconds(int(d["created_ns"]))
    return snap
