"""Which pods of this node are targeted for capture, and why (or why not): the rules.

Nothing is captured until it is targeted. A pod is targeted by, in this order:

1. its own annotation or label ``nodetap.io/capture`` ("true" targets it, "false" opts it out
   whatever else says),
2. its namespace's annotation or label ``nodetap.io/capture``,
3. the config: ``namespaces`` (whole namespaces) and ``selectors`` (namespace + matchLabels),
4. ``mode: all`` (every pod but those of ``exclude_namespaces``).

``decide(pod, config)`` applies them to one pod; agent/targeting.py applies them to every pod
of the node and keeps the capture's cgroup filter up to date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.enrich.pods import PodInfo
from nodetap.errors import ConfigError

CAPTURE_KEY = "nodetap.io/capture"
# nodetap's own pods are never captured (the agent would record its own traffic to the
# forwarder, which would record more traffic...).
OWN_LABEL = ("app.kubernetes.io/part-of", "nodetap")


_TRUE = ("true", "yes", "1", "on", "enabled")
_FALSE = ("false", "no", "0", "off", "disabled")


@dataclass(frozen=True, slots=True)
class Selector:
    """Pods of ``namespace`` (any namespace when empty) whose labels include ``match_labels``."""

    namespace: str = ""
    match_labels: dict[str, str] = field(default_factory=dict)

    def matches(self, pod: PodInfo) -> bool:
        if self.namespace and pod.namespace != self.namespace:
            return False
        return all(pod.labels.get(k) == v for k, v in self.match_labels.items())

    def describe(self) -> str:
        parts = [f"namespace={self.namespace}"] if self.namespace else []
        parts += [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        return ",".join(parts) or "everything"


@dataclass(frozen=True, slots=True)
class TargetingConfig:
    """The ``targeting:`` section of the agent config."""

    mode: str = "opt-in"  # "opt-in": only what is targeted; "all": every pod
    key: str = CAPTURE_KEY
    namespaces: tuple[str, ...] = ()
    selectors: tuple[Selector, ...] = ()
    exclude_namespaces: tuple[str, ...] = ("kube-system",)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TargetingConfig:
        """From the parsed YAML section; unknown keys and bad values are a ConfigError."""
        d = dict(d or {})
        known = {"mode", "key", "namespaces", "selectors", "exclude_namespaces"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"unknown targeting setting(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(sorted(known))}"
            )
        mode = str(d.get("mode", "opt-in"))
        if mode not in ("opt-in", "all"):
            raise ConfigError(f"targeting mode {mode!r} unknown; use opt-in or all")
        selectors = []
        for i, s in enumerate(d.get("selectors") or ()):
            if not isinstance(s, Mapping) or set(s) - {"namespace", "matchLabels"}:
                raise ConfigError(
                    f"targeting selector #{i + 1} must be a mapping with namespace and/or "
                    "matchLabels"
                )
            labels = s.get("matchLabels") or {}
            if not isinstance(labels, Mapping):
                raise ConfigError(f"targeting selector #{i + 1}: matchLabels must be a mapping")
            selectors.append(
                Selector(str(s.get("namespace") or ""), {str(k): str(v) for k, v in labels.items()})
            )
        return cls(
            mode=mode,
            key=str(d.get("key", CAPTURE_KEY)),
            namespaces=tuple(str(n) for n in d.get("namespaces") or ()),
            selectors=tuple(selectors),
            exclude_namespaces=tuple(
                str(n) for n in d.get("exclude_namespaces", ("kube-system",)) or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    targeted: bool
    reason: str


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def decide(
    pod: PodInfo,
    config: TargetingConfig,
    namespace_meta: Mapping[str, str] | None = None,
) -> Decision:
    """Whether ``pod`` is targeted, and the one-line reason. ``namespace_meta`` holds the
    labels and annotations of the pod's namespace (when the agent watches namespaces)."""
    key = config.key
    if pod.labels.get(OWN_LABEL[0]) == OWN_LABEL[1]:
        return Decision(False, "nodetap's own pod")
    for where, meta in (("annotation", pod.annotations), ("label", pod.labels)):
        f = _flag(meta.get(key))
        if f is not None:
            return Decision(f, f"pod {where} {key}={meta[key]}")
    if namespace_meta is not None:
        f = _flag(namespace_meta.get(key))
        if f is not None:
            return Decision(f, f"namespace {pod.namespace} has {key}={namespace_meta[key]}")
    if pod.namespace in config.namespaces:
        return Decision(True, f"namespace {pod.namespace} listed in the config")
    for i, sel in enumerate(config.selectors):
        if sel.matches(pod):
            return Decision(True, f"config selector #{i + 1} ({sel.describe()})")
    if config.mode == "all":
        if pod.namespace in config.exclude_namespaces:
            return Decision(False, f"namespace {pod.namespace} excluded in the config")
        return Decision(True, "config mode all")
    return Decision(
        False,
        f"not targeted (no {key} annotation or label on the pod or its namespace, "
        "no config selector matches)",
    )


def load_config(path: str | None) -> TargetingConfig:
    """The ``targeting:`` section of a YAML file (the whole file if it has no such key)."""
    if not path:
        return TargetingConfig()
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(
            f"cannot read {path}: {e.strerror}; pass an existing --targeting"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e}); fix it") from None
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{path} must be a YAML mapping with a targeting: section")
    section = loaded.get("targeting", loaded)
    return TargetingConfig.from_dict(section)
