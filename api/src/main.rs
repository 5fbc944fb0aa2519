//! `api`: parse the command line, load configuration, run one command. Nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use api::config::{self, Config, ConfigError, Env, ProcessEnv};
use api::migrate::{self, Migrator, Status};
use api::otel::{OtelGuard, OtelHandles};
use api::secrets;
use clap::{Parser, Subcommand};

/// sysexits.h: the configuration is wrong (a usage error).
const EX_USAGE: u8 = 64;
/// sysexits.h: a service we need (Secrets Manager) did not answer.
const EX_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "api",
    version,
    about = "The backend API, its migrations and its health check"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP on PORT (the default command). Never migrates.
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        /// Read migrations from this directory instead of the embedded ones.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
    },
    /// Validate the configuration and print where each variable comes from (never values).
    CheckConfig,
    /// Exit 0 when GET /health on 127.0.0.1:PORT answers 200 (for container health checks).
    Healthcheck {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the most recent migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: usize,
    },
    /// List migrations and whether each is applied.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            api::telemetry::init(tracing::Level::INFO);
            tracing::error!(error = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // Only `serve` handles requests, so only it exports; the export requests run on this
    // runtime. Built before the subscriber, which carries its tracing layer.
    let otel = match command {
        Command::Serve => api::otel::init(&ProcessEnv, runtime.handle()),
        _ => Ok(None),
    };
    let (otel, otel_error) = match otel {
        Ok(guard) => (guard, None),
        Err(error) => (None, Some(error)),
    };
    api::telemetry::init_with(
        tracing::Level::INFO,
        otel.as_ref().and_then(OtelGuard::tracing_layer),
    );
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(error_kind = "panic", panic = %info, "panic");
    }));
    if let Some(error) = otel_error {
        // Telemetry must not take the API down: serve without export, and say why.
        tracing::warn!(
            error = %api::telemetry::error_chain(&error),
            error_kind = error.kind(),
            "OpenTelemetry export disabled"
        );
    }
    let code = runtime.block_on(run(command, otel.as_ref().map(OtelGuard::handles)));
    // The final flush (bounded by otel::SHUTDOWN_TIMEOUT) needs the runtime, which carries
    // the export requests, but must not block one of its workers: hence here.
    drop(otel);
    code
}

async fn run(command: Command, otel: Option<OtelHandles>) -> ExitCode {
    match command {
        Command::Serve => serve(otel).await,
        Command::Migrate { action, dir } => migrate(action, dir).await,
        Command::CheckConfig => check_config().await,
        Command::Healthcheck { timeout } => healthcheck(Duration::from_secs(timeout)).await,
    }
}

/// The variables of the `APP_SECRETS_ID` secret, or an empty map when it is unset.
async fn load_secret(env: &dyn Env) -> Result<HashMap<String, String>, ExitCode> {
    let Some(id) = env.var("APP_SECRETS_ID") else {
        return Ok(HashMap::new());
    };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets::fetch(&client, &id).await.map_err(|error| {
        tracing::error!(error = %error, "cannot load configuration from Secrets Manager");
        match error {
            secrets::SecretsError::Format { .. } => ExitCode::from(EX_USAGE),
            _ => ExitCode::from(EX_UNAVAILABLE),
        }
    })
}

async fn load_config() -> Result<Config, ExitCode> {
    let secret = load_secret(&ProcessEnv).await?;
    Config::from_sources(&ProcessEnv, &secret).map_err(config_error)
}

fn config_error(error: ConfigError) -> ExitCode {
    tracing::error!(missing = ?error.missing, invalid = ?error.invalid.iter().map(|(name, _)| *name).collect::<Vec<_>>(), "{error}");
    ExitCode::from(EX_USAGE)
}

