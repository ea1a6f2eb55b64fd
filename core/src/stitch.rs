//! Pair the requests and responses of one HTTP/1.x connection, in order (pipelining ok):
//! the mirror of agent/protocols/http1/stitch.py.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use crate::http1::{Flags, Message, Out, Parser};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: Option<Message>,
    pub response: Option<Message>,
    pub flags: Flags,
}

#[derive(Debug)]
pub struct Stitcher {
    req: Parser,
    res: Parser,
    reqs: VecDeque<Message>,
    resps: VecDeque<Message>,
    pub upgraded: bool,
    /// the request side's bytes after the upgrade (see `take_rest`)
    rest: Vec<u8>,
    closed: bool,
    /// Bytes were lost: of a request (a lone response answers one lost there) / of
    /// responses since the last one parsed (requests unanswered at close lost theirs).
    req_gapped: bool,
    res_gapped: bool,
}

impl Stitcher {
    pub fn new(max_body: u64) -> Self {
        Self {
            req: Parser::new(true, max_body),
            res: Parser::new(false, max_body),
            reqs: VecDeque::new(),
            resps: VecDeque::new(),
            upgraded: false,
            rest: Vec::new(),
            closed: false,
            req_gapped: false,
            res_gapped: false,
        }
    }

    /// After an upgrade: the bytes of each direction (requests, responses) that came after
    /// the exchange that switched protocols.
    pub fn take_rest(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut req = std::mem::take(&mut self.rest);
        req.extend(self.req.take_rest());
        (req, self.res.take_rest())
    }

    /// A direction is not HTTP/1.x.
    /// Both directions may begin mid-message (a connection opened before the capture).
    pub fn resync_start(&mut self) {
        self.req.resync_start();
        self.res.resync_start();
    }

    pub fn failed(&self) -> bool {
        self.req.failed || self.res.failed
    }

    pub fn parse_errors(&self) -> u64 {
        self.req.parse_errors + self.res.parse_errors
    }

    fn pass_heads(&mut self) {
        for e in self.req.heads.drain(..) {
            self.res.expects.push_back(e);
        }
    }

    pub fn feed_request(&mut self, data: &[u8], ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        let mut msgs = Out::new();
        self.req.feed(data, ts, &mut msgs);
        self.pass_heads();
        self.on_requests(msgs, out);
    }

    pub fn feed_response(&mut self, data: &[u8], ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        let mut msgs = Out::new();
        self.res.feed(data, ts, &mut msgs);
        let mut again = self.res.refused && self.res.has_buffered();
        self.on_responses(msgs, out);
        while again {
            let mut msgs = Out::new();
            self.res.pump(&mut msgs);
            again = self.res.refused && self.res.has_buffered();
            self.on_responses(msgs, out);
        }
        if self.res.failed {
            self.close(ts, out);
        }
    }

    pub fn request_gap(&mut self, n: u64, ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        self.req_gapped = true;
        let mut msgs = Out::new();
        self.req.gap(n, ts, &mut msgs);
        self.pass_heads();
        self.on_requests(msgs, out);
    }

    pub fn response_gap(&mut self, n: u64, ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        self.res_gapped = true;
        let mut msgs = Out::new();
        self.res.gap(n, ts, &mut msgs);
        self.on_responses(msgs, out);
    }

    /// `n` request bytes not copied on purpose: inside a body they cut it ("truncated"),
    /// elsewhere a gap (stitch.py request_skip).
    pub fn request_skip(&mut self, n: u64, ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        let mut msgs = Out::new();
        if !self.req.skip(n, ts, &mut msgs) {
            self.req.gap(n, ts, &mut msgs);
        }
        self.pass_heads();
        self.on_requests(msgs, out);
    }

    /// As request_skip, for the response stream.
    pub fn response_skip(&mut self, n: u64, ts: u64, out: &mut Vec<Exchange>) {
        if self.upgraded || self.closed {
            return;
        }
        let mut msgs = Out::new();
        if !self.res.skip(n, ts, &mut msgs) {
            self.res.gap(n, ts, &mut msgs);
        }
        self.on_responses(msgs, out);
    }

    pub fn close(&mut self, ts: u64, out: &mut Vec<Exchange>) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.upgraded {
            let mut msgs = Out::new();
            self.req.close(ts, &mut msgs);
            self.pass_heads();
            self.on_requests(msgs, out);
            let mut msgs = Out::new();
            self.res.close(ts, &mut msgs);
            self.on_responses(msgs, out);
        }
        // never answered: the answer was lost in a gap, or the connection ended early
        let why_req = if self.res_gapped { "gap" } else { "incomplete" };
        for req in std::mem::take(&mut self.reqs) {
            out.push(lone(Some(req), None, why_req));
        }
        let why_res = if self.req_gapped { "gap" } else { "incomplete" };
        for resp in std::mem::take(&mut self.resps) {
            out.push(lone(None, Some(resp), why_res));
        }
    }

    fn on_requests(&mut self, msgs: Out, out: &mut Vec<Exchange>) {
        for (req, _) in msgs {
            if let Some(resp) = self.resps.pop_front() {
                self.pair(req, resp, out);
            } else {
                self.reqs.push_back(req);
            }
        }
    }

    fn on_responses(&mut self, msgs: Out, out: &mut Vec<Exchange>) {
        for (resp, mut link) in msgs {
            self.res_gapped = false;
            if link < 0 {
                // answers no request we saw (lost in a gap, or before the capture)
                let why = if self.req_gapped { "gap" } else { "incomplete" };
                out.push(lone(None, Some(resp), why));
                continue;
            }
            while link > 0 && !self.reqs.is_empty() {
                let r = self.reqs.pop_front();
                out.push(lone(r, None, "gap"));
                link -= 1;
            }
            if let Some(req) = self.reqs.pop_front() {
                self.pair(req, resp, out);
            } else {
                self.resps.push_back(resp);
            }
        }
        if self.res.refused {
            self.res.refused = false;
            let mut msgs = Out::new();
            self.req.resume(&mut msgs);
            self.pass_heads();
            self.on_requests(msgs, out);
        }
    }

    fn pair(&mut self, req: Message, resp: Message, out: &mut Vec<Exchange>) {
        let mut flags = req.flags.clone();
        flags.extend(resp.flags.iter().copied());
        let upgrade = resp.flags.contains("upgrade");
        out.push(Exchange {
            request: Some(req),
            response: Some(resp),
            flags,
        });
        if upgrade {
            self.upgraded = true;
            self.rest = self.req.take_rest();
            self.req.stop();
        }
    }
}

fn lone(req: Option<Message>, resp: Option<Message>, why: &'static str) -> Exchange {
    let mut flags = Flags::new();
    flags.insert(why);
    for m in req.iter().chain(resp.iter()) {
        flags.extend(m.flags.iter().copied());
    }
    Exchange {
        request: req,
        response: resp,
        flags,
    }
}
