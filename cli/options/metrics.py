"""--metrics-addr ADDR: serve /metrics, /healthz, /readyz and /status (nodetap/metrics_http.py)."""

from __future__ import annotations

import argparse

from nodetap.metrics_http import DEFAULT_METRICS_ADDR


def add_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """Add ``--metrics-addr ADDR`` (serve /metrics, /healthz, /readyz, /status there)."""
    parser.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        default=default,
        help="serve Prometheus /metrics, /healthz, /readyz and /status on HOST:PORT "
        f"(e.g. :9464 or {DEFAULT_METRICS_ADDR}); default: " + (default if default else "off"),
    )
