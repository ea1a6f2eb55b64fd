"""Fixtures of the TLS tests: a certificate the test makes, nginx serving the same site in
cleartext and over TLS."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tls.tls_env import Cert, TlsNginx, make_cert, tls_nginx


@pytest.fixture(scope="module")
def cert() -> Iterator[Cert]:
    folder = Path(tempfile.mkdtemp(prefix="nodetap-tls-"))
    try:
        yield make_cert(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def site(cert: Cert) -> Iterator[TlsNginx]:
    with tls_nginx(cert) as s:
        yield s
