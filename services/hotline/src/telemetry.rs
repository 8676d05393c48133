//! One place that sets up logs (tracing, on stderr so stdout stays for command output), the
//! export of spans to OpenTelemetry, and the Prometheus recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Spans exported to OpenTelemetry by default: Hotline's own (and the HTTP requests') at info and
/// above, not those of the HTTP client under the exporter, which would trace its own exports.
/// (Targets match as prefixes: `hyper` covers `hyper_util`; `tower` would cover `tower_http`.)
const DEFAULT_TRACES_FILTER: &str = "info,h2=warn,hyper=warn,reqwest=warn";

/// Keeps the span exporter alive; dropping it sends the spans still buffered.
#[must_use = "spans still buffered are lost unless this lives until the process ends"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "could not send the last spans");
            }
        }
    }
}

/// Logs to stderr (`RUST_LOG` filters them), and spans to an OpenTelemetry collector over OTLP/HTTP
/// when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL,
/// `/v1/traces` appended) is set; `HOTLINE_TRACES_FILTER` filters the exported spans and
/// `OTEL_SERVICE_NAME` overrides the service name.
pub fn init(service: &str, log_format: &str) -> Telemetry {
    let log_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn,tower_http=info"));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = if log_format == "json" {
        log.json().with_filter(log_filter).boxed()
    } else {
        log.with_filter(log_filter).boxed()
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![log];

    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let mut provider = None;
    let mut export_error = None;
    if let Some(endpoint) = traces_endpoint() {
        match span_exporter(&endpoint, &service) {
            Ok(exporter) => {
                let tracer = exporter.tracer("hotline");
                let filter = EnvFilter::try_from_env("HOTLINE_TRACES_FILTER")
                    .unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACES_FILTER));
                layers.push(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(filter)
                        .boxed(),
                );
                provider = Some(exporter);
            }
            Err(error) => export_error = Some((endpoint, error)),
        }
    }
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
    {
        tracing::info!(
            service,
            exporting_spans = provider.is_some(),
            "telemetry ready"
        );
    }
    if let Some((endpoint, error)) = export_error {
        tracing::warn!(%endpoint, %error, "spans are not exported: the OTLP exporter failed");
    }
    Telemetry { provider }
}

fn traces_endpoint() -> Option<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        set("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    })
}

fn span_exporter(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// The process-wide metrics recorder; installed on first use.
pub fn metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this process never does.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
