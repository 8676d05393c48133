//! Hotline's event contracts: the types generated from `proto/hotline/events/v1/events.proto`,
//! the envelope helpers, and conversions between wire and domain types. Wire types stay here.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

#[allow(clippy::all, unreachable_pub, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hotline.events.v1.rs"));
}

pub use v1::envelope::Payload;
pub use v1::Envelope;

/// The schema version written into every envelope of this package.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a valid protobuf Envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("envelope field `{field}` is invalid: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("unsupported schema version {0}; this reader knows version {SCHEMA_VERSION}")]
    Version(u32),
}

fn field(field: &'static str, message: impl Into<String>) -> EventError {
    EventError::Field {
        field,
        message: message.into(),
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub unit: Option<String>,
}

impl Actor {
    pub fn system(service: &str) -> Self {
        Self {
            kind: "system".into(),
            id: service.into(),
            name: service.into(),
            unit: None,
        }
    }
}

/// An envelope that passed validation: ids parsed, payload present.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub traceparent: Option<String>,
    pub aggregate_id: String,
    pub payload: Payload,
}

impl Event {
    pub fn new(
        aggregate_id: impl Into<String>,
        actor: Actor,
        occurred_at: DateTime<Utc>,
        payload: Payload,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            occurred_at,
            actor,
            traceparent: None,
            aggregate_id: aggregate_id.into(),
            payload,
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    pub fn event_type(&self) -> &'static str {
        event_type(&self.payload)
    }

    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            event_id: self.event_id.to_string(),
            event_type: self.event_type().to_owned(),
            schema_version: SCHEMA_VERSION,
            occurred_at: Some(timestamp(self.occurred_at)),
            actor: Some(v1::Actor {
                kind: self.actor.kind.clone(),
                id: self.actor.id.clone(),
                name: self.actor.name.clone(),
                unit: self.actor.unit.clone().unwrap_or_default(),
            }),
            trace: self.traceparent.as_ref().map(|t| v1::TraceContext {
                traceparent: t.clone(),
                tracestate: String::new(),
            }),
            aggregate_id: self.aggregate_id.clone(),
            payload: Some(self.payload.clone()),
        };
        prost::Message::encode_to_vec(&envelope)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let envelope: Envelope = prost::Message::decode(bytes)?;
        if envelope.schema_version != SCHEMA_VERSION {
            return Err(EventError::Version(envelope.schema_version));
        }
        let event_id =
            Uuid::parse_str(&envelope.event_id).map_err(|e| field("event_id", e.to_string()))?;
        let payload = envelope
            .payload
            .ok_or_else(|| field("payload", "missing"))?;
        if envelope.event_type != event_type(&payload) {
            return Err(field(
                "event_type",
                format!(
                    "says `{}` but the payload is `{}`",
                    envelope.event_type,
                    event_type(&payload)
                ),
            ));
        }
        if envelope.aggregate_id.is_empty() {
            return Err(field("aggregate_id", "missing"));
        }
        let occurred_at = from_timestamp(envelope.occurred_at, "occurred_at")?;
        let actor = envelope.actor.map(|a| Actor {
            kind: a.kind,
            id: a.id,
            name: a.name,
            unit: Some(a.unit).filter(|u| !u.is_empty()),
        });
        Ok(Self {
            event_id,
            occurred_at,
            actor: actor.unwrap_or_default(),
            traceparent: envelope
                .trace
                .map(|t| t.traceparent)
                .filter(|t| !t.is_empty()),
            aggregate_id: envelope.aggregate_id,
            payload,
        })
    }
}

pub fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::AppealFiled(_) => "AppealFiled",
        Payload::AppealClassified(_) => "AppealClassified",
        Payload::CaseRouted(_) => "CaseRouted",
        Payload::CaseRerouted(_) => "CaseRerouted",
        Payload::CaseAccepted(_) => "CaseAccepted",
        Payload::CaseReturned(_) => "CaseReturned",
        Payload::CaseContacted(_) => "CaseContacted",
        Payload::CaseResolved(_) => "CaseResolved",
        Payload::CallbackRecorded(_) => "CallbackRecorded",
        Payload::CaseClosed(_) => "CaseClosed",
        Payload::CaseReopened(_) => "CaseReopened",
        Payload::CaseExtended(_) => "CaseExtended",
        Payload::CaseEscalated(_) => "CaseEscalated",
        Payload::CaseTransferredOut(_) => "CaseTransferredOut",
        Payload::DeadlineWarned(_) => "DeadlineWarned",
        Payload::DeadlineBreached(_) => "DeadlineBreached",
        Payload::CaseExtensionRequested(_) => "CaseExtensionRequested",
        Payload::CaseExtensionRefused(_) => "CaseExtensionRefused",
        Payload::CasePaused(_) => "CasePaused",
        Payload::CaseResumed(_) => "CaseResumed",
        Payload::RepeatLinked(_) => "RepeatLinked",
        Payload::CaseRulingRequested(_) => "CaseRulingRequested",
        Payload::CaseContributed(_) => "CaseContributed",
        Payload::CaseForwarded(_) => "CaseForwarded",
        Payload::RepeatUnlinked(_) => "RepeatUnlinked",
        Payload::HotspotDetected(_) => "HotspotDetected",
        Payload::HotspotResolved(_) => "HotspotResolved",
        Payload::ProactiveTaskCreated(_) => "ProactiveTaskCreated",
        Payload::SpecialItemOpened(_) => "SpecialItemOpened",
        Payload::SpecialItemClosed(_) => "SpecialItemClosed",
    }
}

