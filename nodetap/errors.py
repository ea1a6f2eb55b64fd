"""Errors a user can foresee and fix: printed as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """What is wrong and what to do, in one line: 'kernel headers not found; install ...'."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
