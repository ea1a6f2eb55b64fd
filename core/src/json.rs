//! The RRPair's proto3 JSON mapping, byte for byte as nodetap/rrpair_json.py writes it with
//! orjson, in its jq-friendly form (lowerCamelCase names, 64-bit integers as JSON numbers,
//! bytes as base64, enums by name, RFC 3339 timestamps, default values left out except
//! bodySize, which every request and response carries, no spaces).
#![forbid(unsafe_code)]

use base64::Engine;
use std::fmt::Write;

use crate::pb::{Endpoint, GrpcCall, Header, Meta, RrPair};

fn string(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    // most strings (names, header values, addresses) need no escape: one pass without an
    // early exit (vectorized), then a single copy
    if !b.iter().fold(false, |acc, &c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    }) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes `{"k":v,...}` with a comma before every key but the first.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &'static str) -> &mut String {
        // the field names are literals that need no escape
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
        self.out
    }
    /// A key from the data (a label's name): escaped.
    fn data_key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(':');
        self.out
    }
    fn str(&mut self, k: &'static str, v: &str) {
        if !v.is_empty() {
            let o = self.key(k);
            string(o, v);
        }
    }
    fn num(&mut self, k: &'static str, v: i64) {
        if v != 0 {
            let o = self.key(k);
            o.push_str(itoa::Buffer::new().format(v));
        }
    }
    /// Always written, also when 0 (bodySize: jq sees a number in every message).
    fn num_always(&mut self, k: &'static str, v: i64) {
        let o = self.key(k);
        o.push_str(itoa::Buffer::new().format(v));
    }
    fn close(self) {
        self.out.push('}');
    }
}

fn headers(out: &mut String, hs: &[Header]) {
    out.push('[');
    for (i, h) in hs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut o = Obj::open(out);
        o.str("name", &h.name);
        o.str("value", &h.value);
        o.close();
    }
    out.push(']');
}

fn endpoint(out: &mut String, e: &Endpoint) {
    let mut o = Obj::open(out);
    o.str("ip", &e.ip);
    o.num("port", i64::from(e.port));
    o.close();
}

fn meta(out: &mut String, m: &Meta) {
    let mut o = Obj::open(out);
    o.str("node", &m.node);
    o.num("pid", i64::from(m.pid));
    o.str("comm", &m.comm);
    o.str("containerId", &m.container_id);
    o.str("namespace", &m.namespace);
    o.str("pod", &m.pod);
    o.str("source", &m.source);
    o.str("agentVersion", &m.agent_version);
    o.str("cluster", &m.cluster);
    o.str("container", &m.container);
    o.str("workload", &m.workload);
    if !m.labels.is_empty() {
        let out = o.key("labels");
        let mut l = Obj::open(out);
        for (k, v) in &m.labels {
            let x = l.data_key(k);
            string(x, v);
        }
        l.close();
    }
    if m.conn_id != 0 {
        let out = o.key("connId");
        out.push_str(itoa::Buffer::new().format(m.conn_id));
    }
    o.close();
}

#[allow(clippy::too_many_arguments)]
fn message(
    out: &mut String,
    first: (&'static str, Option<i64>, &str),
    second: (&'static str, &str),
    version: &str,
    hs: &[Header],
    body: &[u8],
    body_size: i64,
    trailers: &[Header],
) {
    let mut o = Obj::open(out);
    match first.1 {
        Some(n) => o.num(first.0, n),
        None => o.str(first.0, first.2),
    }
    o.str(second.0, second.1);
    o.str("version", version);
    if !hs.is_empty() {
        headers(o.key("headers"), hs);
    }
    if !body.is_empty() {
        let b = base64::engine::general_purpose::STANDARD.encode(body);
        string(o.key("body"), &b);
    }
    o.num_always("bodySize", body_size);
    if !trailers.is_empty() {
        headers(o.key("trailers"), trailers);
    }
    o.close();
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A Timestamp as proto3 JSON writes it: RFC 3339 UTC with 0, 3, 6 or 9 fraction digits.
pub fn timestamp_text(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let mut t = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if nanos == 0 {
    } else if nanos % 1_000_000 == 0 {
        let _ = write!(t, ".{:03}", nanos / 1_000_000);
    } else if nanos % 1000 == 0 {
        let _ = write!(t, ".{:06}", nanos / 1000);
    } else {
        let _ = write!(t, ".{nanos:09}");
    }
    t.push('Z');
    t
}

fn direction_name(d: i32) -> Option<&'static str> {
    match d {
        1 => Some("INBOUND"),
        2 => Some("OUTBOUND"),
        3 => Some("NETWORK"),
        _ => None,
    }
}

/// One RRPair as one JSON line (no newline), as rrpair_json.dumps writes it.
pub fn dumps(p: &RrPair) -> String {
    let mut out = String::with_capacity(1024);
    let mut o = Obj::open(&mut out);
    o.str("id", &p.id);
    if let Some(ts) = &p.ts {
        let t = timestamp_text(ts.seconds, ts.nanos);
        string(o.key("ts"), &t);
    }
    o.num("durationUs", p.duration_us);
    o.str("l7protocol", &p.l7protocol);
    if p.direction != 0 {
        match direction_name(p.direction) {
            Some(n) => string(o.key("direction"), n),
            None => {
                let _ = write!(o.key("direction"), "{}", p.direction);
            }
        }
    }
    if let Some(c) = &p.client {
        endpoint(o.key("client"), c);
    }
    if let Some(s) = &p.server {
        endpoint(o.key("server"), s);
    }
    if let Some(m) = &p.meta {
        meta(o.key("meta"), m);
    }
    if !p.flags.is_empty() {
        let out = o.key("flags");
        out.push('[');
        for (i, f) in p.flags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, f);
        }
        out.push(']');
    }
    o.num("ttfbUs", p.ttfb_us);
    if let Some(h) = &p.http {
        let out = o.key("http");
        let mut ho = Obj::open(out);
        if let Some(r) = &h.req {
            message(
                ho.key("req"),
                ("method", None, &r.method),
                ("url", &r.url),
                &r.version,
                &r.headers,
                &r.body,
                r.body_size,
                &r.trailers,
            );
        }
        if let Some(r) = &h.res {
            message(
                ho.key("res"),
                ("statusCode", Some(i64::from(r.status_code)), ""),
                ("statusMessage", &r.status_message),
                &r.version,
                &r.headers,
                &r.body,
                r.body_size,
                &r.trailers,
            );
        }
        ho.close();
    }
    if let Some(g) = &p.grpc {
        grpc(o.key("grpc"), g);
    }
    o.close();
    out
}

fn base64_list(out: &mut String, items: &[Vec<u8>]) {
    out.push('[');
    for (i, m) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, &base64::engine::general_purpose::STANDARD.encode(m));
    }
    out.push(']');
}

/// The `grpc` field (l7protocol "grpc"): messages as base64 strings.
fn grpc(out: &mut String, g: &GrpcCall) {
    let mut o = Obj::open(out);
    o.str("service", &g.service);
    o.str("method", &g.method);
    o.num("status", i64::from(g.status));
    o.str("statusMessage", &g.status_message);
    o.str("encoding", &g.encoding);
    if !g.request_messages.is_empty() {
        base64_list(o.key("requestMessages"), &g.request_messages);
    }
    if !g.response_messages.is_empty() {
        base64_list(o.key("responseMessages"), &g.response_messages);
    }
    o.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_text(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp_text(1_700_000_000, 5_000_000),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(
            timestamp_text(951_782_400, 1000),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(timestamp_text(1, 1), "1970-01-01T00:00:01.000000001Z");
    }
}
