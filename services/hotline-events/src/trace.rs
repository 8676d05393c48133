//! W3C trace context between events and tracing spans.
//!
//! Every event carries a `traceparent` (envelope and Kafka header) from the appeal's intake on.
//! When the process exports spans to OpenTelemetry, a consumer's span continues the trace of the
//! event it handles, and the events it emits name that span as their parent, so one appeal's
//! intake, classification, routing and tracking form one trace. Without an exporter, spans have no
//! OpenTelemetry context: the incoming traceparent is passed on unchanged.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the span named by `traceparent` (ignored when absent or malformed:
/// tracing must never stop an event).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parse) {
        let context = opentelemetry::Context::new().with_remote_span_context(parent);
        // Fails only when the span is disabled; then there is nothing to link.
        let _ = span.set_parent(context);
    }
}

/// The traceparent for what the current span emits: the current span itself when it is being
/// exported, else `incoming`.
pub fn traceparent_for_emitted(incoming: Option<&str>) -> Option<String> {
    current_traceparent().or_else(|| incoming.map(str::to_owned))
}

/// The current span as a traceparent, when it is exported to OpenTelemetry.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| format_traceparent(span_context))
}

fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; all-zero ids are invalid.
fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version == "00"
        && parts.next().is_none()
        && trace.len() == 32
        && span.len() == 16
        && flags.len() == 2
        && [trace, span, flags].iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if !well_formed {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_print_alike() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                parse(input).map(|c| format_traceparent(&c)).as_deref(),
                expected,
                "{input}"
            );
        };
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        check(good, Some(good));
        check(
            " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00 ",
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
        );
        for bad in [
            "",
            "00-abc-def-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
            "00-0af7651916cd43dd8448eb211c8031人-b7ad6b7169203331-01",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn without_an_exporter_the_incoming_traceparent_goes_on() {
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(current_traceparent(), None);
        assert_eq!(
            traceparent_for_emitted(Some(incoming)).as_deref(),
            Some(incoming)
        );
        assert_eq!(traceparent_for_emitted(None), None);
    }
}
