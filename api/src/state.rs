//! Shared handles the handlers use: the PostgreSQL pool and the Redis connection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Secret;

/// Upper bound for one dependency check; the endpoints answer within 3 s in all cases.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Cloned into every handler; cheap (both handles are reference-counted).
#[derive(Clone)]
pub struct AppState {
    /// PostgreSQL pool; connects lazily so the API starts while the database is down.
    pub db: PgPool,
    /// Redis; reconnects on its own after a failure.
    pub redis: ConnectionManager,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// A connection string that did not parse; the message never includes the URL.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `DATABASE_URL` is not a valid PostgreSQL URL.
    #[error("DATABASE_URL is not a valid PostgreSQL connection string")]
    DatabaseUrl,
    /// `REDIS_URL` is not a valid Redis URL.
    #[error("REDIS_URL is not a valid Redis connection string")]
    RedisUrl,
}

impl AppState {
    /// Builds both handles without connecting: the first request connects, and a dependency
    /// that is down makes its health endpoint fail instead of the whole process.
    /// Must be called inside a Tokio runtime.
    pub fn connect_lazy(database_url: &Secret, redis_url: &Secret) -> Result<Self, StateError> {
        let options = PgConnectOptions::from_str(database_url.expose())
            .map_err(|_| StateError::DatabaseUrl)?;
        let db = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CHECK_TIMEOUT)
            .connect_lazy_with(options);

        let client = redis::Client::open(redis_url.expose()).map_err(|_| StateError::RedisUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let redis = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| StateError::RedisUrl)?;
        Ok(Self { db, redis })
    }
}
