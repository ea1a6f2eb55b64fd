"""A secured NATS for the JetStream store, for real: Debian's nats-server in operator mode
(a user's JWT signed by an account that an operator signed, as `nsc` sets it up; the server
trusts the operator and preloads the accounts) with TLS from a test CA on a 3-node cluster, and
nkey users in a plain `authorization` block. The forwarder logs in with `--nats-creds` and
verifies the servers with `--nats-tls-ca`; what the servers refuse is one clear line, exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nkeys
import pytest

from tests.forwarder.nats_forwarders import (
    export_ids,
    forwarder_error,
    forwarders,
    ingest,
    pairs,
)
from tests.forwarder.pki import make_pki
from tests.support.nats_cluster import nats_cluster
from tests.support.nats_jwt import make_operator, new_key, public
from tests.support.servers import free_port


async def _stream_replicas(url: str, creds: Path, ca: Path) -> int:
    import ssl

    nc = await nats.connect(
        servers=url.removeprefix("nats://").split(","),
        user_credentials=str(creds),
        tls=ssl.create_default_context(cafile=str(ca)),
    )
    try:
        info = await nc.jetstream().stream_info("NODETAP_RRPAIRS")
        return int(info.config.num_replicas or 0)
    finally:
        await nc.close()


@pytest.mark.slow
def test_operator_creds_and_tls_on_a_three_node_cluster(tmp_path: Path) -> None:
    op = make_operator()
    pki = make_pki(tmp_path / "pki", ("server",))
    ca = pki / "ca.crt"
    tls = f'tls {{ cert_file: "{pki / "server.crt"}", key_file: "{pki / "server.key"}" }}\n'
    good = op.user_creds(tmp_path / "fwd.creds", "forwarder")
    stranger = new_key(nkeys.PREFIX_BYTE_ACCOUNT)  # an account the operator never signed
    foreign = op.user_creds(tmp_path / "foreign.creds", "intruder", account=stranger)
    with nats_cluster(3, extra_conf=op.server_conf() + tls) as c:
        creds = ("--nats-creds", str(good))
        with forwarders(c, 2, *creds, "--nats-tls-ca", str(ca)) as (a, b):
            assert ingest(a, "agent-sec", 1, pairs("sec", 5)).stored == 5
            assert ingest(b, "agent-sec", 1, pairs("sec", 5)).duplicate  # one stream, shared
            assert sorted(export_ids(b)) == [f"sec-{i}" for i in range(5)]
        assert asyncio.run(_stream_replicas(c.url, good, ca)) == 3
        # What a secured cluster refuses, each said in one line:
        ca_flag = ("--nats-tls-ca", str(ca))
        line = forwarder_error("--store", c.url, "--nats-creds", str(foreign), *ca_flag)
        assert "refused the credentials" in line  # a user of an unknown account
        assert "none given" in forwarder_error("--store", c.url, *ca_flag)
        line = forwarder_error("--store", c.url, *creds)  # the servers' CA not given
        assert "cannot reach NATS" in line or "does not answer" in line
    assert public(stranger) not in op.server_conf()


def test_nkey_seed_users(tmp_path: Path) -> None:
    allowed = new_key(nkeys.PREFIX_BYTE_USER)
    other = new_key(nkeys.PREFIX_BYTE_USER)
    auth = f"authorization {{ users: [ {{ nkey: {public(allowed)} }} ] }}\n"
    seed, wrong, junk = tmp_path / "user.nk", tmp_path / "other.nk", tmp_path / "junk"
    seed.write_text(allowed.seed.decode() + "\n")
    wrong.write_text(other.seed.decode() + "\n")
    junk.write_text("not a credential\n")
    with nats_cluster(1, extra_conf=auth) as c:
        with forwarders(c, 1, "--nats-creds", str(seed)) as (a,):
            assert ingest(a, "agent-nk", 1, pairs("nk", 2)).stored == 2
            assert sorted(export_ids(a)) == ["nk-0", "nk-1"]
        assert "refused the credentials" in forwarder_error(
            "--store", c.url, "--nats-creds", str(wrong)
        )
        assert "none given" in forwarder_error("--store", c.url)
    down = f"nats://127.0.0.1:{free_port()}"
    assert "neither a .creds file" in forwarder_error("--store", down, "--nats-creds", str(junk))
