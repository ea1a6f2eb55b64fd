"""Decentralized NATS authentication for tests (operator mode), made without nsc: an operator,
a system account, an account with JetStream, and users, as signed JWTs (nkeys' ed25519 keys,
the claims nats-server 2.9 reads), a ``.creds`` file per user, and the server configuration
that trusts the operator and preloads the accounts (memory resolver).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def public(kp: nkeys.KeyPair) -> str:
    return str(kp.public_key.decode())


def sign_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A JWT of claims {sub, name, nats} issued and signed by issuer."""
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": public(issuer),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.new("sha512_256", json.dumps(claims).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


@dataclass
class Operator:
    """An operator with a system account and one application account (JetStream on)."""

    key: nkeys.KeyPair
    jwt: str
    sys_key: nkeys.KeyPair
    sys_jwt: str
    account_key: nkeys.KeyPair
    account_jwt: str

    def server_conf(self) -> str:
        """Configuration lines for nats-server: trust this operator, preload the accounts."""
        return (
            f"operator: {self.jwt}\n"
            f"system_account: {public(self.sys_key)}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {public(self.sys_key)}: {self.sys_jwt}\n"
            f"  {public(self.account_key)}: {self.account_jwt}\n"
            "}\n"
        )

    def user_creds(self, path: Path, name: str, account: nkeys.KeyPair | None = None) -> Path:
        """A .creds file (user JWT and seed, as nsc writes it) for a new user of the
        application account (or of the account whose key is given: a foreign one)."""
        user = new_key(nkeys.PREFIX_BYTE_USER)
        nats = {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user"}
        jwt = sign_jwt(account or self.account_key, public(user), name, nats)
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path


def make_operator() -> Operator:
    op = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    op_jwt = sign_jwt(op, public(op), "nodetap-test", {"type": "operator"})
    sys_key = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    sys_jwt = sign_jwt(op, public(sys_key), "SYS", {"type": "account", "limits": _UNLIMITED})
    acc = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    js_limits = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    acc_nats = {"type": "account", "limits": {**_UNLIMITED, **js_limits}}
    acc_jwt = sign_jwt(op, public(acc), "nodetap", acc_nats)
    return Operator(op, op_jwt, sys_key, sys_jwt, acc, acc_jwt)
