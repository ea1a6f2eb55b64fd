//! The body of the `rules` fuzz target (core/fuzz/fuzz_targets/rules.rs), shared with the
//! bounded loop of `cargo test`: bytes become an RRPair (its URL, a header value and both
//! bodies) and run through rules that use every part: no panic, lengths kept.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use crate::pb;
use crate::rules::Rules;

pub const FUZZ_RULES: &str = r#"{
  "builtin": ["health-checks", "metrics-scrapes"],
  "drop": [{"name": "d", "match": {"host": ["a[!b-a]*", "[z-a]x"], "path": "^/x\\b\\d+",
            "method": ["DELETE"], "labels": {"k": "v*"}}}],
  "sample": [{"name": "s", "match": {"namespace": ["n?"]}, "rate": 0.5}],
  "redact": {"headers": ["Authorization", "X-Key"],
             "json_fields": ["password", "a.*.b", "[!x]"],
             "patterns": ["credit-card", "email", "bearer", "jwt"],
             "custom": [{"name": "ord", "regex": "ORD-\\d{3,}|(?i)\\w+\\s\\Qx.y\\E"}]}
}"#;

fn rules() -> &'static Rules {
    static R: OnceLock<Rules> = OnceLock::new();
    R.get_or_init(|| Rules::from_json(FUZZ_RULES, b"fuzz-key").expect("the fuzz rules compile"))
}

/// Pieces split at 0xfd: URL, header value, request body, response body, content type.
pub fn rules_target(data: &[u8]) {
    let mut parts = data.split(|&c| c == 0xfd);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let url = next();
    let value = next();
    let req_body = next().into_bytes();
    let res_body = data.to_vec();
    let ctype = next();
    let h = |n: &str, v: &str| pb::Header {
        name: n.into(),
        value: v.into(),
    };
    let mut pair = pb::RrPair {
        id: value.clone(),
        http: Some(pb::HttpExchange {
            req: Some(pb::HttpRequest {
                method: "POST".into(),
                url: url.clone(),
                headers: vec![h("Authorization", &value), h("X-Other", &value)],
                body: req_body.clone(),
                ..Default::default()
            }),
            res: Some(pb::HttpResponse {
                headers: vec![h("Content-Type", &ctype)],
                body: res_body.clone(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let r = rules();
    let d = r.evaluate(&pair);
    if r.apply(&mut pair) == super::Verdict::Keep {
        let ex = pair.http.as_ref().expect("kept");
        let (req, res) = (ex.req.as_ref().expect("req"), ex.res.as_ref().expect("res"));
        assert_eq!(
            req.body.len(),
            req_body.len(),
            "request body length changed"
        );
        assert_eq!(
            res.body.len(),
            res_body.len(),
            "response body length changed"
        );
        assert_eq!(req.url.chars().count(), url.chars().count());
        assert_eq!(req.headers[1].value.chars().count(), value.chars().count());
        assert_eq!(
            d.redactions.is_empty(),
            !pair.flags.contains(&"redacted".into())
        );
    }
}
