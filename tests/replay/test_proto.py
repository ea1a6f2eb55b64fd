"""Every message, field, enum value and rpc of the ReplayAgent API has a comment."""

from __future__ import annotations

import re
from pathlib import Path

PROTO = Path(__file__).resolve().parents[2] / "proto" / "nodetap" / "v1" / "replay.proto"


def test_replay_proto_is_commented() -> None:
    lines = PROTO.read_text().splitlines()
    decl = re.compile(
        r"^\s*(message \w+|service \w+|enum \w+|rpc \w+|oneof \w+|(repeated )?[\w.]+ \w+ = \d+;"
        r"|[A-Z_]+ = \d+;)"
    )
    missing = [
        f"line {i + 1}: {line.strip()}"
        for i, line in enumerate(lines)
        if decl.match(line) and not lines[i - 1].strip().startswith("//")
    ]
    assert missing == []
