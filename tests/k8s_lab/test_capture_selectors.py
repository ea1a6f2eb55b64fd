"""`nodetap capture -n NAMESPACE -l SELECTOR` (issue 25: kubectl's selectors wherever RRPairs
are selected) against a real API server: two pods of a namespace, each a real HTTP server
in a cgroup laid out as a kubelet's for the pod's UID; only the selected pod's exchanges
come out, `-c` counts those, and the others are counted as not selected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.enrich.cgroup import find_cgroup2_mount
from tests.capture.clients import curl
from tests.k8s.cgroups import _rmtree_cgroups
from tests.k8s_lab.lab import REPO, K8sLab
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.slow]

NODE = "lab-node-sel"
NS = "nodetap-lab-sel"
SERVER = (
    "import http.server,sys;from tests.support.servers import _EchoHandler;"
    "s=http.server.ThreadingHTTPServer(('127.0.0.1',int(sys.argv[1])),_EchoHandler);"
    "s.daemon_threads=True;s.serve_forever()"
)


def _pod(name: str, labels: dict[str, str]) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "nodetap:dev"}]},
    })  # fmt: skip


@contextmanager
def pod_servers(uids: list[str]) -> Iterator[list[int]]:
    """An HTTP server per pod UID, in a kubelet-like cgroup of that pod; their ports."""
    mount = find_cgroup2_mount()
    assert mount is not None, "no cgroup v2 mount"
    top = mount / f"nodetap-test-kube-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        qos = top / "kubepods.slice" / "kubepods-besteffort.slice"
        ports = []
        for uid in uids:
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            scope = qos / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
            scope = scope / f"cri-containerd-{cid}.scope"
            scope.mkdir(parents=True)
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SERVER, str(port)],
                    cwd=REPO,
                    preexec_fn=lambda s=scope: (s / "cgroup.procs").write_text("0\n"),  # type: ignore[misc]
                )
            )
            wait_for_port("127.0.0.1", port)
            ports.append(port)
        yield ports
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        if top.exists():
            _rmtree_cgroups(top)


def test_capture_selects_pods_by_namespace_and_labels(k8s_lab: K8sLab, tmp_path: Path) -> None:
    k8s_lab.kubectl("create", "namespace", NS)
    try:
        uids = []
        for name, app in (("web", "web"), ("db", "db")):
            k8s_lab.kubectl("create", "-f", "-", stdin=_pod(name, {"app": app, "tier": "x"}))
            uids.append(
                k8s_lab.kubectl("-n", NS, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
            )
        out = tmp_path / "web.jsonl"
        with pod_servers(uids) as (web, db):
            cap = subprocess.Popen(
                [sys.executable, "-m", "cli", "capture", "--kubeconfig", str(k8s_lab.kubeconfig),
                 "--node", NODE, "--port", str(web), "--port", str(db),
                 "-n", NS, "-l", "app=web,tier", "-c", "2", "--duration", "90", "-w", str(out)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert cap.stderr is not None
                seen = ""
                while "nodetap: capturing" not in seen and cap.poll() is None:
                    seen += cap.stderr.readline()  # a warning may come first (endpointslices)
                assert "nodetap: capturing" in seen, seen + cap.stderr.read()
                time.sleep(2)  # the agent's first pod list
                for i in range(3):
                    curl(f"http://127.0.0.1:{db}/db{i}")
                deadline = time.monotonic() + 60
                i = 0
                while cap.poll() is None and time.monotonic() < deadline:
                    curl(f"http://127.0.0.1:{web}/web{i}")
                    i += 1
                    time.sleep(0.3)
                _, err = cap.communicate(timeout=60)
            finally:
                if cap.poll() is None:
                    cap.send_signal(signal.SIGKILL)
                    cap.wait()
        assert cap.returncode == 0, err
        pairs = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(pairs) == 2, pairs  # -c counts the selected ones
        assert {p["meta"]["pod"] for p in pairs} == {"web"}
        assert all(
            p["meta"]["namespace"] == NS and p["meta"]["labels"]["app"] == "web" for p in pairs
        )
        assert all(p["http"]["req"]["url"].startswith("/web") for p in pairs)
        assert "of pods not selected by -n/-l" in err, err
    finally:
        k8s_lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
