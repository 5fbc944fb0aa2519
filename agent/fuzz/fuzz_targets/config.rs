//! The configuration loader (`ENV\0TOML`). The checks are `agent_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_fuzz::config(data));
