"""The forwarder over TLS: a client certificate required, the agent's sink and a client
through nodetap.transport with CA, client certificate and token."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from agent.sinks.forwarder import ForwarderSink
from forwarder import client
from forwarder.server import serve
from nodetap import transport
from nodetap.transport import ClientTLS
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.pki import make_pki

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


def test_tls_with_client_certificates(tmp_path: Path, certs: Path) -> None:
    h = serve(
        "127.0.0.1:0",
        str(tmp_path / "data"),
        token=TOKEN,
        tls_cert=str(certs / "server.crt"),
        tls_key=str(certs / "server.key"),
        tls_client_ca=str(certs / "ca.crt"),
    )
    client_tls = ClientTLS(
        str(certs / "ca.crt"), str(certs / "client.crt"), str(certs / "client.key")
    )
    md = transport.bearer_metadata(TOKEN)
    try:
        addr = f"127.0.0.1:{h.port}"
        # plaintext to a TLS port fails
        ch = transport.channel(addr)
        with pytest.raises(grpc.RpcError):
            client.stub(ch).Stats(fpb.StatsRequest(), metadata=md, timeout=3)
        ch.close()
        # TLS without a client certificate is refused by the handshake
        ch = transport.channel(addr, tls=ClientTLS(str(certs / "ca.crt")))
        with pytest.raises(grpc.RpcError):
            client.stub(ch).Stats(fpb.StatsRequest(), metadata=md, timeout=3)
        ch.close()
        # the agent's sink with CA, client certificate and token stores its RRPairs
        sink = ForwarderSink(addr, token=TOKEN, tls=client_tls)
        sink.put(pb.RRPair(id="over-tls"))
        assert sink.flush(15)
        sink.close(1)
        ch = transport.channel(addr, tls=client_tls)
        got = list(client.stub(ch).Export(fpb.ExportRequest(), metadata=md))
        assert [p.id for p in got] == ["over-tls"]
        ch.close()
    finally:
        h.stop(0)
