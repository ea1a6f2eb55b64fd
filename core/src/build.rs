//! One RRPair of one exchange and its connection's template (agent/rrpairs.py
//! build_http_rrpair).
#![forbid(unsafe_code)]

use crate::http1::Message;
use crate::pb;
use crate::stitch::Exchange;

fn headers(hs: Vec<(String, String)>) -> Vec<pb::Header> {
    hs.into_iter()
        .map(|(name, value)| pb::Header { name, value })
        .collect()
}

fn request(m: Message) -> pb::HttpRequest {
    pb::HttpRequest {
        method: m.method,
        url: m.url,
        version: m.version,
        headers: headers(m.headers),
        body: m.body,
        body_size: m.body_size,
        trailers: headers(m.trailers),
    }
}

fn response(m: Message) -> pb::HttpResponse {
    pb::HttpResponse {
        status_code: m.status_code,
        status_message: m.status_message,
        version: m.version,
        headers: headers(m.headers),
        body: m.body,
        body_size: m.body_size,
        trailers: headers(m.trailers),
    }
}

/// One RRPair for one exchange (agent/rrpairs.py build_http_rrpair).
pub fn build(template: &pb::RrPair, ex: Exchange, id: String) -> pb::RrPair {
    let mut pair = template.clone();
    pair.id = id;
    pair.l7protocol = "http".into();
    if pair.client.is_none() {
        pair.client = Some(pb::Endpoint::default());
    }
    if pair.server.is_none() {
        pair.server = Some(pb::Endpoint::default());
    }
    if pair.meta.is_none() {
        pair.meta = Some(pb::Meta::default());
    }
    let start = ex
        .request
        .as_ref()
        .map(|r| r.start_ts_ns)
        .or_else(|| ex.response.as_ref().map(|r| r.start_ts_ns))
        .unwrap_or(0);
    if start != 0 {
        pair.ts = Some(pb::Timestamp {
            seconds: (start / 1_000_000_000) as i64,
            nanos: (start % 1_000_000_000) as i32,
        });
    }
    let us = |a: u64| (a.saturating_sub(start) / 1000) as i64;
    if let Some(res) = &ex.response {
        if start != 0 {
            pair.duration_us = us(res.end_ts_ns);
            pair.ttfb_us = us(res.start_ts_ns);
        }
    } else if let Some(req) = &ex.request {
        if start != 0 {
            pair.duration_us = us(req.end_ts_ns);
        }
    }
    let mut flags: std::collections::BTreeSet<String> =
        ex.flags.iter().map(|f| (*f).to_string()).collect();
    flags.extend(template.flags.iter().cloned());
    pair.flags = flags.into_iter().collect();
    pair.http = Some(pb::HttpExchange {
        req: ex.request.map(request),
        res: ex.response.map(response),
    });
    pair
}
