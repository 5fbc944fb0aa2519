//! The agent's one integration-test binary: the real `agent` binary against an in-process
//! fake CloudWatch Logs endpoint (faults) and the AWS emulator (the real SDK round trip).

mod cli;
mod durability;
mod emulator;
mod fake_cwl;
mod faults;
mod hostile;
#[cfg(feature = "preview")]
mod preview;
mod provision;
mod sentry;
mod support;
