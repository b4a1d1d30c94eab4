// The public API answers every protocol it promises: Connect JSON and binary
// and gRPC-Web on the HTTP port, gRPC on the h2c port. Embedded store.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, ConnectError, Code, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { EventService, EventType } from '@cronium/proto/api/v1/event';
import { JobService, JobStatus } from '@cronium/proto/api/v1/job';
import { ADMIN_TOKEN, Stack } from './harness.ts';

describe('API protocols', () => {
  let stack: Stack;
  before(async () => {
    stack = new Stack();
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  const auth = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
  const transports: Record<string, () => Transport> = {
    'Connect binary over HTTP/1.1': () => createConnectTransport({ baseUrl: `${stack.baseUrl}/api`, httpVersion: '1.1', useBinaryFormat: true }),
    'gRPC-Web over HTTP/1.1': () => createGrpcWebTransport({ baseUrl: `${stack.baseUrl}/api`, httpVersion: '1.1' }),
    'gRPC over h2c': () => createGrpcTransport({ baseUrl: `http://127.0.0.1:${stack.grpcPort}/api` }),
  };

  for (const [name, transport] of Object.entries(transports)) {
    test(`${name}: create, run and watch an event`, async () => {
      const events = createClient(EventService, transport());
      const jobs = createClient(JobService, transport());
      const { event } = await events.createEvent({ event: { name: `via ${name}`, type: EventType.BASH, script: 'echo via-${PROTO}', env: { PROTO: 'x' } } }, auth);
      assert.ok(event?.id);
      const { run } = await events.runEvent({ id: event.id }, auth);
      const jobId = run!.jobs[0]!.id;
      let output = '';
      let status = JobStatus.UNSPECIFIED;
      for await (const message of jobs.watchJob({ id: jobId }, auth)) {
        if (message.kind.case === 'log') output += message.kind.value.data;
        if (message.kind.case === 'job') status = message.kind.value.status;
      }
      assert.equal(status, JobStatus.SUCCEEDED);
      assert.equal(output, 'via-x\n');
    });
  }

  test('errors carry Connect codes over gRPC too', async () => {
    const events = createClient(EventService, transports['gRPC over h2c']!());
    await assert.rejects(events.getEvent({ id: 'missing' }, auth), (error: ConnectError) => error.code === Code.NotFound);
    await assert.rejects(events.listEvents({}), (error: ConnectError) => error.code === Code.Unauthenticated);
  });
});
