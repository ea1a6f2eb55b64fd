"""Errors a user can foresee and fix, one hierarchy for every layer.

Each error's message says what is wrong and what to do, in one line:
``kernel headers not found for 6.18.44; install linux-headers-amd64``. The errors know
nothing of a command line: the command line (cli/) turns any ``NodetapError`` into that
line on stderr and its exit code; a library or a long-running service may handle them
otherwise.
"""

from __future__ import annotations


class NodetapError(Exception):
    """A condition the user can foresee and fix; ``str(e)`` says what is wrong and what to do."""


class ConfigError(NodetapError):
    """A flag, config file, rule or target that is malformed or out of range."""


class InputError(NodetapError):
    """A capture, pcap or JSONL file (or stream) that cannot be read as what it claims to be."""


class HostError(NodetapError):
    """This host cannot do what was asked: not root, BPF refused, headers or tools missing."""


class PeerError(NodetapError):
    """A forwarder, replay agent, target or API server is unreachable or refused us."""


class StorageError(NodetapError):
    """A store, spool or output file cannot be written (full disk, permissions, locked)."""
