//! Fluent Forward frames: scan (whole and trickled) and decode. The checks are `agent_fuzz::forward_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_fuzz::forward_decode(data));
