//! OTLP/JSON export requests, decoded and converted. The checks are `agent_fuzz::otlp_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_fuzz::otlp_json(data));
