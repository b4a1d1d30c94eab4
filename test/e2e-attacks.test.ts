// Bad input and attacks, refused on real processes: forged join tokens
// (alg none, HS256 keyed with the public key, wrong audience), CSRs naming
// another agent, an agent reporting on another agent's job, fuzzed protobuf
// on the agent link and on the API (CRONIUM_FUZZ_CASES each, seeded by
// CRONIUM_FUZZ_SEED), huge declared lengths, and bad cron strings and names.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, decodeJwt, importPKCS8 } from 'jose';
import pg from 'pg';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AgentMode, ConnectRequestSchema, JobState, LogStream } from '@cronium/proto/agent/v1';
import { CreateEventRequestSchema, EventType, GetEventRequestSchema, ListEventsRequestSchema } from '@cronium/proto/api/v1/event';
import { GetJobRequestSchema, ListJobsRequestSchema } from '@cronium/proto/api/v1/job';
import { GetRunRequestSchema } from '@cronium/proto/api/v1/run';
import { ADMIN_TOKEN, Stack, freshDatabase, type RemoteAgent } from './harness.ts';
import { LinkClient, enrollByHand, keyAndCsr, type AgentCredentials } from './link-client.ts';
import { FUZZ_CASES, FUZZ_SEED, fuzzCases } from './fuzz.ts';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

