//! Error reporting to Sentry with its SDK, on only when `SENTRY_DSN` is set (in the
//! environment or the `APP_SECRETS_ID` secret; a secret, never printed). Without it nothing
//! is installed and nothing changes.
//!
//! What is reported: panics, by the SDK's panic integration, with their stack trace; and
//! every other 5xx response (from the access-log layer, which knows the status and the
//! error kind). Both carry the request's `route` (the template), `method` and `request_id`
//! as tags: [`layer`] gives each request its own hub with those tags, so a panic inside the
//! handler is reported with them. `environment` is `APP_ENV`, `release` is `api@<version>`.
//! The transport is the SDK's reqwest client on rustls (no OpenSSL); it sends from its own
//! thread, so a request never waits for Sentry.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use sentry::protocol::{Event, Level};
use sentry::{ClientOptions, Hub, SentryFutureExt as _};

use crate::access_log::{RequestId, UNMATCHED_ROUTE};
use crate::config::{AppEnv, Secret};

/// Sentry's `release`: the crate and its version.
pub const RELEASE: &str = concat!("api@", env!("CARGO_PKG_VERSION"));

/// Longest the final flush may delay the exit (with the 20 s server grace and the 2 s
/// OpenTelemetry flush, still under ECS's 30 s stop timeout).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The DSN is not one; the message never contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SENTRY_DSN is not a valid Sentry DSN")]
pub struct InvalidDsn;

/// Whether `dsn` parses as Sentry's SDK parses it (used by the configuration check).
pub fn is_valid_dsn(dsn: &str) -> bool {
    dsn.parse::<sentry::types::Dsn>().is_ok()
}

/// The client options: the DSN, `environment` from `APP_ENV`, [`RELEASE`], no default PII
/// (no IP addresses, no request headers or bodies), the default integrations (panics with
/// stack traces). The SDK's defaults are applied by `sentry::init` (or
/// `sentry::apply_defaults`).
pub fn client_options(dsn: &Secret, app_env: AppEnv) -> Result<ClientOptions, InvalidDsn> {
    if !is_valid_dsn(dsn.expose()) {
        return Err(InvalidDsn);
    }
    Ok(ClientOptions::new()
        .dsn(dsn.expose())
        .environment(app_env.as_str())
        .release(RELEASE)
        .send_default_pii(false)
        .shutdown_timeout(SHUTDOWN_TIMEOUT))
}

/// Starts the SDK for the process. Keep the guard for the process's life: dropping it
/// flushes what is queued (within [`SHUTDOWN_TIMEOUT`]). Call it after any other panic
/// hook is installed: the SDK's hook runs first, then the previous one.
pub fn init(dsn: &Secret, app_env: AppEnv) -> Result<sentry::ClientInitGuard, InvalidDsn> {
    Ok(sentry::init(client_options(dsn, app_env)?))
}

/// The per-request middleware: a hub of its own, tagged with the route, method and request
/// id (read from the access-log layer, which must be outside this one), bound while the
/// request runs. Without a Sentry client it only passes the request on.
pub async fn layer(request: Request, next: Next) -> Response {
    let parent = Hub::current();
    if parent.client().is_none() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone());
    let method = crate::otel::method_label(request.method());
    let hub = Arc::new(Hub::new_from_top(parent));
    hub.configure_scope(|scope| {
        scope.set_tag("route", route);
        scope.set_tag("method", method);
        if let Some(id) = request_id {
            scope.set_tag("request_id", id);
        }
    });
    next.run(request).bind_hub(hub).await
}

/// Reports a 5xx response (not a panic: the panic integration has reported that one, with
/// its stack trace). Grouped by error kind and route. A no-op without a Sentry client.
pub fn report_server_error(method: &str, route: &str, status: u16, request_id: &str, kind: &str) {
    Hub::with_active(|hub| {
        let tags: BTreeMap<String, String> = [
            ("route", route),
            ("method", method),
            ("status", &status.to_string()),
            ("request_id", request_id),
            ("error_kind", kind),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        hub.capture_event(Event {
            level: Level::Error,
            logger: Some("access".into()),
            message: Some(format!("request failed: {kind}")),
            tags,
            fingerprint: Cow::Owned(vec![
                Cow::Owned(kind.to_owned()),
                Cow::Owned(route.to_owned()),
            ]),
            ..Event::default()
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_environment_and_release_and_no_pii() {
        let options = client_options(
            &Secret::new("https://abc@o1.ingest.sentry.io/42"),
            AppEnv::Prod,
        )
        .unwrap();
        assert_eq!(options.environment.as_deref(), Some("prod"));
        assert_eq!(options.release.as_deref(), Some(RELEASE));
        assert!(RELEASE.starts_with("api@"));
        assert!(!options.send_default_pii);
        assert_eq!(options.shutdown_timeout, SHUTDOWN_TIMEOUT);
    }

    #[test]
    fn an_invalid_dsn_is_refused_without_echoing_it() {
        let error = client_options(&Secret::new("not-a-dsn-hunter2"), AppEnv::Dev).unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
        assert!(!is_valid_dsn("https://host-without-key/1x"));
    }
}
