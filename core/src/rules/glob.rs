//! Python's `fnmatch.fnmatchcase` (3.11's `translate`, bracket ranges included), over code
//! points, without building a regular expression: `*`, `?`, `[seq]`, `[!seq]`; a `[` without
//! its `]` is a literal; a backslash is a literal.
#![forbid(unsafe_code)]

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Star,
    Any,
    Never,
    Lit(u32),
    Class { neg: bool, items: Vec<(u32, u32)> },
}

#[derive(Debug, Clone)]
pub struct Glob(Vec<Tok>);

const BANG: u32 = '!' as u32;
const DASH: u32 = '-' as u32;
const CLOSE: u32 = ']' as u32;

fn find(p: &[u32], c: u32, from: usize, to: usize) -> Option<usize> {
    (from..to).find(|&k| p[k] == c)
}

/// The chunks of a bracket expression p[i..j] split at the hyphens that make ranges, with
/// empty ranges removed (fnmatch._translate).
fn chunks(p: &[u32], i0: usize, j: usize) -> Vec<Vec<u32>> {
    let stuff = &p[i0..j];
    if !stuff.contains(&DASH) {
        return vec![stuff.to_vec()];
    }
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut i = i0;
    let mut k = if p[i0] == BANG { i0 + 2 } else { i0 + 1 };
    while let Some(at) = find(p, DASH, k.min(j), j) {
        out.push(p[i..at].to_vec());
        i = at + 1;
        k = at + 3;
    }
    let chunk = p[i..j].to_vec();
    if !chunk.is_empty() {
        out.push(chunk);
    } else if let Some(last) = out.last_mut() {
        last.push(DASH);
    } else {
        out.push(vec![DASH]);
    }
    let mut k = out.len() - 1;
    while k > 0 {
        let (prev_last, first) = (out[k - 1].last().copied(), out[k].first().copied());
        if let (Some(a), Some(b)) = (prev_last, first) {
            if a > b {
                let tail: Vec<u32> = out[k][1..].to_vec();
                out[k - 1].pop();
                out[k - 1].extend(tail);
                out.remove(k);
            }
        }
        k -= 1;
    }
    out
}

fn class(chunks: Vec<Vec<u32>>) -> Tok {
    let total: usize = chunks.iter().map(Vec::len).sum::<usize>() + chunks.len() - 1;
    if total == 0 {
        return Tok::Never;
    }
    if total == 1 && chunks[0] == [BANG] {
        return Tok::Any;
    }
    let neg = chunks[0].first() == Some(&BANG);
    let mut items = Vec::new();
    for (t, ch) in chunks.iter().enumerate() {
        let body = if t == 0 && neg { &ch[1..] } else { &ch[..] };
        items.extend(body.iter().map(|&c| (c, c)));
        if let Some(next) = chunks.get(t + 1) {
            if let (Some(&a), Some(&b)) = (ch.last(), next.first()) {
                items.push((a, b));
            }
        }
    }
    Tok::Class { neg, items }
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self::from_points(&crate::rules::text::code_points(pattern))
    }

    pub fn from_points(p: &[u32]) -> Self {
        let n = p.len();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < n {
            let c = p[i];
            i += 1;
            match char::from_u32(c) {
                Some('*') => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                Some('?') => toks.push(Tok::Any),
                Some('[') => {
                    let mut j = i;
                    if j < n && p[j] == BANG {
                        j += 1;
                    }
                    if j < n && p[j] == CLOSE {
                        j += 1;
                    }
                    while j < n && p[j] != CLOSE {
                        j += 1;
                    }
                    if j >= n {
                        toks.push(Tok::Lit(c));
                    } else {
                        toks.push(class(chunks(p, i, j)));
                        i = j + 1;
                    }
                }
                _ => toks.push(Tok::Lit(c)),
            }
        }
        Glob(toks)
    }

    fn one(t: &Tok, c: u32) -> bool {
        match t {
            Tok::Any => true,
            Tok::Never | Tok::Star => false,
            Tok::Lit(l) => *l == c,
            Tok::Class { neg, items } => items.iter().any(|&(a, b)| a <= c && c <= b) != *neg,
        }
    }

    /// The whole of `text` matches (fnmatchcase).
    pub fn matches(&self, text: &[u32]) -> bool {
        let p = &self.0;
        let (mut ti, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            if pi < p.len() && p[pi] == Tok::Star {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && Self::one(&p[pi], text[ti]) {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|t| *t == Tok::Star)
    }

    pub fn matches_str(&self, text: &str) -> bool {
        self.matches(&crate::rules::text::code_points(text))
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).matches_str(t)
    }

    #[test]
    fn like_fnmatchcase() {
        assert!(m("admin.*", "admin.example.com"));
        assert!(!m("admin.*", "xadmin.example.com"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXbYbc"));
        assert!(m("[!a]x", "bx") && !m("[!a]x", "ax"));
        assert!(m("[a-c]", "b") && !m("[c-a]", "b") && m("[!c-a]", "b"));
        assert!(m("[a-]", "-") && m("[]]", "]") && m("[", "[") && m("a\\b", "a\\b"));
        assert!(m("[!-z]", "a") && !m("[!-z]", "-"));
        assert!(m("[a-b-c]", "-") && m("[a-b-c]", "c") && !m("[a-b-c]", "bb"));
        assert!(m("?", "\n"));
    }
}