describe('attacks on enrollment and the agent link', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let pkiDir: string;
  let address: string;
  let victim: RemoteAgent;

  before(async () => {
    database = await freshDatabase('e2e_attacks');
    stack = new Stack({ databaseUrl: database.url });
    await stack.start();
    pkiDir = join(stack.dataDir, 'pki');
    address = `localhost:${stack.agentPort}`;
    victim = await stack.remoteAgent({ labels: { pool: 'victim' } });
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  const idOf = (agent: RemoteAgent) => new X509Certificate(readFileSync(join(agent.dataDir, 'client.crt'))).subject.replace('CN=', '');
  const caPem = () => readFileSync(join(pkiDir, 'ca.crt'), 'utf8');

  async function enrollError(token: string, subject?: string): Promise<grpc.ServiceError> {
    const error = await enrollByHand(address, pkiDir, token, subject).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    assert.ok(error, 'the token was refused');
    return error;
  }

  test('join tokens with alg none, HS256 keyed with the public key, or another audience are refused and use nothing up', async () => {
    const real = await stack.joinToken();
    const [header, payload] = real.split('.');
    const claims = decodeJwt(real);
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    const publicPem = readFileSync(join(pkiDir, 'join-token.pub'));
    const hsInput = `${b64({ alg: 'HS256', typ: 'JWT' })}.${payload}`;
    const confused = `${hsInput}.${createHmac('sha256', publicPem).update(hsInput).digest('base64url')}`;
    const privateKey = await importPKCS8(readFileSync(join(pkiDir, 'join-token.key'), 'utf8'), 'EdDSA');
    const otherAudience = await new SignJWT({ ...claims, aud: 'some-other-service' }).setProtectedHeader({ alg: 'EdDSA' }).sign(privateKey);
    const otherIssuer = await new SignJWT({ ...claims, iss: 'someone-else' }).setProtectedHeader({ alg: 'EdDSA' }).sign(privateKey);
    const swappedHeader = `${b64({ alg: 'EdDSA', typ: 'JWT', crit: ['exp'] })}.${real.split('.').slice(1).join('.')}`;
    for (const [name, token] of Object.entries({ none, confused, otherAudience, otherIssuer, swappedHeader, empty: '', garbage: 'a.b.c' })) {
      const error = await enrollError(token);
      assert.equal(error.code, grpc.status.PERMISSION_DENIED, `${name}: ${error.details}`);
      assert.match(error.details, /join token refused/, name);
    }
    assert.ok(header, 'a real token has a header');
    // None of the forgeries counted as a use: the real token still enrolls.
    const enrolled = await enrollByHand(address, pkiDir, real);
    assert.equal(enrolled.agentId, claims.sub);
  });

  test('a CSR naming another agent gets a certificate for its own id only; so does a renewal', async () => {
    const other = idOf(victim);
    const token = await stack.joinToken();
    const mine = await enrollByHand(address, pkiDir, token, `CN=${other}`);
    const cert = new X509Certificate(mine.cert);
    assert.equal(cert.subject, `CN=${mine.agentId}`);
    assert.notEqual(mine.agentId, other);
    assert.equal(cert.subjectAltName, undefined);

    const client = new LinkClient(address, caPem(), mine);
    try {
      const { csrPem } = await keyAndCsr(`CN=${other}`);
      const renewed = new X509Certificate(await client.renew(csrPem));
      assert.equal(renewed.subject, `CN=${mine.agentId}`);
    } finally {
      client.close();
    }
  });

  async function handDrivenAgent(): Promise<{ credentials: AgentCredentials; client: LinkClient }> {
    const credentials = await enrollByHand(address, pkiDir, await stack.joinToken());
    return { credentials, client: new LinkClient(address, caPem(), credentials) };
  }

  const hello = (agentId: string) =>
    ({ case: 'hello', value: { agentId, protocolVersion: 1, mode: AgentMode.REMOTE_EXECUTOR, slots: 0 } }) as const;

  test("a Hello naming another agent is refused; an agent reporting on another agent's job changes nothing", async () => {
    const { credentials, client } = await handDrivenAgent();
    try {
      const impostor = client.stream();
      impostor.send(hello(idOf(victim)));
      const refused = await impostor.ended;
      assert.equal(refused.code, grpc.status.PERMISSION_DENIED);
      assert.match(refused.details, /certificate names/);

      const event = await stack.createEvent({
        name: 'victim job',
        type: 'EVENT_TYPE_BASH',
        script: 'sleep 4\necho genuine\ncronium_output \'{"by": "victim"}\'',
        target: { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['victim'] }] } },
      });
      const jobId = (await stack.runEvent(event.id)).jobs[0].id;
      await stack.waitForJob(jobId, (job) => job.status === 'JOB_STATUS_RUNNING');
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      const { rows } = await db.query('select attempt, lease_id, agent_id from jobs where id = $1', [jobId]);
      await db.end();
      // The attacker knows everything, even the lease id that only the victim was sent.
      const ref = { jobId, attempt: rows[0].attempt, leaseId: rows[0].lease_id };

      const stream = client.stream();
      stream.send(hello(credentials.agentId));
      await stream.next((m) => m.kind.case === 'welcome');
      stream.send({ case: 'jobAccept', value: { job: ref } });
      stream.send({ case: 'jobStatus', value: { job: ref, state: JobState.STARTED } });
      stream.send({ case: 'heartbeat', value: { running: [ref] } });
      stream.send({ case: 'logChunk', value: { job: ref, stream: LogStream.STDOUT, offset: 0n, data: new TextEncoder().encode('forged\n') } });
      stream.send({ case: 'jobStatus', value: { job: ref, state: JobState.SUCCEEDED, exitCode: 0, output: { kind: { case: 'stringValue', value: 'forged' } } } });
      await stream.next((m) => m.kind.case === 'statusAck' && m.kind.value.state === JobState.SUCCEEDED);
      const stale = await stream.next((m) => m.kind.case === 'cancelJob');
      assert.equal(stale.kind.case === 'cancelJob' && stale.kind.value.stale, true, 'the attacker is told its attempt is not current');

      const during = await stack.getJob(jobId);
      assert.equal(during.status, 'JOB_STATUS_RUNNING', 'the forged result was not taken');
      assert.equal(during.agentId, idOf(victim));
      const job = await stack.waitForTerminal(jobId, 60_000);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
      assert.deepEqual(job.output, { by: 'victim' });
      assert.equal(job.attempt, 1);
      const stdout = (await stack.watchJob(jobId)).filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
      assert.equal(stdout, 'genuine\n');
      stream.close();
    } finally {
      client.close();
    }
  });

  test(`${FUZZ_CASES} fuzzed messages on the agent link: each refused with a clear error, the server keeps serving`, { timeout: 300_000 }, async () => {
    const agents = await Promise.all([0, 1, 2, 3].map(() => handDrivenAgent()));
    const ref = { jobId: 'fuzz-job', attempt: 1, leaseId: 'fuzz-lease' };
    const valid = [
      hello('agent-fuzz'),
      { case: 'heartbeat', value: { running: [ref], freeSlots: 1 } },
      { case: 'jobAccept', value: { job: ref } },
      { case: 'jobReject', value: { job: ref, reason: 'busy' } },
      { case: 'jobStatus', value: { job: ref, state: JobState.FAILED, exitCode: 3, error: 'x', variablesSet: { a: 'b' } } },
      { case: 'logChunk', value: { job: ref, stream: LogStream.STDERR, offset: 10n, data: new Uint8Array([1, 2, 3]) } },
    ].map((kind) => toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { kind } as never)));
    const cases = [...fuzzCases(FUZZ_SEED, FUZZ_CASES, valid, [1, 2, 3, 4, 5, 6])];
    const decodes = (bytes: Uint8Array) => {
      try {
        fromBinary(ConnectRequestSchema, bytes);
        return true;
      } catch {
        return false;
      }
    };
    const codes = new Map<string, number>();
    const count = (name: string) => codes.set(name, (codes.get(name) ?? 0) + 1);

    // Undecodable bytes end the stream they arrive on: each is the first message of its own stream.
    const undecodable = cases.filter((c) => !decodes(c.bytes));
    const decodable = cases.filter((c) => decodes(c.bytes));
    const rawClient = agents[0]!.client;
    for (let i = 0; i < undecodable.length; i += 32) {
      await Promise.all(
        undecodable.slice(i, i + 32).map(async (fuzz) => {
          const stream = rawClient.stream();
          stream.sendRaw(fuzz.bytes);
          const status = await stream.ended;
          count(grpc.status[status.code]!);
          assert.equal(status.code, grpc.status.INVALID_ARGUMENT, `${fuzz.kind}: ${status.code} ${status.details}`);
          assert.match(status.details, /^not a valid cronium\.agent\.v1\.ConnectRequest: /);
        }),
      );
    }
    // Decodable ones go to a live session (each hand-driven agent holds one), then a probe shows it still answers.
    await Promise.all(
      agents.map(async ({ credentials, client }, worker) => {
        const mine = decodable.filter((_, i) => i % agents.length === worker);
        let stream = client.stream();
        stream.send(hello(credentials.agentId));
        await stream.next((m) => m.kind.case === 'welcome');
        for (let i = 0; i < mine.length; i++) {
          stream.sendRaw(mine[i]!.bytes);
          if (i % 50 === 49 || i === mine.length - 1) {
            const probe = { jobId: `probe-${worker}-${i}`, attempt: 1, leaseId: 'probe' };
            stream.send({ case: 'jobStatus', value: { job: probe, state: JobState.UNSPECIFIED } });
            const answered = await Promise.race([
              stream.next((m) => m.kind.case === 'statusAck' && m.kind.value.job?.jobId === probe.jobId, 30_000).then(() => true),
              stream.ended.then(() => false),
            ]);
            if (answered) count('session answered');
            else {
              // A decoded Hello naming someone else, say, ends the stream with a clear refusal; open another.
              const status = await stream.ended;
              count(`session ended ${grpc.status[status.code]}`);
              assert.ok(status.details.length > 0, 'the refusal says why');
              stream = client.stream();
              stream.send(hello(credentials.agentId));
              await stream.next((m) => m.kind.case === 'welcome');
            }
          }
        }
        stream.close();
      }),
    );
    // Enrollment and renewal take the same care.
    const anonymous = new LinkClient(`localhost:${stack.agentPort}`, caPem());
    const enrollError = await anonymous.rawUnary('/cronium.agent.v1.EnrollmentService/Enroll', Buffer.from(undecodable[0]!.bytes));
    anonymous.close();
    assert.equal(enrollError?.code, grpc.status.INVALID_ARGUMENT, enrollError?.details);
    const renewError = await rawClient.rawUnary('/cronium.agent.v1.AgentLinkService/Renew', Buffer.from(undecodable[1]!.bytes));
    assert.equal(renewError?.code, grpc.status.INVALID_ARGUMENT, renewError?.details);
    assert.ok(undecodable.length > FUZZ_CASES / 50 && decodable.length > FUZZ_CASES / 50, `both kinds exercised: ${undecodable.length} undecodable, ${decodable.length} decodable`);
    console.log('agent link fuzz outcomes', Object.fromEntries(codes));

    // Still serving: the victim agent runs a job end to end.
    const event = await stack.createEvent({ name: 'after fuzz', type: 'EVENT_TYPE_BASH', script: 'echo still', target: { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['victim'] }] } } });
    assert.equal((await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id)).status, 'JOB_STATUS_SUCCEEDED');
    for (const { client } of agents) client.close();
  });

  test('a gRPC frame declaring 4 GiB on the agent link is refused with RESOURCE_EXHAUSTED', async () => {
    const { credentials } = await handDrivenAgent();
    const session = http2.connect(`https://localhost:${stack.agentPort}`, { ca: caPem(), key: credentials.key, cert: credentials.cert });
    try {
      const req = session.request({ ':method': 'POST', ':path': '/cronium.agent.v1.AgentLinkService/Connect', 'content-type': 'application/grpc', te: 'trailers' });
      const status = new Promise<string>((resolve) => {
        req.on('response', (headers) => headers['grpc-status'] && resolve(String(headers['grpc-status'])));
        req.on('trailers', (trailers) => resolve(String(trailers['grpc-status'])));
      });
      req.write(Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
      assert.equal(await status, String(grpc.status.RESOURCE_EXHAUSTED));
      req.close();
    } finally {
      session.close();
    }
    assert.equal((await stack.agents()).find((a: any) => a.id === idOf(victim)).status, 'AGENT_STATUS_ONLINE');
  });
});

