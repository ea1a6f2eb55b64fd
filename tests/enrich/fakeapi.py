"""A local HTTP server speaking the Kubernetes list/watch protocol, for the real kubernetes client.

Lists return ``{kind}List`` objects with ``metadata.resourceVersion``; ``?watch=true`` streams
chunked JSON-lines events (ADDED/MODIFIED/DELETED, BOOKMARK) from ``resourceVersion`` on, ends
after ``timeoutSeconds``, and answers a version older than the kept history with an ERROR event
carrying a 410 Gone Status, as the API server does. ``fieldSelector=spec.nodeName=X`` filters
pods. GET of a single ReplicaSet serves owner lookups.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

_API: Any = client.ApiClient()

# path -> (resource, list kind)
_COLLECTIONS = {
    "/api/v1/pods": ("pods", "PodList"),
    "/api/v1/services": ("services", "ServiceList"),
    "/api/v1/namespaces": ("namespaces", "NamespaceList"),
    "/api/v1/nodes": ("nodes", "NodeList"),
    "/apis/discovery.k8s.io/v1/endpointslices": ("endpointslices", "EndpointSliceList"),
}


def to_dict(model: Any) -> dict[str, Any]:
    """A kubernetes-client model as the API server's JSON."""
    d = _API.sanitize_for_serialization(model)
    assert isinstance(d, dict)
    return d


@dataclass
class _Store:
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    rv: int = 100
    oldest_rv: int = 100  # events with rv <= this are compacted away


class FakeKubeAPI:
    """Start with ``FakeKubeAPI().start()``; ``url`` for the client; ``close()`` at the end."""

    def __init__(self) -> None:
        self.store = _Store()
        self.cond = threading.Condition()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.replicasets: dict[tuple[str, str], dict[str, Any]] = {}
        self._kick = 0  # bumped to end open watches with a 410
        self._httpd: ThreadingHTTPServer | None = None

    # --- state changes (from tests) ---------------------------------------------------
    def _set(self, resource: str, typ: str, obj: dict[str, Any], record: bool = True) -> None:
        with self.cond:
            self.store.rv += 1
            obj = json.loads(json.dumps(obj))
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.store.rv)
            meta = obj["metadata"]
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            objs = self.store.objects.setdefault(resource, {})
            if typ == "DELETED":
                objs.pop(key, None)
            else:
                objs[key] = obj
            if record:
                self.store.events.append((self.store.rv, resource, typ, obj))
            else:  # a change whose event is lost: only a relist can see it
                self.store.oldest_rv = self.store.rv
            self.cond.notify_all()

    def add(self, resource: str, obj: dict[str, Any], record: bool = True) -> None:
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        exists = key in self.store.objects.get(resource, {})
        self._set(resource, "MODIFIED" if exists else "ADDED", obj, record)

    def delete(self, resource: str, obj: dict[str, Any], record: bool = True) -> None:
        self._set(resource, "DELETED", obj, record)

    def expire(self) -> None:
        """Compact the history and end open watches with 410 Gone (as etcd compaction does)."""
        with self.cond:
            self.store.oldest_rv = self.store.rv
            self.store.events.clear()
            self._kick += 1
            self.cond.notify_all()

    def count(self, resource: str, watch: bool) -> int:
        path = next(p for p, (r, _) in _COLLECTIONS.items() if r == resource)
        return sum(
            1
            for p, q in self.requests
            if p == path and (q.get("watch", ["false"])[0] == "true") == watch
        )

    # --- serving -----------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def close(self) -> None:
        if self._httpd is not None:
            with self.cond:
                self._kick += 1
                self.cond.notify_all()
            self._httpd.shutdown()
            self._httpd.server_close()

    @staticmethod
    def _matches(obj: dict[str, Any], selector: str) -> bool:
        for term in filter(None, selector.split(",")):
            k, _, v = term.partition("=")
            if k == "spec.nodeName" and obj.get("spec", {}).get("nodeName") != v:
                return False
        return True

    def _send_json(self, h: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urlparse(h.path)
        q = parse_qs(u.query)
        self.requests.append((u.path, q))
        parts = u.path.strip("/").split("/")
        # /apis/apps/v1/namespaces/NS/replicasets/NAME
        if len(parts) == 7 and parts[:3] == ["apis", "apps", "v1"] and parts[5] == "replicasets":
            rs = self.replicasets.get((parts[4], parts[6]))
            if rs is None:
                self._send_json(h, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            else:
                self._send_json(h, 200, rs)
            return
        if u.path not in _COLLECTIONS:
            self._send_json(h, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            return
        resource, list_kind = _COLLECTIONS[u.path]
        selector = q.get("fieldSelector", [""])[0]
        if q.get("watch", ["false"])[0] == "true":
            self._watch(h, resource, selector, q)
            return
        with self.cond:
            items = [
                o
                for o in self.store.objects.get(resource, {}).values()
                if self._matches(o, selector)
            ]
            rv = self.store.rv
        self._send_json(
            h,
            200,
            {
                "kind": list_kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            },
        )

    def _watch(
        self, h: BaseHTTPRequestHandler, resource: str, selector: str, q: dict[str, list[str]]
    ) -> None:
        since = int(q.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(q.get("timeoutSeconds", ["30"])[0])
        deadline = time.monotonic() + timeout
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        try:
            with self.cond:
                kick = self._kick
                gone = since < self.store.oldest_rv
            if gone:
                chunk(self._gone(since))
            else:
                while True:
                    with self.cond:
                        pending = [
                            e for e in self.store.events if e[0] > since and e[1] == resource
                        ]
                        if not pending and self._kick == kick:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self.cond.wait(min(left, 0.5))
                            continue
                        kicked = self._kick != kick
                    for rv, _, typ, obj in pending:
                        since = rv
                        if self._matches(obj, selector):
                            chunk({"type": typ, "object": obj})
                    if kicked:
                        chunk(self._gone(since))
                        break
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    @staticmethod
    def _gone(since: int) -> dict[str, Any]:
        return {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"too old resource version: {since}",
                "reason": "Expired",
                "code": 410,
            },
        }
