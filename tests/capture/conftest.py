"""Fixtures of the live-capture tests: ``env``, nginx and the Python echo server under one
capture, shared by the tests of a module (tests/capture/exchange_env.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.capture.exchange_env import BIG, EXTRA, HUGE, PROXY, STATIC, STATIC_MTIME, TEXT, Env
from tests.support.capture import live_capture
from tests.support.servers import nginx, python_server_process


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """nginx (IPv4 and IPv6; /proxy/ forwards to the Python server) and the Python echo
    server, both captured by one capture that filters on their two ports (other traffic on
    this machine stays out)."""
    files = {"static.txt": STATIC, "big.bin": BIG, "huge.bin": HUGE, "gz/text.txt": TEXT}
    with python_server_process() as py:
        proxy = PROXY.replace("PYPORT", str(py.port))
        with nginx(files=files, ipv6=True, extra=EXTRA + proxy) as ngx:
            os.utime(ngx.root / "www" / "static.txt", (STATIC_MTIME, STATIC_MTIME))
            with live_capture(ports=[ngx.port, py.port]) as lc:
                yield Env(ngx, py, lc)


@pytest.fixture(autouse=True)
def _new_test(request: pytest.FixtureRequest) -> None:
    if "env" in request.fixturenames:
        env: Env = request.getfixturevalue("env")
        env.before = {p.id for p in list(env.lc.pairs)}
