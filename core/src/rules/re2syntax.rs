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

/// RE2 compiles the surrogates U+D800..U+DFFF into its classes (their 3-byte forms, which
/// are not UTF-8, match a negated class or `.` in a body); the regex crate never matches
/// them. A bytes pattern gets them back as an alternative wherever RE2 has them.
const SURROGATE: &str = r"(?-u:\xED[\xA0-\xBF][\x80-\xBF])";

fn with_surrogates(item: &str, bytes: bool) -> String {
    if bytes {
        format!("(?:{item}|{SURROGATE})")
    } else {
        item.to_string()
    }
}

/// One escape at cs[i] (a backslash) into out; the index after it and whether it is a
/// negated set (which holds the surrogates in RE2).
fn escape(
    cs: &[char],
    i: usize,
    out: &mut String,
    in_class: bool,
    bytes: bool,
) -> Result<(usize, bool), String> {
    let Some(&x) = cs.get(i + 1) else {
        return Err("trailing \\".into());
    };
    if let Some(set) = perl_class(x, in_class) {
        let negated = x.is_ascii_uppercase();
        if negated && !in_class {
            out.push_str(&with_surrogates(&set, bytes));
        } else {
            out.push_str(&set);
        }
        return Ok((i + 2, negated));
    }
    if x == 'p' || x == 'P' {
        let end = if cs.get(i + 2) == Some(&'{') {
            (i + 2..cs.len())
                .find(|&j| cs[j] == '}')
                .ok_or("missing } in \\p{...}")?
                + 1
        } else {
            (i + 3).min(cs.len())
        };
        // RE2's \\p{^Greek} is the crate's \\P{Greek}
        let caret = cs.get(i + 2) == Some(&'{') && cs.get(i + 3) == Some(&'^');
        let negated = (x == 'P') != caret;
        let item: String = if caret {
            let name: String = cs[i + 4..end].iter().collect();
            format!("\\{}{{{name}", if negated { 'P' } else { 'p' })
        } else {
            cs[i..end].iter().collect()
        };
        if negated && !in_class {
            out.push_str(&with_surrogates(&item, bytes));
        } else {
            out.push_str(&item);
        }
        return Ok((end, negated));
    }
    let next: Result<usize, String> = match x {
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
    };
    Ok((next?, false))
}

/// A bracket expression at cs[i] ('[') into out; the index after its ']'.
fn class(cs: &[char], mut i: usize, top: &mut String, bytes: bool) -> Result<usize, String> {
    let mut out = String::from("[");
    let out = &mut out;
    i += 1;
    let negated = cs.get(i) == Some(&'^');
    let mut negated_member = false;
    if negated {
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
                // RE2's set holds the surrogates when exactly one of the negations holds
                if negated != negated_member {
                    top.push_str(&with_surrogates(out, bytes));
                } else {
                    top.push_str(out);
                }
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
                negated_member |= cs.get(i + 2) == Some(&'^');
                out.extend(&cs[i..j + 2]);
                i = j + 2;
            }
            '\\' => {
                let (next, neg) = escape(cs, i, out, true, bytes)?;
                negated_member |= neg;
                i = next;
            }
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

/// `pattern` (RE2 syntax) in the regex crate's syntax, for texts (`bytes` false) or bodies.
pub fn translate(pattern: &str, bytes: bool) -> Result<String, String> {
    let cs: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '\\' => i = escape(&cs, i, &mut out, false, bytes)?.0,
            '[' => i = class(&cs, i, &mut out, bytes)?,
            '.' => {
                out.push_str(&with_surrogates(".", bytes));
                i += 1;
            }
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
    regex::RegexBuilder::new(&translate(pattern, false)?)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| one_line(&e.to_string()))
}

pub fn compile_bytes(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(&translate(pattern, true)?)
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
        assert_eq!(translate(r"[\d&&x]", false).unwrap(), r"[0-9\&\&x]");
        assert_eq!(translate(r"[][]", false).unwrap(), r"[\]\[]");
        assert_eq!(translate(r"\Q.*\E+", false).unwrap(), r"\.\*+");
        assert_eq!(translate(r"\101", false).unwrap(), r"\x{41}");
        assert!(translate(r"(a)\1", false).is_err());
        assert!(compile_str(r"[[:alpha:]]+").unwrap().is_match("ab"));
        assert!(compile_str(r"x{,3}").unwrap().is_match("x{,3}"));
        assert!(compile_str(r"\b{start}").unwrap().is_match("a{start}"));
        assert!(compile_str(r"a{2,}b{3}").unwrap().is_match("aabbb"));
        // RE2 matches a surrogate's 3 bytes with a negated class or `.`, never otherwise
        let sur = b"\xed\xa0\xbd";
        for (rx, hit) in [
            (r"[^a]", true),
            (r".", true),
            (r"\D", true),
            (r"[[:^alpha:]]", true),
            (r"[^\D]", false),
            (r"\PL", true),
            (r"\p{^L}", true),
            (r"\pL", false),
            (r"[a-z]", false),
        ] {
            let found = compile_bytes(rx).unwrap().find(sur).map(|m| m.len());
            assert_eq!(found, hit.then_some(3), "{rx}");
        }
    }
}
