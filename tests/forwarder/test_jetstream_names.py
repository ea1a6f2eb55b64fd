"""The JetStream store's pure parts: subjects and message ids, the --store URL, the
--nats-creds file kinds, and the stream's limits and duplicate window (no server)."""

from __future__ import annotations

from pathlib import Path

import nkeys
import pytest

from forwarder.storage import jetstream_subjects as names
from forwarder.storage.jetstream_stream import DUP_WINDOW_S, stream_config
from forwarder.storage.nats_session import credential_options, parse_servers
from nodetap.errors import ConfigError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.nats_jwt import make_operator, new_key


def test_subjects_carry_node_namespace_direction() -> None:
    p = pb.RRPair(direction=pb.OUTBOUND)
    p.meta.node, p.meta.namespace = "ip-10-0-0-1.ec2.internal", "shop"
    assert names.subject(p) == "nodetap.rrpairs.ip-10-0-0-1_ec2_internal.shop.outbound"
    assert names.subject(pb.RRPair()) == "nodetap.rrpairs._._.unspecified"
    assert names.token("a b*c>d") == "a_b_c_d"
    one = fpb.Filter(nodes=["n1"], namespaces=["shop"], directions=[pb.INBOUND])
    assert names.filter_subject(one) == "nodetap.rrpairs.n1.shop.inbound"
    two = fpb.Filter(nodes=["n1", "n2"], methods=["GET"])
    assert names.filter_subject(two) == "nodetap.rrpairs.*.*.*"  # the forwarder checks nodes
    assert names.msg_id("agent-1", 7, 3) == "agent-1/7/3"


def test_store_url() -> None:
    assert parse_servers("nats://a:4222, b:4223") == ["nats://a:4222", "nats://b:4223"]
    assert parse_servers("tls://a:4222") == ["tls://a:4222"]
    for bad in ("nats://", "http://a:1", "nats://a", "nats://a:0", "nats://a:x"):
        with pytest.raises(ConfigError):
            parse_servers(bad)


def test_credential_file_kinds(tmp_path: Path) -> None:
    creds = make_operator().user_creds(tmp_path / "u.creds", "u")
    assert credential_options(str(creds)) == {"user_credentials": str(creds)}
    seed = tmp_path / "u.nk"
    seed.write_bytes(new_key(nkeys.PREFIX_BYTE_USER).seed + b"\n")
    assert credential_options(str(seed)) == {"nkeys_seed": str(seed)}
    junk = tmp_path / "junk"
    junk.write_text("user: password\n")
    with pytest.raises(ConfigError, match=r"neither a \.creds file"):
        credential_options(str(junk))
    assert credential_options(None) == {}


def test_stream_limits_and_duplicate_window() -> None:
    cfg = stream_config(3, None, None, DUP_WINDOW_S)
    assert (cfg.num_replicas, cfg.max_age, cfg.max_bytes, cfg.duplicate_window) == (3, 0, -1, 600)
    cfg = stream_config(1, 300.0, 1 << 30, 3600.0)
    assert (cfg.max_age, cfg.max_bytes, cfg.duplicate_window) == (300.0, 1 << 30, 300.0)
    with pytest.raises(ConfigError):
        stream_config(1, None, None, 0)
