//! A reassembled flow as the records the kernel programs write (bpf/nodetap.h), seen from
//! its client's side, as agent/packet/records.py writes them: OPEN, DATA and GAP per
//! direction at their offsets, CLOSE. The core's decoder reads them like the syscall
//! capture's.
#![forbid(unsafe_code)]

use crate::layout::{
    NT_DATA_HDR_SIZE, NT_EV_CLOSE, NT_EV_DATA, NT_EV_GAP, NT_EV_OPEN, NT_FAMILY_PREEXISTING,
    NT_ROLE_CLIENT,
};

use super::frame::Addr;

const AF_INET6: u16 = 10;
const COMM: &[u8; 16] = b"packet\0\0\0\0\0\0\0\0\0\0";

fn ring_header(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn pad(out: &mut Vec<u8>, len: usize) {
    out.resize(out.len() + (len.wrapping_neg() & 7), 0);
}

/// Who talks to whom.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    pub client: Addr,
    pub client_port: u16,
    pub server: Addr,
    pub server_port: u16,
    pub midstream: bool,
}

fn conn(out: &mut Vec<u8>, kind: u8, cid: u64, ts: u64, ends: Option<&Ends>, off: [u64; 2]) {
    let n = crate::layout::NT_CONN_EVENT_SIZE;
    ring_header(out, n);
    let mut family = AF_INET6;
    let (mut lport, mut rport, mut laddr, mut raddr) = (0u16, 0u16, [0u8; 16], [0u8; 16]);
    if let Some(e) = ends {
        if e.midstream {
            family |= NT_FAMILY_PREEXISTING;
        }
        (lport, rport, laddr, raddr) = (e.client_port, e.server_port, e.client, e.server);
    }
    out.push(kind);
    out.push(NT_ROLE_CLIENT);
    out.extend_from_slice(&family.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // tgid
    out.extend_from_slice(&cid.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // fd
    out.extend_from_slice(&lport.to_le_bytes());
    out.extend_from_slice(&rport.to_le_bytes());
    out.extend_from_slice(&laddr);
    out.extend_from_slice(&raddr);
    out.extend_from_slice(&off[0].to_le_bytes());
    out.extend_from_slice(&off[1].to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // cgroup
    out.extend_from_slice(COMM);
    pad(out, n);
}

/// The OPEN record of a flow (its id is the flow id; time 0 as records.py writes it).
pub fn open(out: &mut Vec<u8>, cid: u64, ends: &Ends) {
    conn(out, NT_EV_OPEN, cid, 0, Some(ends), [0, 0]);
}

/// The CLOSE record: each direction's length (EGRESS, INGRESS).
pub fn close(out: &mut Vec<u8>, cid: u64, ts: u64, off: [u64; 2]) {
    conn(out, NT_EV_CLOSE, cid, ts, None, off);
}

#[allow(clippy::too_many_arguments)]
fn data_header(
    out: &mut Vec<u8>,
    kind: u8,
    cid: u64,
    dir: u8,
    off: u64,
    len: u64,
    ts: u64,
    n: usize,
) {
    ring_header(out, NT_DATA_HDR_SIZE + n);
    out.push(kind);
    out.push(dir);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&cid.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]); // tgid, fd
}

/// One DATA record of `payload` at stream offset `off` in direction `dir`.
pub fn data(out: &mut Vec<u8>, cid: u64, dir: u8, off: u64, payload: &[u8], ts: u64) {
    let n = payload.len();
    data_header(out, NT_EV_DATA, cid, dir, off, n as u64, ts, n);
    out.extend_from_slice(payload);
    pad(out, n);
}

/// A GAP record: `size` bytes at `off` were not captured.
pub fn gap(out: &mut Vec<u8>, cid: u64, dir: u8, off: u64, size: u64, ts: u64) {
    data_header(out, NT_EV_GAP, cid, dir, off, size, ts, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{decode, records, Record};

    #[test]
    fn records_read_back() {
        let ends = Ends {
            client: [1; 16],
            client_port: 5,
            server: [2; 16],
            server_port: 80,
            midstream: true,
        };
        let mut b = Vec::new();
        open(&mut b, 7, &ends);
        data(&mut b, 7, 0, 0, b"GET", 9);
        gap(&mut b, 7, 1, 0, 4, 10);
        close(&mut b, 7, 11, [3, 4]);
        let recs: Vec<_> = records(&b).map(decode).collect();
        assert_eq!(recs.len(), 4);
        match &recs[1] {
            Record::Data(d) => assert_eq!((d.conn_id, d.data, d.ts_ns), (7, &b"GET"[..], 9)),
            r => panic!("{r:?}"),
        }
    }
}
