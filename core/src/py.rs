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

#[pyclass(module = "nodetap_core")]
struct Decoder {
    core: Core,
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (max_body, id_prefix, mono_to_wall_ns = 0, protobuf = true, jsonl = false))]
    fn new(
        max_body: u64,
        id_prefix: String,
        mono_to_wall_ns: i64,
        protobuf: bool,
        jsonl: bool,
    ) -> Self {
        Self {
            core: Core::new(
                max_body,
                mono_to_wall_ns,
                id_prefix,
                Formats { protobuf, jsonl },
            ),
        }
    }

    fn feed_records(&mut self, py: Python<'_>, buf: &[u8]) {
        let core = &mut self.core;
        py.allow_threads(|| core.feed_records(buf));
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
    let d = PyDict::new_bound(m.py());
    for (name, v) in [
        ("NT_MAX_CHUNK", layout::NT_MAX_CHUNK),
        ("NT_EV_OPEN", usize::from(layout::NT_EV_OPEN)),
        ("NT_EV_CLOSE", usize::from(layout::NT_EV_CLOSE)),
        ("NT_EV_DATA", usize::from(layout::NT_EV_DATA)),
        ("NT_EV_GAP", usize::from(layout::NT_EV_GAP)),
        ("NT_EV_ADDR", usize::from(layout::NT_EV_ADDR)),
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
    Ok(())
}
