"""TLS inside a pod, through the real DaemonSet (issue 21 on Kubernetes): an annotated pod on
the host network serves HTTPS with Debian's OpenSSL 3 (python3's ssl module, a certificate the
test makes, given as a Secret); a python3 ssl client in the same pod sends keep-alive requests
(kubectl exec). The agent's TLS uprobes (tracefs writable in its pod) turn them into plaintext
RRPairs with meta.source "tls" and the pod's identity; `nodetap status` in the agent's pod
shows the pod's process with its library, "hooked", and the pod; a killed agent's uprobes
are removed by its restart; after uninstall no uprobe of the agent is left in tracefs. Named
to run right after test_daemonset.py, before test_manifests_rbac.py leaves overlays/lab
applied (its Job's template, immutable, differs)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_lab.lab import K8sLab
from tests.k8s_lab.test_daemonset import (
    OVERLAY,
    _agent_debug,
    _agent_pid,
    _agent_pod,
    _agent_ready,
    _export,
    _forwarder_creds,
    _ready,
    _wait,
    installed,  # noqa: F401  (the module's installation)
)
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.slow]

NS = "lab-tls"  # not in the lab's targeted namespaces: the annotation decides

SERVER = """
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    def do_GET(self):
        body = b"hello over tls\\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""

CLIENT = """
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile="/tls/tls.crt")
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=5)
for i in range(3):  # one connection, three requests
    c.request("GET", "/?t=%s-%d" % (sys.argv[2], i))
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"hello over tls\\n"
c.close()
"""


