"""Reading a bearer token from the file a --token-file flag names.

A token is visible ASCII (RFC 6750's b64token and more: 0x21-0x7E), at most 4 KiB, surrounding
whitespace removed. An empty file, a binary one or a huge one is refused with one line: sent as
it is, an empty token means no authentication at all and a binary one fails deep inside gRPC.
"""

from __future__ import annotations

import re

from nodetap.errors import ConfigError

MAX_TOKEN_BYTES = 4096
_BAD = re.compile(rb"[^\x21-\x7e]")


def read_token(path: str | None, flag: str = "--token-file") -> str | None:
    """The token in the file (surrounding whitespace removed), or None without a path."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read token file {path}: {e.strerror}; check {flag}") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(
            f"token file {path} is over {MAX_TOKEN_BYTES} bytes, too long for a token; check {flag}"
        )
    token = raw.strip()
    if not token:
        raise ConfigError(f"token file {path} is empty; put the token in it ({flag})")
    bad = _BAD.search(token)
    if bad:
        raise ConfigError(
            f"token file {path} holds byte 0x{bad.group()[0]:02x} at offset "
            f"{raw.index(token) + bad.start()}; a token is printable ASCII without spaces "
            f"(for example `openssl rand -hex 32 > {path}`)"
        )
    return token.decode("ascii")
