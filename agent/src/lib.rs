//! The observability sidecar.
//!
//! Architecture: **sources** (`sources/`: Fluent Forward as FireLens speaks it, stdin, file
//! tail, HTTP) hand raw lines (stack traces joined first, `pipeline/multiline`, when
//! configured) to the **pipeline** (`pipeline/`: parse once, redact, ECS
//! metadata, a hard memory ceiling that slows inputs instead of growing), whose receiver
//! feeds the **sinks** (`sinks/`: CloudWatch Logs, batching within the PutLogEvents rules,
//! retrying with backoff). Shutdown flows downstream: SIGTERM makes the agent unready,
//! sources stop, the channel closes, the sink flushes under a deadline.
//! The admin server (`admin`) exposes `/health`, `/ready` and `/metrics`.

pub mod admin;
pub mod aws;
pub mod buffer;
mod choice;
pub mod config;
pub mod http_client;
pub mod metrics;
pub mod pipeline;
pub mod provision;
pub mod request_metrics;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod uptime;

/// The agent's version, as reported by `agent --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the agent until `shutdown` resolves (SIGTERM in production) or every source has
/// ended (stdin reached EOF), then drains within the grace period and returns by
/// `shutdown_grace_secs` + 1 s.
pub async fn run(
    config: config::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    topology::build(&config).await?.run(shutdown).await;
    Ok(())
}

/// Installs the agent's own logging: JSON lines on stderr (stdout stays free for data),
/// redacted like the data it ships.
pub fn init_logging(level: &str) {
    let level = level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level)
        .with_writer(pipeline::redact::RedactingWriter::new(|| {
            Box::new(std::io::stderr()) as Box<dyn std::io::Write>
        }))
        .try_init();
}
