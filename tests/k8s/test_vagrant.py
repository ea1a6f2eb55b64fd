"""The Vagrant lab: `vagrant validate` when Debian's vagrant is installed, else a Ruby syntax
check; its provisioning scripts exist and are valid shell; what it applies renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.kube import DAEMONSET, kubectls, render

REPO = Path(__file__).resolve().parents[2]


def _copy_lab(dst: Path) -> Path:
    shutil.copy(REPO / "Vagrantfile", dst / "Vagrantfile")
    shutil.copytree(REPO / "vagrant", dst / "vagrant")
    return dst


def test_vagrant_validate_or_ruby_syntax(tmp_path: Path) -> None:
    lab = _copy_lab(tmp_path)  # vagrant writes .vagrant/ beside the Vagrantfile
    if shutil.which("vagrant"):
        r = subprocess.run(
            ["vagrant", "validate", "--ignore-provider"],
            cwd=lab,
            capture_output=True,
            text=True,
            timeout=180,
            env={
                "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                "HOME": str(tmp_path),
                "VAGRANT_HOME": str(tmp_path / "vh"),
            },
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "validated successfully" in r.stdout
    elif shutil.which("ruby"):
        r = subprocess.run(
            ["ruby", "-c", "Vagrantfile"], cwd=lab, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and "Syntax OK" in r.stdout, r.stderr
    else:
        pytest.skip("neither vagrant nor ruby installed (apt-get install vagrant)")


def test_provisioning_scripts_exist_and_parse() -> None:
    text = (REPO / "Vagrantfile").read_text()
    scripts = re.findall(r'path: "([^"]+)"', text)
    assert len(scripts) == 4
    for s in scripts:
        path = REPO / s
        assert path.exists(), s
        assert path.stat().st_mode & 0o111, f"{s} is not executable"
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "set -euo pipefail" in path.read_text()


def test_lab_applies_what_renders() -> None:
    deploy = (REPO / "vagrant" / "deploy.sh").read_text()
    assert "kubectl apply -k daemonset/overlays/lab" in deploy
    kubectl = kubectls()[0][1]
    demo = [d for d in yaml.safe_load_all((REPO / "vagrant" / "demo.yaml").read_text()) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in demo} >= {
        ("Namespace", "demo"),
        ("Service", "demo"),
    }
    lab = render(kubectl, DAEMONSET / "overlays" / "lab")
    cfg = next(o for o in lab if o["kind"] == "ConfigMap")
    assert "[demo]" in cfg["data"]["targeting.yaml"]  # the demo namespace is targeted
