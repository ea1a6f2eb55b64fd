//! The redaction patterns (agent/rules/patterns.py): credit-card, email, bearer and jwt, and
//! the user's (custom), each a finder of the spans to replace, in linear time.
#![forbid(unsafe_code)]

use crate::rules::re2syntax;

enum Finder {
    Card,
    Regex {
        text: regex::Regex,
        bytes: regex::bytes::Regex,
        group: usize,
    },
}

/// A cheap test on the text, true whenever the pattern could match.
#[derive(Clone, Copy)]
enum Quick {
    Always,
    /// bytes that every match contains
    Needle(&'static [u8]),
    /// "@" or "%40"
    Email,
    /// "bearer" in any ASCII case
    Bearer,
}

pub struct Pattern {
    pub name: String,
    finder: Finder,
    quick: Quick,
}

/// (name, RE2 pattern, group, a literal every match contains)
const BUILTIN: &[(&str, &str, usize, &[u8])] = &[
    (
        "email",
        r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        0,
        b"",
    ),
    ("bearer", r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)", 1, b""),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        0,
        b"eyJ",
    ),
];

/// Why a redaction pattern that can match the empty string is refused (agent/rules/patterns.py
/// says the same).
pub const EMPTY_MATCH: &str =
    "it can match the empty string, which redacts nothing and costs a search at every \
     position; make every match at least one character (+ instead of *, no optional-only pattern)";

pub const BUILTIN_NAMES: &[&str] = &["credit-card", "email", "bearer", "jwt"];

impl Pattern {
    pub fn builtin(name: &str) -> Result<Pattern, String> {
        if name == "credit-card" {
            return Ok(Pattern {
                name: name.into(),
                finder: Finder::Card,
                quick: Quick::Always,
            });
        }
        let &(_, rx, group, needle) = BUILTIN
            .iter()
            .find(|b| b.0 == name)
            .ok_or_else(|| format!("unknown pattern {name:?}"))?;
        let mut p = Pattern::regex(name, rx, group)?;
        p.quick = match name {
            "email" => Quick::Email,
            "bearer" => Quick::Bearer,
            _ if !needle.is_empty() => Quick::Needle(needle),
            _ => Quick::Always,
        };
        Ok(p)
    }

    pub fn custom(name: &str, regex: &str) -> Result<Pattern, String> {
        if match_lengths(regex)?.0 == 0 {
            return Err(EMPTY_MATCH.into());
        }
        Pattern::regex(name, regex, 0)
    }

    fn regex(name: &str, rx: &str, group: usize) -> Result<Pattern, String> {
        Ok(Pattern {
            name: name.into(),
            finder: Finder::Regex {
                text: re2syntax::compile_str(rx)?,
                bytes: re2syntax::compile_bytes(rx)?,
                group,
            },
            quick: Quick::Always,
        })
    }

    fn may_match(&self, raw: &[u8]) -> bool {
        match self.quick {
            Quick::Always => true,
            Quick::Needle(n) => memchr::memmem::find(raw, n).is_some(),
            Quick::Email => {
                memchr::memchr(b'@', raw).is_some() || memchr::memmem::find(raw, b"%40").is_some()
            }
            Quick::Bearer => memchr::memchr2_iter(b'b', b'B', raw).any(|i| {
                raw.get(i..i + 6)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"bearer"))
            }),
        }
    }

    /// Byte spans (start, end) to replace in a text, left to right, none empty; at most
    /// `limit` (the search stops there: redact.rs MAX_MATCHES).
    pub fn spans_str(&self, text: &str, limit: usize) -> Vec<(usize, usize)> {
        if !self.may_match(text.as_bytes()) {
            return Vec::new();
        }
        match &self.finder {
            Finder::Card => take(card_spans(text.as_bytes()).into_iter(), limit),
            Finder::Regex {
                text: rx, group, ..
            } => {
                if *group == 0 {
                    take(rx.find_iter(text).map(|m| (m.start(), m.end())), limit)
                } else {
                    take(
                        rx.captures_iter(text)
                            .map(|c| c.get(*group).map_or((0, 0), |m| (m.start(), m.end()))),
                        limit,
                    )
                }
            }
        }
    }

    pub fn spans_bytes(&self, text: &[u8], limit: usize) -> Vec<(usize, usize)> {
        if !self.may_match(text) {
            return Vec::new();
        }
        match &self.finder {
            Finder::Card => take(card_spans(text).into_iter(), limit),
            Finder::Regex {
                bytes: rx, group, ..
            } => {
                if *group == 0 {
                    take(rx.find_iter(text).map(|m| (m.start(), m.end())), limit)
                } else {
                    take(
                        rx.captures_iter(text)
                            .map(|c| c.get(*group).map_or((0, 0), |m| (m.start(), m.end()))),
                        limit,
                    )
                }
            }
        }
    }
}

