"""YAML composed safely for the rules file: the safe loader's node graph, after a pass over the
event stream (iterative, so a deeply nested file cannot exhaust the stack) that refuses
nesting deeper than MAX_DEPTH, a document larger than MAX_NODES once aliases are expanded
(an alias bomb: 8 levels of 9 aliases each expand to 43 million nodes), and recursive
aliases. Errors carry the line. No I/O."""

from __future__ import annotations

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from yaml.nodes import Node

MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_CHARS = 1 << 20


class YamlLimitError(ValueError):
    """Not valid YAML, or beyond a limit: the reason; ``line``, 1-based (0: unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0


def check_limits(text: str) -> None:
    """Raise YamlLimitError when text is too large, too deep, or expands too much."""
    if len(text) > MAX_CHARS:
        raise YamlLimitError(f"larger than {MAX_CHARS >> 10} KiB; is it a rules file?")
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    anchors: list[str | None] = []  # of the open collections, outermost first
    counts: list[int] = []  # nodes counted so far in each open collection
    total = 0  # nodes of the closed top-level values
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, CollectionStartEvent):
            if len(counts) >= MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels", _line(ev))
            anchors.append(ev.anchor)
            counts.append(1)
            continue
        if isinstance(ev, CollectionEndEvent):
            anchor, n = anchors.pop(), counts.pop()
            if anchor is not None:
                sizes[anchor] = n
        elif isinstance(ev, ScalarEvent):
            n = 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, AliasEvent):
            if ev.anchor not in sizes:
                if ev.anchor in anchors:
                    raise YamlLimitError(f"recursive alias *{ev.anchor}", _line(ev))
                raise YamlLimitError(f"alias *{ev.anchor} names no anchor before it", _line(ev))
            n = sizes[ev.anchor]
        else:
            continue
        if counts:
            counts[-1] += n
        else:
            total += n
        if total + sum(counts) > MAX_NODES:
            raise YamlLimitError(
                f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)",
                _line(ev),
            )


def compose(text: str) -> Node | None:
    """The node graph of text (the safe loader's), within the limits above."""
    try:
        check_limits(text)
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlLimitError(f"not valid YAML: {e.problem}", line) from None
    except yaml.YAMLError as e:
        raise YamlLimitError(f"not valid YAML: {e}") from None
