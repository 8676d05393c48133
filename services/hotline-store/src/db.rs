//! Connecting, creating the database, migrating and loading the seed directories.

use crate::Result;
use hotline_domain::units::{UnitKind, UnitsDirectory};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// Creates the database named in `url` if it does not exist, through the server's `postgres`
/// database. Used by `deploy/local/up`, the tests and `hotline migrate`.
pub async fn ensure_database(url: &str) -> Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = sqlx::PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // Identifiers cannot be bound; quote it.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => {}
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await?;
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}

/// Upserts the units directory; webhook settings, which admins change, are left alone.
pub async fn load_units(pool: &PgPool, units: &UnitsDirectory) -> Result<()> {
    let mut tx = pool.begin().await?;
    for unit in units.all() {
        sqlx::query(
            "INSERT INTO units (code, name, kind, district, aliases) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                 district = EXCLUDED.district, aliases = EXCLUDED.aliases",
        )
        .bind(unit.code.as_str())
        .bind(&unit.name)
        .bind(match unit.kind {
            UnitKind::Department => "department",
            UnitKind::District => "district",
        })
        .bind(&unit.district)
        .bind(&unit.aliases)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Everything a fresh database needs before services start.
pub async fn prepare(url: &str, max_connections: u32) -> Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, max_connections).await?;
    migrate(&pool).await?;
    load_units(&pool, &UnitsDirectory::builtin()).await?;
    Ok(pool)
}
