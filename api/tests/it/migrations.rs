//! `api migrate` against a real PostgreSQL.

use std::collections::HashMap;

use sqlx::{Connection, PgConnection};

use crate::support::{Services, api, repo_root, stdout_json};

fn db_env(services: &Services) -> HashMap<String, String> {
    HashMap::from([(
        "DATABASE_URL".to_owned(),
        services.var("DATABASE_URL").to_owned(),
    )])
}

async fn connect(services: &Services) -> PgConnection {
    PgConnection::connect(services.var("DATABASE_URL"))
        .await
        .expect("connect")
}

async fn history(conn: &mut PgConnection) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT version, name FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .expect("history")
}

async fn tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .fetch_all(&mut *conn)
        .await
        .expect("tables")
}

/// name, data type, max length, nullable, default
type ColumnRow = (String, String, Option<i32>, String, Option<String>);
type ColumnRef<'a> = (&'a str, &'a str, Option<i32>, &'a str, Option<&'a str>);

fn applied_events(output: &std::process::Output, message: &str) -> Vec<serde_json::Value> {
    stdout_json(output)
        .into_iter()
        .filter(|e| e["message"] == message)
        .collect()
}

#[tokio::test]
async fn up_status_down_up_round_trip() {
    let services = Services::start(&["postgres"]);
    let env = db_env(&services);

    let output = api(&env, &["migrate", "up"]);
    assert!(output.status.success(), "{output:?}");
    let applied = applied_events(&output, "migration applied");
    assert_eq!(applied.len(), 1, "{output:?}");
    assert_eq!(applied[0]["version"], 1);
    assert_eq!(applied[0]["name"], "create_users");
    assert!(applied[0]["duration_ms"].as_f64().unwrap() >= 0.0);

    let mut conn = connect(&services).await;
    assert_eq!(history(&mut conn).await, [(1, "create_users".to_owned())]);
    let columns: Vec<ColumnRow> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, character_maximum_length, is_nullable::text, column_default::text \
         FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let expected: [ColumnRef<'_>; 9] = [
        ("id", "uuid", None, "NO", Some("gen_random_uuid()")),
        ("email", "character varying", Some(255), "NO", None),
        ("name", "character varying", Some(255), "YES", None),
        ("password_hash", "character varying", Some(255), "YES", None),
        (
            "subscription_tier",
            "character varying",
            Some(50),
            "YES",
            Some("'free'::character varying"),
        ),
        ("credits", "integer", None, "YES", Some("0")),
        ("free_videos_used", "integer", None, "YES", Some("0")),
        (
            "created_at",
            "timestamp without time zone",
            None,
            "YES",
            Some("now()"),
        ),
        (
            "updated_at",
            "timestamp without time zone",
            None,
            "YES",
            Some("now()"),
        ),
    ];
    let got: Vec<_> = columns
        .iter()
        .map(|(n, t, l, null, d)| (n.as_str(), t.as_str(), *l, null.as_str(), d.as_deref()))
        .collect();
    assert_eq!(got, expected);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'users' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        ["idx_users_email", "users_email_key", "users_pkey"]
    );
    // The default really generates ids, and email is unique.
    sqlx::raw_sql("INSERT INTO users (email) VALUES ('a@example.com')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        sqlx::raw_sql("INSERT INTO users (email) VALUES ('a@example.com')")
            .execute(&mut conn)
            .await
            .is_err()
    );

    let status = api(&env, &["migrate", "status"]);
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("0001 create_users") && l.contains("applied 20")),
        "{text}"
    );

    // A second up is a no-op.
    let again = api(&env, &["migrate", "up"]);
    assert!(again.status.success());
    assert!(applied_events(&again, "migration applied").is_empty());
    assert_eq!(history(&mut conn).await.len(), 1);

    let down = api(&env, &["migrate", "down", "--steps", "1"]);
    assert!(down.status.success(), "{down:?}");
    let reverted = applied_events(&down, "migration reverted");
    assert_eq!(reverted.len(), 1);
    assert_eq!(reverted[0]["version"], 1);
    assert!(history(&mut conn).await.is_empty());
    assert_eq!(tables(&mut conn).await, ["schema_migrations"]);
    let text = String::from_utf8_lossy(&api(&env, &["migrate", "status"]).stdout).into_owned();
    assert!(
        text.contains("0001 create_users") && text.contains("pending"),
        "{text}"
    );

    assert!(api(&env, &["migrate", "up"]).status.success());
    assert_eq!(tables(&mut conn).await, ["schema_migrations", "users"]);
}

fn copy_migrations(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join("api/migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

#[tokio::test]
async fn broken_migration_leaves_schema_and_history_untouched() {
    let services = Services::start(&["postgres"]);
    let env = db_env(&services);
    assert!(api(&env, &["migrate", "up"]).status.success());
    let mut conn = connect(&services).await;
    let tables_before = tables(&mut conn).await;
    let history_before = history(&mut conn).await;

    let dir = copy_migrations(&[
        (
            "0002_broken.up.sql",
            "CREATE TABLE half_done (id INT);\nALTER TABLE users ADD COLUMN nickname TEXT;\nINSERT INTO no_such_table VALUES (1);",
        ),
        ("0002_broken.down.sql", "DROP TABLE half_done;"),
    ]);
    let output = api(
        &env,
        &["migrate", "up", "--dir", dir.path().to_str().unwrap()],
    );
    assert!(
        !output.status.success(),
        "a failing migration must exit non-zero"
    );
    let errors: Vec<_> = stdout_json(&output)
        .into_iter()
        .filter(|e| e["level"] == "error")
        .collect();
    assert!(
        errors.iter().any(|e| e["error"]
            .as_str()
            .is_some_and(|m| m.contains("migration 2 (broken) failed"))),
        "{errors:?}"
    );

    assert_eq!(tables(&mut conn).await, tables_before);
    assert_eq!(history(&mut conn).await, history_before);
    let nickname: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'",
    )
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        nickname, None,
        "the ALTER TABLE of the failed migration must be rolled back"
    );
}

#[tokio::test]
async fn edited_migration_is_refused() {
    let services = Services::start(&["postgres"]);
    let env = db_env(&services);
    assert!(api(&env, &["migrate", "up"]).status.success());
    let dir = copy_migrations(&[]);
    let path = dir.path().join("0001_create_users.up.sql");
    let sql = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, sql.replace("DEFAULT 0", "DEFAULT 5")).unwrap();
    let output = api(
        &env,
        &["migrate", "up", "--dir", dir.path().to_str().unwrap()],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("was edited after it was applied"));
    let status = api(
        &env,
        &["migrate", "status", "--dir", dir.path().to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("MODIFIED"));
}

#[tokio::test]
async fn migrate_without_database_url_exits_64() {
    let output = api(&HashMap::new(), &["migrate", "up"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stdout).contains("missing: DATABASE_URL"));
}
