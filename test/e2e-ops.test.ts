// What an operator's probes and Prometheus see: /healthz, /readyz, and
// /metrics in the Prometheus text format, moving as jobs run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { AgentLinkService, ConnectRequestSchema, type ConnectRequest, type ConnectResponse } from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';
import { Stack, freePort } from './harness.ts';

const LinkClient = grpc.makeGenericClientConstructor(grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition, 'AgentLinkService');

const parsePrometheus: (text: string) => { name: string; type: string; metrics: { value?: string; count?: string; labels?: Record<string, string> }[] }[] =
  createRequire(import.meta.url)('parse-prometheus-text-format');

describe('operations endpoints', () => {
  let stack: Stack;
  let agentMetricsPort: number;

  before(async () => {
    agentMetricsPort = await freePort();
    stack = new Stack({ agentArgs: ['--metrics-address', `127.0.0.1:${agentMetricsPort}`] });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  async function scrape(url = `${stack.baseUrl}/metrics`): Promise<Map<string, ReturnType<typeof parsePrometheus>[number]>> {
    const res = await fetch(url);
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

  test('the agent serves its own /metrics when asked to', async () => {
    const families = await scrape(`http://127.0.0.1:${agentMetricsPort}/metrics`);
    assert.equal(value(families, 'cronium_agent_connected'), 1);
    assert.equal(value(families, 'cronium_agent_slots'), 4);
    assert.equal(value(families, 'cronium_agent_running_jobs'), 0);
    assert.equal(value(families, 'cronium_agent_unacknowledged_messages'), 0);
    assert.ok(value(families, 'cronium_agent_process_resident_memory_bytes') > 0);
  });

  /** Opens the agent link with the orchestrator agent's certificate and sends one Hello; resolves with how the server answered. */
  function hello(protocolVersion: number): Promise<{ code?: number; details?: string; welcome?: boolean }> {
    const dir = join(stack.dataDir, 'agents', 'local-orchestrator');
    const credentials = grpc.credentials.createSsl(
      readFileSync(join(dir, 'ca.crt')),
      readFileSync(join(dir, 'client.key')),
      readFileSync(join(dir, 'client.crt')),
    );
    const client = new LinkClient(`localhost:${stack.agentPort}`, credentials) as unknown as grpc.Client & {
      connect(): grpc.ClientDuplexStream<ConnectRequest, ConnectResponse>;
    };
    return new Promise((resolve) => {
      const call = client.connect();
      call.on('data', (message: ConnectResponse) => {
        call.cancel();
        resolve({ welcome: message.kind.case === 'welcome' });
      });
      call.on('error', (error: grpc.ServiceError) => {
        client.close();
        resolve({ code: error.code, details: error.details });
      });
      call.write(create(ConnectRequestSchema, { kind: { case: 'hello', value: { agentId: 'local-orchestrator', protocolVersion, slots: 1 } } }));
    });
  }

  test('an agent speaking another link protocol is refused with a message that says which side to upgrade', async () => {
    const older = await hello(0);
    assert.equal(older.code, grpc.status.FAILED_PRECONDITION);
    assert.match(older.details!, /link protocol 0; this control plane speaks 1 to 1: upgrade the agent/);
    const newer = await hello(99);
    assert.equal(newer.code, grpc.status.FAILED_PRECONDITION);
    assert.match(newer.details!, /newer than this control plane's 1 to 1: upgrade the control plane first/);
    assert.equal(value(await scrape(), 'cronium_agent_streams'), 1, 'the real agent kept its stream');
  });
});
