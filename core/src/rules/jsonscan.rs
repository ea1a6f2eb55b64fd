//! The JSON scanner of agent/rules/redact.py: the spans of the scalar values whose key path
//! a rule selects, over the body's bytes (Python scans them decoded as Latin-1, one character
//! per byte). Keys are decoded as `json.decoder.scanstring` (strict) decodes them, surrogate
//! pairs joined, lone surrogates kept, so that key globs compare the same code points.
#![forbid(unsafe_code)]

/// Deeper bodies are hashed whole (Python's scanner recurses).
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, PartialEq)]
pub enum ScanError {
    Invalid,
    TooDeep,
}

/// (start, end, is_number) of a scalar to redact; a string's span includes its quotes.
pub type Span = (usize, usize, bool);

type R<T> = Result<T, ScanError>;

pub fn ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn at(s: &[u8], i: usize) -> R<u8> {
    s.get(i).copied().ok_or(ScanError::Invalid)
}

fn hex4(s: &[u8], i: usize) -> R<u32> {
    let h = s.get(i..i + 4).ok_or(ScanError::Invalid)?;
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + char::from(c).to_digit(16).ok_or(ScanError::Invalid)?;
    }
    Ok(v)
}

/// scanstring(s, i) with i just after the opening quote: the decoded code points and the
/// index after the closing quote.
pub fn scanstring(s: &[u8], mut i: usize) -> R<(Vec<u32>, usize)> {
    let mut out = Vec::new();
    loop {
        let c = at(s, i)?;
        match c {
            b'"' => return Ok((out, i + 1)),
            0..=0x1f => return Err(ScanError::Invalid),
            b'\\' => {
                let e = at(s, i + 1)?;
                i += 2;
                let v = match e {
                    b'"' | b'\\' | b'/' => u32::from(e),
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => 10,
                    b'r' => 13,
                    b't' => 9,
                    b'u' => {
                        // CPython: the 4 digits must not end the text
                        if i + 4 >= s.len() {
                            return Err(ScanError::Invalid);
                        }
                        let mut v = hex4(s, i)?;
                        i += 4;
                        if (0xd800..=0xdbff).contains(&v)
                            && i + 6 < s.len()
                            && s[i] == b'\\'
                            && s[i + 1] == b'u'
                        {
                            let lo = hex4(s, i + 2)?;
                            if (0xdc00..=0xdfff).contains(&lo) {
                                v = 0x10000 + (((v - 0xd800) << 10) | (lo - 0xdc00));
                                i += 6;
                            }
                        }
                        out.push(v);
                        continue;
                    }
                    _ => return Err(ScanError::Invalid),
                };
                out.push(v);
            }
            _ => {
                out.push(u32::from(c));
                i += 1;
            }
        }
    }
}

/// -?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)? at i: its end, if it matches.
fn number(s: &[u8], i: usize) -> Option<usize> {
    let digits = |mut j: usize| {
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut j = i;
    if s.get(j) == Some(&b'-') {
        j += 1;
    }
    match s.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j + 1),
        _ => return None,
    }
    if s.get(j) == Some(&b'.') && s.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j = digits(j + 1);
    }
    if matches!(s.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(s.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if s.get(k).is_some_and(u8::is_ascii_digit) {
            j = digits(k);
        }
    }
    Some(j)
}

pub struct Scanner<'a, F: Fn(&[Vec<u32>]) -> bool> {
    pub s: &'a [u8],
    pub hit: F,
    pub spans: Vec<Span>,
    path: Vec<Vec<u32>>,
}

impl<'a, F: Fn(&[Vec<u32>]) -> bool> Scanner<'a, F> {
    pub fn new(s: &'a [u8], hit: F) -> Self {
        Self {
            s,
            hit,
            spans: Vec::new(),
            path: Vec::new(),
        }
    }

    /// The value at i; its end.
    pub fn value(&mut self, mut i: usize, inside: bool, depth: usize) -> R<usize> {
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        let selected = inside || (!self.path.is_empty() && (self.hit)(&self.path));
        let s = self.s;
        let c = at(s, i)?;
        match c {
            b'{' => {
                i = ws(s, i + 1);
                if at(s, i)? == b'}' {
                    return Ok(i + 1);
                }
                loop {
                    if at(s, i)? != b'"' {
                        return Err(ScanError::Invalid);
                    }
                    let (key, after) = scanstring(s, i + 1)?;
                    i = ws(s, after);
                    if at(s, i)? != b':' {
                        return Err(ScanError::Invalid);
                    }
                    self.path.push(key);
                    let r = self.value(ws(s, i + 1), selected, depth + 1);
                    self.path.pop();
                    i = ws(s, r?);
                    match at(s, i)? {
                        b',' => i = ws(s, i + 1),
                        b'}' => return Ok(i + 1),
                        _ => return Err(ScanError::Invalid),
                    }
                }
            }
            b'[' => {
                i = ws(s, i + 1);
                if at(s, i)? == b']' {
                    return Ok(i + 1);
                }
                loop {
                    i = ws(s, self.value(i, selected, depth + 1)?);
                    match at(s, i)? {
                        b',' => i = ws(s, i + 1),
                        b']' => return Ok(i + 1),
                        _ => return Err(ScanError::Invalid),
                    }
                }
            }
            b'"' => {
                let (_, end) = scanstring(s, i + 1)?;
                if selected {
                    self.spans.push((i, end, false));
                }
                Ok(end)
            }
            _ => {
                if let Some(end) = number(s, i) {
                    if selected {
                        self.spans.push((i, end, true));
                    }
                    return Ok(end);
                }
                for lit in [&b"true"[..], b"false", b"null"] {
                    if s[i..].starts_with(lit) {
                        return Ok(i + lit.len());
                    }
                }
                Err(ScanError::Invalid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_selected_keys() {
        let body = br#"{"a": {"pw": "x\"y", "n": -12.5e3}, "pw": [1, true, "z"]}"#;
        let mut sc = Scanner::new(&body[..], |p: &[Vec<u32>]| {
            p.last()
                .is_some_and(|k| k == &[u32::from(b'p'), u32::from(b'w')])
        });
        let end = sc.value(0, false, 0).unwrap();
        assert_eq!(end, body.len());
        assert_eq!(sc.spans.len(), 3);
        assert_eq!(number(b"01", 0), Some(1));
        assert_eq!(number(b"1.e5", 0), Some(1));
        assert_eq!(number(b"1e+", 0), Some(1));
        assert_eq!(scanstring(br#"\ud83d\ude00""#, 0).unwrap().0, vec![0x1f600]);
        assert_eq!(scanstring(br#"\ud83dx""#, 0).unwrap().0, vec![0xd83d, 0x78]);
        assert!(scanstring(b"a\x01\"", 0).is_err());
    }

    #[test]
    fn too_deep() {
        let body = "[".repeat(300);
        let mut sc = Scanner::new(body.as_bytes(), |_: &[Vec<u32>]| false);
        assert_eq!(sc.value(0, false, 0), Err(ScanError::TooDeep));
    }
}