describe('attacks on the public API', () => {
  let stack: Stack;
  before(async () => {
    stack = new Stack();
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  async function binaryCall(method: string, body: Uint8Array): Promise<{ status: number; code?: string; message?: string }> {
    const res = await fetch(`${stack.baseUrl}/api/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto', authorization: `Bearer ${ADMIN_TOKEN}` },
      body,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status === 200) return { status: 200 };
    const error = JSON.parse(bytes.toString());
    return { status: res.status, code: error.code, message: error.message };
  }

  test(`${FUZZ_CASES} fuzzed protobuf requests: no internal error from our code, the API keeps serving`, { timeout: 300_000 }, async () => {
    const targets = [
      { method: 'cronium.api.v1.EventService/CreateEvent', valid: toBinary(CreateEventRequestSchema, create(CreateEventRequestSchema, { event: { name: 'fuzz', type: EventType.BASH, script: 'echo hi', schedule: { cron: '*/5 * * * *' }, env: { A: 'b' } } })) },
      { method: 'cronium.api.v1.EventService/GetEvent', valid: toBinary(GetEventRequestSchema, create(GetEventRequestSchema, { id: '00000000-0000-4000-8000-000000000000' })) },
      { method: 'cronium.api.v1.EventService/ListEvents', valid: toBinary(ListEventsRequestSchema, create(ListEventsRequestSchema, {})) },
      { method: 'cronium.api.v1.JobService/GetJob', valid: toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { id: 'job-1' })) },
      { method: 'cronium.api.v1.JobService/ListJobs', valid: toBinary(ListJobsRequestSchema, create(ListJobsRequestSchema, { pageSize: 3, eventId: 'e' })) },
      { method: 'cronium.api.v1.RunService/GetRun', valid: toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { id: 'run-1' })) },
    ];
    const codes = new Map<string, number>();
    const cases = [...fuzzCases(FUZZ_SEED + 1, FUZZ_CASES, targets.map((t) => t.valid), [1, 2, 3, 4, 5, 6, 7, 8])];
    for (let i = 0; i < cases.length; i += 16) {
      await Promise.all(
        cases.slice(i, i + 16).map(async (fuzz, j) => {
          const method = targets[(i + j) % targets.length]!.method;
          const answer = await binaryCall(method, fuzz.bytes);
          codes.set(answer.code ?? 'ok', (codes.get(answer.code ?? 'ok') ?? 0) + 1);
          // connect-es answers `internal` for a binary body it cannot parse (its own mapping, see docs/security.md); anything else internal is ours.
          const libraryParseError = answer.code === 'internal' && /^parse binary: /.test(answer.message ?? '');
          assert.ok(libraryParseError || !['internal', 'unknown'].includes(answer.code ?? ''), `${method} ${fuzz.kind} ${Buffer.from(fuzz.bytes).toString('hex')}: ${answer.code} ${answer.message}`);
          if (answer.status !== 200) assert.ok(answer.message, 'the error says what is wrong');
        }),
      );
    }
    console.log('API fuzz outcomes', Object.fromEntries(codes));
    assert.ok((codes.get('invalid_argument') ?? 0) > 0 && (codes.get('ok') ?? 0) > 0, 'mutations reached the handlers, which judged them');
    assert.equal((await stack.call('cronium.api.v1.EventService/ListEvents', {})).status, 200);
  });

  test('huge declared lengths are refused before they are read: resource_exhausted, and the API keeps serving', async () => {
    // A unary request declaring 5 GB, with a few bytes sent.
    const unary = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${stack.baseUrl}/api/cronium.api.v1.EventService/ListEvents`, {
        method: 'POST',
        headers: { 'content-type': 'application/proto', authorization: `Bearer ${ADMIN_TOKEN}`, 'content-length': String(5 * 1024 ** 3) },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write(Buffer.alloc(16));
    });
    assert.equal(JSON.parse(unary.body).code, 'resource_exhausted', unary.body);
    // A streaming envelope declaring 4 GiB.
    const envelope = Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    const res = await fetch(`${stack.baseUrl}/api/cronium.api.v1.JobService/WatchJob`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+proto', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: envelope,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes[0]! & 0x02, 0x02, 'an end-of-stream frame');
    assert.equal(JSON.parse(bytes.subarray(5).toString()).error.code, 'resource_exhausted');
    // gRPC on the h2c port, the same.
    const session = http2.connect(`http://127.0.0.1:${stack.grpcPort}`);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/api/cronium.api.v1.EventService/ListEvents', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${ADMIN_TOKEN}` });
      const status = new Promise<string>((resolve) => {
        req.on('response', (headers) => headers['grpc-status'] && resolve(String(headers['grpc-status'])));
        req.on('trailers', (trailers) => resolve(String(trailers['grpc-status'])));
      });
      req.end(Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
      assert.equal(await status, String(grpc.status.RESOURCE_EXHAUSTED));
    } finally {
      session.close();
    }
    assert.equal((await stack.call('cronium.api.v1.EventService/ListEvents', {})).status, 200);
  });

  test('bad cron strings and names with NUL bytes are invalid_argument naming the field; nothing is written', async () => {
    const before = (await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events?.length ?? 0;
    const base = { type: 'EVENT_TYPE_BASH', script: 'true' };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, name: 'four fields', schedule: { cron: '* * * *' } }, /event\.schedule/],
      [{ ...base, name: 'step zero', schedule: { cron: '*/0 * * * *' } }, /event\.schedule/],
      [{ ...base, name: 'february 31', schedule: { cron: '0 0 31 2 *' } }, /event\.schedule\.cron.*never fires/],
      [{ ...base, name: 'minute 60', schedule: { cron: '60 * * * *' } }, /event\.schedule/],
      [{ ...base, name: 'nul\u0000name' }, /event\.name.*NUL/],
      [{ ...base, name: 'nul script', script: 'echo \u0000' }, /event\.script.*NUL/],
      [{ ...base, name: 'nul description', description: 'a\u0000b' }, /event\.description.*NUL/],
    ];
    for (const [event, message] of cases) {
      const { status, body } = await stack.call('cronium.api.v1.EventService/CreateEvent', { event });
      assert.equal(status, 400, JSON.stringify({ event, body }));
      assert.equal(body.code, 'invalid_argument');
      assert.match(body.message, message);
    }
    assert.equal((await stack.ok('cronium.api.v1.EventService/ListEvents', {})).events?.length ?? 0, before);
  });
});
