"""Fixtures of the agent's unit tests."""
