"""`nodetap status`: from the agent's HTTP endpoint, and computed locally from the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.targeting import Targeting, TargetingConfig, status_document
from nodetap import metrics_http as httpserve
from tests.enrich.fakeapi import FakeKubeAPI, to_dict
from tests.enrich.podfactory import make_pod
from tests.k8s.cgroups import kubelet_cgroups
from tests.k8s.test_targeting import _pods_for

REPO = Path(__file__).resolve().parents[2]


def nodetap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


@pytest.mark.root
def test_status_from_the_agent_endpoint() -> None:
    with kubelet_cgroups(2) as (root, (a, b)):
        t = Targeting(_pods_for([a, b], targeted_index=0), cgroup_root=root)
        t.note(a.uid, "protocol", "protocol not recognised on :5432")
        doc = lambda: status_document(t, node="node-1", cluster="lab", agent_version="0.1.0")  # noqa: E731
        with httpserve.serve("127.0.0.1:0", status=doc) as srv:
            r = nodetap("status", "--url", srv.url)
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            assert lines[0].startswith("node node-1 (cluster lab), agent 0.1.0, targeting opt-in")
            assert "1 of 2 pods captured" in lines[0]
            assert lines[1].split() == ["NAMESPACE", "POD", "CAPTURED", "REASON"]
            row0 = next(line for line in lines if " pod-0 " in line)
            row1 = next(line for line in lines if " pod-1 " in line)
            assert row0.split()[2] == "yes" and "nodetap.io/capture=true" in row0
            assert "protocol not recognised on :5432" in row0
            assert row1.split()[2] == "no" and "not targeted" in row1
            r = nodetap("status", "--url", srv.url, "-o", "json")
            got = json.loads(r.stdout)
            assert got["targeting"]["captured_cgroups"] == 2
            assert [p["captured"] for p in got["pods"]] == [True, False]
            r = nodetap("status", "--url", srv.url, "--captured")
            assert " pod-1 " not in r.stdout and " pod-0 " in r.stdout


def test_status_agent_unreachable_is_one_line() -> None:
    with httpserve.serve("127.0.0.1:0") as srv:
        port = srv.port
    r = nodetap("status", "--url", f"127.0.0.1:{port}", "--timeout", "2")
    assert r.returncode == 2
    assert r.stderr.startswith("nodetap: cannot reach the agent at")
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_status_local_against_an_api_server(tmp_path: Path) -> None:
    api = FakeKubeAPI().start()
    try:
        api.add(
            "pods",
            to_dict(
                make_pod("cart-0", "shop", uid="u-cart", node="node-7", labels={"app": "cart"})
            ),
        )
        api.add(
            "pods",
            to_dict(make_pod("web-0", "shop", uid="u-web", node="node-7", labels={"app": "web"})),
        )
        api.add("pods", to_dict(make_pod("other", "shop", uid="u-o", node="node-8")))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "t",
                    "clusters": [{"name": "t", "cluster": {"server": api.url}}],
                    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                    "users": [{"name": "t", "user": {"token": "x"}}],
                }
            )
        )
        config = tmp_path / "agent.yaml"
        config.write_text(
            "targeting:\n  selectors:\n    - namespace: shop\n      matchLabels: {app: cart}\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        r = nodetap(
            "status",
            "--local",
            "--kubeconfig",
            str(kubeconfig),
            "--node",
            "node-7",
            "--config",
            str(config),
            "-o",
            "json",
            env=env,
        )
        assert r.returncode == 0, r.stderr
        pods = {p["pod"]: p for p in json.loads(r.stdout)["pods"]}
        assert set(pods) == {"cart-0", "web-0"}
        assert pods["cart-0"]["targeted"] and "config selector #1" in pods["cart-0"]["reason"]
        assert not pods["cart-0"]["captured"]  # no such pod's cgroup on this machine
        assert "no cgroup on this node yet" in pods["cart-0"]["reason"]
        assert not pods["web-0"]["targeted"]
        config.write_text("targeting:\n  mode: sometimes\n")
        r = nodetap(
            "status", "--local", "--kubeconfig", str(kubeconfig), "--config", str(config), env=env
        )
        assert r.returncode == 2 and "targeting mode 'sometimes' unknown" in r.stderr
    finally:
        api.close()


def test_config_section_round_trip() -> None:
    cfg = TargetingConfig.from_dict(
        {"mode": "all", "exclude_namespaces": ["kube-system", "nodetap"]}
    )
    assert cfg.exclude_namespaces == ("kube-system", "nodetap")
