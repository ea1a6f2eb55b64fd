"""redact.protobuf: gRPC message fields redacted by path in the compiled core, with the
service's descriptors (a FileDescriptorSet by grpcio-tools' protoc). Real grpcio processes
(tests/support/peers/grpc_users.py) captured live; the pairs' messages still parse with the
descriptor, the named fields hold the stable redaction token (strings, bytes) or zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.rules import RuleEngine
from agent.rules.config import RuleError, load, parse
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.peers import grpc_users

RULES = """
redact:
  protobuf:
    descriptors: users.pb
    fields:
      - "test.users.Users/Get:request.name"
      - "test.users.Users/*:response.id"
      - "test.users.Users/List:response.tags"
"""


@pytest.mark.bpf
@pytest.mark.root
def test_grpc_fields_redacted_at_capture(tmp_path: Path) -> None:
    desc = grpc_users.descriptors(tmp_path / "users.pb")
    (tmp_path / "rules.yaml").write_text(RULES)
    path = str(tmp_path / "rules.yaml")
    engine = RuleEngine(load(path), path=path, key=b"k" * 32, announce=False)
    with grpc_users.serving_process(desc) as port, live_capture(ports=[port], rules=engine) as lc:
        assert grpc_users.calls_process(port, desc) == 2
        lc.wait_for(4, where=lambda p: p.l7protocol == "grpc")  # both sides of both calls
        lc.settle()
    get_t, user_t = grpc_users._types(str(desc))
    pairs = [p for p in lc.pairs if p.l7protocol == "grpc"]
    assert len(pairs) == 4
    names = set()
    for p in pairs:
        g = p.grpc
        assert "redacted" in p.flags and p.direction in (pb.INBOUND, pb.OUTBOUND), p.flags
        req = get_t.FromString(g.request_messages[0])  # still parses with the descriptor
        users = [user_t.FromString(m) for m in g.response_messages]
        assert all(u.id == 0 for u in users)  # a number zeroed
        assert all(u.seen.seconds > 0 for u in users)  # other fields kept
        if g.method == "Get":
            assert len(users) == 1 and users[0].name == "ann" and list(users[0].tags) == ["a", "b"]
            assert req.name != "ann" and len(req.name) == 3  # the token, as many characters
            names.add(req.name)
        else:
            assert g.method == "List" and req.name == "x"
            assert [u.name for u in users] == ["x1", "x2"]
            for u in users:
                assert len(u.tags) == 2 and all(len(t) == 1 for t in u.tags)
                assert list(u.tags) != ["a", "b"]
    assert len(names) == 1  # the same secret, the same token on both sides


def test_bad_protobuf_rules_are_refused_with_the_line(tmp_path: Path) -> None:
    grpc_users.descriptors(tmp_path / "users.pb")
    where = str(tmp_path / "rules.yaml")
    bad = RULES.replace("request.name", "request.nope")
    with pytest.raises(RuleError, match=r"rules.yaml:\d+: .*test.users.GetUser has no field"):
        parse(bad, where)
    with pytest.raises(RuleError, match=r"redact.protobuf.descriptors: .*No such file"):
        parse(RULES.replace("users.pb", "missing.pb"), where)
    with pytest.raises(RuleError, match="needs descriptors"):
        parse("redact:\n  protobuf:\n    fields: [a]\n", where)
    rs = parse(RULES, where)
    assert len(rs.redact.protobuf_fields) == 3 and rs.redact.protobuf_descriptors


def test_python_executor_redacts_the_same_as_the_core(tmp_path: Path) -> None:
    """Packet mode and pcap import run the rules in Python (agent/pipeline.py): the protobuf
    fields are redacted there too, with the same bytes as the core decoder's rules."""
    desc = grpc_users.descriptors(tmp_path / "users.pb")
    (tmp_path / "rules.yaml").write_text(RULES)
    path = str(tmp_path / "rules.yaml")
    engine = RuleEngine(load(path), path=path, key=b"k" * 32, announce=False)
    assert engine.headers_only is None  # no fast path that would skip gRPC pairs
    get_t, user_t = grpc_users._types(str(desc))
    pair = pb.RRPair(id="p-1", l7protocol="grpc")
    pair.grpc.service, pair.grpc.method = "test.users.Users", "Get"
    pair.grpc.request_messages.append(get_t(name="ann").SerializeToString())
    pair.grpc.response_messages.append(user_t(name="ann", id=7).SerializeToString())
    core = engine.core_rules().apply(pair.SerializeToString())
    kept = engine.apply(pair)
    assert kept is not None and core is not None
    assert kept.SerializeToString() == core
    assert get_t.FromString(kept.grpc.request_messages[0]).name not in ("", "ann")
    assert user_t.FromString(kept.grpc.response_messages[0]).id == 0
    assert "redacted" in kept.flags
