"""Every manifest renders a tagged image (issue 25: daemonset/replay-agent rendered an
untagged `image: nodetap`), and the base tag is the package's version."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.k8s.test_manifests import TARGETS, _pod_specs, _render

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_is_tagged(target: str) -> None:
    images = [
        c["image"]
        for _, spec in _pod_specs(_render(target))
        for c in spec.get("containers", []) + spec.get("initContainers", [])
    ]
    assert images, target
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and "/" not in tag, f"{target}: untagged image {image!r}"
        if target in (".", "replay", "replay-agent"):
            assert image == f"nodetap:{VERSION}", target
