//! Versioned, reversible SQL migrations: `api migrate up | down [--steps N] | status`.
//!
//! Files are `NNNN_name.up.sql` and `NNNN_name.down.sql` under `api/migrations/`, embedded
//! in the binary at build time (`--dir` reads another directory instead). Each migration
//! runs in its own transaction together with its history row, so a failing migration
//! leaves both the schema and the history as they were. A session advisory lock keeps two
//! deploys from migrating at once. Nothing migrates implicitly: `api serve` never calls this.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The table that records which migrations ran.
pub const HISTORY_TABLE: &str = "schema_migrations";

/// Key of the advisory lock held while migrating ("api_migr").
const LOCK_KEY: i64 = 0x6170_695f_6d69_6772;

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    execution_ms DOUBLE PRECISION NOT NULL
)";

/// One migration: its forward and reverse SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number that orders migrations.
    pub version: i64,
    /// The descriptive part of the file name.
    pub name: String,
    up: String,
    down: String,
    /// SHA-256 of the up SQL, recorded when applied, to detect edited migrations.
    pub checksum: String,
}

/// What went wrong; each variant names the migration, never connection details.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A file in the migrations directory does not follow the naming rules.
    #[error("migration file {file}: {reason}")]
    File {
        /// The offending file name.
        file: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The migrations directory could not be read.
    #[error("cannot read migrations from {path}: {source}")]
    Io {
        /// The directory or file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SQL of a migration failed; its transaction was rolled back.
    #[error("migration {version} ({name}) failed and was rolled back: {source}")]
    Failed {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
        /// The database error.
        source: sqlx::Error,
    },
    /// An applied migration's file changed since it ran.
    #[error(
        "migration {version} ({name}) was edited after it was applied (checksum differs); add a new migration instead"
    )]
    Modified {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: String,
    },
    /// An applied migration has no file, so it cannot be reverted.
    #[error("migration {version} is applied but has no file here; cannot revert it")]
    Missing {
        /// The migration's version.
        version: i64,
    },
    /// Any other database error (connecting, reading the history).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The migrations compiled into this binary.
pub fn embedded() -> Result<Vec<Migration>, MigrateError> {
    parse(
        EMBEDDED
            .iter()
            .map(|(name, sql)| ((*name).to_owned(), (*sql).to_owned())),
    )
}

/// The migrations in `dir` (every `*.sql` file; other files are ignored).
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let io = |source| MigrateError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".sql") {
            let sql = std::fs::read_to_string(entry.path()).map_err(io)?;
            files.push((name, sql));
        }
    }
    parse(files.into_iter())
}

/// Pairs `NNNN_name.up.sql` with `NNNN_name.down.sql`, ordered by version.
fn parse(files: impl Iterator<Item = (String, String)>) -> Result<Vec<Migration>, MigrateError> {
    #[derive(Default)]
    struct Pair {
        name: String,
        up: Option<String>,
        down: Option<String>,
    }
    let mut pairs: BTreeMap<i64, Pair> = BTreeMap::new();
    for (file, sql) in files {
        let bad = |reason| MigrateError::File {
            file: file.clone(),
            reason,
        };
        let (stem, is_up) = if let Some(stem) = file.strip_suffix(".up.sql") {
            (stem, true)
        } else if let Some(stem) = file.strip_suffix(".down.sql") {
            (stem, false)
        } else {
            return Err(bad("must end in .up.sql or .down.sql"));
        };
        let (number, name) = stem
            .split_once('_')
            .ok_or_else(|| bad("must be named NNNN_name"))?;
        let version: i64 = number
            .parse()
            .map_err(|_| bad("must start with a version number"))?;
        if version <= 0 || name.is_empty() {
            return Err(bad("must be named NNNN_name with NNNN > 0"));
        }
        let pair = pairs.entry(version).or_default();
        if pair.name.is_empty() {
            pair.name = name.to_owned();
        } else if pair.name != name {
            return Err(bad("another migration has the same version"));
        }
        let slot = if is_up { &mut pair.up } else { &mut pair.down };
        if slot.replace(sql).is_some() {
            return Err(bad("duplicate file"));
        }
    }
    pairs
        .into_iter()
        .map(|(version, pair)| {
            let file = format!("{version:04}_{}", pair.name);
            let up = pair.up.ok_or(MigrateError::File {
                file: file.clone(),
                reason: "has no .up.sql",
            })?;
            let down = pair.down.ok_or(MigrateError::File {
                file,
                reason: "has no .down.sql (migrations must be reversible)",
            })?;
            let checksum = format!("{:x}", Sha256::digest(up.as_bytes()));
            Ok(Migration {
                version,
                name: pair.name,
                up,
                down,
                checksum,
            })
        })
        .collect()
}

