"""The RRPair stream's configuration: subjects, replicas, retention limits and the duplicate
window, created when missing and updated when the limits changed.

The duplicate window (``--nats-dup-window``, default 10 minutes) is how long JetStream
remembers a ``Nats-Msg-Id``, so how late a resent batch can come and still be stored once. It
has to cover the agents' spool-and-resend horizon: the longest time between a forwarder storing
a batch whose acknowledgement was lost and the agent sending that batch again.

- The agent is running: it resends every unacknowledged batch as soon as it reaches a forwarder
  again (keepalive finds a dead connection within ~5 s, reconnect backoff is at most 2 s), so
  the horizon is how long no forwarder answers: a forwarder pod replaced behind the Service is
  seconds; all forwarders down (a rollout gone wrong) is as long as that lasts.
- The agent restarted: its spool keeps the batch with its (agent id, seq), so the resend comes
  when it runs again; a pod restart is seconds, Kubernetes' crash-loop back-off at most 5 min.

Ten minutes covers both with margin. A batch resent later than the window (an agent down for
longer with unacknowledged batches in its spool, or all forwarders down longer) may be stored
twice: raise the window then. JetStream keeps the ids of the window in memory on every
replica: about 200 bytes of nats-server 2.9's resident memory per id
(``bench/jetstream_dup_window.py`` measures 200-220 B), so ``RRPairs/s x window x 200 B``:
120 MB at 1,000 RRPairs/s for 10 minutes. The window never exceeds the retention age
(JetStream requires it).
"""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext

from forwarder.storage import jetstream_subjects as names
from nodetap.errors import ConfigError, PeerError

log = logging.getLogger(__name__)

DUP_WINDOW_S = 600.0


def stream_config(
    replicas: int, max_age_s: float | None, max_bytes: int | None, dup_window_s: float
) -> api.StreamConfig:
    """The RRPair stream: FILE storage, R replicas, limits discarding the oldest."""
    if dup_window_s <= 0:
        raise ConfigError(f"bad duplicate window {dup_window_s}s; give more than 0")
    dup = min(dup_window_s, max_age_s) if max_age_s else dup_window_s
    return api.StreamConfig(
        name=names.STREAM,
        subjects=[names.PREFIX + ".>"],
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=dup,
        max_age=max_age_s or 0,
        max_bytes=max_bytes or -1,
        discard=api.DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, cfg: api.StreamConfig) -> None:
    """Create the stream, or update its limits and window when they differ from cfg (the
    replica count stays what it is: changing R is an operator's decision)."""
    try:
        info = await js.stream_info(names.STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(cfg)
        log.info("created JetStream stream %s (R%d)", names.STREAM, cfg.num_replicas)
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
        cfg.num_replicas = have.num_replicas
        await js.update_stream(cfg)
        log.info(
            "updated JetStream stream %s: max_age %ss, max_bytes %s, duplicate window %ss",
            names.STREAM,
            cfg.max_age,
            cfg.max_bytes,
            cfg.duplicate_window,
        )