/// Which topic (aggregate) an event belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Appeals,
    Cases,
    /// Hotspots, special items and proactive tasks.
    Proactive,
}

impl Stream {
    pub fn of(payload: &Payload) -> Self {
        match payload {
            Payload::AppealFiled(_) | Payload::AppealClassified(_) => Stream::Appeals,
            Payload::HotspotDetected(_)
            | Payload::HotspotResolved(_)
            | Payload::ProactiveTaskCreated(_)
            | Payload::SpecialItemOpened(_)
            | Payload::SpecialItemClosed(_) => Stream::Proactive,
            _ => Stream::Cases,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Appeals => "appeals",
            Stream::Cases => "cases",
            Stream::Proactive => "proactive",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "appeals" => Some(Stream::Appeals),
            "cases" => Some(Stream::Cases),
            "proactive" => Some(Stream::Proactive),
            _ => None,
        }
    }
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(
    ts: Option<prost_types::Timestamp>,
    name: &'static str,
) -> Result<DateTime<Utc>, EventError> {
    let ts = ts.ok_or_else(|| field(name, "missing"))?;
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| Utc.timestamp_opt(ts.seconds, nanos).single())
        .ok_or_else(|| field(name, "out of range"))
}

/// Domain conversions, reporting which field was wrong.
pub mod trace;

pub mod convert {
    use super::{field, EventError};
    use hotline_domain::classify::{Classification, TopicScore};
    use hotline_domain::TopicCode;

    pub fn topic(raw: &str, name: &'static str) -> Result<TopicCode, EventError> {
        raw.parse()
            .map_err(|e: hotline_domain::topic::UnknownTopic| field(name, e.to_string()))
    }

    pub fn appeal_classified(
        appeal_id: &str,
        c: &Classification,
        historical: bool,
    ) -> super::v1::AppealClassified {
        super::v1::AppealClassified {
            appeal_id: appeal_id.to_owned(),
            topic: c.topic.as_str().to_owned(),
            confidence: c.confidence,
            alternatives: c
                .alternatives
                .iter()
                .map(|a| super::v1::TopicScore {
                    topic: a.topic.as_str().to_owned(),
                    confidence: a.confidence,
                })
                .collect(),
            urgent: c.urgent,
            urgent_cue: c.urgent_cue.clone().unwrap_or_default(),
            district: c.district.clone().unwrap_or_default(),
            school: c.school.clone().unwrap_or_default(),
            terms: c.terms.clone(),
            model_version: c.model_version.clone(),
            historical,
            education_related: c.education_related,
        }
    }

    /// The classification carried by an AppealClassified event.
    pub fn classification(e: &super::v1::AppealClassified) -> Result<Classification, EventError> {
        if !(0.0..=1.0).contains(&e.confidence) {
            return Err(field(
                "confidence",
                format!("{} is outside [0, 1]", e.confidence),
            ));
        }
        let alternatives = e
            .alternatives
            .iter()
            .map(|a| {
                Ok(TopicScore {
                    topic: topic(&a.topic, "alternatives.topic")?,
                    confidence: a.confidence,
                })
            })
            .collect::<Result<_, EventError>>()?;
        let non_empty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(Classification {
            topic: topic(&e.topic, "topic")?,
            confidence: e.confidence,
            alternatives,
            urgent: e.urgent,
            urgent_cue: non_empty(&e.urgent_cue),
            district: non_empty(&e.district),
            school: non_empty(&e.school),
            terms: e.terms.clone(),
            education_related: e.education_related,
            model_version: e.model_version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let event = Event::new(
            "a1",
            Actor::system("test"),
            Utc::now(),
            Payload::CaseClosed(v1::CaseClosed {
                case_id: "c1".into(),
            }),
        )
        .with_traceparent(Some("00-abc-def-01".into()));
        let decoded = Event::decode(&event.encode()).unwrap();
        assert_eq!(decoded.event_id, event.event_id);
        assert_eq!(decoded.event_type(), "CaseClosed");
        assert_eq!(decoded.traceparent.as_deref(), Some("00-abc-def-01"));
        assert_eq!(decoded.occurred_at, event.occurred_at);

        assert!(matches!(
            Event::decode(b"\xff\xff\xff"),
            Err(EventError::Decode(_))
        ));
        let empty = prost::Message::encode_to_vec(&Envelope::default());
        assert!(matches!(Event::decode(&empty), Err(EventError::Version(0))));
    }
}
