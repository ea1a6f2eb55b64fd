"""The real Kubernetes lab (scripts/k8s-lab.sh) as test helpers: start it once per test
session, run kubectl against it, and make kubeconfigs for service accounts."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "k8s-lab.sh"


@dataclass
class K8sLab:
    kubeconfig: Path
    _api: Any = None

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> str:
        r = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def can_i(self, verb: str, resource: str, sa: str, namespace: str = "nodetap") -> bool:
        """Whether the service account may VERB RESOURCE ("pods", "replicasets.apps",
        "nodes/proxy": resource[.group][/subresource]) in any namespace, as the API server's
        authorizer answers a SubjectAccessReview (kubectl auth can-i would resolve the
        resource through discovery first, and say "no" for an API group not served)."""
        res, _, sub = resource.partition("/")
        name, _, group = res.partition(".")
        review: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{sa}",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "verb": verb, "group": group, "resource": name, "subresource": sub,
                },
            },
        }  # fmt: skip
        api: Any = kubernetes.client.AuthorizationV1Api(self.api_client())
        answer = api.create_subject_access_review(review)
        return bool(answer.status.allowed)

    def api_client(self) -> Any:
        """A kubernetes client as the lab's admin (made once)."""
        if self._api is None:
            config: Any = kubernetes.config
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def sa_kubeconfig(self, sa: str, namespace: str, out: Path) -> Path:
        """A kubeconfig that authenticates as a service account (its token Secret, which
        the 1.20 token controller creates)."""
        deadline = time.monotonic() + 30
        while True:
            name = self.kubectl(
                "-n", namespace, "get", "serviceaccount", sa, "-o",
                "jsonpath={.secrets[0].name}", check=False,
            ).strip()  # fmt: skip
            if name or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert name, f"no token Secret for service account {namespace}/{sa}"
        token = base64.b64decode(
            self.kubectl("-n", namespace, "get", "secret", name, "-o", "jsonpath={.data.token}")
        ).decode()
        server = self.kubectl("config", "view", "--minify", "-o",
                              "jsonpath={.clusters[0].cluster.server}")  # fmt: skip
        ca = self.kubectl("config", "view", "--minify", "--raw", "-o",
                          "jsonpath={.clusters[0].cluster.certificate-authority}")  # fmt: skip
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "lab", "cluster": {"server": server, "certificate-authority": ca}}
            ],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": sa}}],
            "current-context": "lab",
        }
        out.write_text(json.dumps(config))  # JSON is YAML
        out.chmod(0o600)
        return out

    def restart_apiserver(self) -> None:
        lab_script("restart-apiserver", timeout=180)


def lab_script(*args: str, timeout: float = 300) -> str:
    r = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )
    if r.returncode != 0:
        raise AssertionError(f"scripts/k8s-lab.sh {' '.join(args)}: {r.stderr.strip()[-2000:]}")
    return r.stdout
