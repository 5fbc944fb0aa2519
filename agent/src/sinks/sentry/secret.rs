//! The DSN from Secrets Manager: the secret is the DSN itself, or a JSON object holding it
//! under `dsn_secret_key` (the API's own `APP_SECRETS_ID` secret has `SENTRY_DSN`). Errors
//! name the secret and the step, never the content.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::config::{Dsn, DsnError};

/// How long start-up waits for Secrets Manager.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the DSN could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SentryError {
    /// The configured DSN (or the secret's) is not a DSN.
    #[error("sinks.sentry: the DSN is invalid: {0}")]
    InvalidDsn(#[from] DsnError),
    /// Secrets Manager did not give the secret.
    #[error("sinks.sentry: cannot read secret {id}: {kind}")]
    Secret {
        /// The secret id.
        id: String,
        /// The error code or a short classification.
        kind: String,
    },
    /// The secret has no usable DSN.
    #[error("sinks.sentry: secret {id} holds no DSN: {reason}")]
    SecretFormat {
        /// The secret id.
        id: String,
        /// What is wrong with its shape (never its content).
        reason: String,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] super::transport::TlsError),
}

impl SentryError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidDsn(_) => "invalid_dsn",
            Self::Secret { .. } => "secret_unavailable",
            Self::SecretFormat { .. } => "secret_format",
            Self::Tls(_) => "tls",
        }
    }
}

/// Reads secret `id` and finds the DSN in it.
pub async fn fetch_dsn(client: &Client, id: &str, key: &str) -> Result<Dsn, SentryError> {
    let call = client.get_secret_value().secret_id(id).send();
    let output = tokio::time::timeout(FETCH_TIMEOUT, call)
        .await
        .map_err(|_| SentryError::Secret {
            id: id.into(),
            kind: format!("timed out after {}s", FETCH_TIMEOUT.as_secs()),
        })?
        .map_err(|error| SentryError::Secret {
            id: id.into(),
            kind: error
                .code()
                .map_or_else(|| sdk_error_kind(&error).to_owned(), str::to_owned),
        })?;
    let text = output
        .secret_string()
        .ok_or_else(|| SentryError::SecretFormat {
            id: id.into(),
            reason: "it has no SecretString".into(),
        })?;
    dsn_from_secret(id, text, key)
}

fn sdk_error_kind<E, R>(error: &SdkError<E, R>) -> &'static str {
    match error {
        SdkError::ConstructionFailure(_) => "request construction failed",
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "connection failed",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ServiceError(_) => "service error",
        _ => "unknown error",
    }
}

/// The DSN in a secret's text: the text itself, or the string under `key` of a JSON object.
pub fn dsn_from_secret(id: &str, text: &str, key: &str) -> Result<Dsn, SentryError> {
    let format = |reason: &str| SentryError::SecretFormat {
        id: id.into(),
        reason: reason.into(),
    };
    let text = text.trim();
    if !text.starts_with('{') {
        return Ok(Dsn::parse(text)?);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format("it is neither a DSN nor valid JSON"))?;
    match value.get(key) {
        Some(serde_json::Value::String(dsn)) => Ok(Dsn::parse(dsn)?),
        Some(_) => Err(format(&format!("the value of {key} is not a string"))),
        None => Err(format(&format!("the JSON object has no {key} key"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_dsn_or_a_json_object_holding_it() {
        let plain = dsn_from_secret("s", " https://k1@sentry.example/3\n", "SENTRY_DSN").unwrap();
        assert_eq!(
            plain.envelope_url(),
            "https://sentry.example/api/3/envelope/"
        );
        let json = dsn_from_secret(
            "s",
            r#"{"DATABASE_URL":"postgres://u:pw@db/app","SENTRY_DSN":"https://k2@sentry.example/4"}"#,
            "SENTRY_DSN",
        )
        .unwrap();
        assert_eq!(
            json.envelope_url(),
            "https://sentry.example/api/4/envelope/"
        );
    }

    #[test]
    fn secret_errors_never_echo_the_content() {
        for (text, kind) in [
            (r#"{"OTHER":"https://hunter2@x/1"}"#, "secret_format"),
            (r#"{"SENTRY_DSN":12345}"#, "secret_format"),
            (r#"{"SENTRY_DSN":"hunter2"}"#, "invalid_dsn"),
            ("{hunter2", "secret_format"),
            ("hunter2", "invalid_dsn"),
        ] {
            let error = dsn_from_secret("prod/api", text, "SENTRY_DSN").unwrap_err();
            assert_eq!(error.kind(), kind, "{text}");
            let message = error.to_string();
            assert!(
                !message.contains("hunter2") && !message.contains("12345"),
                "{message}"
            );
        }
    }
}
