"""Where the agent's RRPairs go once captured: the forwarder over gRPC (with a disk spool)."""
