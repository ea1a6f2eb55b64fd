"""The edge-rules file: YAML in, a validated RuleSet out, errors with the line and the reason.

Format (every section optional)::

    builtin: [health-checks, metrics-scrapes]   # default: both; [] turns them off
    drop:                                       # first matching rule drops the RRPair
      - name: no-admin
        host: "admin.*"                         # Host header (port removed), glob
        port: [8080, 9090]                      # server port
        path: "^/internal/"                     # regex searched in the path (no query)
        method: [DELETE]
        namespace: kube-system                  # glob(s) on meta.namespace
        pod: "batch-*"
        workload: "Deployment/web"
        labels: {app: "debug-*"}
    sample:                                     # first matching rule keeps `rate` of them
      - name: web-10pct
        workload: "Deployment/web"
        rate: 0.1
    redact:
      headers: [X-Api-Key]                      # added to Authorization, Cookie, Set-Cookie,
      default_headers: true                     #   Proxy-Authorization (on by default)
      json_fields: [password, card.number, "*.ssn"]
      patterns: [credit-card, email, bearer, jwt]   # default: all four
      custom: [{name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b'}]
      hash_key: "..."     # key of the tokens (HMAC-SHA256); default: the installation's key
                          # (--redaction-key FILE, agent/rules/key.py), never a constant
      protobuf:           # gRPC message fields, by the service's descriptors (compiled core)
        descriptors: users.pb     # protoc --include_imports --descriptor_set_out (relative:
                                  #   to this file's folder)
        fields: ["pkg.Service/Method:request.card.number", "pkg.Service/*:response.token"]
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.rules import linear
from agent.rules.yaml_limits import YamlLimitError, compose

MATCH_KEYS = ("host", "port", "path", "method", "namespace", "pod", "workload", "labels")
BUILTINS = ("health-checks", "metrics-scrapes")
PATTERNS = ("credit-card", "email", "bearer", "jwt")
DEFAULT_HEADERS = ("Authorization", "Cookie", "Set-Cookie", "Proxy-Authorization")


MAX_FILE_BYTES = 1 << 20  # a rules file is a page or two of YAML


class RuleError(ValueError):
    """A rules file is invalid: where (file:line) and why."""


@dataclass(slots=True)
class Match:
    """Conditions of a drop or sample rule (all given conditions must hold)."""

    host: list[str] = field(default_factory=list)
    port: list[int] = field(default_factory=list)
    path: str | None = None
    method: list[str] = field(default_factory=list)
    namespace: list[str] = field(default_factory=list)
    pod: list[str] = field(default_factory=list)
    workload: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Rule:
    name: str
    action: str  # "drop" or "sample"
    match: Match
    rate: float = 1.0
    line: int = 0


@dataclass(slots=True)
class CustomPattern:
    name: str
    regex: str


@dataclass(slots=True)
class RedactConfig:
    headers: list[str] = field(default_factory=lambda: list(DEFAULT_HEADERS))
    json_fields: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=lambda: list(PATTERNS))
    custom: list[CustomPattern] = field(default_factory=list)
    hash_key: str | None = None  # None: the installation's key (agent/rules/key.py)
    # redact.protobuf: the FileDescriptorSet (base64) and the fields (core/src/rules/protobuf.rs)
    protobuf_descriptors: str | None = None
    protobuf_fields: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RuleSet:
    builtin: list[str] = field(default_factory=lambda: list(BUILTINS))
    drop: list[Rule] = field(default_factory=list)
    sample: list[Rule] = field(default_factory=list)
    redact: RedactConfig = field(default_factory=RedactConfig)
    source: str = "<defaults>"


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where
        self._ctor = SafeConstructor()

    def err(self, node: Node | None, msg: str) -> RuleError:
        line = node.start_mark.line + 1 if node is not None else 0
        return RuleError(f"{self.where}:{line}: {msg}")

    def value(self, node: Node) -> Any:
        return self._ctor.construct_object(node, deep=True)

    def mapping(self, node: Node, what: str, allowed: tuple[str, ...]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.err(node, f"{what} must be a mapping")
        out: dict[str, Node] = {}
        for k, v in node.value:
            key = self.value(k)
            if key not in allowed:
                raise self.err(k, f"{what}: unknown key {key!r} (allowed: {', '.join(allowed)})")
            if key in out:
                raise self.err(k, f"{what}: key {key!r} given twice")
            out[key] = v
        return out

    def strings(self, node: Node, what: str) -> list[str]:
        """A string or a list of strings."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for item in items:
            if not isinstance(item, ScalarNode):
                raise self.err(item, f"{what} must be a string or a list of strings")
            out.append(str(self.value(item)))
        return out

    def ints(self, node: Node, what: str) -> list[int]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for item in items:
            v = self.value(item) if isinstance(item, ScalarNode) else None
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 65536:
                raise self.err(item, f"{what} must be a port number or a list of them")
            out.append(v)
        return out

    def regex(self, node: Node, what: str) -> str:
        text = self.value(node)
        if not isinstance(text, str):
            raise self.err(node, f"{what} must be a regular expression (a string)")
        try:
            linear.compile(text)
            linear.check_core(text)
        except linear.RegexError as e:
            raise self.err(node, f"{what}: bad regular expression {text!r}: {e}") from None
        return text

    def rule(self, node: Node, action: str, idx: int) -> Rule:
        what = f"{action}[{idx}]"
        extra = ("name", "rate") if action == "sample" else ("name",)
        m = self.mapping(node, what, extra + MATCH_KEYS)
        if "name" not in m:
            raise self.err(node, f"{what}: every rule needs a name")
        name = str(self.value(m["name"]))
        match = Match()
        for key in ("host", "method", "namespace", "pod", "workload"):
            if key in m:
                setattr(match, key, self.strings(m[key], f"{what}.{key}"))
        match.method = [x.upper() for x in match.method]
        if "port" in m:
            match.port = self.ints(m["port"], f"{what}.port")
        if "path" in m:
            match.path = self.regex(m["path"], f"{what}.path")
        if "labels" in m:
            labels = self.value(m["labels"])
            if not isinstance(labels, dict):
                raise self.err(m["labels"], f"{what}.labels must be a mapping of label: glob")
            match.labels = {str(k): str(v) for k, v in labels.items()}
        rate = 1.0
        if action == "sample":
            if "rate" not in m:
                raise self.err(node, f"{what}: a sample rule needs a rate between 0 and 1")
            r = self.value(m["rate"])
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1:
                raise self.err(m["rate"], f"{what}.rate must be a number between 0 and 1")
            rate = float(r)
        if not any(getattr(match, k) for k in MATCH_KEYS) and action == "drop":
            raise self.err(node, f"{what}: a drop rule without conditions would drop everything")
        return Rule(name, action, match, rate, node.start_mark.line + 1)

    def redact(self, node: Node) -> RedactConfig:
        keys = (
            "headers",
            "default_headers",
            "json_fields",
            "patterns",
            "custom",
            "hash_key",
            "protobuf",
        )
        m = self.mapping(node, "redact", keys)
        cfg = RedactConfig()
        extra = self.strings(m["headers"], "redact.headers") if "headers" in m else []
        if "default_headers" in m:
            on = self.value(m["default_headers"])
            if not isinstance(on, bool):
                raise self.err(m["default_headers"], "redact.default_headers must be true or false")
            if not on:
                cfg.headers = []
        cfg.headers = cfg.headers + [
            h for h in extra if h.lower() not in {x.lower() for x in cfg.headers}
        ]
        if "json_fields" in m:
            if isinstance(m["json_fields"], ScalarNode) and self.value(m["json_fields"]) is None:
                cfg.json_fields = []
            else:
                cfg.json_fields = self.strings(m["json_fields"], "redact.json_fields")
            for f, item in zip(cfg.json_fields, m["json_fields"].value, strict=False):
                if not f or any(not part for part in f.split(".")):
                    raise self.err(item, f"redact.json_fields: bad key path {f!r}; use a.b.c")
        if "patterns" in m:
            node_p = m["patterns"]
            pats = (
                []
                if isinstance(node_p, SequenceNode) and not node_p.value
                else self.strings(node_p, "redact.patterns")
            )
            for p in pats:
                if p not in PATTERNS:
                    raise self.err(
                        node_p,
                        f"redact.patterns: unknown pattern {p!r} "
                        f"(known: {', '.join(PATTERNS)}; use custom for your own)",
                    )
            cfg.patterns = pats
        if "custom" in m:
            if not isinstance(m["custom"], SequenceNode):
                raise self.err(m["custom"], "redact.custom must be a list of {name, regex}")
            for i, item in enumerate(m["custom"].value):
                cm = self.mapping(item, f"redact.custom[{i}]", ("name", "regex"))
                if "name" not in cm or "regex" not in cm:
                    raise self.err(item, f"redact.custom[{i}] needs name and regex")
                rx = self.regex(cm["regex"], f"redact.custom[{i}]")
                try:
                    linear.check_redaction(rx)
                except linear.RegexError as e:
                    raise self.err(
                        cm["regex"], f"redact.custom[{i}]: regular expression {rx!r}: {e}"
                    ) from None
                cfg.custom.append(CustomPattern(str(self.value(cm["name"])), rx))
        if "hash_key" in m:
            key = self.value(m["hash_key"])
            if not isinstance(key, str) or not key:
                raise self.err(m["hash_key"], "redact.hash_key must be a non-empty string")
            cfg.hash_key = key
        if "protobuf" in m:
            self.protobuf(m["protobuf"], cfg)
        return cfg

    def protobuf(self, node: Node, cfg: RedactConfig) -> None:
        """redact.protobuf: {descriptors: FILE, fields: [...]}, checked by the core itself
        (every service, method and field named must be in the descriptors)."""
        pm = self.mapping(node, "redact.protobuf", ("descriptors", "fields"))
        if "descriptors" not in pm or "fields" not in pm:
            raise self.err(node, "redact.protobuf needs descriptors (a file) and fields")
        name = self.value(pm["descriptors"])
        if not isinstance(name, str) or not name:
            raise self.err(pm["descriptors"], "redact.protobuf.descriptors must be a file name")
        path = name
        if not os.path.isabs(path) and not self.where.startswith("<"):
            path = os.path.join(os.path.dirname(self.where), path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES * 16 + 1)
        except OSError as e:
            raise self.err(pm["descriptors"], f"redact.protobuf.descriptors: {e}") from None
        fields = self.strings(pm["fields"], "redact.protobuf.fields")
        cfg.protobuf_descriptors = base64.b64encode(raw).decode("ascii")
        cfg.protobuf_fields = fields
        import nodetap_core  # the core reads the descriptors: the same checks, here with a line

        probe = {
            "redact": {"protobuf_descriptors": cfg.protobuf_descriptors, "protobuf_fields": fields}
        }
        try:
            nodetap_core.Rules(json.dumps(probe), b"check")
        except ValueError as e:
            why = str(e).removeprefix("rules refused by the core: ")
            raise self.err(pm["fields"], why) from None

    def ruleset(self, text: str) -> RuleSet:
        try:
            root = compose(text)
        except YamlLimitError as e:
            raise RuleError(f"{self.where}:{e.line}: {e}") from None
        rs = RuleSet(source=self.where)
        if root is None:
            return rs
        m = self.mapping(root, "rules file", ("version", "builtin", "drop", "sample", "redact"))
        if "version" in m and self.value(m["version"]) != 1:
            raise self.err(m["version"], "version must be 1")
        if "builtin" in m:
            node = m["builtin"]
            names = (
                []
                if isinstance(node, SequenceNode) and not node.value
                else self.strings(node, "builtin")
            )
            for n in names:
                if n not in BUILTINS:
                    raise self.err(
                        node, f"builtin: unknown rule set {n!r} (known: {', '.join(BUILTINS)})"
                    )
            rs.builtin = names
        seen: dict[str, int] = {}
        for action in ("drop", "sample"):
            if action not in m:
                continue
            node = m[action]
            if isinstance(node, ScalarNode) and self.value(node) is None:
                continue
            if not isinstance(node, SequenceNode):
                raise self.err(node, f"{action} must be a list of rules")
            for i, item in enumerate(node.value):
                rule = self.rule(item, action, i)
                if rule.name in seen:
                    raise self.err(
                        item,
                        f"{action}[{i}]: rule name {rule.name!r} already used "
                        f"on line {seen[rule.name]}",
                    )
                seen[rule.name] = rule.line
                (rs.drop if action == "drop" else rs.sample).append(rule)
        if "redact" in m:
            rs.redact = self.redact(m["redact"])
        return rs


def parse(text: str, where: str = "<rules>") -> RuleSet:
    """Validate rules text; RuleError names the line and the reason."""
    return _Parser(where).ruleset(text)


def to_json(rs: RuleSet) -> str:
    """The validated rules as JSON, for the compiled core (`nodetap_core.Rules(json, key)`):
    YAML and its limits stay here; the core reads the result once."""
    return json.dumps(asdict(rs))


def load(path: str) -> RuleSet:
    try:
        with open(path, "rb") as fp:
            raw = fp.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise RuleError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RuleError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KiB; is it a rules file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not UTF-8 text") from None
    return parse(text, path)
