"""Regular expressions in linear time: every pattern of the edge rules (built-in and the
user's) runs on RE2 (google-re2), an automaton without backtracking, so that no body can make
a search cost more than a pass over it (Python's `re` backtracks: an email pattern over
``"@" + "a" * 150000`` took 100 s). Constructs that need backtracking (lookaround,
backreferences) are refused with one line that says so."""

from __future__ import annotations

from typing import Any

import nodetap_core
import re2

ENGINE = "re2"

# What RE2 refuses because only a backtracking engine can run it, by its error text.
_BACKTRACKING = {
    "(?=": "lookahead (?=...)",
    "(?!": "negative lookahead (?!...)",
    "(?<=": "lookbehind (?<=...)",
    "(?<!": "negative lookbehind (?<!...)",
    "(?P=": "a named backreference (?P=name)",
    "(?>": "an atomic group (?>...)",
}

Regex = Any  # a compiled re2 pattern (google-re2 ships no type hints)
RegexMatch = Any


class RegexError(ValueError):
    """A pattern RE2 cannot run: the reason, in one line."""


def _options(case_insensitive: bool = False) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print its own lines on stderr
    opts.max_mem = 8 << 20  # the compiled automaton's budget (RE2's default)
    if case_insensitive:
        opts.case_sensitive = False
    return opts


def _reason(pattern: str, message: str) -> str:
    for construct, name in _BACKTRACKING.items():
        if f"invalid perl operator: {construct}" in message or (
            construct == "(?P=" and "(?P" in message and "(?P=" in pattern
        ):
            return (
                f"{name} needs a backtracking engine, and nodetap runs regular expressions "
                "in linear time (RE2) only; rewrite it without"
            )
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        return (
            f"a backreference ({message.rsplit(' ', 1)[-1]}) needs a backtracking engine, and "
            "nodetap runs regular expressions in linear time (RE2) only; rewrite it without"
        )
    if "pattern too large" in message:
        return "pattern too large for RE2 (its automaton would exceed 8 MiB); simplify it"
    return f"{message} (nodetap runs RE2 syntax)"


def compile(pattern: str, case_insensitive: bool = False) -> Regex:
    """pattern compiled by RE2; RegexError (one line) when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _options(case_insensitive))
    except re2.error as e:
        raw = e.args[0] if e.args else ""
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise RegexError(_reason(pattern, message)) from None
    except (TypeError, ValueError) as e:
        raise RegexError(str(e)) from None


def check_core(pattern: str) -> None:
    """RegexError when the compiled core (nodetap_core, Rust's regex crate: linear time too)
    cannot run a pattern RE2 accepted, so that the rules run the same on both sides."""
    try:
        nodetap_core.check_regex(pattern)
    except ValueError as e:
        raise RegexError(f"{e} (the compiled core cannot run it; rewrite it)") from None


EMPTY_MATCH = (
    "it can match the empty string, which redacts nothing and costs a search at every "
    "position; make every match at least one character (+ instead of *, no optional-only pattern)"
)


def match_lengths(pattern: str) -> tuple[int, int | None]:
    """The shortest and longest (None: no bound) match of pattern in bytes, from the compiled
    core's parser (core/src/rules/patterns.rs match_lengths)."""
    try:
        shortest, longest = nodetap_core.regex_lengths(pattern)
    except ValueError as e:
        raise RegexError(str(e)) from None
    return int(shortest), None if longest is None else int(longest)


def check_redaction(pattern: str) -> None:
    """RegexError when a redaction pattern can match the empty string (both sides refuse it:
    every match is a search, and the per-field cap counts matches)."""
    if match_lengths(pattern)[0] == 0:
        raise RegexError(EMPTY_MATCH)


def is_linear(rx: object) -> bool:
    """rx is a pattern compiled by RE2 (for tests and `rules check`)."""
    return type(rx).__module__.split(".")[0] == "re2"
