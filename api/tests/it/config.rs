//! Configuration: one error naming every problem (exit 64), and Secrets Manager loading.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api::config::{Config, Origin};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

use crate::support::{FAKE_JWT_SECRET, FAKE_OPENAI_KEY, Services, api, stdout_json};

const REQUIRED: [&str; 6] = [
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "REPLICATE_API_KEY",
    "SUNO_API_KEY",
    "JWT_SECRET",
];

#[test]
fn missing_variables_are_all_named_in_one_error_and_exit_64() {
    let output = api(&HashMap::new(), &["serve"]);
    assert_eq!(output.status.code(), Some(64));
    let errors: Vec<_> = stdout_json(&output)
        .into_iter()
        .filter(|e| e["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error message: {errors:?}");
    let message = errors[0]["message"].as_str().unwrap();
    for name in REQUIRED {
        assert!(message.contains(name), "{name} not named in {message}");
    }
    // The structured field lists them too, for log queries.
    let missing = errors[0]["missing"].as_str().unwrap();
    for name in REQUIRED {
        assert!(missing.contains(name), "{name} not in missing={missing}");
    }
}

#[test]
fn invalid_values_are_named_never_printed() {
    let env: HashMap<String, String> = [
        ("DATABASE_URL", "mysql://root:hunter2@db/app"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("OPENAI_API_KEY", FAKE_OPENAI_KEY),
        ("REPLICATE_API_KEY", "r8"),
        ("SUNO_API_KEY", "suno"),
        ("JWT_SECRET", "too-short-jwt"),
        ("PORT", "http"),
        ("APP_ENV", "production"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let output = api(&env, &[]);
    assert_eq!(output.status.code(), Some(64));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["DATABASE_URL", "JWT_SECRET", "PORT", "APP_ENV"] {
        assert!(text.contains(name), "{name} not named: {text}");
    }
    for value in ["hunter2", "too-short-jwt", FAKE_OPENAI_KEY, "production"] {
        assert!(!text.contains(value), "value {value} leaked: {text}");
    }
}

fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

#[tokio::test]
async fn secrets_manager_fills_the_config_and_environment_overrides_it() {
    let services = Services::start(&["moto"]);
    let client = secrets_client(services.var("AWS_ENDPOINT_URL"));
    let secret = serde_json::json!({
        "DATABASE_URL": "postgres://app:from-secret@db.internal:5432/app",
        "REDIS_URL": "redis://cache.internal:6379",
        "OPENAI_API_KEY": "sk-from-secret",
        "REPLICATE_API_KEY": "r8-from-secret",
        "SUNO_API_KEY": "suno-from-secret",
        "JWT_SECRET": "jwt-from-the-secret-0123456789abcdef",
    });
    client
        .create_secret()
        .name("app/dev")
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create secret in the emulator");

    // Library level: the decoded secret, then env overrides.
    let vars = api::secrets::fetch(&client, "app/dev").await.unwrap();
    let env = HashMap::from([("JWT_SECRET".to_owned(), FAKE_JWT_SECRET.to_owned())]);
    let config = Config::from_sources(&env, &vars).unwrap();
    assert_eq!(config.jwt_secret.expose(), FAKE_JWT_SECRET);
    assert_eq!(config.origins["JWT_SECRET"], Origin::Env);
    assert_eq!(config.openai_api_key.expose(), "sk-from-secret");
    assert_eq!(config.origins["OPENAI_API_KEY"], Origin::SecretsManager);

    // Binary level: APP_SECRETS_ID with the standard AWS_ENDPOINT_URL.
    let mut env = services.env().clone();
    env.insert("APP_SECRETS_ID".into(), "app/dev".into());
    env.insert("JWT_SECRET".into(), FAKE_JWT_SECRET.into());
    let output = api(&env, &["check-config"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("JWT_SECRET: environment"), "{text}");
    assert!(text.contains("DATABASE_URL: secrets manager"), "{text}");
    assert!(text.contains("PORT: default"), "{text}");
    for value in ["from-secret", FAKE_JWT_SECRET] {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }

    // A missing secret is a clear error naming the id, and exits non-zero.
    env.insert("APP_SECRETS_ID".into(), "app/nope".into());
    let output = api(&env, &["check-config"]);
    assert_eq!(output.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ResourceNotFoundException"));
}

#[test]
fn unreachable_secrets_manager_fails_fast_with_69() {
    let env: HashMap<String, String> = [
        ("APP_SECRETS_ID", "app/dev"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let start = Instant::now();
    let output = api(&env, &["check-config"]);
    assert_eq!(output.status.code(), Some(69));
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(String::from_utf8_lossy(&output.stdout).contains("could not read secret app/dev"));
}
