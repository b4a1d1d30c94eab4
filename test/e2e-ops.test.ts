// What an operator's probes and Prometheus see: /healthz, /readyz, and
// /metrics in the Prometheus text format, moving as jobs run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Stack } from './harness.ts';

const parsePrometheus: (text: string) => { name: string; type: string; metrics: { value?: string; count?: string; labels?: Record<string, string> }[] }[] =
  createRequire(import.meta.url)('parse-prometheus-text-format');

describe('operations endpoints', () => {
  let stack: Stack;

  before(async () => {
    stack = new Stack();
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  async function scrape(): Promise<Map<string, ReturnType<typeof parsePrometheus>[number]>> {
    const res = await fetch(`${stack.baseUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return new Map(parsePrometheus(await res.text()).map((family) => [family.name, family]));
  }
  const value = (families: Map<string, any>, name: string, labels: Record<string, string> = {}): number => {
    const family = families.get(name);
    assert.ok(family, `${name} is exported`);
    const sample = family.metrics.find((m: any) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
    return sample ? Number(sample.value ?? sample.count) : 0;
  };

  test('/healthz and /readyz answer without a token', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`${stack.baseUrl}${path}`);
      assert.equal(res.status, 200, path);
    }
  });

  test('/metrics parses as Prometheus text and moves as a job runs', async () => {
    const before = await scrape();
    assert.equal(value(before, 'cronium_agent_streams'), 1, 'the orchestrator agent is connected');
    assert.equal(value(before, 'cronium_agents', { status: 'online' }), 1);
    assert.equal(value(before, 'cronium_bus_connected', { kind: 'memory' }), 1);
    const event = await stack.createEvent({ name: 'counted', type: 'EVENT_TYPE_BASH', script: 'echo counted' });
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    const after = await scrape();
    assert.equal(value(after, 'cronium_jobs_finished_total', { status: 'succeeded' }) - value(before, 'cronium_jobs_finished_total', { status: 'succeeded' }), 1);
    assert.equal(value(after, 'cronium_dispatch_latency_seconds') - value(before, 'cronium_dispatch_latency_seconds'), 1, 'one start observed');
    assert.equal(value(after, 'cronium_queue_wait_seconds') - value(before, 'cronium_queue_wait_seconds'), 1, 'one offer observed');
    assert.ok(value(after, 'cronium_log_bytes_total') - value(before, 'cronium_log_bytes_total') >= 'counted\n'.length);
    assert.equal(value(after, 'cronium_jobs', { status: 'queued' }), 0);
    assert.ok(value(after, 'cronium_process_resident_memory_bytes') > 0);
  });
});
