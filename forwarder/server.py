"""The forwarder's gRPC server: Ingest (acknowledged, deduplicated), Subscribe, Export,
snapshots; health checking and reflection; bearer token and TLS; retention in the background.

``serve(listen, data_dir, **opts)`` starts it in the current process without blocking and
returns a ForwarderHandle (``.port``, ``.stop(grace)``), so one process can embed a forwarder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter

from forwarder import listen_policy
from forwarder.client import STORE_UNAVAILABLE
from forwarder.live_tail import DEFAULT_BUFFER_BYTES, DEFAULT_MAX_READERS, SUBSCRIBERS, Hub, Readers
from forwarder.storage import Store, open_store
from forwarder.validate import bad_batch, bad_filter
from nodetap import transport
from nodetap.errors import ConfigError, HostError, StorageError
from nodetap.transport import DEFAULT_MAX_MESSAGE_BYTES
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import forwarder_pb2_grpc as fgrpc
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = "nodetap.v1.Forwarder"

BATCHES = Counter("nodetap_forwarder_batches_total", "Batches received", ["result"])
PAIRS_STORED = Counter("nodetap_forwarder_pairs_stored_total", "RRPairs stored")
RETENTION_DELETED = Counter(
    "nodetap_forwarder_retention_deleted_total", "RRPairs removed by retention"
)
BAD_MESSAGES = Counter(
    "nodetap_forwarder_bad_messages_total", "gRPC messages that could not be deserialized"
)
AUTH_REFUSED = Counter("nodetap_forwarder_auth_refused_total", "Calls refused for a bad token")


class _OneLineBadMessage(logging.Filter):
    """grpcio logs a traceback for each message it cannot deserialize (grpc._common): one
    line instead, and a count."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            BAD_MESSAGES.inc()
            record.msg = f"{record.getMessage()} {record.exc_info[1]}"
            record.args = ()
            record.exc_info = None
        return True


_GRPC_COMMON_LOG = logging.getLogger("grpc._common")
if not any(isinstance(f, _OneLineBadMessage) for f in _GRPC_COMMON_LOG.filters):
    _GRPC_COMMON_LOG.addFilter(_OneLineBadMessage())


# -- service ----------------------------------------------------------------------------------
def _check_filter(flt: fpb.Filter, context: grpc.ServicerContext) -> None:
    problem = bad_filter(flt)
    if problem:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


@contextlib.contextmanager
def _store_unavailable(context: grpc.ServicerContext) -> Iterator[None]:
    """A store that cannot answer now (NATS failing over, a disk error) is UNAVAILABLE with
    what went wrong, which clients retry, not UNKNOWN "Exception iterating responses"."""
    try:
        yield
    except StorageError as e:
        log.warning("%s", e)
        # marked, so that clients tell it from a forwarder they cannot reach (also UNAVAILABLE)
        context.set_trailing_metadata(((STORE_UNAVAILABLE, "1"),))
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{e}; try again")


