"""The redaction patterns: the built-in ones (credit-card, email, bearer, jwt) and the user's
(custom), each a finder of the spans to replace in a text, all in linear time (RE2,
agent/rules/linear.py, and plain loops). No I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.rules import linear

Text = str | bytes
Spans = Callable[[Text], Iterator[tuple[int, int]]]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A named finder of the spans to replace. ``quick``: a cheap test on the text's bytes,
    true whenever the pattern could match: most texts (headers, bodies without secrets) are
    skipped without running the automaton."""

    name: str
    spans: Spans
    quick: Callable[[bytes], bool] | None = None


def regex_spans(rx: linear.Regex, group: int = 0) -> Spans:
    """The spans of ``group`` of every match of rx, left to right."""

    def spans(text: Text) -> Iterator[tuple[int, int]]:
        for m in rx.finditer(text):
            start, end = m.span(group)
            if start >= 0 and end > start:
                yield start, end

    return spans


# -- credit cards -------------------------------------------------------------------------------
# 13 to 19 digits with at most one space or dash between two of them, not inside a longer run of
# digits, that pass the Luhn check. RE2 has no lookaround, so RE2 finds the runs of digits and
# single separators, and a loop over each run picks the card numbers as the backtracking
# pattern (?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9]) would: from the leftmost start (a digit
# not preceded by a digit), the longest candidate that ends before a separator or the run's end.
_RUN = linear.compile(r"[0-9](?:[ -]?[0-9])*")
_SEPARATORS = frozenset(" -")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_candidates(run: str) -> Iterator[tuple[int, int]]:
    """(start, end) offsets in run of the card-number candidates (before the Luhn check)."""
    pos = [i for i, ch in enumerate(run) if ch not in _SEPARATORS]
    last = len(pos) - 1
    i = 0
    while i <= last - 12:
        if i == 0 or run[pos[i] - 1] in _SEPARATORS:
            for k in range(min(19, last - i + 1), 12, -1):
                j = i + k - 1
                if j == last or run[pos[j] + 1] in _SEPARATORS:
                    yield pos[i], pos[j] + 1
                    i = j + 1
                    break
            else:
                i += 1
        else:
            i += 1


def card_spans(text: Text) -> Iterator[tuple[int, int]]:
    for m in _RUN.finditer(text):
        run = m.group(0)
        if len(run) < 13:
            continue
        s0 = m.start()
        run_text = run.decode("ascii") if isinstance(run, bytes) else run
        for a, b in _card_candidates(run_text):
            digits = run_text[a:b].replace(" ", "").replace("-", "")
            if luhn(digits):
                yield s0 + a, s0 + b


# Card numbers, cheaply: digits become "0", spaces and dashes "-", anything else "x"; a card
# number then shows as 0[0-]{11,35}0, found by a plain pass before the full search.
_CARD_MAP = bytes(
    ord("0") if chr(c).isdigit() and c < 128 else ord("-") if c in b" -" else ord("x")
    for c in range(256)
)
_CARD_SHAPE = linear.compile(r"0[0-]{11,35}0")


def _card_quick(raw: bytes) -> bool:
    return _CARD_SHAPE.search(raw.translate(_CARD_MAP)) is not None


BUILTIN_PATTERNS: dict[str, Pattern] = {
    "credit-card": Pattern("credit-card", card_spans, _card_quick),
    "email": Pattern(
        "email",
        regex_spans(
            linear.compile(
                r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
            )
        ),
        lambda raw: b"@" in raw or b"%40" in raw,
    ),
    "bearer": Pattern(
        "bearer",
        regex_spans(linear.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)"), 1),
        lambda raw: b"bearer" in raw.lower(),
    ),
    "jwt": Pattern(
        "jwt",
        regex_spans(linear.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")),
        lambda raw: b"eyJ" in raw,
    ),
}


def custom(name: str, regex: str) -> Pattern:
    """A user pattern (redact.custom), compiled by RE2 (linear.RegexError when it cannot, or
    when it can match the empty string)."""
    linear.check_redaction(regex)
    return Pattern(name, regex_spans(linear.compile(regex)))
