//! Rules end to end on RRPairs (the differential test against Python is
//! tests/core/test_rules_differential.py).
use super::*;

fn pair(url: &str, headers: &[(&str, &str)], body: &[u8]) -> pb::RrPair {
    pb::RrPair {
        id: "p-1".into(),
        server: Some(pb::Endpoint {
            ip: "10.0.0.1".into(),
            port: 8080,
        }),
        http: Some(pb::HttpExchange {
            req: Some(pb::HttpRequest {
                method: "GET".into(),
                url: url.into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| pb::Header {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                body: body.to_vec(),
                ..Default::default()
            }),
            res: Some(pb::HttpResponse::default()),
        }),
        ..Default::default()
    }
}

const DEFAULTS: &str = r#"{"builtin": [], "drop": [], "sample": [],
  "redact": {"headers": ["Authorization", "Cookie", "Set-Cookie", "Proxy-Authorization"],
             "json_fields": [], "patterns": [], "custom": [], "hash_key": null}}"#;

#[test]
fn credentials_redacted_by_default_with_lengths_kept() {
    let r = Rules::from_json(DEFAULTS, b"k").unwrap();
    let mut p = pair(
        "/",
        &[("authorization", "Basic dXNlcjpwYXNz"), ("X", "y")],
        b"",
    );
    assert_eq!(r.apply(&mut p), Verdict::Keep);
    let req = p.http.as_ref().unwrap().req.as_ref().unwrap();
    assert_ne!(req.headers[0].value, "Basic dXNlcjpwYXNz");
    assert_eq!(req.headers[0].value.len(), 18);
    assert_eq!(req.headers[1].value, "y");
    assert_eq!(p.flags, vec!["redacted".to_string()]);
    assert_eq!(r.counters()[3], ("rules_redacted", 1));
    assert_eq!(r.rule_matches().get("redact:headers"), Some(&1));
}

#[test]
fn drops_builtins_and_sampling() {
    let r = Rules::from_json(
        r#"{"builtin": ["health-checks"],
            "drop": [{"name": "no-admin", "match": {"host": ["admin.*"]}}],
            "sample": [{"name": "none", "match": {}, "rate": 0.0}]}"#,
        b"k",
    )
    .unwrap();
    let d = r.evaluate(&pair("/healthz", &[], b""));
    assert_eq!(
        (d.action, d.rule.as_deref()),
        (Action::Drop, Some("builtin:health-checks"))
    );
    let d = r.evaluate(&pair("/", &[("Host", "ADMIN.x:1")], b""));
    assert_eq!(d.rule.as_deref(), Some("no-admin"));
    assert_eq!(r.evaluate(&pair("/", &[], b"")).action, Action::SampleOut);
    assert_eq!(r.apply(&mut pair("/", &[], b"")), Verdict::Drop);
    assert_eq!(r.counters()[2], ("rules_sampled_out", 1));
}

#[test]
fn json_fields_and_patterns() {
    let r = Rules::from_json(
        r#"{"redact": {"headers": [], "json_fields": ["password", "card.number"],
            "patterns": ["credit-card", "email"], "custom": [], "hash_key": "test-key"}}"#,
        b"k",
    )
    .unwrap();
    let body = br#"{"password": "hunter2", "card": {"number": 4111111111111111}, "m": "a@b.org"}"#;
    let mut p = pair("/u?mail=bob@example.org", &[], body);
    let d = r.evaluate(&p);
    assert_eq!(
        d.redactions,
        vec!["redact:email".to_string(), "redact:json-fields".to_string()]
    );
    r.apply(&mut p);
    let req = p.http.as_ref().unwrap().req.as_ref().unwrap();
    assert_eq!(req.body.len(), body.len());
    let text = String::from_utf8(req.body.clone()).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("a@b.org"));
    assert!(!req.url.contains("bob@example.org"));
}

#[test]
fn a_pattern_the_core_cannot_run_is_one_line() {
    let e = Rules::from_json(
        r#"{"redact": {"custom": [{"name": "x", "regex": "\\C"}]}}"#,
        b"k",
    )
    .err()
    .unwrap();
    assert!(e.contains("redact.custom x"), "{e}");
    assert!(!e.contains('\n'));
}

/// A bounded fuzz-style loop over the fuzz target's body (fixed inputs, no timing).
#[test]
fn mutated_inputs_do_not_panic() {
    let seeds: &[&[u8]] = &[
        b"/a?x=bob@example.org\xfdBearer abc.def\xfd{\"password\": \"x\", \"a\": {\"q\": {\"b\": 1}}}\xfd4111 1111 1111 1111\xfdapplication/json",
        b"/x/1\xfdeyJhbGciOi.eyJzdWIiOi.sig\xfd[{\"\\ud83d\\ude00\": -0.5e3}]\xfd\xfd",
        b"\xfd\xfd{\"a\":\"\\u00e9\"}\xfdORD-123 abc x.y\xfdjson",
    ];
    let mut m = crate::fuzzing::Mutator::new(0x2545_f491_4f6c_dd1d);
    for _ in 0..3000 {
        let mut v = m.pick(seeds).to_vec();
        m.mutate(&mut v, 8);
        fuzz::rules_target(&v);
    }
    // deeply nested JSON is hashed whole, never recursed into without bound
    fuzz::rules_target(&[b"\xfd\xfd".as_slice(), &[b'['; 100_000]].concat());
}
