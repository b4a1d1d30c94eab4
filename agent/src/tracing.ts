import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { JobSpec } from './job.ts';

/**
 * Exports spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set on the agent's host; otherwise
 * job spans are no-ops. Returns the flush-and-stop function.
 */
export async function startTracing(agentId: string, env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
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
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || 'cronium-agent', 'service.instance.id': agentId }),
    // OTEL_BSP_SCHEDULE_DELAY as in the SDKs that read it themselves.
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY) || undefined })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}

/** A span for one attempt's execution, a child of the API call that made the job (its `traceparent`). */
export function executionSpan(spec: JobSpec, executor: string): { end(outcome: string, exitCode: number | null, error: string): void } {
  const parent = spec.traceParent ? propagation.extract(ROOT_CONTEXT, { traceparent: spec.traceParent }) : ROOT_CONTEXT;
  const span = trace.getTracer('cronium-agent').startSpan(
    'cronium.job.execute',
    { kind: SpanKind.CONSUMER, attributes: { 'cronium.job.id': spec.jobId, 'cronium.job.attempt': spec.attempt, 'cronium.event.name': spec.eventName, 'cronium.executor': executor } },
    parent,
  );
  return {
    end(outcome, exitCode, error) {
      span.setAttribute('cronium.job.outcome', outcome);
      if (exitCode !== null) span.setAttribute('process.exit.code', exitCode);
      if (outcome !== 'succeeded') span.setStatus({ code: SpanStatusCode.ERROR, message: error || outcome });
      span.end();
    },
  };
}
