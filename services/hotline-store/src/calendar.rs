//! Holiday schedules loaded at run time.

use crate::Result;
use chrono::NaiveDate;
use sqlx::PgConnection;

pub async fn upsert(conn: &mut PgConnection, days: &[(NaiveDate, String, String)]) -> Result<()> {
    for (day, kind, name) in days {
        sqlx::query(
            "INSERT INTO calendar_days (day, kind, name) VALUES ($1, $2, $3)
             ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, loaded_at = now()",
        )
        .bind(day)
        .bind(kind)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn all(conn: &mut PgConnection) -> Result<Vec<(NaiveDate, String)>> {
    Ok(
        sqlx::query_as("SELECT day, kind FROM calendar_days ORDER BY day")
            .fetch_all(conn)
            .await?,
    )
}
