//! Loading the `APP_SECRETS_ID` secret from AWS Secrets Manager.
//!
//! The secret is a JSON object whose keys are variable names (`DATABASE_URL`, ...). Errors
//! name the secret and the failing step, never a value.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;

/// How long start-up waits for Secrets Manager before giving up.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The call failed (network, permissions, missing secret); `kind` is the SDK's code.
    #[error("could not read secret {id}: {kind}")]
    Fetch {
        /// The secret id or ARN from `APP_SECRETS_ID`.
        id: String,
        /// The error code or a short classification, safe to log.
        kind: String,
    },
    /// The call did not answer within [`FETCH_TIMEOUT`].
    #[error("could not read secret {id}: timed out after {}s", FETCH_TIMEOUT.as_secs())]
    Timeout {
        /// The secret id or ARN.
        id: String,
    },
    /// The secret is binary, not JSON, or not an object of strings.
    #[error("secret {id} is not a JSON object of string values: {reason}")]
    Format {
        /// The secret id or ARN.
        id: String,
        /// What is wrong with its shape (never its content).
        reason: String,
    },
}

/// Fetches the secret and decodes it into variable names and values.
pub async fn fetch(client: &Client, id: &str) -> Result<HashMap<String, String>, SecretsError> {
    let call = client.get_secret_value().secret_id(id).send();
    let output = tokio::time::timeout(FETCH_TIMEOUT, call)
        .await
        .map_err(|_| SecretsError::Timeout { id: id.into() })?
        .map_err(|error| {
            let kind = aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&error)
                .map_or_else(|| sdk_error_kind(&error).to_owned(), str::to_owned);
            SecretsError::Fetch {
                id: id.into(),
                kind,
            }
        })?;
    let text = output.secret_string().ok_or_else(|| SecretsError::Format {
        id: id.into(),
        reason: "it has no SecretString".into(),
    })?;
    decode(id, text)
}

fn sdk_error_kind<E, R>(error: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> &'static str {
    use aws_sdk_secretsmanager::error::SdkError;
    match error {
        SdkError::ConstructionFailure(_) => "request construction failed",
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "connection failed",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ServiceError(_) => "service error",
        _ => "unknown error",
    }
}

/// Decodes the secret's JSON text. Values must be strings; keys that are not variables we
/// know are kept (harmless) so operators can stage new ones before a release uses them.
pub fn decode(id: &str, text: &str) -> Result<HashMap<String, String>, SecretsError> {
    let format = |reason: String| SecretsError::Format {
        id: id.into(),
        reason,
    };
    // serde_json's message carries only line and column, not the input.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format(format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(format("the top level is not an object".into()));
    };
    let mut vars = HashMap::with_capacity(object.len());
    for (key, value) in object {
        match value {
            serde_json::Value::String(text) => {
                vars.insert(key, text);
            }
            _ => return Err(format(format!("the value of {key} is not a string"))),
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_object_of_strings() {
        let vars = decode("app", r#"{"JWT_SECRET":"s3cr3t","PORT":"9000"}"#).unwrap();
        assert_eq!(vars["JWT_SECRET"], "s3cr3t");
        assert_eq!(vars["PORT"], "9000");
    }

    #[test]
    fn rejects_other_shapes_without_echoing_content() {
        for (text, reason) in [
            (r#"["s3cr3t"]"#, "the top level is not an object"),
            (
                r#"{"JWT_SECRET": 12345}"#,
                "the value of JWT_SECRET is not a string",
            ),
            (
                r#"{"JWT_SECRET": "s3cr3t""#,
                "invalid JSON at line 1 column 23",
            ),
        ] {
            let error = decode("app", text).unwrap_err();
            let message = error.to_string();
            assert!(message.ends_with(reason), "{message}");
            assert!(
                !message.contains("s3cr3t") && !message.contains("12345"),
                "{message}"
            );
        }
    }
}
