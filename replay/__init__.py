"""Replay: read a capture as a stream, rebuild and schedule its requests, send them from several
processes with an asyncio + httptools client, compare the responses, report.

Modules: ``capture`` (streamed reading), ``model`` (requests rebuilt from RRPairs), ``rewrite``
(host map, header set/remove, token substitution), ``plan`` (what/where/how fast), ``client``
(HTTP/1.1 connection pools), ``worker`` (one replay process), ``runner`` (the coordinator:
``run_replay(plan) -> report``), ``compare``, ``stats``, ``report`` (JSON and table),
``cgroup`` (CPU throttling), ``progress``, ``agent`` / ``agent_run`` / ``distributed`` (gRPC
replay agents).
"""
