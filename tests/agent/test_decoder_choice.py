"""One place chooses the capture's decoder (agent/capture_config.py default_decoder): the
Rust core; the Python record loop only through NODETAP_DECODER (tests, benchmarks) or a
CaptureConfig built with it. The command line has no --decoder flag."""

from __future__ import annotations

import pytest

from agent.capture_config import CaptureConfig, default_decoder
from cli.main import build_parser
from nodetap.errors import ConfigError


def test_the_core_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODETAP_DECODER", raising=False)
    assert default_decoder() == "core"
    assert CaptureConfig(node="").decoder == "core"


def test_the_python_loop_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODETAP_DECODER", "python")
    assert CaptureConfig(node="").decoder == "python"
    monkeypatch.setenv("NODETAP_DECODER", "rust")
    with pytest.raises(ConfigError, match="NODETAP_DECODER='rust' is not a decoder"):
        default_decoder()


@pytest.mark.parametrize("flag", ["--decoder", "--defer-max", "--defer-dir"])
def test_no_flag_chooses_a_decoder(flag: str) -> None:
    with pytest.raises(SystemExit):
        build_parser(["capture"]).parse_args(["capture", flag, "python"])
