//! Bearer-token authentication and the JSON body extractor: the edges where requests are checked.

use crate::error::ApiError;
use crate::{AppState, MAX_BODY_BYTES};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use hotline_store::tokens::{self, Principal, Rejection, Role};
use serde::de::DeserializeOwned;

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "a {} token cannot do this",
                self.0.role.as_str()
            )))
        }
    }

    /// The actor recorded on events this caller causes.
    pub fn actor(&self) -> hotline_events::Actor {
        hotline_events::Actor {
            kind: self.0.role.as_str().to_owned(),
            id: self.0.token_id.to_string(),
            name: self.0.name.clone(),
            unit: self.0.unit.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let mut conn = state.pool.acquire().await?;
        match tokens::authenticate(&mut conn, token, state.clock.now()).await? {
            Ok(principal) => Ok(Caller(principal)),
            Err(Rejection::Unknown) => Err(ApiError::unauthorized("unknown token")),
            Err(Rejection::Expired) => Err(ApiError::unauthorized("token expired")),
            Err(Rejection::Revoked) => Err(ApiError::unauthorized("token revoked")),
        }
    }
}

/// A JSON body: `Content-Type: application/json`, at most [`MAX_BODY_BYTES`], parsed strictly.
/// Errors name the field at fault: 400 for malformed JSON, 413 for too large, 415 for another
/// content type, 422 for a well-formed body with wrong, missing or unknown fields.
pub struct JsonBody<T>(pub T, pub axum::body::Bytes);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            })?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(ApiError::bad_request("the body is not valid UTF-8"));
        };
        // serde would read a struct from a JSON array too; the API takes objects only.
        if text.trim_start().starts_with('[') {
            return Err(ApiError::invalid_field("body", "must be a JSON object"));
        }
        // JSON may carry U+0000 as `\u0000`; PostgreSQL stores no NUL in text or jsonb, so it
        // would fail as a 500 deep inside. The escape is rare enough to look for it first.
        if text.contains("\\u0000") {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
                if let Some(field) = field_with_nul(&value, "") {
                    return Err(ApiError::invalid_field(
                        field,
                        "must not contain the NUL character (U+0000)",
                    ));
                }
            }
        }
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(value) => Ok(JsonBody(value, bytes)),
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                match inner.classify() {
                    serde_json::error::Category::Data => {
                        let field = if path == "." { "body".to_owned() } else { path };
                        Err(ApiError::invalid_field(
                            field,
                            strip_position(&inner.to_string()),
                        ))
                    }
                    _ => Err(ApiError::bad_request(format!("malformed JSON: {inner}"))),
                }
            }
        }
    }
}

/// A query string, read strictly like [`JsonBody`]: a missing, unknown or malformed parameter is
/// a 422 in the API's JSON error shape, not axum's plain-text 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // A percent-encoded NUL would reach PostgreSQL, which stores none.
        if parts
            .uri
            .query()
            .is_some_and(|q| q.to_ascii_lowercase().contains("%00"))
        {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_query",
                "query string: must not contain the NUL character (%00)",
            ));
        }
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let message = rejection.body_text();
                let message = message
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&message);
                Err(ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_query",
                    format!("query string: {message}"),
                ))
            }
        }
    }
}

/// The path (as serde_path_to_error writes it: `caller.name`, `items[2]`) of the first string,
/// or object key, that holds a NUL character.
fn field_with_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| field_with_nul(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here())
            } else {
                field_with_nul(item, &inner)
            }
        }),
        _ => None,
    }
}

/// serde's messages end in " at line 1 column 9", which means little to a client of a JSON API
/// once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::field_with_nul;

    #[test]
    fn the_field_holding_a_nul_is_named() {
        let cases = [
            (r#"{"content":"食堂有虫"}"#, None),
            (r#"{"content":"食堂\u0000有虫"}"#, Some("content")),
            (r#"{"caller":{"name":"王\u0000"}}"#, Some("caller.name")),
            (
                r#"{"items":["a",{"note":"\u0000"}]}"#,
                Some("items[1].note"),
            ),
            (r#"{"a\u0000":1}"#, Some("body")),
            (r#""\u0000""#, Some("body")),
            (r#"{"content":"\\u0000 is not a NUL"}"#, None),
        ];
        for (json, expected) in cases {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(field_with_nul(&value, "").as_deref(), expected, "{json}");
        }
    }
}
