"""Rewrite rules applied to each request before it is sent.

- host map: ``old=new`` replaces a recorded Host value (default: the target's host:port);
- header set / remove: ``Name: value`` sets (replacing every field of that name, in place),
  ``Name`` removes;
- token substitution: ``OLD=NEW`` replaced in the target, header values and body
  (for example a recorded session token replaced by a fresh one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetap.errors import ConfigError
from replay.model import Item


@dataclass(slots=True)
class Rules:
    host_map: dict[str, str] = field(default_factory=dict)
    set_headers: list[tuple[str, str]] = field(default_factory=list)
    remove_headers: set[str] = field(default_factory=set)  # lower-case names
    tokens: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(
        cls,
        host_map: list[str] | None = None,
        set_headers: list[str] | None = None,
        remove_headers: list[str] | None = None,
        tokens: list[str] | None = None,
    ) -> Rules:
        def pair(text: str, sep: str, what: str) -> tuple[str, str]:
            if sep not in text:
                raise ConfigError(f"bad {what} {text!r}; expected 'A{sep}B'")
            a, b = text.split(sep, 1)
            return a.strip() if sep == ":" else a, b.strip() if sep == ":" else b

        return cls(
            host_map=dict(pair(x, "=", "--host-map") for x in host_map or []),
            set_headers=[pair(x, ":", "--set-header") for x in set_headers or []],
            remove_headers={x.strip().lower() for x in remove_headers or []},
            tokens=[pair(x, "=", "--replace") for x in tokens or []],
        )

    def host_for(self, recorded: str | None, default: str) -> str:
        if recorded is not None and recorded in self.host_map:
            return self.host_map[recorded]
        return default

    def apply(self, item: Item) -> Item:
        """Rewrite item in place (it is the replay's own copy) and return it."""
        if self.remove_headers:
            item.headers = [(n, v) for n, v in item.headers if n.lower() not in self.remove_headers]
        for name, value in self.set_headers:
            low = name.lower()
            out, done = [], False
            for n, v in item.headers:
                if n.lower() == low:
                    if not done:
                        out.append((n, value))
                        done = True
                    continue
                out.append((n, v))
            if not done:
                out.append((name, value))
            item.headers = out
        for old, new in self.tokens:
            item.target = item.target.replace(old, new)
            item.headers = [(n, v.replace(old, new)) for n, v in item.headers]
            if item.body:
                item.body = item.body.replace(old.encode("latin-1"), new.encode("latin-1"))
        return item
