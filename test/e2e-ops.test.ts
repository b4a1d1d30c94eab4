// What an operator's probes and Prometheus see: /healthz, /readyz, and
// /metrics in the Prometheus text format, moving as jobs run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { AgentLinkService, ConnectRequestSchema, type ConnectRequest, type ConnectResponse } from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';
import { Stack, freePort, scrapeMetrics } from './harness.ts';

const LinkClient = grpc.makeGenericClientConstructor(grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition, 'AgentLinkService');

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

  async function scrape(url = `${stack.baseUrl}/metrics`) {
    const scraped = await scrapeMetrics(url);
    assert.match(scraped.contentType, /^text\/plain; version=0\.0\.4/);
    return scraped;
  }

  test('/healthz and /readyz answer without a token', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`${stack.baseUrl}${path}`);
      assert.equal(res.status, 200, path);
    }
  });

  test('/metrics parses as Prometheus text and moves as a job runs', async () => {
    const before = await scrape();
    assert.equal(before.value('cronium_agent_streams'), 1, 'the orchestrator agent is connected');
    assert.equal(before.value('cronium_agents', { status: 'online' }), 1);
    assert.equal(before.value('cronium_bus_connected', { kind: 'memory' }), 1);
    const event = await stack.createEvent({ name: 'counted', type: 'EVENT_TYPE_BASH', script: 'echo counted' });
    const run = await stack.runEvent(event.id);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    const after = await scrape();
    assert.equal(after.value('cronium_jobs_finished_total', { status: 'succeeded' }) - before.value('cronium_jobs_finished_total', { status: 'succeeded' }), 1);
    assert.equal(after.value('cronium_dispatch_latency_seconds') - before.value('cronium_dispatch_latency_seconds'), 1, 'one start observed');
    assert.equal(after.value('cronium_queue_wait_seconds') - before.value('cronium_queue_wait_seconds'), 1, 'one offer observed');
    assert.ok(after.value('cronium_log_bytes_total') - before.value('cronium_log_bytes_total') >= 'counted\n'.length);
    assert.equal(after.value('cronium_jobs', { status: 'queued' }), 0);
    assert.ok(after.value('cronium_process_resident_memory_bytes') > 0);
  });

  test('the agent serves its own /metrics when asked to', async () => {
    const families = await scrape(`http://127.0.0.1:${agentMetricsPort}/metrics`);
    assert.equal(families.value('cronium_agent_connected'), 1);
    assert.equal(families.value('cronium_agent_slots'), 4);
    assert.equal(families.value('cronium_agent_running_jobs'), 0);
    assert.equal(families.value('cronium_agent_unacknowledged_messages'), 0);
    assert.ok(families.value('cronium_agent_process_resident_memory_bytes') > 0);
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
    assert.equal((await scrape()).value('cronium_agent_streams'), 1, 'the real agent kept its stream');
  });
});
