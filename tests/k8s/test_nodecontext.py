"""The agent's Kubernetes wiring end to end (without BPF): flags -> pod and namespace watches
on an API endpoint -> targeting over real cgroups -> filter callback, enrichment of a real
pid into RRPair meta, /readyz and /status over HTTP, and `nodetap status` reading it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from agent.protocols.http1.types import HttpExchange
from agent.rrpairs import ConnContext, build_http_rrpair
from agent.targeting_policy import load_config
from cli.options import targeting as tg
from nodetap import metrics_http as httpserve
from nodetap.errors import NodetapError
from tests.enrich.fakeapi import FakeKubeAPI, to_dict
from tests.enrich.podfactory import make_pod
from tests.k8s.cgroups import kubelet_cgroups

REPO = Path(__file__).resolve().parents[2]


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "t",
                "clusters": [{"name": "t", "cluster": {"server": server}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "users": [{"name": "t", "user": {"token": "x"}}],
            }
        )
    )
    return path


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    tg.add_arguments(p)
    return p.parse_args(argv)


def _wait(pred: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met")


@pytest.mark.root
def test_flags_to_filter_enrichment_and_status(tmp_path: Path) -> None:
    api = FakeKubeAPI().start()
    try:
        with kubelet_cgroups(2) as (_root, (a, b)):
            api.add(
                "namespaces",
                to_dict(
                    client.V1Namespace(
                        api_version="v1",
                        kind="Namespace",
                        metadata=client.V1ObjectMeta(name="shop", labels={}),
                    )
                ),
            )
            for name, fp in (("cart-0", a), ("web-0", b)):
                api.add(
                    "pods",
                    to_dict(
                        make_pod(
                            name,
                            "shop",
                            uid=fp.uid,
                            node="node-1",
                            labels={"app": name.split("-")[0]},
                            containers={"app": f"containerd://{fp.container_id}"},
                            owner=("StatefulSet", name.split("-")[0]),
                        )
                    ),
                )
            targeting_file = tmp_path / "targeting.yaml"
            targeting_file.write_text(
                "targeting:\n  selectors:\n    - namespace: shop\n      matchLabels: {app: cart}\n"
            )
            args = _parse(
                [
                    "--targeting",
                    str(targeting_file),
                    "--kubeconfig",
                    str(_kubeconfig(tmp_path / "kc", api.url)),
                    "--node",
                    "node-1",
                    "--cluster",
                    "lab",
                ]
            )
            ctx = tg.from_args(args, rescan_seconds=0.2)
            try:
                filters: list[set[int]] = []
                ctx.attach(filters.append)
                _wait(ctx.ready)
                _wait(lambda: filters and os.stat(a.scope).st_ino in filters[-1])
                assert os.stat(b.scope).st_ino not in filters[-1]

                # enrichment of the real process into RRPair meta
                who = ctx.enricher.enrich(a.proc.pid)
                conn = ConnContext("INBOUND", "", 0, "", 0, "syscall", who=who)
                conn.agent_version = ctx.version
                pair = build_http_rrpair(HttpExchange(None, None), conn, "id")
                m = pair.meta
                assert (m.pod, m.namespace, m.container, m.workload, m.cluster, m.node) == (
                    "cart-0",
                    "shop",
                    "app",
                    "StatefulSet/cart",
                    "lab",
                    "node-1",
                )
                assert m.container_id == a.container_id and dict(m.labels) == {"app": "cart"}
                assert m.agent_version and m.pid == a.proc.pid

                # the namespace opts in: web-0 is captured too, live
                api.add(
                    "namespaces",
                    to_dict(
                        client.V1Namespace(
                            api_version="v1",
                            kind="Namespace",
                            metadata=client.V1ObjectMeta(
                                name="shop", annotations={"nodetap.io/capture": "true"}
                            ),
                        )
                    ),
                )
                _wait(lambda: os.stat(b.scope).st_ino in filters[-1])

                with httpserve.serve("127.0.0.1:0", ready=ctx.ready, status=ctx.status) as srv:
                    with urllib.request.urlopen(srv.url + "/readyz", timeout=5) as r:
                        assert r.status == 200
                    out = subprocess.run(
                        [sys.executable, "-m", "cli", "status", "--url", srv.url],
                        capture_output=True,
                        text=True,
                        timeout=60,
                        cwd=REPO,
                    )
                    assert out.returncode == 0, out.stderr
                    assert "node node-1 (cluster lab)" in out.stdout
                    assert "2 of 2 pods captured" in out.stdout
                    assert "namespace shop has nodetap.io/capture=true" in out.stdout
            finally:
                ctx.close()
    finally:
        api.close()


def test_targeting_without_kubernetes_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    f = tmp_path / "t.yaml"
    f.write_text("targeting: {mode: opt-in}\n")
    with pytest.raises(NodetapError, match="--targeting needs Kubernetes"):
        tg.from_args(_parse(["--targeting", str(f)]))
    ctx = tg.from_args(_parse([]))  # host-only: fine, no targeting
    try:
        assert ctx.targeting is None and ctx.ready()
        assert ctx.status()["pods"] == [] and ctx.status()["targeting"]["mode"] == "off"
        assert ctx.enricher.enrich(os.getpid()).pod == ""
    finally:
        ctx.close()
    with pytest.raises(NodetapError, match="not valid YAML"):
        f.write_text("targeting: [\n")
        load_config(str(f))
