"""One connection to a NATS cluster for the JetStream store: parse the --store URL, connect
(credentials, TLS), and run nats-py coroutines from threaded code (the gRPC servicer).

Credentials (``--nats-creds FILE``): a ``.creds`` file (a user JWT and its nkey seed, as
``nsc`` writes them: operator mode) or a file holding just a user nkey seed (``SU...``, a
server whose ``authorization`` lists nkey users). TLS (``--nats-tls-ca FILE``): the servers'
certificates are verified against that CA (``tls://`` in the URL asks for TLS too).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from forwarder.storage.nats_loop import LoopThread
from nodetap.errors import ConfigError, PeerError, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 10.0
PING_INTERVAL_S = 2


class _QuietTlsEof(logging.Filter):
    """asyncio warns on every TLS connection a NATS server closes (nats-py's protocol returns
    True from eof_received); the closing itself is reported once, by this module."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


_ASYNCIO_LOG = logging.getLogger("asyncio")
if not any(isinstance(f, _QuietTlsEof) for f in _ASYNCIO_LOG.filters):
    _ASYNCIO_LOG.addFilter(_QuietTlsEof())


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


def credential_options(path: str | None) -> dict[str, Any]:
    """nats-py's options for a --nats-creds file: a .creds file (JWT and seed) or a bare
    user nkey seed."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError as e:
        raise ConfigError(f"--nats-creds {path}: {e.strerror}; give a readable file") from None
    if "BEGIN NATS USER JWT" in text:
        return {"user_credentials": path}
    words = text.split()
    if len(words) == 1 and words[0].startswith("SU"):
        return {"nkeys_seed": path}
    raise ConfigError(
        f"--nats-creds {path}: neither a .creds file (user JWT and seed) nor a user nkey seed "
        "(SU...); make one with nsc or nk"
    )


class NatsSession:
    """A NATS connection on its own event loop thread; ``call`` runs a coroutine on it."""

    def __init__(
        self,
        url: str,
        *,
        creds: str | None = None,
        tls_ca: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.servers = parse_servers(url)
        for label, path in (("--nats-creds", creds), ("--nats-tls-ca", tls_ca)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{label} {path}: no such file")
        auth = credential_options(creds)
        self.lt = LoopThread()
        try:
            self.nc: Client = self.lt.run(
                self._connect(auth, tls_ca, connect_timeout), 3 * connect_timeout + 5
            )
        except TimeoutError:
            self.close()
            raise PeerError(
                f"NATS at {url} does not answer in time; is the cluster up (with JetStream)? "
                "A TLS server needs --nats-tls-ca (or a trusted certificate)"
            ) from None
        except BaseException:
            self.close()
            raise
        self.js: JetStreamContext = self.nc.jetstream(timeout=PUBLISH_TIMEOUT_S)

    async def _connect(self, auth: dict[str, Any], tls_ca: str | None, timeout: float) -> Client:
        tls = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
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
            "tls": tls,
            "connect_timeout": int(max(1, timeout)),
            "allow_reconnect": True,
            "reconnect_time_wait": 0.2,
            # A server cut off (no RST) is noticed after ~2 missed pings, then the client
            # moves to another server; the default (2 min) would stall writes that long.
            "ping_interval": PING_INTERVAL_S,
            "max_outstanding_pings": 2,
            "error_cb": on_error,
            **auth,
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
                if not auth:
                    raise ConfigError(
                        f"NATS at {where} refused the credentials (none given); it wants a "
                        "login: give --nats-creds FILE"
                    ) from None
                raise ConfigError(
                    f"NATS at {where} refused the credentials; check --nats-creds"
                ) from None
            raise PeerError(
                f"cannot reach NATS at {where} ({e or type(e).__name__}); "
                "is the NATS cluster up and the address right?"
            ) from None

    def cluster_size(self) -> int:
        """How many servers the cluster has (those the client learned of, plus itself)."""
        known = {str(u.netloc) for u in self.nc.servers}
        return max(len(known), len(self.servers))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run coro on the loop; NATS failures become StorageError (UNAVAILABLE to agents)."""
        try:
            return self.lt.run(coro, timeout)
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise StorageError(f"NATS JetStream: {e or type(e).__name__}") from None

    def close(self) -> None:
        nc = getattr(self, "nc", None)
        if nc is not None:
            try:
                self.lt.run(nc.close(), 5)
            except Exception as e:  # closing anyway
                log.debug("NATS close: %s", e)
        self.lt.close()
