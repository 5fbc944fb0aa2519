//! Configuration from the environment (and optionally one Secrets Manager secret).
//!
//! Loading is split the usual way: the process environment and the secret are read by the
//! caller, then [`Config::from_sources`] validates everything at once, purely, so that one
//! error names every missing or invalid variable. Values never appear in errors or `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Reads variables; the process environment in production, a map in tests.
pub trait Env {
    /// The value of `key`, if set (an empty value counts as unset).
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|value| !value.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|value| !value.is_empty()).cloned()
    }
}

/// A value that must not be printed. `Debug` and `Display` show only `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a sensitive value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that needs it (a connection, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// The deployment stage; selects defaults such as the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Local development and tests (the default).
    Dev,
    /// Pre-production.
    Staging,
    /// Production.
    Prod,
}

impl AppEnv {
    /// The name used in `APP_ENV` and in Sentry's `environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Staging => "staging",
            Self::Prod => "prod",
        }
    }
}

/// Variables that may come from the Secrets Manager secret as well as the environment.
pub const SECRET_KEYS: [&str; 7] = [
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "REPLICATE_API_KEY",
    "SUNO_API_KEY",
    "JWT_SECRET",
    "SENTRY_DSN",
];

/// Shortest accepted `JWT_SECRET`: HS256 keys shorter than the hash output are weak.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Where a variable's value came from; shown by `api check-config`, never the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The process environment.
    Env,
    /// The Secrets Manager secret named by `APP_SECRETS_ID`.
    SecretsManager,
    /// The built-in default.
    Default,
}

/// The validated configuration of `api serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL connection string (holds a password).
    pub database_url: Secret,
    /// Redis connection string (may hold a password).
    pub redis_url: Secret,
    /// Third-party API keys, held for the features that call those services.
    pub openai_api_key: Secret,
    /// See `openai_api_key`.
    pub replicate_api_key: Secret,
    /// See `openai_api_key`.
    pub suno_api_key: Secret,
    /// Key for signing session tokens.
    pub jwt_secret: Secret,
    /// Sentry DSN; optional.
    pub sentry_dsn: Option<Secret>,
    /// TCP port to listen on (default 8080).
    pub port: u16,
    /// Deployment stage (default dev).
    pub app_env: AppEnv,
    /// Where each variable came from, for `check-config`.
    pub origins: BTreeMap<&'static str, Origin>,
}

/// Every problem found in one pass, by variable name.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Required variables that are not set anywhere.
    pub missing: Vec<&'static str>,
    /// Variables that are set but wrong, with what was expected (never the value).
    pub invalid: Vec<(&'static str, &'static str)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration")?;
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        if !self.invalid.is_empty() {
            f.write_str("; invalid: ")?;
            for (i, (name, expected)) in self.invalid.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name} ({expected})")?;
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// True when nothing was found wrong.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.invalid.is_empty()
    }
}

struct Reader<'a> {
    env: &'a dyn Env,
    secret: &'a HashMap<String, String>,
    origins: BTreeMap<&'static str, Origin>,
    error: ConfigError,
}

impl Reader<'_> {
    /// Environment first (it overrides), then the secret.
    fn lookup(&mut self, name: &'static str) -> Option<String> {
        if let Some(value) = self.env.var(name) {
            self.origins.insert(name, Origin::Env);
            return Some(value);
        }
        let value = self.secret.get(name).filter(|v| !v.is_empty())?.clone();
        self.origins.insert(name, Origin::SecretsManager);
        Some(value)
    }

    fn required(&mut self, name: &'static str) -> Secret {
        match self.lookup(name) {
            Some(value) => Secret::new(value),
            None => {
                self.error.missing.push(name);
                Secret::new(String::new())
            }
        }
    }

    fn check(&mut self, name: &'static str, ok: bool, expected: &'static str) {
        if !ok {
            self.error.invalid.push((name, expected));
        }
    }
}

