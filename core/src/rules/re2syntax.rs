//! RE2's syntax (what agent/rules/linear.py accepts) rewritten for the `regex` crate, so that
//! a pattern finds the same spans on both sides: RE2's Perl classes and word boundaries are
//! ASCII (\d \w \s \b), the crate's are Unicode; RE2 has \Q..\E and octal escapes; the
//! crate reads `[`, `&&`, `~~` inside a class as nesting and set operations. Both engines run
//! in linear time.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

const D: &str = "0-9";
const W: &str = "0-9A-Za-z_";
const S: &str = r"\t\n\x0C\r ";

fn perl_class(x: char, in_class: bool) -> Option<String> {
    let (set, neg) = match x {
        'd' => (D, false),
        'D' => (D, true),
        'w' => (W, false),
        'W' => (W, true),
        's' => (S, false),
        'S' => (S, true),
        _ => return None,
    };
    Some(match (neg, in_class) {
        (false, true) => set.to_string(),
        (false, false) => format!("[{set}]"),
        (true, _) => format!("[^{set}]"),
    })
}

/// One escape at cs[i] (a backslash) into out; the index after it.
fn escape(cs: &[char], i: usize, out: &mut String, in_class: bool) -> Result<usize, String> {
    let Some(&x) = cs.get(i + 1) else {
        return Err("trailing \\".into());
    };
    if let Some(set) = perl_class(x, in_class) {
        out.push_str(&set);
        return Ok(i + 2);
    }
    match x {
        'b' | 'B' if !in_class => {
            let _ = write!(out, "(?-u:\\{x})");
            Ok(i + 2)
        }
        'Q' if !in_class => {
            let mut j = i + 2;
            let mut lit = String::new();
            while j < cs.len() && !(cs[j] == '\\' && cs.get(j + 1) == Some(&'E')) {
                lit.push(cs[j]);
                j += 1;
            }
            out.push_str(&regex::escape(&lit));
            Ok(if j < cs.len() { j + 2 } else { j })
        }
        'C' => Err("\\C (any byte) is not supported".into()),
        '0'..='7' => {
            // RE2: \0 or \1-\7 followed by an octal digit, up to three digits; a single
            // \1-\7 is a backreference (refused)
            let mut j = i + 1;
            let mut v = 0u32;
            while j < cs.len() && j < i + 4 && ('0'..='7').contains(&cs[j]) {
                v = v * 8 + (cs[j] as u32 - '0' as u32);
                j += 1;
            }
            if x != '0' && j == i + 2 {
                return Err(format!("invalid escape sequence: \\{x}"));
            }
            let _ = write!(out, "\\x{{{v:x}}}");
            Ok(j)
        }
        _ => {
            out.push('\\');
            out.push(x);
            Ok(i + 2)
        }
    }
}

/// A bracket expression at cs[i] ('[') into out; the index after its ']'.
fn class(cs: &[char], mut i: usize, out: &mut String) -> Result<usize, String> {
    out.push('[');
    i += 1;
    if cs.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if cs.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    loop {
        let Some(&c) = cs.get(i) else {
            return Err("missing ]".into());
        };
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '[' if cs.get(i + 1) == Some(&':') => {
                let mut j = i + 2;
                while j + 1 < cs.len() && !(cs[j] == ':' && cs[j + 1] == ']') {
                    j += 1;
                }
                if j + 1 >= cs.len() {
                    return Err("missing ]".into());
                }
                out.extend(&cs[i..j + 2]);
                i = j + 2;
            }
            '\\' => i = escape(cs, i, out, true)?,
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if out.ends_with('-') && !out.ends_with("\\-") => {
                out.push_str("\\-");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// RE2 reads `{` as a repetition only in {n}, {n,} and {n,m}; elsewhere it is a literal.
fn repetition(cs: &[char], i: usize) -> bool {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while cs.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        *j > start
    };
    if !digits(&mut j) {
        return false;
    }
    if cs.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    cs.get(j) == Some(&'}')
}

/// `pattern` (RE2 syntax) in the regex crate's syntax.
pub fn translate(pattern: &str) -> Result<String, String> {
    let cs: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '\\' => i = escape(&cs, i, &mut out, false)?,
            '[' => i = class(&cs, i, &mut out)?,
            '{' if !repetition(&cs, i) => {
                out.push_str("\\{");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The compiled automaton's budget (RE2's max_mem in agent/rules/linear.py).
pub const SIZE_LIMIT: usize = 8 << 20;

pub fn compile_str(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&translate(pattern)?)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| one_line(&e.to_string()))
}

pub fn compile_bytes(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(&translate(pattern)?)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| one_line(&e.to_string()))
}

fn one_line(msg: &str) -> String {
    let last = msg.lines().rfind(|l| l.contains("error:")).unwrap_or(msg);
    last.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_perl_classes_and_boundaries() {
        let r = compile_str(r"\d+\b").unwrap();
        assert!(r.find("٣٣").is_none()); // Arabic-Indic digits: not \d in RE2
        assert_eq!(r.find("ab 12é").map(|m| m.as_str()), Some("12"));
        assert!(compile_str(r"\s").unwrap().find("\u{0b}").is_none()); // RE2's \s: no \v
        assert_eq!(translate(r"[\d&&x]").unwrap(), r"[0-9\&\&x]");
        assert_eq!(translate(r"[][]").unwrap(), r"[\]\[]");
        assert_eq!(translate(r"\Q.*\E+").unwrap(), r"\.\*+");
        assert_eq!(translate(r"\101").unwrap(), r"\x{41}");
        assert!(translate(r"(a)\1").is_err());
        assert!(compile_str(r"[[:alpha:]]+").unwrap().is_match("ab"));
        assert!(compile_str(r"x{,3}").unwrap().is_match("x{,3}"));
        assert!(compile_str(r"\b{start}").unwrap().is_match("a{start}"));
        assert!(compile_str(r"a{2,}b{3}").unwrap().is_match("aabbb"));
    }
}