/// A migration applied or reverted by one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The migration's version.
    pub version: i64,
    /// The migration's name.
    pub name: String,
    /// How long its SQL took.
    pub duration: Duration,
}

/// Where a migration stands in one database.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Recorded in the history.
    Applied {
        /// When it ran (the database's clock, as text).
        applied_at: String,
    },
    /// Known here, not yet applied.
    Pending,
    /// Applied, but the file changed since.
    Modified,
    /// Applied, but no file here describes it.
    Missing,
}

/// One line of `api migrate status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    /// The migration's version.
    pub version: i64,
    /// The migration's name.
    pub name: String,
    /// Its state.
    pub status: Status,
}

struct Applied {
    name: String,
    checksum: String,
    applied_at: String,
}

/// Applies and reverts a fixed set of migrations.
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

impl Migrator {
    /// A migrator over `migrations` (from [`embedded`] or [`from_dir`]).
    pub fn new(migrations: Vec<Migration>) -> Self {
        Self { migrations }
    }

    /// Applies every pending migration in version order; returns what ran (empty when the
    /// database is up to date). Stops at the first failure, which is rolled back.
    pub async fn up(&self, conn: &mut PgConnection) -> Result<Vec<Outcome>, MigrateError> {
        lock(conn).await?;
        let result = self.up_locked(conn).await;
        unlock(conn).await;
        result
    }

    async fn up_locked(&self, conn: &mut PgConnection) -> Result<Vec<Outcome>, MigrateError> {
        let applied = history(conn).await?;
        for migration in &self.migrations {
            if applied
                .get(&migration.version)
                .is_some_and(|row| row.checksum != migration.checksum)
            {
                return Err(MigrateError::Modified {
                    version: migration.version,
                    name: migration.name.clone(),
                });
            }
        }
        let mut outcomes = Vec::new();
        for migration in self
            .migrations
            .iter()
            .filter(|m| !applied.contains_key(&m.version))
        {
            let start = Instant::now();
            let failed = |source| MigrateError::Failed {
                version: migration.version,
                name: migration.name.clone(),
                source,
            };
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(AssertSqlSafe(migration.up.as_str())).execute(&mut *tx).await.map_err(|e| {
                tracing::error!(version = migration.version, name = %migration.name, "migration failed; rolling back");
                failed(e)
            })?;
            let duration = start.elapsed();
            sqlx::query("INSERT INTO schema_migrations (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)")
                .bind(migration.version)
                .bind(&migration.name)
                .bind(&migration.checksum)
                .bind(duration.as_secs_f64() * 1000.0)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(
                version = migration.version,
                name = %migration.name,
                duration_ms = duration.as_secs_f64() * 1000.0,
                "migration applied"
            );
            outcomes.push(Outcome {
                version: migration.version,
                name: migration.name.clone(),
                duration,
            });
        }
        Ok(outcomes)
    }

    /// Reverts the `steps` most recently applied migrations, newest first.
    pub async fn down(
        &self,
        conn: &mut PgConnection,
        steps: usize,
    ) -> Result<Vec<Outcome>, MigrateError> {
        lock(conn).await?;
        let result = self.down_locked(conn, steps).await;
        unlock(conn).await;
        result
    }

    async fn down_locked(
        &self,
        conn: &mut PgConnection,
        steps: usize,
    ) -> Result<Vec<Outcome>, MigrateError> {
        let applied = history(conn).await?;
        let by_version: HashMap<i64, &Migration> =
            self.migrations.iter().map(|m| (m.version, m)).collect();
        let targets: Vec<i64> = applied.keys().rev().take(steps).copied().collect();
        // Check every target before touching anything.
        for version in &targets {
            if !by_version.contains_key(version) {
                return Err(MigrateError::Missing { version: *version });
            }
        }
        let mut outcomes = Vec::new();
        for version in targets {
            let migration = by_version[&version];
            let failed = |source| MigrateError::Failed {
                version,
                name: migration.name.clone(),
                source,
            };
            let start = Instant::now();
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(AssertSqlSafe(migration.down.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    tracing::error!(version, name = %migration.name, "revert failed; rolling back");
                    failed(e)
                })?;
            sqlx::query("DELETE FROM schema_migrations WHERE version = $1")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            let duration = start.elapsed();
            tracing::info!(version, name = %migration.name, duration_ms = duration.as_secs_f64() * 1000.0, "migration reverted");
            outcomes.push(Outcome {
                version,
                name: migration.name.clone(),
                duration,
            });
        }
        Ok(outcomes)
    }