impl Config {
    /// Validates the variables of `env`, falling back to the keys of `secret` (the decoded
    /// Secrets Manager object; empty when `APP_SECRETS_ID` is unset). Pure: no I/O.
    pub fn from_sources(
        env: &dyn Env,
        secret: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut r = Reader {
            env,
            secret,
            origins: BTreeMap::new(),
            error: ConfigError::default(),
        };

        let database_url = r.required("DATABASE_URL");
        let redis_url = r.required("REDIS_URL");
        let openai_api_key = r.required("OPENAI_API_KEY");
        let replicate_api_key = r.required("REPLICATE_API_KEY");
        let suno_api_key = r.required("SUNO_API_KEY");
        let jwt_secret = r.required("JWT_SECRET");
        let sentry_dsn = r.lookup("SENTRY_DSN").map(Secret::new);

        let db = database_url.expose();
        r.check(
            "DATABASE_URL",
            db.is_empty() || db.starts_with("postgres://") || db.starts_with("postgresql://"),
            "a postgres:// or postgresql:// URL",
        );
        let redis = redis_url.expose();
        r.check(
            "REDIS_URL",
            redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://"),
            "a redis:// or rediss:// URL",
        );
        let jwt = jwt_secret.expose();
        r.check(
            "JWT_SECRET",
            jwt.is_empty() || jwt.len() >= MIN_JWT_SECRET_BYTES,
            "at least 32 bytes",
        );
        if let Some(dsn) = &sentry_dsn {
            let dsn = dsn.expose();
            r.check(
                "SENTRY_DSN",
                (dsn.starts_with("https://") || dsn.starts_with("http://"))
                    && crate::reporting::is_valid_dsn(dsn),
                "a Sentry DSN such as https://key@host/project",
            );
        }

        let port = match r.lookup("PORT") {
            None => {
                r.origins.insert("PORT", Origin::Default);
                8080
            }
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => {
                    r.error.invalid.push(("PORT", "an integer in 1..=65535"));
                    0
                }
            },
        };
        let app_env = match r.lookup("APP_ENV").as_deref() {
            None => {
                r.origins.insert("APP_ENV", Origin::Default);
                AppEnv::Dev
            }
            Some("dev") => AppEnv::Dev,
            Some("staging") => AppEnv::Staging,
            Some("prod") => AppEnv::Prod,
            Some(_) => {
                r.error
                    .invalid
                    .push(("APP_ENV", "one of dev, staging, prod"));
                AppEnv::Dev
            }
        };

        if !r.error.is_empty() {
            return Err(r.error);
        }
        Ok(Self {
            database_url,
            redis_url,
            openai_api_key,
            replicate_api_key,
            suno_api_key,
            jwt_secret,
            sentry_dsn,
            port,
            app_env,
            origins: r.origins,
        })
    }
}

