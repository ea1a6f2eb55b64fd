"""What a syscall capture is asked to do (``CaptureConfig``), and the counters it keeps in
user space (``STAT_NAMES``; the kernel's are in agent/bpf_layout.py: ``COUNTER_NAMES``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodetap.errors import ConfigError

# User-space counters.
STAT_NAMES = (
    "records",
    "control_records",
    "gap_records",
    "conns_tracked",
    "conns_preexisting",
    "conns_not_http",
    "conns_upgraded",
    "conns_filtered_user",
    "conns_process_gone",
    "orphan_records",
    "records_untracked",
    "conns_noaddr",
    "conns_noaddr_resolved",
    "stream_gaps",
    "stream_gap_bytes",
    "stream_duplicate_bytes",
    "rrpairs",
    "rrpairs_incomplete",
    "rrpairs_gap",
    "rrpairs_truncated",
    # issue 18, addresses (agent/capture_addresses.py)
    "conns_noaddr_unresolved",
    "rrpairs_noaddr",
    # issue 18, sendfile: bytes read back from files, and bytes that could not be
    "sendfile_read_bytes",
    "drop_sendfile_unreadable_bytes",
    # issue 21, TLS (agent/tls/): plaintext records, connections switched to them, and
    # records of a kind this agent does not know
    "tls_records",
    "conns_tls",
    "records_unknown",
    # the edge rules run by the core decoder (agent/capture_rules.py): RRPairs dropped or
    # sampled out, and RRPairs redacted
    "rules_dropped",
    "rules_redacted",
)


@dataclass
class CaptureConfig:
    """What to capture and how."""

    pids: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    cgroup_ids: list[int] = field(default_factory=list)
    # the cgroup filter on from the start even while cgroup_ids is empty (Kubernetes
    # targeting: no pod targeted yet means nothing captured, adopted or TLS-probed)
    cgroup_filter: bool = False
    max_body: int = 1 << 20
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME") or socket.gethostname())
    poll_interval: float = 0.01
    ringbuf_pages: int = 4096
    max_conns: int = 65536
    preexisting: bool = True
    idle_check_interval: float = 5.0
    # pid -> who the process is (agent.enrich.Enricher.enrich); called once per connection
    enrich: Callable[[int], Any] | None = None
    agent_version: str = ""
    typed_regs: bool | None = None  # agent.loader.LoadOptions.typed_regs
    addr_at_read: bool | None = None  # agent.loader.LoadOptions.addr_at_read
    # TLS plaintext through uprobes in the targeted processes' TLS libraries (agent/tls/)
    tls: bool = True
    tls_rescan_interval: float = 1.0  # seconds between /proc rescans for TLS processes
    # who decodes the records: "core" (the Rust core, agent/capture_core.py) or "python"
    # (agent/capture.py's record loop, the differential tests' oracle): default_decoder()
    decoder: str = field(default_factory=lambda: default_decoder())


DECODERS = ("core", "python")


def default_decoder() -> str:
    """The one place that decides the decoder: the Rust core, unless NODETAP_DECODER (a hook
    for tests and benchmarks; no flag sets it) names the Python record loop."""
    chosen = os.environ.get("NODETAP_DECODER") or "core"
    if chosen not in DECODERS:
        raise ConfigError(
            f"NODETAP_DECODER={chosen!r} is not a decoder; use one of {', '.join(DECODERS)}"
        )
    return chosen