class ForwarderService(fgrpc.ForwarderServicer):
    def __init__(self, store: Store, hub: Hub, readers: Readers | None = None) -> None:
        self.store = store
        self.hub = hub
        self.readers = readers or Readers()

    def Ingest(
        self, request_iterator: Iterator[fpb.IngestBatch], context: grpc.ServicerContext
    ) -> Iterator[fpb.IngestAck]:
        for batch in request_iterator:
            problem = bad_batch(batch)
            if problem:
                BATCHES.labels("invalid").inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            try:
                stored = self.store.append(batch.agent_id, batch.seq, batch.pairs)
            except StorageError as e:  # disk full: said so; the agent keeps the batch, retries
                log.error("%s", e)
                context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
            except Exception as e:  # an I/O error: the agent keeps the batch, retries
                log.error("store write failed: %s", e)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"store write failed: {e}")
            if stored is None:
                BATCHES.labels("duplicate").inc()
                yield fpb.IngestAck(agent_id=batch.agent_id, seq=batch.seq, duplicate=True)
                continue
            BATCHES.labels("stored").inc()
            PAIRS_STORED.inc(stored)
            self.hub.publish(batch.pairs)  # before the ack: the stream may end right after it
            yield fpb.IngestAck(agent_id=batch.agent_id, seq=batch.seq, stored=stored)

    def Subscribe(
        self, request: fpb.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RRPair]:
        _check_filter(request.filter, context)
        self.readers.acquire(context)
        try:
            open_tail = getattr(self.store, "open_tail", None)
            if open_tail is not None:  # a shared store: its own live tail sees every forwarder's
                yield from self._store_tail(open_tail(request.filter), context)
            else:
                yield from self._hub_tail(request.filter, context)
        finally:
            self.readers.release()

    def _hub_tail(self, flt: fpb.Filter, context: grpc.ServicerContext) -> Iterator[pb.RRPair]:
        sub = self.hub.add(flt, context)
        try:
            # Headers go out now: a client that has them knows the tail is live.
            context.send_initial_metadata((("nodetap-subscribed", "1"),))
            while context.is_active():
                pair = sub.take(0.25)
                if pair is not None:
                    yield pair
                elif sub.dropped:
                    # Never lose silently: a tail that fell behind ends, saying so.
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, sub.message())
        finally:
            self.hub.remove(sub)

    def _store_tail(self, tail: Any, context: grpc.ServicerContext) -> Iterator[pb.RRPair]:
        SUBSCRIBERS.inc()
        try:
            context.send_initial_metadata((("nodetap-subscribed", "1"),))
            while context.is_active():
                yield from tail.next(0.25)
        finally:
            tail.close()
            SUBSCRIBERS.dec()

    def Export(
        self, request: fpb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RRPair]:
        _check_filter(request.filter, context)
        self.readers.acquire(context)
        try:
            with _store_unavailable(context):
                if request.snapshot_id:
                    if self.store.get_snapshot(request.snapshot_id) is None:
                        context.abort(
                            grpc.StatusCode.NOT_FOUND, f"no snapshot {request.snapshot_id}"
                        )
                    yield from self.store.snapshot_pairs(
                        request.snapshot_id, request.filter, int(request.limit)
                    )
                else:
                    yield from self.store.query(request.filter, int(request.limit))
        finally:
            self.readers.release()

    def CreateSnapshot(
        self, request: fpb.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> fpb.Snapshot:
        _check_filter(request.filter, context)
        with _store_unavailable(context):
            return self.store.create_snapshot(request.name, request.filter)

    def ListSnapshots(
        self, request: fpb.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> fpb.ListSnapshotsResponse:
        with _store_unavailable(context):
            return fpb.ListSnapshotsResponse(snapshots=self.store.list_snapshots())

    def DeleteSnapshot(
        self, request: fpb.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> fpb.DeleteSnapshotResponse:
        with _store_unavailable(context):
            return fpb.DeleteSnapshotResponse(deleted=self.store.delete_snapshot(request.id))

    def Stats(self, request: fpb.StatsRequest, context: grpc.ServicerContext) -> fpb.StatsResponse:
        with _store_unavailable(context):
            return self.store.stats()


# -- lifecycle ------------------------------------------------------------------------------
@dataclass
class ForwarderHandle:
    """A running forwarder in this process."""

    server: grpc.Server
    store: Store
    hub: Hub
    port: int
    address: str
    _stop: threading.Event
    _threads: list[threading.Thread]

    def stop(self, grace: float | None = 1.0) -> None:
        self._stop.set()
        # grpcio's stop can wait forever on a call whose request could not be deserialized;
        # past the grace period (and a margin) the store is closed all the same.
        if not self.server.stop(grace).wait(timeout=(grace or 0) + 3.0):
            log.warning("gRPC server did not stop within its grace period; closing the store")
        for t in self._threads:
            t.join(timeout=5)
        self.store.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def _retention_loop(
    store: Store, age: float | None, size: int | None, every: float, stop: threading.Event
) -> None:
    while not stop.wait(every):
        try:
            RETENTION_DELETED.inc(store.enforce_retention(age, size))
        except Exception:  # keep serving; the next round tries again
            log.exception("retention failed")


def _health_loop(
    store: Store, servicer: health.HealthServicer, every: float, stop: threading.Event
) -> None:
    """NOT_SERVING while the store cannot take writes (a shared store's engine unreachable)."""
    healthy = store.healthy  # type: ignore[attr-defined]
    serving = True
    while not stop.wait(every):
        ok = bool(healthy())
        if ok != serving:
            serving = ok
            status = health_pb2.HealthCheckResponse
            for name in ("", SERVICE):
                servicer.set(name, status.SERVING if ok else status.NOT_SERVING)
            log.warning(
                "store %s; health: %s",
                "back" if ok else "unreachable",
                status.ServingStatus.Name(status.SERVING if ok else status.NOT_SERVING),
            )


def normalize_listen(listen: str) -> str:
    """':7070' and '7070' mean every interface ('[::]:7070', IPv4 too); others stay as given."""
    text = listen.strip()
    if text.isdigit():
        return f"[::]:{text}"
    if text.startswith(":"):
        return f"[::]{text}"
    return text


def serve(
    listen: str,
    data_dir: str,
    *,
    token: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_client_ca: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retention_age: float | None = None,
    retention_bytes: int | None = None,
    retention_interval: float = 60.0,
    sync: str = "full",
    max_streams: int = 64,
    subscriber_queue: int = 10000,
    subscriber_bytes: int = DEFAULT_BUFFER_BYTES,
    max_readers: int = DEFAULT_MAX_READERS,
    store: Store | None = None,
    insecure: bool = False,
) -> ForwarderHandle:
    """Start a forwarder on listen ("HOST:PORT", port 0 = any) storing into data_dir.

    max_streams bounds concurrent calls (agents' Ingest streams plus Subscribe and Export
    calls); beyond it a call gets RESOURCE_EXHAUSTED and the agent retries. max_readers bounds
    Subscribe and Export calls together, and is added to max_streams, so that readers never
    take the slots of agents; each subscriber buffers at most subscriber_queue RRPairs and
    subscriber_bytes bytes (forwarder/live_tail.py).
    Off loopback, TLS and a token are required unless insecure (forwarder/listen_policy.py).
    """
    listen = normalize_listen(listen)
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca and not tls_cert:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (TLS on)")
    tls = transport.ServerTLS(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    try:
        listen_policy.check(listen, tls=tls is not None, token=bool(token), insecure=insecure)
    except ConfigError:
        if store is not None:
            store.close()
        raise
    store = store if store is not None else open_store(data_dir, sync=sync)
    hub = Hub(subscriber_queue, subscriber_bytes)
    auth = None
    if token:
        auth = transport.TokenAuth(
            token,
            services=[SERVICE],
            refusal="missing or wrong bearer token; pass the forwarder's token (--token-file)",
            on_refuse=AUTH_REFUSED.inc,
        )
    # Agents' Ingest streams and clients' Subscribe calls each hold a thread for their lifetime.
    server = transport.server(
        max_workers=max_streams + max_readers + 4,
        thread_name_prefix="forwarder",
        auth=auth,
        max_message_bytes=max_message_bytes,
        maximum_concurrent_rpcs=max_streams + max_readers,
    )
    fgrpc.add_ForwarderServicer_to_server(
        ForwarderService(store, hub, Readers(max_readers)), server
    )  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        SERVICE,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    try:
        port = transport.add_port(server, listen, tls)
    except RuntimeError as e:
        store.close()
        raise HostError(f"cannot listen on {listen}: {e}; pick another --listen") from None
    except ConfigError:
        store.close()
        raise
    if port == 0:
        store.close()
        raise HostError(f"cannot listen on {listen}; is the port in use? pick another --listen")
    server.start()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    if retention_age is not None or retention_bytes is not None:
        t = threading.Thread(
            target=_retention_loop,
            args=(store, retention_age, retention_bytes, retention_interval, stop),
            name="forwarder-retention",
            daemon=True,
        )
        t.start()
        threads.append(t)
    if hasattr(store, "healthy"):
        t = threading.Thread(
            target=_health_loop,
            args=(store, health_servicer, 0.5, stop),
            name="forwarder-health",
            daemon=True,
        )
        t.start()
        threads.append(t)
    host = listen.rsplit(":", 1)[0]
    log.info(
        "forwarder listening on %s:%d (%s), data in %s",
        host,
        port,
        "TLS" if tls_cert else "plaintext",
        data_dir,
    )
    return ForwarderHandle(server, store, hub, port, f"{host}:{port}", stop, threads)
