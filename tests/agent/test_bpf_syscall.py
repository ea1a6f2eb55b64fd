"""agent/bpf_syscall.py: the parts that need no BPF."""

from __future__ import annotations

from agent import bpf_syscall


def test_possible_cpus() -> None:
    assert bpf_syscall.possible_cpus("0\n") == 1
    assert bpf_syscall.possible_cpus("0-3\n") == 4
    assert bpf_syscall.possible_cpus("0,2-5\n") == 6
    assert bpf_syscall.possible_cpus() >= 1
