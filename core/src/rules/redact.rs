//! DLP redaction of an RRPair in place, keeping every length (agent/rules/redact.py): header
//! values by name, JSON body fields by key path, patterns in the URL, header values and
//! bodies; compressed bodies hashed whole. Each secret becomes a token of the same length
//! (token.rs), so both sides write the same bytes.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use crate::pb;
use crate::rules::config::Redact;
use crate::rules::glob::Glob;
use crate::rules::jsonscan::{self, ScanError, Scanner};
use crate::rules::patterns::Pattern;
use crate::rules::protobuf::ProtoRedactor;
use crate::rules::text::{lower_eq, py_lower, py_strip, secret_bytes};
use crate::rules::token::token;

pub struct Redactor {
    key: Vec<u8>,
    headers: BTreeSet<String>,
    json_paths: Vec<Vec<Glob>>,
    patterns: Vec<Pattern>,
    protobuf: Option<ProtoRedactor>,
}

type Hits = BTreeSet<String>;

/// Matches of one pattern in one field replaced one by one (agent/rules/redact.py
/// MAX_MATCHES): a pattern like `a+b|a` rescans the rest of the text for every match, so from
/// the next match on the rest of the field becomes one token and the pair is flagged
/// redact-capped; a field costs at most MAX_MATCHES + 1 searches.
pub const MAX_MATCHES: usize = 256;
pub const CAPPED_FLAG: &str = "redact-capped";

impl Redactor {
    pub fn new(cfg: &Redact, key: &[u8]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for n in &cfg.patterns {
            patterns.push(Pattern::builtin(n)?);
        }
        for (name, rx) in &cfg.custom {
            patterns
                .push(Pattern::custom(name, rx).map_err(|e| format!("redact.custom {name}: {e}"))?);
        }
        Ok(Self {
            key: match &cfg.hash_key {
                Some(k) => k.as_bytes().to_vec(),
                None => key.to_vec(),
            },
            headers: cfg
                .headers
                .iter()
                .map(|h| py_lower(h).into_owned())
                .collect(),
            json_paths: cfg
                .json_fields
                .iter()
                .map(|f| f.split('.').map(Glob::new).collect())
                .collect(),
            patterns,
            protobuf: match &cfg.protobuf_descriptors {
                Some(d) if !cfg.protobuf_fields.is_empty() => {
                    Some(ProtoRedactor::new(d, &cfg.protobuf_fields)?)
                }
                _ => None,
            },
        })
    }

    /// Only header names to redact: nothing else can change an RRPair.
    pub fn headers_only(&self) -> bool {
        self.json_paths.is_empty() && self.patterns.is_empty() && self.protobuf.is_none()
    }

    pub fn is_redacted_header(&self, name: &str) -> bool {
        if name.is_ascii() {
            self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
        } else {
            self.headers.contains(&*py_lower(name))
        }
    }

    /// The token of a text: as many characters as it has.
    fn token_str(&self, s: &str) -> String {
        token(&self.key, &secret_bytes(s), s.chars().count(), false)
    }

    fn replace_str(&self, text: &str, hits: &mut Hits) -> Option<String> {
        let mut cur: Option<String> = None;
        for pat in &self.patterns {
            let t = cur.as_deref().unwrap_or(text);
            let spans = pat.spans_str(t, MAX_MATCHES + 1);
            if spans.is_empty() {
                continue;
            }
            let mut out = String::with_capacity(t.len());
            let mut last = 0;
            for (n, (a, b)) in spans.into_iter().enumerate() {
                if n == MAX_MATCHES {
                    out.push_str(&self.token_str(&t[last..]));
                    last = t.len();
                    hits.insert("redact:capped".into());
                    break;
                }
                out.push_str(&t[last..a]);
                out.push_str(&self.token_str(&t[a..b]));
                last = b;
            }
            out.push_str(&t[last..]);
            hits.insert(format!("redact:{}", pat.name));
            cur = Some(out);
        }
        cur
    }

    fn replace_bytes(&self, text: Vec<u8>, hits: &mut Hits) -> Vec<u8> {
        let mut cur = text;
        for pat in &self.patterns {
            let spans = pat.spans_bytes(&cur, MAX_MATCHES + 1);
            if spans.is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(cur.len());
            let mut last = 0;
            for (n, (a, b)) in spans.into_iter().enumerate() {
                if n == MAX_MATCHES {
                    out.extend(token(&self.key, &cur[last..], cur.len() - last, false).bytes());
                    last = cur.len();
                    hits.insert("redact:capped".into());
                    break;
                }
                out.extend_from_slice(&cur[last..a]);
                out.extend(token(&self.key, &cur[a..b], b - a, false).bytes());
                last = b;
            }
            out.extend_from_slice(&cur[last..]);
            hits.insert(format!("redact:{}", pat.name));
            cur = out;
        }
        cur
    }

