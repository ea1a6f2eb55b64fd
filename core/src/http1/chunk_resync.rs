//! Finding a chunked body's framing again after a gap swallowed part of it (the mirror of
//! agent/protocols/http1/chunk_resync.py, byte for byte).
//!
//! After a hole, the next chunk-size line is somewhere ahead, after the rest of a chunk
//! whose size was lost. A chunk-size line (hex digits, extensions, CRLF) right after a CRLF
//! is only a candidate: chunk data can hold such bytes. A candidate is believed once the
//! framing it implies holds: its data ends exactly at a CRLF followed by another whole
//! chunk-size line, or it is the last chunk ("0") followed by an empty line or a trailer
//! block that parses. Proof is bounded: a candidate whose proof would need more than
//! `PROOF_MAX` bytes is not believed (a later chunk boundary will be), so what the parser
//! keeps while it waits stays bounded too.
//!
//! Sans-IO: `find_chunk_boundary` looks at a buffer and says where framing resumes.

use std::sync::OnceLock;

use super::head::fields;
use super::{MAX_CHUNK_LINE, MAX_HEADER_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proof {
    /// Framing resumes at the position (the start of a chunk-size line).
    Found,
    /// A candidate at the position needs more bytes to be proven or refuted.
    More,
    /// No candidate.
    Refuted,
}

/// Bytes from a candidate to the end of its proof, at most.
const PROOF_MAX: u64 = 1 << 20;

/// What may follow a message's end: a request line, a status line (or the start of one).
fn next_message() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::bytes::Regex::new(
            r"(?-u)\A(?:[A-Z][A-Z0-9_-]{0,31}(?: |\z)|HTTP/1\.|H(?:T(?:T(?:P(?:/(?:1)?)?)?)?)?\z|\r\n)",
        )
        .expect("NEXT_MESSAGE compiles")
    })
}

/// Where `needle` first lies wholly inside `buf[from..to]` (Python's `bytes.find`).
fn find_in(buf: &[u8], needle: &[u8], from: usize, to: usize) -> Option<usize> {
    let to = to.min(buf.len());
    if from >= to {
        return None;
    }
    memchr::memmem::find(&buf[from..to], needle).map(|i| from + i)
}

fn split_ext(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b';', line) {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    }
}

/// The size on a chunk-size line (without its CRLF), or None if it is not one.
pub(super) fn candidate_size(line: &[u8]) -> Option<u64> {
    let (size, ext) = split_ext(line);
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    if ext.is_some_and(|e| e.is_empty() || e.contains(&b'\n') || e.contains(&b'\r')) {
        return None;
    }
    Some(size.iter().fold(0u64, |v, &c| {
        v << 4 | u64::from((c as char).to_digit(16).unwrap_or(0))
    }))
}

/// Whether `part` (no CRLF yet) can be the beginning of a chunk-size line.
fn may_begin(part: &[u8]) -> bool {
    let part = part.strip_suffix(b"\r").unwrap_or(part);
    let (size, ext) = split_ext(part);
    if size.is_empty() {
        return ext.is_none();
    }
    size.len() <= 16
        && size.iter().all(u8::is_ascii_hexdigit)
        && !ext.is_some_and(|e| e.contains(&b'\r'))
}

/// A last chunk ending at `end` is believed if the stream pauses there (the end of what was
/// written) or the next message begins; chunk data that merely contains CRLF "0" CRLF CRLF
/// goes on with other bytes.
fn ends_message(buf: &[u8], end: usize) -> Proof {
    if end == buf.len() || next_message().is_match(&buf[end..]) {
        Proof::Found
    } else {
        Proof::Refuted
    }
}

/// Whether the chunk-size line that would start at `at` holds up: Found, More (the proof
/// runs past the end of `buf`) or Refuted.
pub(super) fn prove(buf: &[u8], at: usize) -> Proof {
    let n = buf.len();
    let Some(eol) = find_in(buf, b"\r\n", at, at + MAX_CHUNK_LINE) else {
        return if n.saturating_sub(at) < MAX_CHUNK_LINE && may_begin(&buf[at.min(n)..]) {
            Proof::More
        } else {
            Proof::Refuted
        };
    };
    let Some(size) = candidate_size(&buf[at..eol]) else {
        return Proof::Refuted;
    };
    let after = eol + 2;
    if size == 0 {
        // the last chunk: an empty line, or trailer fields then one
        if n - after < 2 {
            return Proof::More;
        }
        if &buf[after..after + 2] == b"\r\n" {
            return ends_message(buf, after + 2);
        }
        return match find_in(buf, b"\r\n\r\n", after, after + MAX_HEADER_BYTES) {
            None if n - after < MAX_HEADER_BYTES => Proof::More,
            None => Proof::Refuted,
            Some(end) if fields(&buf[after..end + 2]).is_ok() => ends_message(buf, end + 4),
            Some(_) => Proof::Refuted,
        };
    }
    let span = ((after - at) as u64).saturating_add(size).saturating_add(2);
    if span > PROOF_MAX {
        return Proof::Refuted;
    }
    let data_end = after + size as usize;
    if data_end + 2 > n {
        return Proof::More;
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        return Proof::Refuted;
    }
    let nxt = data_end + 2;
    match find_in(buf, b"\r\n", nxt, nxt + MAX_CHUNK_LINE) {
        None if n - nxt >= MAX_CHUNK_LINE => Proof::Refuted,
        None if may_begin(&buf[nxt..]) => Proof::More,
        None => Proof::Refuted,
        Some(eol) if candidate_size(&buf[nxt..eol]).is_some() => Proof::Found,
        Some(_) => Proof::Refuted,
    }
}

