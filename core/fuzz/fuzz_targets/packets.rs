//! Captured frames through the packet path (frames, flows, reassembly, the decoder): no
//! panic, bounded memory.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use nodetap_core::packet::fuzz;

fuzz_target!(|data: &[u8]| {
    fuzz::frames(data);
});
