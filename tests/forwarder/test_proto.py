"""The committed gRPC stubs match proto/, and every message and field of the Forwarder API has
a comment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "nodetap" / "v1" / "forwarder.proto"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = sorted((tmp_path / "nodetap" / "v1").glob("*_pb2*.py*"))
    assert {p.name for p in generated} >= {
        "forwarder_pb2.py",
        "forwarder_pb2.pyi",
        "forwarder_pb2_grpc.py",
    }
    for path in generated:
        committed = ROOT / "nodetap" / "v1" / path.name
        assert committed.read_text() == path.read_text(), f"{path.name}: run scripts/gen-proto.sh"


def test_every_message_field_and_rpc_is_commented() -> None:
    lines = PROTO.read_text().splitlines()
    decl = re.compile(r"^\s*(message \w+|service \w+|rpc \w+|(repeated )?[\w.]+ \w+ = \d+;)")
    missing = [
        f"line {i + 1}: {line.strip()}"
        for i, line in enumerate(lines)
        if decl.match(line) and not lines[i - 1].strip().startswith("//")
    ]
    assert missing == []
