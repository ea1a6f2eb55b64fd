"""One real Kubernetes control plane for the whole test session (scripts/k8s-lab.sh up),
stopped at the end. scripts/test.sh builds (or finds cached) the binaries first. With
$NODETAP_K8S_KUBECONFIG set, the tests use that running lab and leave it running."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s_lab.lab import K8sLab, lab_script


# package scope: the lab is brought down as soon as its tests are done, not at the end of the
# whole run (it costs CPU, and a run killed in between would leave its mounts behind)
@pytest.fixture(scope="package")
def k8s_lab() -> Iterator[K8sLab]:
    if os.geteuid() != 0:
        pytest.skip("the Kubernetes lab needs root")
    given = os.environ.get("NODETAP_K8S_KUBECONFIG")
    if given:
        yield K8sLab(Path(given))
        return
    netns_before = _netns()
    lab_script("up", timeout=600)  # the images are rebuilt when the source changed
    try:
        yield K8sLab(Path(lab_script("kubeconfig").strip()))
    finally:
        lab_script("down", timeout=120)
        left = sorted(_netns() - netns_before)
        for name in left:  # removed, and the run fails: `down` owes that
            subprocess.run(["ip", "netns", "delete", name], check=False)
        assert not left, f"the lab left network namespaces in /run/netns: {left}"


def _netns() -> set[str]:
    """The network namespaces containerd's CRI names (cni-UUID) in /run/netns."""
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("cni-")}
    except FileNotFoundError:
        return set()
