//! Message heads: the start line, header fields (httparse, then nodetap's own field
//! grammar), and the early rejection of a head that is not complete yet.

use super::framing::semantics;
use super::{find_crlf, latin1, Expect, Headers, Invalid, Message, Out, Parser};

impl Parser {
    /// A header block not complete yet: reject it now if what came already is invalid
    /// (head.py _check_partial).
    pub(super) fn check_partial(&self, pos: usize) -> Result<(), Invalid> {
        let buf = &self.buf[pos..];
        let Some(eol) = find_crlf(buf) else {
            let line = buf;
            if memchr::memchr(b'\n', line).is_some()
                || memchr::memchr(b'\r', &line[..line.len().saturating_sub(1)]).is_some()
            {
                return Err(Invalid);
            }
            return self.check_prefix(line);
        };
        let mut msg = Message::default();
        if self.is_request {
            parse_request_line(&buf[..eol], &mut msg)?;
        } else {
            parse_status_line(&buf[..eol], &mut msg)?;
        }
        if matches!(buf.get(eol + 2), Some(b' ' | b'\t')) {
            return Err(Invalid);
        }
        let last = memchr::memmem::rfind(&buf[eol + 2..], b"\r\n").map(|i| i + eol + 2);
        if let Some(last) = last {
            let h = fields(&buf[eol + 2..last + 2])?;
            semantics(&h, &msg.version)?;
        }
        let tail = &buf[last.unwrap_or(eol) + 2..];
        if memchr::memchr(b'\n', tail).is_some()
            || memchr::memchr(b'\r', &tail[..tail.len().saturating_sub(1)]).is_some()
        {
            return Err(Invalid);
        }
        Ok(())
    }

    pub(super) fn check_prefix(&self, line: &[u8]) -> Result<(), Invalid> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.is_request {
            let parts: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
            let method = parts[0];
            if method.len() > 32 || !method.iter().all(|&c| is_tchar(c)) {
                return Err(Invalid);
            }
            if parts.len() > 3
                || (parts.len() == 3
                    && !(b"HTTP/1.1".starts_with(parts[2]) || b"HTTP/1.0".starts_with(parts[2])))
            {
                return Err(Invalid);
            }
        } else {
            let k = line.len().min(7);
            if line[..k] != b"HTTP/1."[..k] {
                return Err(Invalid);
            }
        }
        Ok(())
    }

    /// The head `buf[start..end]` (through its CRLF CRLF): the message, its framing.
    pub(super) fn head(&mut self, start: usize, end: usize, out: &mut Out) -> Result<usize, usize> {
        let eol = find_crlf(&self.buf[start..end]).map_or(end, |i| start + i);
        let mut msg = Message::default();
        let line = &self.buf[start..eol];
        if self.is_request {
            parse_request_line(line, &mut msg).map_err(|_| start)?;
        } else {
            parse_status_line(line, &mut msg).map_err(|_| start)?;
        }
        self.seen = true;
        self.announced = false;
        msg.start_ts_ns = self.ts_at(start);
        if self.gap_next {
            msg.flags.insert("gap");
            self.gap_next = false;
        }
        self.room = self.max_body as i64;
        self.last_ts = self.ts;
        let block = &self.buf[start..end];
        let headers = match httparse_fields(block, self.is_request) {
            Some(h) => Ok(h),
            None => fields(&block[eol - start + 2..block.len() - 2]),
        };
        let sem = match headers {
            Ok(h) => {
                msg.headers = h;
                semantics(&msg.headers, &msg.version)
            }
            Err(e) => Err(e),
        };
        let res = if self.is_request {
            self.frame_request(msg, sem, out)
        } else {
            self.frame_response(msg, sem, end, out)
        };
        res.map(|()| end).map_err(|_| end - 1)
    }

    pub(super) fn announce(&mut self, msg: &Message, upgrade: bool) {
        if !self.announced {
            self.announced = true;
            self.heads.push(Expect {
                method: msg.method.clone(),
                asks_upgrade: upgrade,
                start_ts_ns: msg.start_ts_ns,
            });
        }
    }
}

pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

pub(super) fn version_of(b: &[u8]) -> Result<&'static str, Invalid> {
    match b {
        b"HTTP/1.1" => Ok("HTTP/1.1"),
        b"HTTP/1.0" => Ok("HTTP/1.0"),
        _ => Err(Invalid),
    }
}

/// `method SP target SP HTTP/1.x` (syntax.py REQ_LINE).
pub(super) fn parse_request_line(line: &[u8], msg: &mut Message) -> Result<(), Invalid> {
    let mut parts = line.split(|&c| c == b' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid);
    };
    if m.is_empty() || !m.iter().all(|&c| is_tchar(c)) {
        return Err(Invalid);
    }
    if u.is_empty() || !u.iter().all(|&c| (0x21..=0x7e).contains(&c) || c >= 0x80) {
        return Err(Invalid);
    }
    msg.version = version_of(v)?.to_string();
    msg.method = latin1(m);
    msg.url = latin1(u);
    Ok(())
}

/// `HTTP/1.x SP 3DIGIT [SP reason]` (syntax.py RESP_LINE).
pub(super) fn parse_status_line(line: &[u8], msg: &mut Message) -> Result<(), Invalid> {
    if line.len() < 12 || line[8] != b' ' {
        return Err(Invalid);
    }
    msg.version = version_of(&line[..8])?.to_string();
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(Invalid);
    }
    msg.status_code = code.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0'));
    match line.get(12) {
        None => {}
        Some(b' ') => msg.status_message = latin1(&line[13..]),
        Some(_) => return Err(Invalid),
    }
    Ok(())
}

/// The header lines of a head block (start line, headers, final CRLF CRLF) read with
/// httparse; values are extended to their CRLF (nodetap keeps trailing whitespace). None
/// when httparse refuses the block: nodetap's own field grammar decides then.
pub(super) fn httparse_fields(block: &[u8], is_request: bool) -> Option<Headers> {
    let mut n = 64;
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; n];
        let res = if is_request {
            httparse::Request::new(&mut headers)
                .parse(block)
                .map(|s| s.is_complete())
        } else {
            httparse::Response::new(&mut headers)
                .parse(block)
                .map(|s| s.is_complete())
        };
        match res {
            Ok(true) => {}
            Err(httparse::Error::TooManyHeaders) if n < 4096 => {
                n *= 4;
                continue;
            }
            _ => return None,
        }
        let base = block.as_ptr() as usize;
        let mut out = Vec::new();
        for h in headers.iter().take_while(|h| !h.name.is_empty()) {
            if h.value.is_empty() {
                out.push((h.name.to_string(), String::new()));
                continue;
            }
            let at = (h.value.as_ptr() as usize).checked_sub(base)?;
            let eol = find_crlf(block.get(at..)?)? + at;
            let v = &block[at..eol];
            if v.iter()
                .any(|&c| c != b'\t' && !(0x20..=0x7e).contains(&c) && c < 0x80)
            {
                return None;
            }
            out.push((h.name.to_string(), latin1(v)));
        }
        return Some(out);
    }
}

/// Header (or trailer) lines, each ending in CRLF (syntax.py FIELD).
pub(super) fn fields(block: &[u8]) -> Result<Headers, Invalid> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let eol = find_crlf(&block[pos..]).ok_or(Invalid)? + pos;
        let line = &block[pos..eol];
        let colon = memchr::memchr(b':', line).ok_or(Invalid)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Err(Invalid);
        }
        let mut v = &line[colon + 1..];
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        if !v
            .iter()
            .all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c) || c >= 0x80)
        {
            return Err(Invalid);
        }
        out.push((latin1(name), latin1(v)));
        pos = eol + 2;
    }
    Ok(out)
}
