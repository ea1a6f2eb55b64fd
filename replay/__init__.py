"""Replay: read a capture as a stream, rebuild and schedule its requests, send them from several
processes with an asyncio + httptools client, compare the responses, report.

Modules: ``capture_file`` (a capture file read as a stream), ``model`` (requests rebuilt from
RRPairs), ``rewrite`` (host map, header set/remove, token substitution), ``plan``
(what/where/how fast), ``client`` (HTTP/1.1 connection pools), ``worker`` (one replay process),
``runner`` (the coordinator: ``run_replay(plan) -> report``), ``monitors`` (conntrack and CPU
during a run), ``compare``, ``stats``, ``report`` (JSON and table), ``cgroup`` (CPU
throttling), ``progress``, ``distributed`` (a plan split across remote replay services),
``remote_service`` (the gRPC service that runs the plans a coordinator sends; started by
`nodetap replay-agent`) and ``remote_run`` (its child process per run).
"""