    /// Every known or applied migration with its state, by version.
    pub async fn status(&self, conn: &mut PgConnection) -> Result<Vec<StatusRow>, MigrateError> {
        sqlx::raw_sql(CREATE_HISTORY).execute(&mut *conn).await?;
        let mut applied = history(conn).await?;
        let mut rows = Vec::new();
        for migration in &self.migrations {
            let status = match applied.remove(&migration.version) {
                None => Status::Pending,
                Some(row) if row.checksum != migration.checksum => Status::Modified,
                Some(row) => Status::Applied {
                    applied_at: row.applied_at,
                },
            };
            rows.push(StatusRow {
                version: migration.version,
                name: migration.name.clone(),
                status,
            });
        }
        rows.extend(applied.into_iter().map(|(version, row)| StatusRow {
            version,
            name: row.name,
            status: Status::Missing,
        }));
        rows.sort_by_key(|row| row.version);
        Ok(rows)
    }
}

/// Opens one connection (migrations run on a single session: the lock is per session).
/// Server notices such as "relation already exists, skipping" are not worth a log line.
pub async fn connect(database_url: &str) -> Result<PgConnection, MigrateError> {
    let options =
        PgConnectOptions::from_str(database_url)?.options([("client_min_messages", "warning")]);
    Ok(PgConnection::connect_with(&options).await?)
}

async fn lock(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(CREATE_HISTORY).execute(&mut *conn).await?;
    Ok(())
}

/// Best effort: closing the session releases the lock anyway.
async fn unlock(conn: &mut PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
}

async fn history(conn: &mut PgConnection) -> Result<BTreeMap<i64, Applied>, MigrateError> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM schema_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(version, name, checksum, applied_at)| {
            (
                version,
                Applied {
                    name,
                    checksum,
                    applied_at,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|name| ((*name).to_owned(), format!("-- {name}")))
            .collect()
    }

    #[test]
    fn embedded_migrations_start_with_users() {
        let migrations = embedded().unwrap();
        assert_eq!(migrations[0].version, 1);
        assert_eq!(migrations[0].name, "create_users");
        assert!(migrations[0].up.contains("CREATE TABLE users"));
        assert!(migrations[0].down.contains("DROP TABLE"));
    }

    #[test]
    fn pairs_are_ordered_by_version() {
        let parsed = parse(
            files(&[
                "0010_b.up.sql",
                "0002_a.down.sql",
                "0002_a.up.sql",
                "0010_b.down.sql",
            ])
            .into_iter(),
        )
        .unwrap();
        let versions: Vec<_> = parsed
            .iter()
            .map(|m| (m.version, m.name.as_str()))
            .collect();
        assert_eq!(versions, [(2, "a"), (10, "b")]);
        assert_ne!(parsed[0].checksum, parsed[1].checksum);
    }

    #[test]
    fn validate_rejects_bad_file_sets() {
        for (names, reason) in [
            (
                &["0001_a.up.sql"][..],
                "has no .down.sql (migrations must be reversible)",
            ),
            (&["0001_a.down.sql"][..], "has no .up.sql"),
            (&["0001_a.sql"][..], "must end in .up.sql or .down.sql"),
            (&["first.up.sql"][..], "must be named NNNN_name"),
            (&["x_a.up.sql"][..], "must start with a version number"),
            (
                &["0000_a.up.sql"][..],
                "must be named NNNN_name with NNNN > 0",
            ),
            (
                &["0001_a.up.sql", "0001_b.up.sql"][..],
                "another migration has the same version",
            ),
        ] {
            match parse(files(names).into_iter()) {
                Err(MigrateError::File { reason: got, .. }) => assert_eq!(got, reason, "{names:?}"),
                other => panic!("{names:?}: expected a file error, got {other:?}"),
            }
        }
    }
}
