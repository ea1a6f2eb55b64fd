"""The installation's redaction key: the secret of the redaction tokens (HMAC-SHA256), so that
nobody without it can confirm a guess of a short secret (a PIN, a card number from its BIN and
last four digits) against a token.

Kept in a file readable by its owner only: given with --redaction-key FILE (on Kubernetes, the
Secret nodetap-redaction-key that the install Job makes, mounted 0400 into every agent, so every
node makes the same token of the same secret), else the default path below, created on first use
(32 random bytes, 0600, in a 0700 folder). A key file that others can read or write is refused:
anyone who can read it can confirm guesses against the tokens."""

from __future__ import annotations

import logging
import os
import secrets
import stat

from nodetap.errors import ConfigError

log = logging.getLogger(__name__)

ENV = "NODETAP_REDACTION_KEY_FILE"
MIN_BYTES = 16
MAX_BYTES = 4096


def default_path() -> str:
    """$NODETAP_REDACTION_KEY_FILE, else /var/lib/nodetap/redaction.key for root, else
    $XDG_CONFIG_HOME/nodetap/redaction.key (~/.config)."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    if os.geteuid() == 0:
        return "/var/lib/nodetap/redaction.key"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "nodetap", "redaction.key")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fp:
            key = fp.read(MAX_BYTES + 1)
            st = os.fstat(fp.fileno())
    except OSError as e:
        raise ConfigError(f"cannot read the redaction key {path}: {e.strerror}") from None
    key = key.strip()
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise ConfigError(
            f"redaction key {path}: {len(key)} bytes; it must hold {MIN_BYTES} to {MAX_BYTES} "
            "(make one with: head -c 32 /dev/urandom > FILE; chmod 600 FILE)"
        )
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            f"redaction key {path} is readable or writable by every user (mode "
            f"{stat.S_IMODE(st.st_mode):o}); chmod 600 it (on Kubernetes: defaultMode: 0400)"
        )
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "redaction key %s is readable by others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )
    return key


def _create(path: str) -> bytes:
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        key = secrets.token_hex(32).encode()
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            return _read(path)
        finally:
            os.unlink(tmp)
    except OSError as e:
        raise ConfigError(
            f"cannot create the redaction key {path}: {e.strerror}; "
            "give one with --redaction-key FILE"
        ) from None
    log.info("redaction key created in %s (keep it to keep tokens stable)", path)
    return key


def load(path: str | None = None, create: bool = True) -> bytes:
    """The key in path (default_path() when None); created there when it does not exist and
    create is true (only for the default path: a given file must exist)."""
    if path is not None:
        return _read(path)
    path = default_path()
    if os.path.exists(path) or not create:
        return _read(path)
    return _create(path)


def ephemeral() -> bytes:
    """A key for this process only (`rules check`: tokens that are never shown)."""
    return secrets.token_bytes(32)
