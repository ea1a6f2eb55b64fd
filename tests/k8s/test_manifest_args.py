"""The commands and flags the manifests run are ones nodetap's CLI accepts."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from typing import Any

import pytest

from cli.main import COMMANDS
from cli.options import targeting as tg
from tests.k8s.kube import DAEMONSET, kubectls, render


def _parser(command: str) -> argparse.ArgumentParser:
    module_name = command.replace("-", "_")
    if module_name == "import":
        module_name = "import_pcap"
    if module_name not in COMMANDS:
        raise AssertionError(f"manifests run unknown command {command!r}")
    try:
        module = importlib.import_module(f"cli.commands.{module_name}")
    except ModuleNotFoundError:
        pytest.skip(f"nodetap {command} is not built yet")
    root = argparse.ArgumentParser(prog="nodetap")
    sub = root.add_subparsers(dest="command")
    module.register(sub)
    parser: argparse.ArgumentParser = sub.choices[command]
    if command == "capture" and not any("--targeting" in a.option_strings for a in parser._actions):
        tg.add_arguments(parser)  # the agent's Kubernetes flags, until capture adds them
    return parser


def _containers(target: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in render(kubectls()[0][1], DAEMONSET / target):
        if o["kind"] in ("DaemonSet", "Deployment", "Job"):
            spec = o["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                out.append((f"{o['kind']}/{o['metadata']['name']}/{c['name']}", c))
    return out


@pytest.mark.parametrize("target", ["", "overlays/lab", "overlays/production", "replay"])
def test_container_args_parse(target: str) -> None:
    checked = 0
    for where, c in _containers(target):
        command, *flags = c["args"]
        if command == "replay-agent" and not importlib.util.find_spec("cli.commands.replay_agent"):
            continue  # not built yet: checked once cli.commands.replay_agent exists
        try:
            _parser(command).parse_args(flags)
        except SystemExit as e:
            raise AssertionError(f"{where}: nodetap {' '.join(c['args'])} is rejected") from e
        checked += 1
    assert checked
