//! One RRPair out: built from an exchange or stream, counted, through the edge rules
//! (src/rules: dropped, sampled out or redacted before any byte of it is encoded), encoded
//! in the output forms.

use std::panic::{catch_unwind, AssertUnwindSafe};

use prost::Message as _;

use super::hold::Item;
use super::Decoder;

use crate::build::build;
use crate::pb;
use crate::rules::Verdict;

impl Decoder {
    pub(super) fn emit(&mut self, cid: u64, template: &pb::RrPair, item: Item) {
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let mut pair = match item {
            Item::H1(ex) => build(template, ex, id),
            Item::H2(st) => crate::h2::rrpair::build(template, st, id, self.max_body),
        };
        if self.tls.contains(&cid) {
            pair.meta.get_or_insert_with(Default::default).source = "tls".into();
        }
        let c = &mut self.counters;
        c.add("rrpairs", 1);
        for (f, name) in [
            ("incomplete", "rrpairs_incomplete"),
            ("gap", "rrpairs_gap"),
            ("truncated", "rrpairs_truncated"),
        ] {
            if pair.flags.iter().any(|x| x == f) {
                c.add(name, 1);
            }
        }
        if template.flags.iter().any(|f| f == "noaddr") {
            c.add("rrpairs_noaddr", 1);
        }
        if let Some(rules) = &self.rules {
            // a panic in the rules loses this RRPair (counted), never writes it unredacted
            let verdict = catch_unwind(AssertUnwindSafe(|| rules.apply(&mut pair)));
            match verdict {
                Ok(Verdict::Keep) => {}
                Ok(Verdict::Drop) => return,
                Err(_) => {
                    c.add("panics", 1);
                    c.add("rules_panics", 1);
                    return;
                }
            }
        }
        if self.formats.protobuf {
            self.out_pb.push(pair.encode_to_vec());
        }
        if self.formats.jsonl {
            self.out_jsonl.push(crate::json::dumps(&pair).into_bytes());
        }
    }
}
