import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

const tracer = () => trace.getTracer('cronium-control-plane');

/**
 * Exports spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise every span below is
 * a no-op. The SDK is loaded only then. Returns the flush-and-stop function.
 */
export async function startTracing(env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return async () => {};
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { AsyncLocalStorageContextManager }, { W3CTraceContextPropagator }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/core'),
    ]);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || 'cronium-control-plane' }),
    // OTEL_BSP_SCHEDULE_DELAY as in the SDKs that read it themselves.
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY) || undefined })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}

/** One span per API call, so a job's trace starts at the call that made it. */
export function tracingInterceptor(): Interceptor {
  return (next) => (req) =>
    tracer().startActiveSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'connect_rpc', 'rpc.service': req.service.typeName, 'rpc.method': req.method.name } },
      async (span) => {
        try {
          return await next(req);
        } catch (error) {
          const code = error instanceof ConnectError ? Code[error.code] : 'Unknown';
          span.setAttribute('rpc.connect_rpc.error_code', code);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
          throw error;
        } finally {
          span.end();
        }
      },
    );
}

/** The W3C `traceparent` of the current span, stored with a job so its dispatch and execution join the trace. */
export function currentTraceParent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** Records a job's wait in the queue (ready → offered) as a span of the trace that made it. */
export function recordQueued(traceParent: string | undefined, job: { id: string; attempt: number; agentId: string; readyAt: Date }): void {
  if (!traceParent) return;
  const parent = propagation.extract(ROOT_CONTEXT, { traceparent: traceParent });
  tracer()
    .startSpan('cronium.job.queued', { startTime: job.readyAt, attributes: { 'cronium.job.id': job.id, 'cronium.job.attempt': job.attempt, 'cronium.agent.id': job.agentId } }, parent)
    .end();
}
