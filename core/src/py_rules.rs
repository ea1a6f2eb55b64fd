//! The edge rules' Python class (PyO3 boundary, as py.rs):
//!
//! ```text
//! Rules(config: str, key: bytes)          # agent/rules/config.py to_json(), the redaction key
//!   .apply(pair: bytes) -> bytes | None   # an encoded RRPair: redacted, or None (dropped)
//!   .evaluate(pair: bytes) -> (action, rule | None, [redaction, ...])
//!   .counters() -> dict[str, int]         # rules_kept, rules_dropped, rules_sampled_out, ...
//!   .rule_matches() -> dict[str, int]     # RRPairs matched per rule
//! check_regex(pattern: str) -> None       # ValueError when the core cannot run it
//! regex_lengths(pattern: str) -> (int, int | None)  # shortest, longest match in bytes
//! ```
//!
//! The decoder applies the same rules before encoding: `Rules::engine()` hands out the shared
//! `crate::rules::Rules` for `Decoder.set_rules(rules)`.
#![allow(unsafe_code)]
#![allow(clippy::useless_conversion)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use prost::Message as _;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::pb;
use crate::rules;

#[pyclass(module = "nodetap_core", name = "Rules", frozen)]
pub struct Rules {
    inner: Arc<rules::Rules>,
}

impl Rules {
    /// The compiled rules, shared with a decoder.
    pub(crate) fn engine(&self) -> Arc<rules::Rules> {
        Arc::clone(&self.inner)
    }
}

fn decode(pair: &[u8]) -> PyResult<pb::RrPair> {
    pb::RrPair::decode(pair)
        .map_err(|e| PyValueError::new_err(format!("not an encoded RRPair: {e}")))
}

fn guarded<T>(f: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| PyRuntimeError::new_err("the core's rules panicked on this RRPair"))
}

#[pymethods]
impl Rules {
    #[new]
    fn new(config: &str, key: &[u8]) -> PyResult<Self> {
        let r = rules::Rules::from_json(config, key)
            .map_err(|e| PyValueError::new_err(format!("rules refused by the core: {e}")))?;
        Ok(Self { inner: Arc::new(r) })
    }

    fn apply<'py>(&self, py: Python<'py>, pair: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut p = decode(pair)?;
        let inner = &self.inner;
        let verdict = py.allow_threads(|| guarded(|| inner.apply(&mut p)))?;
        Ok(match verdict {
            rules::Verdict::Keep => Some(PyBytes::new_bound(py, &p.encode_to_vec())),
            rules::Verdict::Drop => None,
        })
    }

    fn evaluate(&self, pair: &[u8]) -> PyResult<(String, Option<String>, Vec<String>)> {
        let p = decode(pair)?;
        let d = guarded(|| self.inner.evaluate(&p))?;
        Ok((d.action.as_str().to_string(), d.rule, d.redactions))
    }

    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new_bound(py);
        for (n, v) in self.inner.counters() {
            d.set_item(n, v)?;
        }
        Ok(d)
    }

    fn rule_matches<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new_bound(py);
        for (n, v) in self.inner.rule_matches() {
            d.set_item(n, v)?;
        }
        Ok(d)
    }
}

/// ValueError (one line) when the core cannot run this RE2 pattern: agent/rules checks
/// the user's patterns with it, so that a rules file runs the same on both sides.
#[pyfunction]
fn check_regex(pattern: &str) -> PyResult<()> {
    rules::re2syntax::compile_str(pattern)
        .and_then(|_| rules::re2syntax::compile_bytes(pattern))
        .map(|_| ())
        .map_err(PyValueError::new_err)
}

/// (shortest, longest or None) match of an RE2 pattern, in bytes: `redact.custom` refuses
/// patterns that can match the empty string, `rules check` warns on unbounded ones.
#[pyfunction]
fn regex_lengths(pattern: &str) -> PyResult<(usize, Option<usize>)> {
    rules::patterns::match_lengths(pattern).map_err(PyValueError::new_err)
}

/// Registers the class and the checks in the module (one line in py.rs).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Rules>()?;
    m.add_function(wrap_pyfunction!(check_regex, m)?)?;
    m.add_function(wrap_pyfunction!(regex_lengths, m)?)
}
