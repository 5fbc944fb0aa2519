//! `POST /v1/logs` through the real router. The checks are `agent_fuzz::http_ingest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_fuzz::http_ingest(data));
