// OpenTelemetry traces from the API call to the agent's execution, exported
// over OTLP/HTTP to a collector this test stands in for.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack } from './harness.ts';

interface ReceivedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly attributes: Record<string, unknown>;
}

/** An OTLP/HTTP JSON receiver: POST /v1/traces. */
async function collector(): Promise<{ server: Server; url: string; spans: ReceivedSpan[] }> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        for (const resourceSpans of body.resourceSpans ?? []) {
          const service = resourceSpans.resource.attributes.find((a: any) => a.key === 'service.name')?.value.stringValue;
          for (const scope of resourceSpans.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              const attributes = Object.fromEntries((span.attributes ?? []).map((a: any) => [a.key, Object.values(a.value)[0]]));
              spans.push({ service, traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId || undefined, name: span.name, attributes });
            }
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans };
}

describe('tracing', () => {
  let stack: Stack;
  let otel: Awaited<ReturnType<typeof collector>>;

  before(async () => {
    otel = await collector();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: otel.url, OTEL_BSP_SCHEDULE_DELAY: '200' };
    stack = new Stack({ env, agentEnv: env });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    otel?.server.close();
  });

  test('a job is one trace: the RunEvent call, its wait in the queue, and its execution on the agent', async () => {
    const event = await stack.createEvent({ name: 'traced', type: 'EVENT_TYPE_BASH', script: 'echo traced' });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const job = await stack.waitForTerminal(jobId);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');

    const find = () => ({
      call: otel.spans.find((s) => s.name === 'cronium.api.v1.EventService/RunEvent'),
      queued: otel.spans.find((s) => s.name === 'cronium.job.queued' && s.attributes['cronium.job.id'] === jobId),
      execute: otel.spans.find((s) => s.name === 'cronium.job.execute' && s.attributes['cronium.job.id'] === jobId),
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && Object.values(find()).some((span) => !span)) await sleep(100);
    const { call, queued, execute } = find();
    assert.ok(call && queued && execute, `spans received: ${otel.spans.map((s) => s.name).join(', ')}`);
    assert.equal(call.service, 'cronium-control-plane');
    assert.equal(execute.service, 'cronium-agent');
    assert.equal(queued.traceId, call.traceId, 'the queue wait joins the call');
    assert.equal(execute.traceId, call.traceId, 'the execution on the agent joins the call');
    assert.equal(queued.parentSpanId, call.spanId);
    assert.equal(execute.parentSpanId, call.spanId);
    assert.equal(execute.attributes['cronium.job.outcome'], 'succeeded');
    assert.equal(execute.attributes['cronium.executor'], 'docker');
    assert.equal(Number(execute.attributes['process.exit.code']), 0);
  });

  test('a refused call is a span with the error code', async () => {
    await stack.call('cronium.api.v1.EventService/GetEvent', { id: 'no-such-event' });
    const deadline = Date.now() + 10_000;
    let span: ReceivedSpan | undefined;
    while (Date.now() < deadline && !(span = otel.spans.find((s) => s.name === 'cronium.api.v1.EventService/GetEvent'))) await sleep(100);
    assert.ok(span, 'GetEvent span received');
    assert.equal(span.attributes['rpc.connect_rpc.error_code'], 'NotFound');
  });
});
