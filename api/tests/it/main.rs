//! The API's one integration-test binary: real PostgreSQL, Redis and the AWS emulator,
//! started per test by `scripts/services.sh` on free loopback ports.

mod access_log;
mod config;
mod health;
mod migrations;
mod otel;
mod sentry;
mod shutdown;
mod support;