async fn serve(otel: Option<OtelHandles>) -> ExitCode {
    let config = match load_config().await {
        Ok(config) => config,
        Err(code) => return code,
    };
    let state = match api::AppState::connect_lazy(&config.database_url, &config.redis_url) {
        Ok(state) => state,
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            return ExitCode::from(EX_USAGE);
        }
    };
    let address = std::net::SocketAddr::from(([0, 0, 0, 0], config.port));
    // Installed before "listening" is logged, so no SIGTERM can fall between the two.
    let shutdown = api::server::shutdown_signal();
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%address, error = %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        %address,
        version = env!("CARGO_PKG_VERSION"),
        app_env = config.app_env.as_str(),
        "listening"
    );
    if otel.is_some() {
        tracing::info!(
            target: "otel",
            endpoint = ProcessEnv.var(api::otel::ENDPOINT_VAR).as_deref(),
            "exporting OpenTelemetry traces and metrics"
        );
    }
    // After main's panic hook is installed, so both run (the SDK's first).
    let sentry = config.sentry_dsn.as_ref().and_then(|dsn| {
        match api::reporting::init(dsn, config.app_env) {
            Ok(guard) => {
                tracing::info!(
                    release = api::reporting::RELEASE,
                    "reporting errors to Sentry"
                );
                Some(guard)
            }
            Err(error) => {
                tracing::warn!(error = %error, "Sentry reporting disabled");
                None
            }
        }
    });
    let app = api::app_with_otel(state, otel.as_ref());
    let code = match api::server::serve(listener, app, shutdown, api::server::SHUTDOWN_GRACE).await
    {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %error, "server failed");
            ExitCode::FAILURE
        }
    };
    if let Some(guard) = sentry {
        // Dropping the guard flushes (bounded by reporting::SHUTDOWN_TIMEOUT); it blocks, so
        // not on a runtime worker.
        let _ = tokio::task::spawn_blocking(move || drop(guard)).await;
    }
    code
}

#[allow(clippy::print_stdout, reason = "status is the command's output")]
async fn migrate(action: MigrateAction, dir: Option<PathBuf>) -> ExitCode {
    let secret = match load_secret(&ProcessEnv).await {
        Ok(secret) => secret,
        Err(code) => return code,
    };
    let url = match config::database_url(&ProcessEnv, &secret) {
        Ok(url) => url,
        Err(error) => return config_error(error),
    };
    let migrations = match dir
        .as_deref()
        .map_or_else(migrate::embedded, migrate::from_dir)
    {
        Ok(migrations) => migrations,
        Err(error) => {
            tracing::error!(error = %error, "invalid migrations");
            return ExitCode::from(EX_USAGE);
        }
    };
    let migrator = Migrator::new(migrations);
    let mut conn = match migrate::connect(url.expose()).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(error = %error, "cannot connect to the database");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        MigrateAction::Up => migrator.up(&mut conn).await.map(|done| {
            tracing::info!(applied = done.len(), "migrate up finished");
        }),
        MigrateAction::Down { steps } => migrator.down(&mut conn, steps).await.map(|done| {
            tracing::info!(reverted = done.len(), "migrate down finished");
        }),
        MigrateAction::Status => migrator.status(&mut conn).await.map(|rows| {
            for row in rows {
                let state = match row.status {
                    Status::Applied { applied_at } => format!("applied {applied_at}"),
                    Status::Pending => "pending".to_owned(),
                    Status::Modified => "MODIFIED since applied".to_owned(),
                    Status::Missing => "applied, file MISSING".to_owned(),
                };
                println!("{:04} {:<32} {state}", row.version, row.name);
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "migrate failed");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the report is the command's output")]
async fn check_config() -> ExitCode {
    let config = match load_config().await {
        Ok(config) => config,
        Err(code) => return code,
    };
    for (name, origin) in &config.origins {
        let origin = match origin {
            config::Origin::Env => "environment",
            config::Origin::SecretsManager => "secrets manager",
            config::Origin::Default => "default",
        };
        println!("{name}: {origin}");
    }
    ExitCode::SUCCESS
}

async fn healthcheck(timeout: Duration) -> ExitCode {
    let port = ProcessEnv
        .var("PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    match tokio::time::timeout(timeout, get_health(port)).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// A minimal HTTP/1.1 GET, so the runtime image needs no curl.
async fn get_health(port: u16) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(&head[..] == b"HTTP/1.1 200")
}
