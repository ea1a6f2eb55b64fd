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

    /// Byte spans (start, end) to replace in a text, left to right, none empty.
    pub fn spans_str(&self, text: &str) -> Vec<(usize, usize)> {
        if !self.may_match(text.as_bytes()) {
            return Vec::new();
        }
        match &self.finder {
            Finder::Card => card_spans(text.as_bytes()),
            Finder::Regex {
                text: rx, group, ..
            } => {
                if *group == 0 {
                    rx.find_iter(text)
                        .map(|m| (m.start(), m.end()))
                        .filter(|(a, b)| b > a)
                        .collect()
                } else {
                    rx.captures_iter(text)
                        .filter_map(|c| c.get(*group))
                        .map(|m| (m.start(), m.end()))
                        .filter(|(a, b)| b > a)
                        .collect()
                }
            }
        }
    }

    pub fn spans_bytes(&self, text: &[u8]) -> Vec<(usize, usize)> {
        if !self.may_match(text) {
            return Vec::new();
        }
        match &self.finder {
            Finder::Card => card_spans(text),
            Finder::Regex {
                bytes: rx, group, ..
            } => {
                if *group == 0 {
                    rx.find_iter(text)
                        .map(|m| (m.start(), m.end()))
                        .filter(|(a, b)| b > a)
                        .collect()
                } else {
                    rx.captures_iter(text)
                        .filter_map(|c| c.get(*group))
                        .map(|m| (m.start(), m.end()))
                        .filter(|(a, b)| b > a)
                        .collect()
                }
            }
        }
    }
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
        assert_eq!(card.spans_str("x 4111 1111 1111 1111 y"), vec![(2, 21)]);
        assert!(card.spans_str("1234567812345678").is_empty()); // Luhn fails
        let email = Pattern::builtin("email").unwrap();
        assert_eq!(email.spans_bytes(b"to bob@example.org!"), vec![(3, 18)]);
        let bearer = Pattern::builtin("bearer").unwrap();
        assert_eq!(bearer.spans_str("Bearer abc.def="), vec![(7, 15)]);
        assert!(bearer.spans_str("xbearer abc").is_empty());
        let jwt = Pattern::builtin("jwt").unwrap();
        assert_eq!(jwt.spans_str("t=eyJabcd.efgh.ij").len(), 1);
    }
}
