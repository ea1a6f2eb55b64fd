"""Habits users bring (issue 25): tcpdump's -c COUNT and -i IFACE on capture, kubectl's
-n NAMESPACE where RRPairs are selected (export, snapshot create)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli.main import build_parser
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def test_tcpdump_count_and_interface() -> None:
    args = build_parser().parse_args(["capture", "-c", "5", "-i", "lo", "--mode", "packet"])
    assert (args.count, args.interface) == (5, "lo")


def test_kubectl_namespace_on_snapshot_create() -> None:
    args = build_parser().parse_args(
        ["snapshot", "create", "--forwarder", "f:1", "--name", "x", "-n", "shop"]
    )
    assert args.namespaces == ["shop"]


def test_export_selects_by_namespace(tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    with capture.open("w") as f:
        for i, ns in enumerate(("shop", "web", "shop", "db")):
            p = pb.RRPair(id=f"p{i}")
            p.meta.namespace = ns
            jsonl.write(f, p)
    r = subprocess.run(
        [sys.executable, "-m", "cli", "export", "--input", str(capture), "-n", "shop", "-n", "db"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [jsonl.loads(x).id for x in r.stdout.splitlines()] == ["p0", "p2", "p3"]
