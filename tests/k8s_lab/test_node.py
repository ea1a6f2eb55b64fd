"""The lab's node (scripts/k8s-lab.sh: kube-scheduler, containerd + runc, a kubelet): it is
Ready, and a pod scheduled onto it runs from the locally built nodetap image."""

from __future__ import annotations

import json
import time

import pytest

from tests.k8s_lab.lab import K8sLab

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "nodetap-lab-node"


def test_node_is_ready(k8s_lab: K8sLab) -> None:
    node = json.loads(k8s_lab.kubectl("get", "node", "127.0.0.1", "-o", "json"))
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True", node["status"]["conditions"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.20.2"


def test_scheduled_host_network_pod_runs_from_the_local_image(k8s_lab: K8sLab) -> None:
    k8s_lab.kubectl("create", "namespace", NS)
    try:
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": NS},
            "spec": {
                "hostNetwork": True, "restartPolicy": "Never",
                "containers": [{
                    "name": "hello", "image": "nodetap:dev", "imagePullPolicy": "Never",
                    "command": ["python3", "-c",
                                "import bcc, cli.main; print('hello from the lab')"],
                }],
            },
        }  # fmt: skip
        k8s_lab.kubectl("create", "-f", "-", stdin=json.dumps(pod))
        deadline = time.monotonic() + 120
        phase = ""
        while time.monotonic() < deadline:
            phase = k8s_lab.kubectl(
                "-n", NS, "get", "pod", "hello", "-o", "jsonpath={.status.phase}"
            )
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(1)
        described = k8s_lab.kubectl("-n", NS, "describe", "pod", "hello", check=False)
        assert phase == "Succeeded", described
        assert "hello from the lab" in k8s_lab.kubectl("-n", NS, "logs", "hello")
        node = k8s_lab.kubectl("-n", NS, "get", "pod", "hello", "-o", "jsonpath={.spec.nodeName}")
        assert node == "127.0.0.1"  # placed by the scheduler
    finally:
        k8s_lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)
