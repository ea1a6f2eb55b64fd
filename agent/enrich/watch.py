"""List then watch a Kubernetes resource with the kubernetes client, the way informers do.

One ``ListWatcher`` per resource: list (replace the whole local view, remember the list's
resourceVersion), then watch from that version and apply ADDED/MODIFIED/DELETED events. It
relists when the watch says 410 Gone (the version is too old), periodically (resync), and after
errors (with backoff). It runs in a daemon thread; ``stop()`` ends it promptly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch as _k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

# kubernetes' watch module has no type hints: use it through Any.
k8s_watch: Any = _k8s_watch

log = logging.getLogger(__name__)

RELISTS = Counter(
    "nodetap_k8s_relists_total",
    "Full lists of a Kubernetes resource, by cause (initial, resync, gone, error)",
    ["resource", "cause"],
)
WATCH_EVENTS = Counter(
    "nodetap_k8s_watch_events_total",
    "Watch events applied, by resource and type",
    ["resource", "type"],
)
WATCH_ERRORS = Counter(
    "nodetap_k8s_watch_errors_total",
    "Failed lists or watches (the watcher backs off and retries)",
    ["resource"],
)


class ListWatcher:
    """List/watch ``list_fn`` (e.g. ``CoreV1Api().list_pod_for_all_namespaces``).

    ``on_replace(items)`` gets the full list; ``on_event(type, obj)`` each watch event
    (type ADDED, MODIFIED or DELETED, obj a client model).
    """

    def __init__(
        self,
        resource: str,
        list_fn: Callable[..., Any],
        on_replace: Callable[[list[Any]], None],
        on_event: Callable[[str, Any], None],
        *,
        list_kwargs: dict[str, Any] | None = None,
        resync_seconds: float = 300.0,
        backoff_max: float = 30.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.resource = resource
        self._list_fn = list_fn
        self._on_replace = on_replace
        self._on_event = on_event
        self._kwargs = dict(list_kwargs or {})
        self._resync = max(1.0, resync_seconds)
        self._backoff_max = backoff_max
        self._request_timeout = request_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None
        self.synced = threading.Event()
        self.unavailable = False  # the API server does not serve the resource (404 on list)
        self.resource_version: str | None = None
        self.lists = 0

    # --- one step at a time (also what tests drive) -------------------------------------
    def relist(self, cause: str) -> None:
        resp = self._list_fn(**self._kwargs, _request_timeout=self._request_timeout)
        items = list(resp.items or ())
        self._on_replace(items)
        self.resource_version = resp.metadata.resource_version
        self.lists += 1
        RELISTS.labels(self.resource, cause).inc()
        self.synced.set()
        log.debug(
            "%s: listed %d (rv %s, %s)", self.resource, len(items), self.resource_version, cause
        )

    def watch_until(self, deadline: float) -> str:
        """Watch from the current resourceVersion until ``deadline`` (monotonic) or stop.
        Returns why it ended: 'timeout', 'stopped' or 'gone' (410: a relist is needed)."""
        w = k8s_watch.Watch()
        self._watch = w
        timeout = max(1, int(deadline - time.monotonic()))
        try:
            for ev in w.stream(
                self._list_fn,
                **self._kwargs,
                resource_version=self.resource_version,
                timeout_seconds=timeout,
                allow_watch_bookmarks=True,
                _request_timeout=(self._request_timeout, timeout + self._request_timeout),
            ):
                typ = ev["type"]
                if typ in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(typ, ev["object"])
                    WATCH_EVENTS.labels(self.resource, typ).inc()
                if w.resource_version:
                    self.resource_version = w.resource_version
                if self._stop.is_set():
                    return "stopped"
        except ApiException as e:
            if e.status == 410:
                log.info(
                    "%s: resourceVersion %s gone; relisting", self.resource, self.resource_version
                )
                return "gone"
            raise
        finally:
            self._watch = None
        return "stopped" if self._stop.is_set() else "timeout"

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.5
        cause = "initial"
        while not self._stop.is_set():
            try:
                if cause:
                    self.relist(cause)
                    cause = ""
                    next_resync = time.monotonic() + self._resync
                while not self._stop.is_set():
                    ended = self.watch_until(next_resync)
                    if ended == "gone":
                        cause = "gone"
                        break
                    if time.monotonic() >= next_resync:
                        cause = "resync"
                        break
                backoff = 0.5
            except Exception as e:
                if self._stop.is_set():
                    break
                WATCH_ERRORS.labels(self.resource).inc()
                if isinstance(e, ApiException) and e.status == 404 and not self.lists:
                    # the API server does not serve this resource (discovery.k8s.io/v1
                    # EndpointSlices before Kubernetes 1.21): nothing to wait for or to name
                    log.warning("%s: not served by the API server; going on", self.resource)
                    self.unavailable = True
                    self.synced.set()
                    return
                log.warning(
                    "%s: list/watch failed (%s); retrying in %.1fs", self.resource, e, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                cause = "error"

    def start(self) -> ListWatcher:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.resource}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
            resp = getattr(w, "_resp", None)
            if resp is not None:
                with contextlib.suppress(Exception):
                    resp.close()  # unblock a read waiting on a quiet watch
        if self._thread is not None:
            self._thread.join(timeout)
