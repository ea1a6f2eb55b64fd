"""The production capture pipeline: a capture, then edge rules, the forwarder sink and the
local writer.

Composed here, once, so that the command line (`nodetap capture`, cli/commands/capture.py)
and the DaemonSet (which runs that command) share it: the command turns flags into the
objects below, prints progress and the summary, and owns the exit code.

Each captured exchange goes through ``Pipeline.on_exchange``: edge rules (drop, sample,
redact; agent/rules/) → forwarder sink (agent/sinks/) → the local writer. Without a rules
file the rules are the defaults (credential headers redacted: RuleEngine.defaults). The
core decoder runs the rules itself, before it encodes an RRPair (``run_syscall(rules=)``,
agent/capture_rules.py): its Pipeline has none (or only the -n/-l selection). With no
rules left here (or only the defaults), no sink and JSONL output, an exchange without a
header to redact takes the fast path: its JSON line straight from the exchange (from the
core: as it encoded it), without building a protobuf message (agent/rrpairs.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from agent.rrpairs import CapturedExchange
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb

if TYPE_CHECKING:
    from agent.capture import SyscallCapture
    from agent.capture_config import CaptureConfig
    from agent.node_context import NodeContext
    from agent.rules import RuleEngine
    from agent.sinks.forwarder import ForwarderSink

Writer = Callable[[pb.RRPair], None]
OnExchange = Callable[[CapturedExchange], None]


def jsonl_writer(out: IO[str]) -> Writer:
    """Write each RRPair as a JSONL line to ``out``, flushed."""

    def write_jsonl(pair: pb.RRPair) -> None:
        jsonl.write(out, pair)
        out.flush()

    return write_jsonl


class Pipeline:
    """Where each captured exchange goes: edge rules → forwarder sink → ``write``.

    ``jsonl_out``: the stream ``write`` writes JSONL to, when it does (the fast path then
    writes the same lines without a protobuf message when no rules and no sink need one).
    """

    def __init__(
        self,
        write: Writer,
        *,
        rules: RuleEngine | None = None,
        sink: ForwarderSink | None = None,
        jsonl_out: IO[str] | None = None,
    ) -> None:
        self.write = write
        self.rules = rules
        self.sink = sink
        self._out = jsonl_out
        # the header names that send an exchange the slow way when the rules only redact
        # headers by name (the defaults); None when every exchange needs the rules
        only: frozenset[str] | None = rules.headers_only if rules is not None else frozenset()
        self.fast = only is not None and sink is None and jsonl_out is not None
        self._redacted_names = only or frozenset()
        self._interactive = jsonl_out is not None and jsonl_out.isatty()
        self.written = 0  # RRPairs given to the writer
        self.rules_dropped = 0  # RRPairs the edge rules dropped (filter, sampling)

    def emit(self, pair: pb.RRPair) -> None:
        """One RRPair through the rules, to the sink and the writer."""
        if self.rules is not None:
            kept = self.rules.apply(pair)
            if kept is None:
                self.rules_dropped += 1
                return
            pair = kept
        if self.sink is not None:
            self.sink.put(pair)
        self.write(pair)
        self.written += 1

    def flush(self) -> None:
        """Flush the JSONL output (the capture calls it after each batch: the fast path
        writes lines without flushing each)."""
        if self._out is not None:
            self._out.flush()

    def write_lines(self, lines: list[bytes]) -> bool:
        """A batch of JSON lines from the core, written in one go when the fast path needs
        none of them as a message (no header to look for); False: give them one by one."""
        if not self.fast or self._redacted_names:
            return False
        assert self._out is not None
        self._out.write((b"\n".join(lines) + b"\n").decode())
        self.written += len(lines)
        return True

    def on_exchange(self, c: CapturedExchange) -> None:
        if self.fast and not c.has_header(self._redacted_names):
            assert self._out is not None
            self._out.write(c.json_line() + "\n")  # no protobuf message needed
            self.written += 1
            if self._interactive:
                self._out.flush()
        else:
            self.emit(c.proto())


def close_sink(sink: ForwarderSink | None, timeout: float = 10) -> dict[str, int]:
    """Close the sink (sending what it holds, within ``timeout``); its counters as
    ``sink_*`` entries of the capture summary."""
    if sink is None:
        return {}
    sink.close(timeout=timeout)
    return {f"sink_{k}": v for k, v in sink.counters().items()}


def run_syscall(
    cfg: CaptureConfig,
    on_exchange: OnExchange,
    stop: threading.Event,
    node: NodeContext,
    *,
    duration: float | None = None,
    count: int | None = None,
    on_started: Callable[[SyscallCapture], None] | None = None,
    rules: RuleEngine | None = None,
) -> dict[str, int]:
    """Run a syscall capture until ``stop`` is set (or ``duration``, or ``count`` RRPairs),
    with the node's enrichment and targeting, its counters in the metrics registry; returns
    the summary. ``on_started(capture)`` is
    called once the programs are attached. ``rules``: edge rules the capture runs itself
    (the core decoder, before it encodes each RRPair; agent/capture_rules.py), then not
    given to the Pipeline."""
    from agent.capture import SyscallCapture
    from agent.metrics import register_capture
    from agent.tls.coverage import PodNotes
    from agent.tls.coverage import status_rows as tls_status_rows

    cfg.enrich = node.enricher.enrich
    if node.targeting is not None:
        # the targeted pods' cgroups from the first instant: armed before node.attach below,
        # the capture would otherwise take every process's new and open connections (and
        # probe every TLS process) on the node until then
        cfg.cgroup_filter = True
        cfg.cgroup_ids = sorted(node.targeting.cgroup_ids())
    cfg.agent_version = node.version
    if node.enricher.node:
        cfg.node = node.enricher.node
    cap = SyscallCapture(cfg, on_exchange=on_exchange, rules=rules)
    cap.start()
    node.attach(cap.set_cgroup_filter)  # with targeting: targeted pods only, kept live
    if cap.tls is not None:  # TLS coverage per process, and per pod (agent/tls/coverage.py)
        node.tls_rows = lambda: tls_status_rows(cap.tls, node.enricher.enrich)
        if node.targeting is not None:
            t = node.targeting
            notes = PodNotes(node.enricher.enrich, t.note, t.forget)
            cap.tls.on_row, cap.tls.on_gone = notes.row, notes.gone
    unregister = register_capture(cap)
    try:
        if on_started is not None:
            on_started(cap)
        cap.run(stop, duration=duration, count=count)
    finally:
        cap.close()
        unregister()
    return cap.summary()


def run_packet(
    interface: str,
    ports: list[int],
    max_body: int,
    on_exchange: OnExchange,
    stop: threading.Event,
    *,
    duration: float | None = None,
    count: int | None = None,
    on_started: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Run a packet capture on ``interface`` until ``stop`` is set (or ``duration``, or
    ``count`` RRPairs); returns the summary."""
    from agent.packet.live import run_packet_capture

    emitted = 0

    def counted(c: CapturedExchange) -> None:
        nonlocal emitted
        on_exchange(c)
        emitted += 1
        if count is not None and emitted >= count:
            stop.set()

    if duration:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    if on_started is not None:
        on_started()
    fast = bool(getattr(getattr(on_exchange, "__self__", None), "fast", False))
    result = run_packet_capture(
        interface, ports, lambda p: None, stop, max_body, on_exchange=counted, jsonl=fast
    )
    summary = dict(result)
    summary.setdefault("rrpairs", emitted)
    return summary