def _deployment(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "https", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "https"}},
            "template": {
                "metadata": {"labels": {"app": "https"},
                             "annotations": {"nodetap.io/capture": "true"}},
                "spec": {
                    "hostNetwork": True,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web", "image": "nodetap:dev", "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", SERVER, str(port)],
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                    }],
                    "volumes": [{"name": "tls", "secret": {"secretName": "https-tls"}}],
                },
            },
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def https_pod(
    installed: K8sLab,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    lab = installed
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(d / "tls.key"), "-out", str(d / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    lab.kubectl("create", "namespace", NS)
    try:
        lab.kubectl("-n", NS, "create", "secret", "tls", "https-tls",
                    f"--cert={d / 'tls.crt'}", f"--key={d / 'tls.key'}")  # fmt: skip
        lab.kubectl("apply", "-f", "-", stdin=json.dumps(_deployment(port)))
        wait_for_port("127.0.0.1", port, timeout=120)
        _agent_ready(lab)
        pod = json.loads(lab.kubectl("-n", NS, "get", "pods", "-l", "app=https", "-o",
                                     "json"))["items"][0]  # fmt: skip
        creds = _forwarder_creds(lab, tmp_path_factory.mktemp("forwarder"))
        yield {"lab": lab, "port": port, "pod": pod, "creds": creds}
    finally:
        lab.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def _client(lab: K8sLab, pod: str, port: int, tag: str) -> None:
    lab.kubectl("-n", NS, "exec", pod, "-c", "web", "--", "python3", "-c", CLIENT, str(port),
                tag, timeout=60)  # fmt: skip


def _tls_tagged(pairs: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [p for p in pairs if f"t={tag}" in p.get("http", {}).get("req", {}).get("url", "")]


@pytest.fixture(scope="module")
def tls_traffic(https_pod: dict[str, Any]) -> dict[str, Any]:
    """Rounds of the in-pod client until its requests come out of the forwarder, then one
    more round (the agent hooked the server before it: both sides)."""
    lab: K8sLab = https_pod["lab"]
    name = https_pod["pod"]["metadata"]["name"]
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    rounds = 0
    while True:
        rounds += 1
        _client(lab, name, https_pod["port"], f"tls-{run}-{rounds}")
        time.sleep(1)
        if _tls_tagged(_export(https_pod), f"tls-{run}"):
            break
        if time.monotonic() - started > 120:
            raise AssertionError(f"no TLS RRPair of the pod: {_agent_debug(lab)}")
    _client(lab, name, https_pod["port"], f"tls-{run}-last")
    pairs = _wait(lambda: (p := _export(https_pod)) and _tls_tagged(p, f"tls-{run}-last") and p,
                  "the last round's RRPairs", 60, lambda: _agent_debug(lab))  # fmt: skip
    return {"run": run, "pairs": _tls_tagged(pairs, f"tls-{run}-last"), "rounds": rounds}


def test_https_in_the_pod_is_captured_as_plaintext_with_its_identity(
    https_pod: dict[str, Any], tls_traffic: dict[str, Any]
) -> None:
    pairs = tls_traffic["pairs"]
    pod = https_pod["pod"]
    urls = {(p["direction"], p["http"]["req"]["url"]) for p in pairs}
    for direction in ("INBOUND", "OUTBOUND"):  # the server's side and the client's
        for i in range(3):
            want = f"/?t=tls-{tls_traffic['run']}-last-{i}"
            assert any(d == direction and u.endswith(want) for d, u in urls), (direction, urls)
    for p in pairs:
        assert p["meta"]["source"] == "tls"
        assert p["meta"]["pod"] == pod["metadata"]["name"]
        assert p["meta"]["namespace"] == NS
        assert p["meta"]["container"] == "web"
        assert p["meta"]["workload"] == "Deployment/https"
        assert p["server"]["port"] == https_pod["port"]
        assert p["http"]["req"]["method"] == "GET"
        assert p["http"]["res"]["statusCode"] == 200
        assert base64.b64decode(p["http"]["res"]["body"]) == b"hello over tls\n"


def _status(lab: K8sLab) -> dict[str, Any]:
    out = lab.kubectl("-n", "nodetap", "exec", "ds/nodetap-agent", "--", "nodetap", "status",
                      "-o", "json")  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def test_status_shows_the_pods_tls_process_hooked_with_its_pod(
    https_pod: dict[str, Any], tls_traffic: dict[str, Any]
) -> None:
    lab: K8sLab = https_pod["lab"]
    name = https_pod["pod"]["metadata"]["name"]
    rows = [r for r in _status(lab).get("tls") or [] if r.get("pod") == name]
    assert rows, _agent_debug(lab)
    server = [r for r in rows if r["state"] == "hooked"]
    assert server, rows
    for r in server:
        assert r["namespace"] == NS
        assert "openssl" in r["library"].lower(), r
    metrics = lab.kubectl("-n", "nodetap", "exec", "ds/nodetap-agent", "--", "python3", "-c",
                          "import urllib.request as u;print(u.urlopen("
                          "'http://127.0.0.1:9464/metrics').read().decode())",
                          check=False)  # fmt: skip
    assert any(
        line.startswith("nodetap_tls_processes{") and 'state="hooked"' in line
        and not line.rstrip().endswith(" 0.0")
        for line in metrics.splitlines()
    ), metrics[-2000:]  # fmt: skip


def _uprobes_of(pid: int) -> list[str]:
    text = Path("/sys/kernel/tracing/uprobe_events").read_text()
    return [line for line in text.splitlines() if line.split()[0].endswith(f"_bcc_{pid}")]


def test_a_killed_agents_uprobes_are_removed_when_it_restarts(
    https_pod: dict[str, Any], tls_traffic: dict[str, Any]
) -> None:
    """In its pod BCC makes the TLS uprobes through tracefs (uprobe_events), which the kernel
    keeps when the process that made them is killed: the agent killed with SIGKILL (as an OOM
    kill would) leaves them, and the restarted agent (the kubelet restarts its container)
    removes them before it hooks the pod's server again (agent/tls/stale_probes.py)."""
    lab: K8sLab = https_pod["lab"]
    pod = _agent_pod(lab)
    pid = _agent_pid(lab, pod["metadata"]["uid"])
    assert pid, "the agent's process not found on the node"
    left = _uprobes_of(pid)
    assert left, "the agent's TLS uprobes are not in tracefs"
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), "the agent's process to end", 60,
          lambda: "")  # fmt: skip

    def restarted() -> int:
        p = _agent_pod(lab)
        restarts = p.get("status", {}).get("containerStatuses", [{}])[0].get("restartCount", 0)
        return _agent_pid(lab, p["metadata"]["uid"]) if restarts >= 1 and _ready(p) else 0

    new = _wait(restarted, "the agent's container to restart and be Ready", 180,
                lambda: _agent_debug(lab))  # fmt: skip
    assert new != pid
    name = https_pod["pod"]["metadata"]["name"]
    _wait(lambda: any(r.get("pod") == name and r["state"] == "hooked"
                      for r in _status(lab).get("tls") or []),
          "the restarted agent to hook the server", 120, lambda: _agent_debug(lab))  # fmt: skip
    assert _uprobes_of(pid) == [], "the killed agent's uprobes are still in tracefs"
    assert _uprobes_of(new), "the restarted agent's own uprobes are not in tracefs"


def test_uninstall_leaves_no_uprobe_in_tracefs(
    https_pod: dict[str, Any], tls_traffic: dict[str, Any]
) -> None:
    """Last in this module: with the TLS uprobes attached, `kubectl delete -k` removes the
    agent, and tracefs keeps no probe of its (BCC names them after the agent's PID)."""
    lab: K8sLab = https_pod["lab"]
    pod = _agent_pod(lab)
    pid = _agent_pid(lab, pod["metadata"]["uid"])
    assert pid, "the agent's process not found on the node"
    lab.kubectl("delete", "-k", str(OVERLAY), "--ignore-not-found", timeout=180)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), "the agent's process to end", 60,
          lambda: "")  # fmt: skip
    for events in ("uprobe_events", "kprobe_events"):
        f = Path("/sys/kernel/tracing") / events
        text = f.read_text() if f.exists() else ""
        assert f"bcc_{pid}" not in text, f"probes of the agent left in {f}: {text}"
