//! Trace export over OTLP, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: each request's `lepton::trace` span (app,
//! component route, method, path, status) becomes an OpenTelemetry span sent as OTLP/HTTP
//! protobuf to `<endpoint>/v1/traces` in batches (the standard `OTEL_BSP_*` variables tune them;
//! `OTEL_SERVICE_NAME` defaults to `lepton`). Without the variable no span is even created, so
//! the request path pays nothing.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Flushes and stops the exporter when dropped (at exit).
pub struct OtelGuard(SdkTracerProvider);

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("warning: flushing traces to the OTLP endpoint failed: {err}");
        }
    }
}

/// Whether trace export is configured by the environment.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The OTLP tracer provider and the `tracing` layer feeding it (only `lepton::trace` spans).
pub fn layer<S>() -> Result<
    (impl tracing_subscriber::Layer<S> + Send + Sync, OtelGuard),
    opentelemetry_otlp::ExporterBuildError,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use tracing_subscriber::Layer as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "lepton".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("lepton");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("lepton::trace", tracing::Level::INFO),
        );
    Ok((layer, OtelGuard(provider)))
}
