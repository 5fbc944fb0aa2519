//! `agent`: parse the command line and configuration, init logging, call `agent::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::{Config, ProcessEnv};
use clap::{Parser, Subcommand};

/// sysexits.h EX_USAGE: the configuration is wrong.
const EX_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "agent", version = agent::VERSION, about = "Observability sidecar for AWS ECS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar.
    Run {
        /// The TOML configuration.
        #[arg(
            long,
            short,
            env = "AGENT_CONFIG",
            default_value = "/etc/agent/agent.toml"
        )]
        config: PathBuf,
    },
    /// Check a configuration and report every problem (exit 64 if any).
    Validate {
        /// The TOML configuration.
        #[arg(
            long,
            short,
            env = "AGENT_CONFIG",
            default_value = "/etc/agent/agent.toml"
        )]
        config: PathBuf,
    },
    /// Probe health URLs once (the deployment smoke test): a line per check; exit 1 on the
    /// first failure that outlives `--wait`.
    Probe {
        /// URLs to check, in order (http://).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// Timeout of each request, in seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        /// Keep retrying a failing check for up to this many seconds (0: one try).
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
    },
    /// Dashboards and alarms as code: validate, plan or apply dashboards/ and alerts/ for one
    /// environment (exit 0 ok, 1 failure, 2 changes with plan --detailed-exitcode, 64 invalid).
    #[command(subcommand)]
    Provision(agent::provision::Command),
    /// Exit 0 when the admin server answers GET /health (container health checks).
    Health {
        /// Admin address.
        #[arg(long, default_value = "127.0.0.1:9880")]
        address: String,
    },
}

#[allow(
    clippy::print_stderr,
    reason = "configuration errors are for the operator's terminal"
)]
fn load(path: &PathBuf) -> Result<Config, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        eprintln!("agent: cannot read {}: {error}", path.display());
        ExitCode::from(EX_USAGE)
    })?;
    Config::parse(&text, &ProcessEnv).map_err(|errors| {
        eprint!("agent: {}: {errors}", path.display());
        ExitCode::from(EX_USAGE)
    })
}

#[allow(
    clippy::print_stderr,
    reason = "usage errors are for the operator's terminal"
)]
fn main() -> ExitCode {
    // A usage error exits 64 (EX_USAGE), not clap's 2: `provision plan --detailed-exitcode`
    // gives 2 its own meaning (changes pending).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate { config } => match load(&config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            agent::init_logging(config.log_level.as_str());
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(error = %error, "cannot start the runtime");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(agent::run(config, shutdown_signal()));
            // A blocking stdin read may still be parked in the runtime's blocking pool; it
            // must not hold the exit.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "agent failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Provision(command) => {
            agent::init_logging("warn");
            ExitCode::from(agent::provision::run(
                command,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ))
        }
        Command::Health { address } => health(&address),
        Command::Probe {
            urls,
            timeout,
            wait,
        } => probe(&urls, timeout, wait),
    }
}

fn health(address: &str) -> ExitCode {
    use std::io::{Read, Write};
    let check = || -> std::io::Result<bool> {
        let addr: std::net::SocketAddr = address
            .parse()
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad address"))?;
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.1 200")
    };
    if check().unwrap_or(false) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[allow(
    clippy::print_stdout,
    reason = "one line per check is the command's output"
)]
fn probe(urls: &[String], timeout: f64, wait: f64) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let timeout = std::time::Duration::from_secs_f64(timeout.clamp(0.05, 120.0));
    let wait = std::time::Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
    runtime.block_on(async {
        for url in urls {
            let deadline = std::time::Instant::now() + wait;
            loop {
                let result = agent::uptime::probe(url, timeout).await;
                let status = result
                    .status
                    .map_or_else(|| "---".to_owned(), |s| s.to_string());
                if result.healthy {
                    println!("ok    {status} {:>9.1} ms  {url}", result.latency_ms);
                    break;
                }
                let error = result.error.unwrap_or_default();
                if std::time::Instant::now() >= deadline {
                    println!(
                        "FAIL  {status} {:>9.1} ms  {url}  ({error})",
                        result.latency_ms
                    );
                    return ExitCode::FAILURE;
                }
                println!(
                    "retry {status} {:>9.1} ms  {url}  ({error})",
                    result.latency_ms
                );
                tokio::time::sleep(
                    std::time::Duration::from_secs(1).min(deadline - std::time::Instant::now()),
                )
                .await;
            }
        }
        ExitCode::SUCCESS
    })
}

/// SIGTERM (ECS stopping the task) or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
