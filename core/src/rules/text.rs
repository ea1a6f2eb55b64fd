//! Python's string semantics where the rules depend on them: `str.lower()`, `str.upper()`,
//! `str.strip()` and the bytes a secret is hashed as (agent/rules/redact.py `_secret_bytes`).
#![forbid(unsafe_code)]

use std::borrow::Cow;

/// `str.isspace()` of Python (bidirectional classes WS, B, S and category Zs): wider than
/// Rust's `char::is_whitespace` (U+001C..U+001F).
pub fn py_isspace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `s.strip()` of Python.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// `s.lower()` of Python (full case mapping, final sigma): Rust's `to_lowercase` does the
/// same; ASCII text takes the cheap path.
pub fn py_lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// `s.lower() == lower` for a `lower` that is already lower case, without allocating when
/// `s` is ASCII.
pub fn lower_eq(s: &str, lower: &str) -> bool {
    if s.is_ascii() {
        s.eq_ignore_ascii_case(lower)
    } else {
        py_lower(s) == lower
    }
}

/// `s.upper()` of Python (full case mapping: "ß" becomes "SS").
pub fn py_upper(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Owned(s.to_uppercase())
    }
}

/// The bytes a text secret is hashed as: Latin-1 when every character fits (header values
/// are decoded as Latin-1 from the wire), else UTF-8.
pub fn secret_bytes(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        return Cow::Borrowed(s.as_bytes());
    }
    if s.chars().all(|c| (c as u32) < 256) {
        Cow::Owned(s.chars().map(|c| c as u32 as u8).collect())
    } else {
        Cow::Borrowed(s.as_bytes())
    }
}

/// Code points of a text (globs compare code points; JSON keys may hold lone surrogates).
pub fn code_points(s: &str) -> Vec<u32> {
    s.chars().map(|c| c as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings() {
        assert_eq!(py_strip("\u{1c} gzip\u{85}"), "gzip");
        assert_eq!(py_lower("ÄB"), "äb");
        assert_eq!(py_upper("straße"), "STRASSE");
        assert_eq!(&*secret_bytes("é"), &[0xe9]);
        assert_eq!(&*secret_bytes("€"), "€".as_bytes());
    }
}