/// The first `limit` non-empty spans. Every match counts towards the limit, as every match is
/// a search: a pattern that can match the empty string is refused (`Pattern::custom`), and
/// the built-in ones cannot, except for a group that did not take part (bearer's token).
fn take(spans: impl Iterator<Item = (usize, usize)>, limit: usize) -> Vec<(usize, usize)> {
    spans.filter(|(a, b)| b > a).take(limit).collect()
}

/// The shortest and longest match of an RE2 pattern in bytes (None: no bound); patterns that
/// can match the empty string cost a search at every position and replace nothing.
pub fn match_lengths(rx: &str) -> Result<(usize, Option<usize>), String> {
    let translated = re2syntax::translate(rx, false)?;
    let hir = regex_syntax::Parser::new()
        .parse(&translated)
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string()
        })?;
    let props = hir.properties();
    Ok((props.minimum_len().unwrap_or(0), props.maximum_len()))
}

// -- credit cards ----------------------------------------------------------------------------
// 13 to 19 digits with at most one space or dash between two of them, not inside a longer run
// of digits, passing the Luhn check: the runs of [0-9](?:[ -]?[0-9])*, then the candidates
// of each run as agent/rules/patterns.py `_card_candidates` picks them.

fn is_sep(c: u8) -> bool {
    c == b' ' || c == b'-'
}

pub fn luhn(digits: &[u8]) -> bool {
    let mut total = 0u32;
    for (i, &ch) in digits.iter().rev().enumerate() {
        let mut d = u32::from(ch - b'0');
        if !i.is_multiple_of(2) {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        total += d;
    }
    total.is_multiple_of(10)
}

/// (start, end) of the runs of digits with single separators between them.
fn runs(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        loop {
            if i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            } else if i + 1 < text.len() && is_sep(text[i]) && text[i + 1].is_ascii_digit() {
                i += 2;
            } else {
                break;
            }
        }
        out.push((start, i));
    }
    out
}

fn candidates(run: &[u8]) -> Vec<(usize, usize)> {
    let pos: Vec<usize> = (0..run.len()).filter(|&i| !is_sep(run[i])).collect();
    let mut out = Vec::new();
    if pos.len() < 13 {
        return out;
    }
    let last = pos.len() - 1;
    let mut i = 0;
    while i + 12 <= last {
        if i == 0 || is_sep(run[pos[i] - 1]) {
            let mut found = false;
            let mut k = 19.min(last - i + 1);
            while k > 12 {
                let j = i + k - 1;
                if j == last || is_sep(run[pos[j] + 1]) {
                    out.push((pos[i], pos[j] + 1));
                    i = j + 1;
                    found = true;
                    break;
                }
                k -= 1;
            }
            if !found {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

pub fn card_spans(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (s0, e0) in runs(text) {
        if e0 - s0 < 13 {
            continue;
        }
        for (a, b) in candidates(&text[s0..e0]) {
            let digits: Vec<u8> = text[s0 + a..s0 + b]
                .iter()
                .copied()
                .filter(|c| !is_sep(*c))
                .collect();
            if luhn(&digits) {
                out.push((s0 + a, s0 + b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_find_what_python_finds() {
        let card = Pattern::builtin("credit-card").unwrap();
        assert_eq!(card.spans_str("x 4111 1111 1111 1111 y", 9), vec![(2, 21)]);
        assert!(card.spans_str("1234567812345678", 9).is_empty()); // Luhn fails
        let email = Pattern::builtin("email").unwrap();
        assert_eq!(email.spans_bytes(b"to bob@example.org!", 9), vec![(3, 18)]);
        let bearer = Pattern::builtin("bearer").unwrap();
        assert_eq!(bearer.spans_str("Bearer abc.def=", 9), vec![(7, 15)]);
        assert!(bearer.spans_str("xbearer abc", 9).is_empty());
        let jwt = Pattern::builtin("jwt").unwrap();
        assert_eq!(jwt.spans_str("t=eyJabcd.efgh.ij", 9).len(), 1);
    }

    #[test]
    fn custom_patterns_that_match_empty_are_refused_and_spans_stop_at_the_limit() {
        for rx in ["a*", "(a+b)?", r"\b", "x?|y"] {
            let err = Pattern::custom("p", rx).err().unwrap();
            assert!(err.contains("empty string"), "{rx}: {err}");
        }
        assert_eq!(match_lengths("a+b|a").unwrap(), (1, None));
        assert_eq!(match_lengths("[0-9]{3,5}").unwrap(), (3, Some(5)));
        let p = Pattern::custom("p", "a+b|a").unwrap();
        let text = "a".repeat(10_000);
        assert_eq!(
            p.spans_str(&text, 5),
            vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
        );
        assert_eq!(p.spans_bytes(text.as_bytes(), 3).len(), 3);
    }
}
