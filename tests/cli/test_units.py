"""One syntax for sizes and durations (issue 25: `--duration 10s` and `--max-body 1M`
were rejected while `--since 10m` and `--spool-max-bytes 2GiB` were accepted)."""

from __future__ import annotations

import argparse

import pytest

from cli.main import build_parser
from cli.options import units


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4096", 4096),
        ("512K", 512 << 10),
        ("512k", 512 << 10),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
        ("1mib", 1 << 20),
        ("1MB", 1_000_000),
        ("2GiB", 2 << 30),
        ("2G", 2 << 30),
        ("1.5K", 1536),
        ("20GB", 20_000_000_000),
        ("1TiB", 1 << 40),
        ("10B", 10),
    ],
)
def test_size(text: str, value: int) -> None:
    assert units.size(text) == value


@pytest.mark.parametrize("text", ["", "M", "1X", "-1", "1 M B", "1iB", "1Mi B", "ten"])
def test_size_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="use bytes or a unit"):
        units.size(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10.0),
        ("2.5", 2.5),
        ("10s", 10.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("7d", 7 * 86400.0),
        ("1.5m", 90.0),
    ],
)
def test_duration(text: str, value: float) -> None:
    assert units.duration(text) == value


@pytest.mark.parametrize("text", ["", "s", "10x", "10 sec", "1h-30m", "m5"])
def test_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="use seconds or a unit"):
        units.duration(text)


def test_negative_duration_rejected() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must not be negative"):
        units.duration("-1")


@pytest.mark.parametrize(
    ("argv", "attr", "value"),
    [
        (["capture", "--duration", "10s"], "duration", 10.0),
        (["capture", "--duration", "5m"], "duration", 300.0),
        (["capture", "--duration", "30"], "duration", 30.0),
        (["capture", "--max-body", "1M"], "max_body", 1 << 20),
        (["capture", "--max-body", "4096"], "max_body", 4096),
        (["capture", "--spool-max-bytes", "2G"], "spool_max_bytes", 2 << 30),
        (["import", "x.pcap", "--max-body", "64K"], "max_body", 64 << 10),
        (["status", "--timeout", "500ms"], "timeout", 0.5),
        (["forwarder", "--data-dir", "d", "--retention-age", "7d"], "retention_age", 7 * 86400.0),
        (["forwarder", "--data-dir", "d", "--retention-size", "20GiB"], "retention_size", 20 << 30),
        (["forwarder", "--data-dir", "d", "--retention-interval", "1m"], "retention_interval", 60),
        (
            ["forwarder", "--data-dir", "d", "--max-message-bytes", "32M"],
            "max_message_bytes",
            32 << 20,
        ),
    ],
)
def test_every_flag_takes_the_units(argv: list[str], attr: str, value: float) -> None:
    assert getattr(build_parser().parse_args(argv), attr) == value


def test_bad_unit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["capture", "--duration", "10x"])
    assert e.value.code == 2
    assert "bad duration '10x'; use seconds or a unit" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "ago"), [("10m", 600), ("1h30m", 5400), ("500ms", 0.5)])
def test_since_takes_the_one_duration_syntax(text: str, ago: float) -> None:
    """--since/--until (export, snapshot create) took 10m but not 1h30m nor 500ms."""
    from forwarder.filters import parse_time

    assert parse_time(text, now=10_000.0) == int((10_000.0 - ago) * 1e9)
