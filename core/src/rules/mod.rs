//! Edge rules in the core: drop, sample and redact RRPairs before they are encoded, with the
//! semantics of agent/rules (tests/core/test_rules_differential.py checks that both sides
//! write the same bytes). The rules arrive once as the JSON that agent/rules/config.py
//! validated (`to_json`), with the installation's redaction key.
//!
//! ```text
//! let rules = Rules::from_json(json, key)?;
//! match rules.apply(&mut pair) { Verdict::Keep => encode(pair), Verdict::Drop => {} }
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod fuzz;
pub mod glob;
pub mod jsonscan;
pub mod matchers;
pub mod patterns;
pub mod protobuf;
pub mod re2syntax;
pub mod redact;
pub mod sample;
pub mod text;
pub mod token;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::pb;
use matchers::Predicate;
use redact::Redactor;

/// What the decoder does with an RRPair after the rules ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep,
    Drop,
    SampleOut,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::SampleOut => "sample_out",
        }
    }
}

/// What the rules do to one RRPair (agent/rules/engine.py `Decision`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// the drop or sample rule that decided
    pub rule: Option<String>,
    /// the redaction rules that changed it, sorted
    pub redactions: Vec<String>,
}

/// Names of the counters `Rules::counters` returns, in order.
pub const COUNTER_NAMES: &[&str] = &[
    "rules_kept",
    "rules_dropped",
    "rules_sampled_out",
    "rules_redacted",
];

#[derive(Default)]
struct Counts {
    kept: u64,
    dropped: u64,
    sampled_out: u64,
    redacted: u64,
    /// RRPairs matched by each rule (nodetap_rule_matches_total{rule})
    matches: BTreeMap<String, u64>,
}

pub struct Rules {
    drops: Vec<(String, Predicate)>,
    samples: Vec<(String, Predicate, f64)>,
    redactor: Redactor,
    counts: Mutex<Counts>,
}

impl Rules {
    /// The rules from agent/rules/config.py's JSON and the installation's key; an error in
    /// one line (a regular expression the core cannot run, a malformed document).
    pub fn from_json(json: &str, key: &[u8]) -> Result<Self, String> {
        let rs = config::parse(json)?;
        let mut drops = Vec::new();
        for name in &rs.builtin {
            drops.push((format!("builtin:{name}"), Predicate::builtin(name)?));
        }
        for r in &rs.drop {
            let p = Predicate::compile(&r.matcher).map_err(|e| format!("drop {}: {e}", r.name))?;
            drops.push((r.name.clone(), p));
        }
        let mut samples = Vec::new();
        for r in &rs.sample {
            let p =
                Predicate::compile(&r.matcher).map_err(|e| format!("sample {}: {e}", r.name))?;
            samples.push((r.name.clone(), p, r.rate));
        }
        Ok(Self {
            drops,
            samples,
            redactor: Redactor::new(&rs.redact, key)?,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn decide(&self, pair: &pb::RrPair) -> (Action, Option<&str>) {
        for (name, pred) in &self.drops {
            if pred.holds(pair) {
                return (Action::Drop, Some(name));
            }
        }
        for (name, pred, rate) in &self.samples {
            if pred.holds(pair) {
                let keep = sample::sampled_in(name, &pair.id, *rate);
                let action = if keep {
                    Action::Keep
                } else {
                    Action::SampleOut
                };
                return (action, Some(name));
            }
        }
        (Action::Keep, None)
    }

    /// What `apply` would do, without changing the pair or counting.
    pub fn evaluate(&self, pair: &pb::RrPair) -> Decision {
        let (action, rule) = self.decide(pair);
        let redactions = if action == Action::Keep {
            let mut copy = pair.clone();
            self.redactor.redact(&mut copy).into_iter().collect()
        } else {
            Vec::new()
        };
        Decision {
            action,
            rule: rule.map(str::to_string),
            redactions,
        }
    }

    /// Drop or keep `pair`; a kept pair is redacted in place (flagged "redacted" when
    /// something changed). Counts the outcome and the rules that matched.
    pub fn apply(&self, pair: &mut pb::RrPair) -> Verdict {
        let (action, rule) = self.decide(pair);
        let hits = if action == Action::Keep {
            self.redactor.redact(pair)
        } else {
            Default::default()
        };
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match action {
            Action::Keep => c.kept += 1,
            Action::Drop => c.dropped += 1,
            Action::SampleOut => c.sampled_out += 1,
        }
        if !hits.is_empty() {
            c.redacted += 1;
        }
        if let Some(name) = rule {
            match c.matches.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    c.matches.insert(name.to_string(), 1);
                }
            }
        }
        for name in hits {
            *c.matches.entry(name).or_insert(0) += 1;
        }
        if action == Action::Keep {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }

    /// The counters, named as COUNTER_NAMES.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let v = [c.kept, c.dropped, c.sampled_out, c.redacted];
        COUNTER_NAMES.iter().copied().zip(v).collect()
    }

    /// RRPairs matched by each rule since the start.
    pub fn rule_matches(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .matches
            .clone()
    }
}

#[cfg(test)]
mod protobuf_tests;
#[cfg(test)]
mod tests;
