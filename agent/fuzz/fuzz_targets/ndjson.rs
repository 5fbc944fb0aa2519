//! NDJSON: line splitting, the one-pass parse, `Processor::process`. The checks are `agent_fuzz::ndjson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_fuzz::ndjson(data));
