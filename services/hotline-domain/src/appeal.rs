//! An appeal as it arrives at intake, validated once at the edge.

use crate::phone::PhoneNumber;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest appeal text we accept, in characters. 12345 platform exports seldom pass 3,000.
pub const MAX_CONTENT_CHARS: usize = 20_000;
const MAX_SHORT_FIELD_CHARS: usize = 200;
/// How far in the future a `received_at` may be, to absorb clock skew between systems.
const FUTURE_TOLERANCE_MINUTES: i64 = 5;
/// How old a live appeal may be when filed: a 12345 export after a long holiday still fits.
const MAX_LIVE_AGE_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Phone,
    Web,
    Platform12345,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Phone,
        Channel::Web,
        Channel::Platform12345,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Web => "web",
            Channel::Platform12345 => "platform_12345",
            Channel::Other => "other",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = AppealError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                AppealError::new(
                    "channel",
                    format!("must be one of phone, web, platform_12345, other; got `{s}`"),
                )
            })
    }
}

/// A field that failed validation, named so the client can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct AppealError {
    pub field: &'static str,
    pub message: String,
}

impl AppealError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The raw fields of an appeal, from JSON, CSV or JSONL.
#[derive(Debug, Clone, Default)]
pub struct AppealInput {
    pub content: Option<String>,
    pub channel: Option<String>,
    pub caller_name: Option<String>,
    pub caller_phone: Option<String>,
    pub caller_confidential: bool,
    pub district: Option<String>,
    pub school: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Filed now; clocks and alerts run.
    Live,
    /// Imported history: deadlines are computed but raise no alerts.
    Historical,
}

#[derive(Debug, Clone)]
pub struct NewAppeal {
    pub content: String,
    pub channel: Channel,
    pub caller_name: Option<String>,
    pub caller_phone: Option<PhoneNumber>,
    pub caller_confidential: bool,
    pub district_hint: Option<String>,
    pub school_hint: Option<String>,
    pub received_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub provenance: Provenance,
}

impl NewAppeal {
    /// Parse, don't validate: a `NewAppeal` is always acceptable for storage.
    pub fn parse(
        input: AppealInput,
        now: DateTime<Utc>,
        provenance: Provenance,
    ) -> Result<Self, AppealError> {
        let content = input
            .content
            .ok_or_else(|| AppealError::new("content", "is required"))?;
        let content = content.trim().to_owned();
        if content.is_empty() {
            return Err(AppealError::new("content", "must not be empty"));
        }
        if content.chars().any(is_stray_control) {
            return Err(AppealError::new(
                "content",
                "must not contain control characters other than tab and line breaks",
            ));
        }
        let chars = content.chars().count();
        if chars > MAX_CONTENT_CHARS {
            return Err(AppealError::new(
                "content",
                format!("is {chars} characters; at most {MAX_CONTENT_CHARS} are accepted"),
            ));
        }
        let channel = input
            .channel
            .ok_or_else(|| AppealError::new("channel", "is required"))?
            .trim()
            .parse()?;
        let caller_phone = optional(input.caller_phone, "caller.phone")?
            .map(|p| {
                PhoneNumber::parse(&p).map_err(|e| AppealError::new("caller.phone", e.to_string()))
            })
            .transpose()?;
        let received_at = input.received_at.unwrap_or(now);
        if received_at > now + Duration::minutes(FUTURE_TOLERANCE_MINUTES) {
            return Err(AppealError::new("received_at", "is in the future"));
        }
        // A live appeal's clocks start when the citizen called: one from last year (a typo, or a
        // backlog) would breach and escalate at once. History is imported as such.
        if provenance == Provenance::Live && received_at < now - Duration::days(MAX_LIVE_AGE_DAYS) {
            return Err(AppealError::new(
                "received_at",
                format!(
                    "is more than {MAX_LIVE_AGE_DAYS} days ago; import older appeals as history \
                     (`hotline import --historical`)"
                ),
            ));
        }
        Ok(Self {
            content,
            channel,
            caller_name: optional(input.caller_name, "caller.name")?,
            caller_phone,
            caller_confidential: input.caller_confidential,
            district_hint: optional(input.district, "district")?,
            school_hint: optional(input.school, "school")?,
            received_at,
            external_id: optional(input.external_id, "external_id")?,
            provenance,
        })
    }
}

/// A control character that has no business in a citizen's text: anything but tab and line
/// breaks (NUL, which PostgreSQL cannot store, among them).
pub fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Trims an optional short field; empty means absent; too long is an error.
fn optional(value: Option<String>, field: &'static str) -> Result<Option<String>, AppealError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > MAX_SHORT_FIELD_CHARS {
        return Err(AppealError::new(
            field,
            format!("is longer than {MAX_SHORT_FIELD_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppealError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(content: Option<&str>, channel: Option<&str>) -> AppealInput {
        AppealInput {
            content: content.map(str::to_owned),
            channel: channel.map(str::to_owned),
            ..AppealInput::default()
        }
    }

    #[test]
    fn validation_names_the_wrong_field() {
        let now = Utc::now();
        let check = |input: AppealInput, expected: Result<(), &str>| {
            let got = NewAppeal::parse(input, now, Provenance::Live)
                .map(|_| ())
                .map_err(|e| e.field);
            assert_eq!(got, expected);
        };
        check(input(Some("食堂饭菜有虫"), Some("phone")), Ok(()));
        check(input(None, Some("phone")), Err("content"));
        check(input(Some("   "), Some("phone")), Err("content"));
        check(
            input(Some(&"字".repeat(MAX_CONTENT_CHARS + 1)), Some("web")),
            Err("content"),
        );
        check(input(Some("x"), None), Err("channel"));
        check(input(Some("x"), Some("fax")), Err("channel"));
        check(
            AppealInput {
                caller_phone: Some("12ab".into()),
                ..input(Some("x"), Some("web"))
            },
            Err("caller.phone"),
        );
        check(
            AppealInput {
                received_at: Some(now + Duration::hours(1)),
                ..input(Some("x"), Some("web"))
            },
            Err("received_at"),
        );
        check(
            AppealInput {
                district: Some("a".repeat(201)),
                ..input(Some("x"), Some("web"))
            },
            Err("district"),
        );
        check(input(Some("食堂\0有虫"), Some("web")), Err("content"));
        check(input(Some("食堂\u{7}有虫"), Some("web")), Err("content"));
        check(input(Some("第一行\r\n第二行\t完"), Some("web")), Ok(()));
        let received = |days_ago: i64| AppealInput {
            received_at: Some(now - Duration::days(days_ago)),
            ..input(Some("x"), Some("web"))
        };
        check(received(29), Ok(()));
        check(received(31), Err("received_at"));
        check(received(365), Err("received_at"));
        // History may be old.
        assert!(NewAppeal::parse(received(365), now, Provenance::Historical).is_ok());
    }

    #[test]
    fn received_at_defaults_to_now_and_blank_optionals_vanish() {
        let now = Utc::now();
        let appeal = NewAppeal::parse(
            AppealInput {
                school: Some("  ".into()),
                ..input(Some(" 内容 "), Some("platform_12345"))
            },
            now,
            Provenance::Live,
        )
        .unwrap();
        assert_eq!(appeal.received_at, now);
        assert_eq!(appeal.content, "内容");
        assert_eq!(appeal.school_hint, None);
        assert_eq!(appeal.channel, Channel::Platform12345);
    }
}