/// The database URL alone, for `api migrate` (which needs nothing else).
pub fn database_url(
    env: &dyn Env,
    secret: &HashMap<String, String>,
) -> Result<Secret, ConfigError> {
    let mut r = Reader {
        env,
        secret,
        origins: BTreeMap::new(),
        error: ConfigError::default(),
    };
    let url = r.required("DATABASE_URL");
    let text = url.expose();
    r.check(
        "DATABASE_URL",
        text.is_empty() || text.starts_with("postgres://") || text.starts_with("postgresql://"),
        "a postgres:// or postgresql:// URL",
    );
    if r.error.is_empty() {
        Ok(url)
    } else {
        Err(r.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn complete() -> HashMap<String, String> {
        env(&[
            ("DATABASE_URL", "postgres://app:pw@127.0.0.1:5432/app"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("OPENAI_API_KEY", "sk-openai"),
            ("REPLICATE_API_KEY", "r8-key"),
            ("SUNO_API_KEY", "suno-key"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
    }

    #[test]
    fn complete_environment_uses_defaults() {
        let config = Config::from_sources(&complete(), &HashMap::new()).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.app_env, AppEnv::Dev);
        assert_eq!(config.origins["PORT"], Origin::Default);
        assert_eq!(config.origins["JWT_SECRET"], Origin::Env);
        assert!(config.sentry_dsn.is_none());
    }

    #[test]
    fn validate_rejects_every_missing_variable_at_once() {
        let error = Config::from_sources(&env(&[]), &HashMap::new()).unwrap_err();
        assert_eq!(
            error.missing,
            [
                "DATABASE_URL",
                "REDIS_URL",
                "OPENAI_API_KEY",
                "REPLICATE_API_KEY",
                "SUNO_API_KEY",
                "JWT_SECRET"
            ]
        );
        let text = error.to_string();
        for name in error.missing {
            assert!(text.contains(name), "{text}");
        }
    }

    #[test]
    fn validate_rejects_bad_values_without_printing_them() {
        let mut vars = complete();
        vars.insert("PORT".into(), "eighty".into());
        vars.insert("APP_ENV".into(), "production".into());
        vars.insert("JWT_SECRET".into(), "short-secret-value".into());
        vars.insert("DATABASE_URL".into(), "mysql://u:hunter2@db/app".into());
        vars.insert("REDIS_URL".into(), "http://cache".into());
        let error = Config::from_sources(&vars, &HashMap::new()).unwrap_err();
        let names: Vec<_> = error.invalid.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "PORT", "APP_ENV"]
        );
        let text = error.to_string();
        for value in [
            "eighty",
            "production",
            "short-secret-value",
            "hunter2",
            "http://cache",
        ] {
            assert!(!text.contains(value), "{text} leaks {value}");
        }
    }

    #[test]
    fn validate_rejects_port_zero_and_out_of_range() {
        for port in ["0", "65536", "-1"] {
            let mut vars = complete();
            vars.insert("PORT".into(), port.into());
            let error = Config::from_sources(&vars, &HashMap::new()).unwrap_err();
            assert_eq!(
                error.invalid,
                [("PORT", "an integer in 1..=65535")],
                "{port}"
            );
        }
    }

    #[test]
    fn secret_fills_gaps_and_environment_overrides_it() {
        let mut vars = complete();
        vars.remove("JWT_SECRET");
        vars.remove("OPENAI_API_KEY");
        let secret = env(&[
            ("JWT_SECRET", "from-the-secret-0123456789abcdef0123"),
            ("DATABASE_URL", "postgres://secret@db/app"),
        ]);
        let config = Config::from_sources(&vars, &secret).unwrap_err();
        assert_eq!(config.missing, ["OPENAI_API_KEY"]);

        vars.insert("OPENAI_API_KEY".into(), "sk".into());
        let config = Config::from_sources(&vars, &secret).unwrap();
        assert_eq!(
            config.jwt_secret.expose(),
            "from-the-secret-0123456789abcdef0123"
        );
        assert_eq!(config.origins["JWT_SECRET"], Origin::SecretsManager);
        assert_eq!(
            config.database_url.expose(),
            "postgres://app:pw@127.0.0.1:5432/app"
        );
        assert_eq!(config.origins["DATABASE_URL"], Origin::Env);
    }

    #[test]
    fn debug_output_redacts_every_secret() {
        let config = Config::from_sources(&complete(), &HashMap::new()).unwrap();
        let debug = format!("{config:?}");
        for (_, value) in complete() {
            assert!(!debug.contains(&value), "Debug leaks {value}");
        }
        assert!(debug.contains("[REDACTED]"));
    }

    #[test]
    fn empty_values_count_as_missing() {
        let mut vars = complete();
        vars.insert("REDIS_URL".into(), String::new());
        let error = Config::from_sources(&vars, &HashMap::new()).unwrap_err();
        assert_eq!(error.missing, ["REDIS_URL"]);
    }
}
