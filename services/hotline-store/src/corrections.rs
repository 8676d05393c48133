//! Topic corrections, kept for the next training.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

pub struct NewCorrection<'a> {
    pub case_id: Uuid,
    pub to_topic: &'a str,
    pub source: &'a str,
    pub actor_id: &'a str,
    pub actor_name: &'a str,
}

/// Records the correction for every appeal of the case, and moves the case and its appeals to the
/// new topic. Returns how many appeals were corrected.
pub async fn record_for_case(conn: &mut PgConnection, c: &NewCorrection<'_>) -> Result<u64> {
    let inserted = sqlx::query(
        "INSERT INTO classification_corrections (appeal_id, case_id, from_topic, to_topic, source, actor_id, actor_name)
         SELECT id, case_id, topic, $2, $3, $4, $5 FROM appeals WHERE case_id = $1",
    )
    .bind(c.case_id)
    .bind(c.to_topic)
    .bind(c.source)
    .bind(c.actor_id)
    .bind(c.actor_name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("UPDATE appeals SET topic = $2 WHERE case_id = $1")
        .bind(c.case_id)
        .bind(c.to_topic)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE cases SET topic = $2, updated_at = now() WHERE id = $1")
        .bind(c.case_id)
        .bind(c.to_topic)
        .execute(&mut *conn)
        .await?;
    Ok(inserted)
}

/// The latest correction of each appeal, with its text: labelled examples for training.
pub async fn examples(conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (c.appeal_id) a.content, c.to_topic
         FROM classification_corrections c JOIN appeals a ON a.id = c.appeal_id
         ORDER BY c.appeal_id, c.id DESC",
    )
    .fetch_all(conn)
    .await?)
}
