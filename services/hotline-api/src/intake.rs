//! Intake: `POST /api/v1/appeals`, and the one filing path that `hotline import` uses too.

use crate::auth::{Caller, JsonBody};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use hotline_domain::appeal::{AppealError, AppealInput, NewAppeal, Provenance};
use hotline_events::{timestamp, v1, Actor, Event, Payload};
use hotline_store::appeals::{self, AppealMeta, Filed};
use hotline_store::tokens::Role;
use hotline_store::{outbox, PgPool, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAppealRequest {
    pub content: Option<String>,
    pub channel: Option<String>,
    pub caller: Option<CallerRequest>,
    pub district: Option<String>,
    pub school: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub external_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerRequest {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub confidential: Option<bool>,
}

impl From<FileAppealRequest> for AppealInput {
    fn from(r: FileAppealRequest) -> Self {
        let caller = r.caller.unwrap_or(CallerRequest {
            name: None,
            phone: None,
            confidential: None,
        });
        AppealInput {
            content: r.content,
            channel: r.channel,
            caller_name: caller.name,
            caller_phone: caller.phone,
            caller_confidential: caller.confidential.unwrap_or(false),
            district: r.district,
            school: r.school,
            received_at: r.received_at,
            external_id: r.external_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FileAppealResponse {
    pub id: Uuid,
    pub case_id: Option<Uuid>,
    pub status: String,
    /// Cases the same caller opened in the repeat window: the operator sees them at once.
    pub same_caller_cases: Vec<SameCallerCase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SameCallerCase {
    pub appeal_id: Uuid,
    pub case_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub topic: Option<String>,
    pub case_state: String,
}

/// Keyed hash of a caller's phone (HMAC-SHA256 over the digits): repeats are matched on it.
pub fn caller_key(secret: &str, appeal: &NewAppeal) -> Option<String> {
    use hmac::{Hmac, Mac};
    let phone = appeal.caller_phone.as_ref()?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(phone.expose().as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Invalid(#[from] AppealError),
    #[error("this Idempotency-Key or external_id was already used for a different appeal")]
    KeyReused { existing: Uuid },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        match error {
            IntakeError::Invalid(e) => ApiError::invalid_field(e.field, e.message),
            e @ IntakeError::KeyReused { .. } => ApiError::conflict(e.to_string()),
            IntakeError::Store(e) => e.into(),
        }
    }
}

/// Where a filing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    pub id: Uuid,
    pub created: bool,
    pub status: String,
    pub case_id: Option<Uuid>,
    pub caller_key: Option<String>,
}

/// Stores the appeal and its AppealFiled event in one transaction. Returns once both are durable.
pub async fn file_appeal(
    pool: &PgPool,
    appeal: &NewAppeal,
    actor: Actor,
    idempotency_key: Option<&str>,
    request_hash: &str,
    caller_key_secret: &str,
    now: DateTime<Utc>,
) -> Result<FileOutcome, IntakeError> {
    // The request's span when spans are exported, so the trace starts at the HTTP request.
    let traceparent = hotline_events::trace::current_traceparent().unwrap_or_else(new_traceparent);
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let key = caller_key(caller_key_secret, appeal);
    let meta = AppealMeta {
        filed_by: &actor.id,
        idempotency_key,
        request_hash,
        traceparent: Some(&traceparent),
        caller_key: key.as_deref(),
    };
    let id = Uuid::now_v7();
    match appeals::insert(&mut tx, id, appeal, &meta).await? {
        Filed::Created(id) => {
            let event = Event::new(
                id.to_string(),
                actor,
                now,
                Payload::AppealFiled(v1::AppealFiled {
                    appeal_id: id.to_string(),
                    content: appeal.content.clone(),
                    channel: wire_channel(appeal.channel),
                    received_at: Some(timestamp(appeal.received_at)),
                    district_hint: appeal.district_hint.clone().unwrap_or_default(),
                    school_hint: appeal.school_hint.clone().unwrap_or_default(),
                    external_id: appeal.external_id.clone().unwrap_or_default(),
                    caller_phone_masked: appeal
                        .caller_phone
                        .as_ref()
                        .map(|p| p.masked())
                        .unwrap_or_default(),
                    caller_confidential: appeal.caller_confidential,
                    historical: appeal.provenance == Provenance::Historical,
                }),
            )
            .with_traceparent(Some(traceparent));
            outbox::enqueue(&mut tx, &event).await?;
            tx.commit().await.map_err(StoreError::from)?;
            metrics::counter!("hotline_appeals_filed_total", "channel" => appeal.channel.as_str())
                .increment(1);
            tracing::info!(appeal_id = %id, channel = %appeal.channel, "appeal filed");
            Ok(FileOutcome {
                id,
                created: true,
                status: "received".into(),
                case_id: None,
                caller_key: key,
            })
        }
        Filed::Existing { id, same_request } => {
            tx.rollback().await.map_err(StoreError::from)?;
            if !same_request {
                return Err(IntakeError::KeyReused { existing: id });
            }
            let mut conn = pool.acquire().await.map_err(StoreError::from)?;
            let row = appeals::get(&mut conn, id).await?;
            Ok(FileOutcome {
                id,
                created: false,
                status: row.as_ref().map(|r| r.status.clone()).unwrap_or_default(),
                case_id: row.and_then(|r| r.case_id),
                caller_key: key,
            })
        }
    }
}

/// What makes two filings "the same request": the appeal's own fields. `received_at` is left out
/// because a client that omits it gets "now", which differs on every retry.
pub fn fingerprint(appeal: &NewAppeal) -> String {
    let mut hasher = Sha256::new();
    for part in [
        Some(appeal.content.as_str()),
        Some(appeal.channel.as_str()),
        appeal.district_hint.as_deref(),
        appeal.school_hint.as_deref(),
        appeal.external_id.as_deref(),
        appeal.caller_phone.as_ref().map(|p| p.expose()),
        appeal.caller_name.as_deref(),
    ] {
        hasher.update(part.unwrap_or("\u{0}").as_bytes());
        hasher.update([0x1f]);
    }
    hex::encode(hasher.finalize())
}

fn wire_channel(channel: hotline_domain::appeal::Channel) -> i32 {
    use hotline_domain::appeal::Channel as C;
    (match channel {
        C::Phone => v1::Channel::Phone,
        C::Web => v1::Channel::Web,
        C::Platform12345 => v1::Channel::Platform12345,
        C::Other => v1::Channel::Other,
    }) as i32
}

/// A W3C traceparent for a new trace, started at intake and carried by every event of the appeal.
fn new_traceparent() -> String {
    use rand::RngCore;
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    rand::rng().fill_bytes(&mut trace);
    rand::rng().fill_bytes(&mut span);
    format!("00-{}-{}-01", hex::encode(trace), hex::encode(span))
}

const MAX_IDEMPOTENCY_KEY: usize = 200;

pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request, _): JsonBody<FileAppealRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Operator, Role::Manager, Role::Admin])?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ))
                })?;
            Some(key.to_owned())
        }
    };
    let now = state.clock.now();
    let appeal =
        NewAppeal::parse(request.into(), now, Provenance::Live).map_err(IntakeError::from)?;
    let outcome = file_appeal(
        &state.pool,
        &appeal,
        caller.actor(),
        key.as_deref(),
        &fingerprint(&appeal),
        &state.caller_key_secret,
        now,
    )
    .await?;
    let same_caller_cases = match &outcome.caller_key {
        Some(key) => {
            let since =
                appeal.received_at - chrono::Duration::days(state.repeat_policy.same_caller_days);
            let mut conn = state.pool.acquire().await?;
            appeals::same_caller_cases(&mut conn, key, since, outcome.id)
                .await?
                .into_iter()
                .map(
                    |(appeal_id, case_id, received_at, topic, case_state)| SameCallerCase {
                        appeal_id,
                        case_id,
                        received_at,
                        topic,
                        case_state,
                    },
                )
                .collect()
        }
        None => Vec::new(),
    };
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/appeals/{}", outcome.id);
    let body = FileAppealResponse {
        id: outcome.id,
        case_id: outcome.case_id,
        status: outcome.status,
        same_caller_cases,
    };
    Ok((
        status,
        [(axum::http::header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}
