//! The PyO3 boundary: the only module where the macros' unsafe code is allowed.
#![allow(unsafe_code)]
// PyO3 0.22's #[pymethods] expansion converts PyErr into itself (a false positive).
#![allow(clippy::useless_conversion)]

use prost::Message as _;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::decoder::{Decoder as Core, Formats, COUNTER_NAMES};
use crate::layout;
use crate::pb;

/// The module's allocator (Cargo.toml: mimalloc): many small strings per RRPair.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pyclass(module = "nodetap_core")]
struct Decoder {
    core: Core,
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (max_body, id_prefix, mono_to_wall_ns = 0, protobuf = true, jsonl = false, hold = false))]
    fn new(
        max_body: u64,
        id_prefix: String,
        mono_to_wall_ns: i64,
        protobuf: bool,
        jsonl: bool,
        hold: bool,
    ) -> Self {
        let mut core = Core::new(
            max_body,
            mono_to_wall_ns,
            id_prefix,
            Formats { protobuf, jsonl },
        );
        core.hold = hold;
        Self { core }
    }

    /// Feed from byte `start`; returns (record, next) where a sendfile record of a tracked
    /// connection stopped it (its payload starts at `record`: read its bytes, call
    /// feed_sendfile, feed on from `next`), None at the end of the batch.
    #[pyo3(signature = (buf, start = 0))]
    fn feed_records(&mut self, py: Python<'_>, buf: &[u8], start: usize) -> Option<(usize, usize)> {
        let core = &mut self.core;
        py.allow_threads(|| core.feed_records_from(buf, start))
            .map(|s| (s.record, s.next))
    }

    /// The bytes of a sendfile record: `data` read back from the file (a prefix of the
    /// range), or None (unreadable: a gap).
    #[pyo3(signature = (conn_id, dir, offset, length, ts_ns, data))]
    fn feed_sendfile(
        &mut self,
        conn_id: u64,
        dir: u8,
        offset: u64,
        length: u64,
        ts_ns: u64,
        data: Option<&[u8]>,
    ) {
        self.core
            .feed_sendfile(conn_id, dir, offset, length, ts_ns, data);
    }

    fn drop_conn(&mut self, conn_id: u64) {
        self.core.drop_conn(conn_id);
    }

    fn waiting_contexts(&self) -> Vec<u64> {
        self.core.waiting_contexts()
    }

    fn take_control<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.core.control)
            .iter()
            .map(|b| PyBytes::new_bound(py, b))
            .collect()
    }

    fn take_stopped(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.core.stopped)
    }

    fn take_orphans(&mut self) -> Vec<(u64, u32, u32, u64)> {
        std::mem::take(&mut self.core.orphans)
    }

    /// The edge rules (a `Rules`) each RRPair goes through before it is encoded; None:
    /// none. A reload swaps them here; RRPairs out already are not changed.
    #[pyo3(signature = (rules))]
    fn set_rules(&mut self, rules: Option<&Bound<'_, crate::py_rules::Rules>>) {
        self.core.set_rules(rules.map(|r| r.get().engine()));
    }

    fn set_context(&mut self, conn_id: u64, template: &[u8]) -> PyResult<()> {
        let t = pb::RrPair::decode(template)
            .map_err(|e| PyValueError::new_err(format!("context is not an encoded RRPair: {e}")))?;
        self.core.set_context(conn_id, t);
        Ok(())
    }

    fn close_all(&mut self, ts_ns: u64) {
        self.core.close_all(ts_ns);
    }

    fn take_rrpairs<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.core.out_pb)
            .iter()
            .map(|b| PyBytes::new_bound(py, b))
            .collect()
    }

    fn take_jsonl<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.core.out_jsonl)
            .iter()
            .map(|b| PyBytes::new_bound(py, b))
            .collect()
    }

    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new_bound(py);
        for n in COUNTER_NAMES {
            d.set_item(*n, self.core.counters.0.get(n).copied().unwrap_or(0))?;
        }
        Ok(d)
    }

    /// Test hook: records of this connection panic inside the core.
    fn _panic_on(&mut self, conn_id: u64) {
        self.core.panic_conn = Some(conn_id);
    }
}

#[pymodule]
fn nodetap_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    crate::py_rules::register(m)?;
    crate::py_packet::register(m)?;
    let d = PyDict::new_bound(m.py());
    for (name, v) in [
        ("NT_MAX_CHUNK", layout::NT_MAX_CHUNK),
        ("NT_EV_OPEN", usize::from(layout::NT_EV_OPEN)),
        ("NT_EV_CLOSE", usize::from(layout::NT_EV_CLOSE)),
        ("NT_EV_DATA", usize::from(layout::NT_EV_DATA)),
        ("NT_EV_GAP", usize::from(layout::NT_EV_GAP)),
        ("NT_EV_ADDR", usize::from(layout::NT_EV_ADDR)),
        ("NT_EV_SENDFILE", usize::from(layout::NT_EV_SENDFILE)),
        ("NT_GAP_BOUND", usize::from(layout::NT_GAP_BOUND)),
        ("NT_ROLE_UNKNOWN", usize::from(layout::NT_ROLE_UNKNOWN)),
        ("NT_ROLE_CLIENT", usize::from(layout::NT_ROLE_CLIENT)),
        ("NT_ROLE_SERVER", usize::from(layout::NT_ROLE_SERVER)),
        ("NT_DIR_EGRESS", usize::from(layout::NT_DIR_EGRESS)),
        ("NT_DIR_INGRESS", usize::from(layout::NT_DIR_INGRESS)),
        ("NT_DATA_HDR_SIZE", layout::NT_DATA_HDR_SIZE),
        ("sizeof_nt_conn_event", layout::NT_CONN_EVENT_SIZE),
    ] {
        d.set_item(name, v)?;
    }
    for (name, off) in layout::CONN_EVENT_OFFSETS {
        d.set_item(format!("nt_conn_event.{name}"), *off)?;
    }
    for (name, off) in layout::DATA_EVENT_OFFSETS {
        d.set_item(format!("nt_data_event.{name}"), *off)?;
    }
    m.add("LAYOUT", d)?;
    // exchanges held per connection until Python gives its context
    m.add("MAX_HELD", crate::decoder::MAX_HELD)?;
    Ok(())
}
