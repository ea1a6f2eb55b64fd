"""Reading a bearer token from the file a --token-file flag names."""

from __future__ import annotations

from pathlib import Path

from nodetap.errors import ConfigError


def read_token(path: str | None, flag: str = "--token-file") -> str | None:
    """The token in the file (surrounding whitespace removed), or None without a path."""
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError as e:
        raise ConfigError(f"cannot read token file {path}: {e.strerror}; check {flag}") from None
    if not token:
        raise ConfigError(f"token file {path} is empty; put the token in it ({flag})")
    return token