/// The first proven chunk-size line starting in `buf[pos..limit]`: (Found, where); else the
/// first candidate still waiting for bytes: (More, where); else (Refuted, 0).
///
/// Candidates start right after a CRLF, and at `pos` itself when `at_hole` (the hole ended
/// there: it may have ended with a chunk's CRLF). A candidate proven within the buffer wins
/// over an earlier one still waiting (chunk data can begin with hex digits), and so does a
/// start line at `limit` (< the buffer's length).
pub(super) fn find_chunk_boundary(
    buf: &[u8],
    pos: usize,
    limit: usize,
    at_hole: bool,
) -> (Proof, usize) {
    let mut waiting = None;
    if at_hole && pos < limit {
        match prove(buf, pos) {
            Proof::Found => return (Proof::Found, pos),
            Proof::More => waiting = Some(pos),
            Proof::Refuted => {}
        }
    }
    let n = buf.len();
    let mut i = find_in(buf, b"\r\n", pos, limit);
    while let Some(crlf) = i {
        let at = crlf + 2;
        if at >= limit {
            if at == n && limit == n && waiting.is_none() {
                waiting = Some(at); // a CRLF at the very end: a candidate may follow
            }
            break;
        }
        if buf[at].is_ascii_hexdigit() {
            match prove(buf, at) {
                Proof::Found => return (Proof::Found, at),
                Proof::More if waiting.is_none() => waiting = Some(at),
                _ => {}
            }
        }
        i = find_in(buf, b"\r\n", at, limit);
    }
    // a start line at `limit` ends the wait: a candidate whose proof would run past it is
    // chunk data that looks like a size (hex text is common), rarer than a message start
    match waiting {
        Some(w) if limit == n => (Proof::More, w),
        _ => (Proof::Refuted, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::{find_chunk_boundary, prove, Proof::*};

    /// The cases of tests/protocols/http1/test_chunk_resync.py test_prove_and_find.
    #[test]
    fn prove_and_find() {
        assert_eq!(prove(b"5\r\nabcde\r\n3\r\n", 0), Found);
        assert_eq!(prove(b"5\r\nabcde\r\n3", 0), More);
        assert_eq!(prove(b"5\r\nabcdeXX3\r\n", 0), Refuted);
        assert_eq!(prove(b"5\r\nab", 0), More);
        assert_eq!(prove(b"zz\r\n", 0), Refuted);
        assert_eq!(prove(b"0\r\n\r\n", 0), Found);
        assert_eq!(prove(b"0\r\n\r\nHTTP/1.1 200 OK\r\n", 0), Found);
        assert_eq!(prove(b"0\r\n\r\nmore data", 0), Refuted);
        assert_eq!(prove(b"0\r\nX-T: 1\r\n\r\n", 0), Found);
        assert_eq!(prove(b"0\r\nnot a field\r\n\r\n", 0), Refuted);
        assert_eq!(prove(b"200000\r\n", 0), Refuted); // proof longer than the bound
        assert_eq!(prove(b"ffffffffffffffff\r\n", 0), Refuted);
        let b = b"junk\r\n5\r\nabcde\r\n0\r\n\r\n";
        assert_eq!(find_chunk_boundary(b, 0, 24, false), (Found, 6));
        let b = b"5\r\nabcde\r\n0\r\n\r\n";
        assert_eq!(find_chunk_boundary(b, 0, 15, true), (Found, 0));
        assert_eq!(find_chunk_boundary(b, 0, 15, false), (Found, 10));
        let b = b"5\r\nabcde\r\n0\r\n";
        assert_eq!(find_chunk_boundary(b, 0, 13, false), (More, 3));
        assert_eq!(find_chunk_boundary(b"junk\r\n", 0, 6, false), (More, 6));
        assert_eq!(find_chunk_boundary(b"junk", 0, 4, false), (Refuted, 0));
    }
}
