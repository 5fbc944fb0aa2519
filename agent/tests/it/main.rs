//! The agent's one integration-test binary: the real `agent` binary against an in-process
//! fake CloudWatch Logs endpoint (faults) and the AWS emulator (the real SDK round trip).

mod amplification;
mod cli;
mod durability;
mod emulator;
mod fake_cwl;
mod fault_matrix;
mod fault_proxy;
mod faults;
mod hostile;
mod multiline;
mod outbound;
mod outbound_proxy;
mod parity;
#[cfg(feature = "preview")]
mod preview;
mod promtool;
mod provision;
mod redaction;
mod sentry;
mod shutdown;
mod support;