    fn path_hit(&self, path: &[Vec<u32>]) -> bool {
        self.json_paths.iter().any(|want| {
            let n = want.len();
            n <= path.len()
                && (0..=path.len() - n)
                    .any(|start| (0..n).all(|i| want[i].matches(&path[start + i])))
        })
    }

    fn redact_json(&self, text: Vec<u8>, hits: &mut Hits) -> Vec<u8> {
        let mut sc = Scanner::new(&text, |p: &[Vec<u32>]| self.path_hit(p));
        let end = match sc.value(jsonscan::ws(&text, 0), false, 0) {
            Ok(end) => end,
            Err(ScanError::TooDeep) => {
                hits.insert("redact:json-fields".into());
                return token(&self.key, &text, text.len(), false).into_bytes();
            }
            Err(ScanError::Invalid) => return text,
        };
        let spans = std::mem::take(&mut sc.spans);
        if jsonscan::ws(&text, end) != text.len() || spans.is_empty() {
            return text;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut last = 0;
        for (start, stop, is_num) in spans {
            out.extend_from_slice(&text[last..start]);
            if is_num {
                let v = &text[start..stop];
                let sign: &[u8] = if v.starts_with(b"-") { b"-" } else { b"" };
                let tok = token(&self.key, v, v.len() - sign.len(), true);
                out.extend_from_slice(sign);
                if tok.starts_with('0') && tok.len() > 1 {
                    out.push(b'1');
                    out.extend(tok[1..].bytes());
                } else {
                    out.extend(tok.bytes());
                }
            } else {
                let inner = &text[start + 1..stop - 1];
                out.push(b'"');
                out.extend(token(&self.key, inner, inner.len(), false).bytes());
                out.push(b'"');
            }
            last = stop;
        }
        out.extend_from_slice(&text[last..]);
        hits.insert("redact:json-fields".into());
        out
    }

    fn headers(&self, headers: &mut [pb::Header], hits: &mut Hits) {
        for h in headers {
            if self.is_redacted_header(&h.name) {
                if !h.value.is_empty() {
                    h.value = self.token_str(&h.value);
                    hits.insert("redact:headers".into());
                }
            } else if !self.patterns.is_empty() {
                if let Some(v) = self.replace_str(&h.value, hits) {
                    h.value = v;
                }
            }
        }
    }

    fn body(&self, body: &mut Vec<u8>, headers: &[pb::Header], hits: &mut Hits) {
        if body.is_empty() {
            return;
        }
        let first = |name: &str| {
            headers
                .iter()
                .find(|h| lower_eq(&h.name, name))
                .map_or("", |h| h.value.as_str())
        };
        let encoding = py_lower(py_strip(first("content-encoding")));
        if !(encoding.is_empty() || encoding == "identity") {
            hits.insert("redact:encoded-body".into());
            *body = token(&self.key, body, body.len(), false).into_bytes();
            return;
        }
        let mut b = std::mem::take(body);
        if !self.json_paths.is_empty() {
            let lead = b
                .iter()
                .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'));
            if py_lower(first("content-type")).contains("json") || matches!(lead, Some(b'{' | b'['))
            {
                b = self.redact_json(b, hits);
            }
        }
        if !self.patterns.is_empty() {
            b = self.replace_bytes(b, hits);
        }
        *body = b;
    }

    /// Redact `pair` in place; the names of the redaction rules that changed something.
    pub fn redact(&self, pair: &mut pb::RrPair) -> Hits {
        let mut hits = Hits::new();
        if let Some(pr) = &self.protobuf {
            if pr.redact(pair, &self.key) {
                hits.insert("redact:protobuf".into());
            }
        }
        if let Some(ex) = pair.http.as_mut() {
            if let Some(req) = ex.req.as_mut() {
                if !self.patterns.is_empty() {
                    if let Some(u) = self.replace_str(&req.url, &mut hits) {
                        req.url = u;
                    }
                }
                self.headers(&mut req.headers, &mut hits);
                self.headers(&mut req.trailers, &mut hits);
                self.body(&mut req.body, &req.headers, &mut hits);
            }
            if let Some(res) = ex.res.as_mut() {
                self.headers(&mut res.headers, &mut hits);
                self.headers(&mut res.trailers, &mut hits);
                self.body(&mut res.body, &res.headers, &mut hits);
            }
        }
        if !hits.is_empty() && !pair.flags.iter().any(|f| f == "redacted") {
            pair.flags.push("redacted".into());
        }
        if hits.contains("redact:capped") && !pair.flags.iter().any(|f| f == CAPPED_FLAG) {
            pair.flags.push(CAPPED_FLAG.into());
        }
        hits
    }
}
