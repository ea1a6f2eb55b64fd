"""The metrics and health endpoint over real HTTP."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import Counter

from cli.options.metrics import add_arguments as add_metrics_arguments
from nodetap import metrics_http
from nodetap.errors import NodetapError

_TEST_COUNTER = Counter("nodetap_metrics_http_test_total", "test counter for the metrics_http test")


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def _counter_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_health_ready_status() -> None:
    state = {"ready": False}
    with metrics_http.serve(
        "127.0.0.1:0", ready=lambda: state["ready"], status=lambda: {"pods": [{"name": "a"}]}
    ) as srv:
        assert srv.port > 0
        base = f"http://127.0.0.1:{srv.port}"
        code, ctype, body = _get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        before = _counter_value(body, "nodetap_metrics_http_test_total")
        _TEST_COUNTER.inc(3)
        after = _counter_value(_get(base + "/metrics")[2], "nodetap_metrics_http_test_total")
        assert after == before + 3

        assert _get(base + "/healthz")[0] == 200
        assert _get(base + "/readyz")[0] == 503
        state["ready"] = True
        assert _get(base + "/readyz")[0] == 200

        code, ctype, body = _get(base + "/status")
        assert code == 200 and ctype == "application/json"
        assert json.loads(body) == {"pods": [{"name": "a"}]}
        assert _get(base + "/nope")[0] == 404


def test_no_status_callback_is_404_and_close_frees_port() -> None:
    srv = metrics_http.serve(":0")
    port = srv.port
    assert _get(f"http://127.0.0.1:{port}/status")[0] == 404
    srv.close()
    srv.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_failing_status_callback_gives_500_not_a_dead_server() -> None:
    def boom() -> dict[str, object]:
        raise RuntimeError("no pods yet")

    with metrics_http.serve("127.0.0.1:0", status=boom) as srv:
        assert _get(f"{srv.url}/status")[0] == 500
        assert _get(f"{srv.url}/healthz")[0] == 200


def test_address_errors_and_flag() -> None:
    assert metrics_http.parse_addr(":9464") == ("0.0.0.0", 9464)
    assert metrics_http.parse_addr("[::1]:80") == ("::1", 80)
    assert metrics_http.parse_addr("8080") == ("0.0.0.0", 8080)
    with pytest.raises(NodetapError):
        metrics_http.parse_addr("host:http")
    with (
        metrics_http.serve("127.0.0.1:0") as srv,
        pytest.raises(NodetapError, match="metrics-addr"),
    ):
        metrics_http.serve(f"127.0.0.1:{srv.port}")
    parser = argparse.ArgumentParser()
    add_metrics_arguments(parser)
    assert parser.parse_args(["--metrics-addr", ":1234"]).metrics_addr == ":1234"
    assert parser.parse_args([]).metrics_addr is None
