//! Bearer tokens: a person and a role (and a unit for unit tokens). Only a SHA-256 of the token is
//! stored; tokens carry 256 random bits, so a plain hash is enough (no password stretching).

use crate::Result;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Unit,
    Manager,
    Admin,
    /// A school a district bureau forwards cases to (二级派单): sees those cases, adds its part.
    School,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Unit => "unit",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::School => "school",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "operator" => Some(Role::Operator),
            "unit" => Some(Role::Unit),
            "manager" => Some(Role::Manager),
            "admin" => Some(Role::Admin),
            "school" => Some(Role::School),
            _ => None,
        }
    }
}

/// Who is calling: the result of a successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Uuid,
    pub role: Role,
    pub unit: Option<String>,
    /// The school's name, for school tokens.
    pub school: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Unknown,
    Expired,
    Revoked,
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct NewToken<'a> {
    pub role: Role,
    pub unit: Option<&'a str>,
    pub school: Option<&'a str>,
    pub name: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Issues a token; the plaintext is returned once and never stored.
pub async fn issue(conn: &mut PgConnection, new: &NewToken<'_>) -> Result<(Uuid, String)> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("hl_{}", hex::encode(secret));
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, role, unit_code, name, expires_at, school)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(hash(&token))
    .bind(new.role.as_str())
    .bind(new.unit)
    .bind(new.name)
    .bind(new.expires_at)
    .bind(new.school)
    .execute(conn)
    .await?;
    Ok((id, token))
}

pub async fn authenticate(
    conn: &mut PgConnection,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<Principal, Rejection>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        role: String,
        unit_code: Option<String>,
        school: Option<String>,
        name: String,
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    let row = sqlx::query_as::<_, Row>(
        "SELECT id, role, unit_code, school, name, expires_at, revoked_at FROM tokens
         WHERE token_hash = $1",
    )
    .bind(hash(token))
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(Err(Rejection::Unknown));
    };
    if row.revoked_at.is_some_and(|r| r <= now) {
        return Ok(Err(Rejection::Revoked));
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Ok(Err(Rejection::Expired));
    }
    let role = Role::parse(&row.role)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("token role `{}`", row.role)))?;
    Ok(Ok(Principal {
        token_id: row.id,
        role,
        unit: row.unit_code,
        school: row.school,
        name: row.name,
    }))
}

pub async fn revoke(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
    let result =
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(at)
            .execute(conn)
            .await?;
    Ok(result.rows_affected() == 1)
}
