//! The PyO3 boundary of packet mode (src/packet): frames in by the batch, RRPairs and
//! counters out. Unsafe code only in the macros' expansion, as in py.rs.
#![allow(unsafe_code)]
#![allow(clippy::useless_conversion)]

use std::collections::HashSet;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::decoder::{Decoder, Formats, COUNTER_NAMES};
use crate::packet::flows::Limits;
use crate::packet::{tpacket, Pipeline};

#[pyclass(module = "nodetap_core")]
struct PacketDecoder {
    pipe: Pipeline,
}

#[pymethods]
impl PacketDecoder {
    #[new]
    #[pyo3(signature = (source, max_body, id_prefix, node = String::new(), ports = Vec::new(),
        max_flows = 32768, idle_timeout_ns = 120_000_000_000, protobuf = true, jsonl = false,
        max_buffered = 256 << 20, max_stream_buffer = 4 << 20))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        source: String,
        max_body: u64,
        id_prefix: String,
        node: String,
        ports: Vec<u16>,
        max_flows: usize,
        idle_timeout_ns: u64,
        protobuf: bool,
        jsonl: bool,
        max_buffered: u64,
        max_stream_buffer: u64,
    ) -> Self {
        let dec = Decoder::new(max_body, 0, id_prefix, Formats { protobuf, jsonl });
        let lim = Limits {
            ports: ports.into_iter().collect::<HashSet<u16>>(),
            idle_timeout_ns,
            max_flows,
            max_buffered,
            max_stream_buffer,
        };
        Self {
            pipe: Pipeline::new(dec, source, node, lim),
        }
    }

    /// A batch of frames of one link type, with their capture times.
    fn feed_frames(
        &mut self,
        linktype: u32,
        frames: &Bound<'_, PyList>,
        ts_ns: Vec<u64>,
    ) -> PyResult<()> {
        for (f, ts) in frames.iter().zip(ts_ns) {
            let b = f.downcast::<PyBytes>()?;
            self.pipe.frame(ts, linktype, b.as_bytes());
        }
        Ok(())
    }

    /// One retired TPACKET_V3 block: walks its frames; returns (announced, walked).
    fn feed_block(
        &mut self,
        py: Python<'_>,
        linktype: u32,
        block: PyBuffer<u8>,
    ) -> PyResult<(u32, usize)> {
        let block = block.to_vec(py)?;
        let pipe = &mut self.pipe;
        Ok(py.allow_threads(|| {
            let (n, frames) = tpacket::frames(&block);
            let walked = frames.len();
            for (ts, f) in frames {
                pipe.frame(ts, linktype, f);
            }
            (n, walked)
        }))
    }

    fn flush(&mut self, py: Python<'_>) {
        let pipe = &mut self.pipe;
        py.allow_threads(|| pipe.flush());
    }

    fn expire(&mut self, now_ns: u64) -> u64 {
        self.pipe.expire(now_ns)
    }

    fn finish(&mut self) {
        self.pipe.finish();
    }

    fn take_rrpairs<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.pipe.table.sink.dec.out_pb)
            .iter()
            .map(|b| PyBytes::new_bound(py, b))
            .collect()
    }

    fn take_jsonl<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.pipe.table.sink.dec.out_jsonl)
            .iter()
            .map(|b| PyBytes::new_bound(py, b))
            .collect()
    }

    /// Frame- and flow-level counters.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new_bound(py);
        for (k, v) in self.pipe.counters() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The decoder's counters (as Decoder.counters()).
    fn core_counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new_bound(py);
        let c = &self.pipe.table.sink.dec.counters;
        for n in COUNTER_NAMES {
            d.set_item(*n, c.0.get(n).copied().unwrap_or(0))?;
        }
        Ok(d)
    }

    /// Link types met that packet mode does not decode.
    fn bad_links(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.pipe.bad_links.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Flows open, and keys tracked (two per flow).
    fn table_size(&self) -> (usize, usize) {
        self.pipe.table.size()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PacketDecoder>()
}
