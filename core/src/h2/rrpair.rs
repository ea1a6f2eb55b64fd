//! One RRPair for one HTTP/2 stream: l7protocol "http2", or "grpc" with the call's
//! messages in `grpc`. Headers are kept as on the wire, pseudo-headers (`:method`,
//! `:scheme`, `:authority`, `:path`, `:status`) included, in wire order; method, url and
//! status code are also set from them. A gRPC call's bodies are not repeated in `http`
//! (their sizes are): its messages are in `grpc`.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use super::conn::{Headers, Msg, Stream};
use super::grpc;
use crate::pb;

fn header<'a>(hs: &'a Headers, name: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn pb_headers(hs: Headers) -> Vec<pb::Header> {
    hs.into_iter()
        .map(|(name, value)| pb::Header { name, value })
        .collect()
}

/// gRPC status for a stream reset without one (gRPC's PROTOCOL-HTTP2 "Errors" mapping).
fn status_of_reset(code: u32) -> i32 {
    match code {
        8 => 1,  // CANCEL -> CANCELLED
        7 => 14, // REFUSED_STREAM -> UNAVAILABLE
        11 => 8, // ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED
        12 => 7, // INADEQUATE_SECURITY -> PERMISSION_DENIED
        _ => 13, // INTERNAL
    }
}

fn call(st: &Stream, max_body: u64, flags: &mut BTreeSet<&'static str>) -> pb::GrpcCall {
    let path = header(&st.req.headers, ":path").unwrap_or("");
    let (service, method) = grpc::split_path(path);
    let req_enc = header(&st.req.headers, "grpc-encoding").unwrap_or("identity");
    let res_enc = header(&st.res.headers, "grpc-encoding").unwrap_or("identity");
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let request_messages = grpc::messages(&st.req.body, req_enc, st.req.cut(), limit, flags);
    let response_messages = grpc::messages(&st.res.body, res_enc, st.res.cut(), limit, flags);
    // trailers, or the headers of a trailers-only response
    let from = |n: &str| header(&st.res.trailers, n).or_else(|| header(&st.res.headers, n));
    let status = match from("grpc-status").and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(s) => s,
        None => match st.reset {
            Some(code) => status_of_reset(code),
            None => {
                flags.insert("grpc_no_status");
                -1
            }
        },
    };
    let encoding = match (req_enc, res_enc) {
        ("identity", r) => r,
        (q, _) => q,
    };
    pb::GrpcCall {
        service,
        method,
        status,
        status_message: from("grpc-message")
            .map(grpc::percent_decode)
            .unwrap_or_default(),
        encoding: if encoding == "identity" {
            String::new()
        } else {
            encoding.to_string()
        },
        request_messages,
        response_messages,
    }
}

fn request(m: Msg, keep_body: bool) -> pb::HttpRequest {
    pb::HttpRequest {
        method: header(&m.headers, ":method").unwrap_or("").to_string(),
        url: header(&m.headers, ":path").unwrap_or("").to_string(),
        version: "HTTP/2".into(),
        headers: pb_headers(m.headers),
        body: if keep_body { m.body } else { Vec::new() },
        body_size: m.body_size,
        trailers: pb_headers(m.trailers),
    }
}

fn response(m: Msg, keep_body: bool) -> pb::HttpResponse {
    pb::HttpResponse {
        status_code: header(&m.headers, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        status_message: String::new(),
        version: "HTTP/2".into(),
        headers: pb_headers(m.headers),
        body: if keep_body { m.body } else { Vec::new() },
        body_size: m.body_size,
        trailers: pb_headers(m.trailers),
    }
}

/// The RRPair of one stream, from the connection's template.
pub fn build(template: &pb::RrPair, mut st: Stream, id: String, max_body: u64) -> pb::RrPair {
    let mut pair = template.clone();
    pair.id = id;
    for e in [&mut pair.client, &mut pair.server] {
        if e.is_none() {
            *e = Some(pb::Endpoint::default());
        }
    }
    if pair.meta.is_none() {
        pair.meta = Some(pb::Meta::default());
    }
    let start = [&st.req, &st.res]
        .iter()
        .filter(|m| m.seen)
        .map(|m| m.start_ts_ns)
        .next()
        .unwrap_or(0);
    if start != 0 {
        pair.ts = Some(pb::Timestamp {
            seconds: (start / 1_000_000_000) as i64,
            nanos: (start % 1_000_000_000) as i32,
        });
        let us = |a: u64| (a.saturating_sub(start) / 1000) as i64;
        if st.res.seen {
            pair.duration_us = us(st.res.end_ts_ns);
            pair.ttfb_us = us(st.res.start_ts_ns);
        } else {
            pair.duration_us = us(st.req.end_ts_ns);
        }
    }
    if !st.req.seen {
        st.flags.insert("no_request");
    }
    let content_type =
        header(&st.req.headers, "content-type").or_else(|| header(&st.res.headers, "content-type"));
    let is_grpc = grpc::is_grpc(content_type);
    let mut flags = std::mem::take(&mut st.flags);
    if is_grpc {
        pair.l7protocol = "grpc".into();
        pair.grpc = Some(call(&st, max_body, &mut flags));
        if st.req.cut() || st.res.cut() {
            flags.insert("truncated");
        }
    } else {
        pair.l7protocol = "http2".into();
    }
    let mut all: BTreeSet<String> = flags.iter().map(|f| (*f).to_string()).collect();
    all.extend(template.flags.iter().cloned());
    pair.flags = all.into_iter().collect();
    let res = st
        .res
        .seen
        .then(|| response(std::mem::take(&mut st.res), !is_grpc));
    let req = st
        .req
        .seen
        .then(|| request(std::mem::take(&mut st.req), !is_grpc));
    pair.http = Some(pb::HttpExchange { req, res });
    pair
}
