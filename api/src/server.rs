//! Running the HTTP server with a graceful, bounded shutdown.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// How long in-flight requests may run after SIGTERM; under ECS's 30 s default stop
/// timeout, so the process exits on its own before SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Serves `app` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new connections"
            );
            let _ = started_tx.send(());
        })
        .into_future();
    let deadline = async move {
        match started_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended by itself; the other branch has already won.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("shutdown deadline reached: abandoning in-flight requests");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
