"""Where the agent's RRPairs go once captured: the forwarder over gRPC (forwarder.py), with
what waits for its acknowledgement in a backlog (backlog.py) and an outbox on disk
(outbox.py)."""
