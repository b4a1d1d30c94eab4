// Postgres stopped (as a crash would) while jobs are claimed and running, on a
// cluster this test owns: meanwhile the API answers `unavailable`, never a
// wrong state; afterwards every job ends once, no attempt ran twice, logs are
// whole. An accept the outage kept from the store is not taken for a lost
// offer. CRONIUM_PG_RESTARTS sets how many outages (default 2).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack } from './harness.ts';
import { StartCounter, checkHistory, waitAllTerminal } from './history.ts';
import { PostgresServer } from './services.ts';
import { assertKeptOnResume, connectByHand, enrollByHand } from './link-client.ts';

const RESTARTS = Number(process.env.CRONIUM_PG_RESTARTS ?? 2);
const OUTAGE_MS = 5_000;
/** The control plane's default offer timeout (the harness keeps it). */
const OFFER_TIMEOUT_MS = 5_000;

describe('Postgres restarted while jobs are claimed', () => {
  let postgres: PostgresServer;
  let stack: Stack;
  let counter: StartCounter;

  before(async () => {
    postgres = await new PostgresServer().init();
    counter = await new StartCounter().start();
    stack = new Stack({ databaseUrl: postgres.url });
    await stack.start();
    if (process.env.CRONIUM_KEEP_TEST_DATA) console.log('data in', stack.dataDir);
  });
  after(async () => {
    await stack?.stop();
    await postgres?.destroy();
    counter?.close();
  });

  test(`${RESTARTS} outages of ${OUTAGE_MS / 1000} s: the API answers unavailable meanwhile; every job ends once`, { timeout: 300_000 }, async () => {
    await stack.remoteAgent({ labels: { pool: 'pg' }, slots: 4, env: { CRONIUM_DOCKER_NETWORK: 'host' } });
    const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['pg'] }] } };
    const once = await stack.createEvent({ name: 'no retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(4, 10), network: true, retries: 0, target });
    const retried = await stack.createEvent({ name: 'two retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(4, 10), network: true, retries: 2, target });
    const jobs = new Map<string, { retries: number }>();
    const runSome = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const event = i % 2 ? retried : once;
        for (const job of (await stack.runEvent(event.id)).jobs) jobs.set(job.id, { retries: event.retries ?? 0 });
      }
    };
    const answers = new Map<string, number>();
    for (let round = 0; round < RESTARTS; round++) {
      await runSome(8);
      // Some jobs are claimed and running when the database goes away.
      const first = [...jobs.keys()].at(-8)!;
      await stack.waitForJob(first, (job) => job.status !== 'JOB_STATUS_QUEUED', 60_000);
      postgres.stop('immediate');
      const downUntil = Date.now() + OUTAGE_MS;
      while (Date.now() < downUntil) {
        for (const [method, body] of [
          ['cronium.api.v1.JobService/GetJob', { id: first }],
          ['cronium.api.v1.JobService/ListJobs', {}],
          ['cronium.api.v1.EventService/RunEvent', { id: once.id }],
          ['cronium.api.v1.EventService/CreateEvent', { event: { name: 'during outage', type: 'EVENT_TYPE_BASH', script: 'true' } }],
        ] as const) {
          const { status, body: answer } = await stack.call(method, body).catch((error) => ({ status: 0, body: { code: String(error) } }));
          const code = status === 200 ? 'ok' : answer.code;
          answers.set(code, (answers.get(code) ?? 0) + 1);
          // A call may still be answered from before the outage took hold, but never with another error.
          assert.ok(code === 'ok' || code === 'unavailable', `${method} during the outage answered ${status} ${JSON.stringify(answer)}`);
          if (method.endsWith('RunEvent') && status === 200) for (const job of answer.run.jobs) jobs.set(job.id, { retries: 0 });
        }
        await sleep(200);
      }
      // A live stream opened meanwhile ends with the same answer.
      const watched = await stack.watchJob(first).then(
        () => 'ended normally',
        (error: Error) => error.message,
      );
      assert.match(watched, /"code":"unavailable"/);
      await postgres.start();
      assert.equal(stack.controlPlane!.exitCode, null, 'the control plane kept running');
      await stack.waitForApi(30_000);
    }
    await runSome(4);
    assert.ok((answers.get('unavailable') ?? 0) > 0, `calls met the outage: ${JSON.stringify(Object.fromEntries(answers))}`);

    assert.deepEqual(await waitAllTerminal((id) => stack.getJob(id), jobs.keys(), 180_000), [], 'every job reached a terminal state');
    const history = await checkHistory(postgres.url, jobs, counter, { stepLogs: true });
    console.log('postgres restarts', { answers: Object.fromEntries(answers), history });
    const ran = await stack.ok('cronium.api.v1.EventService/RunEvent', { id: once.id });
    assert.equal((await stack.waitForTerminal(ran.run.jobs[0].id)).status, 'JOB_STATUS_SUCCEEDED', 'work flows after the outages');
  });

  test('an accept the outage kept from the store: the agent that started the job keeps it when it reconnects after the offer timeout', { timeout: 120_000 }, async () => {
    const address = `localhost:${stack.agentPort}`;
    const labels = { pool: 'pg-accept' };
    const credentials = await enrollByHand(address, join(stack.dataDir, 'pki'), await stack.joinToken());
    const { client, stream } = await connectByHand(address, credentials, labels);
    const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['pg-accept'] }] } };
    const event = await stack.createEvent({ name: 'accept lost in an outage', type: 'EVENT_TYPE_BASH', script: 'true', retries: 0, target });
    const jobId = (await stack.runEvent(event.id)).jobs[0].id;
    const offer = await stream.next((m) => m.kind.case === 'jobOffer' && m.kind.value.job?.jobId === jobId, 20_000);
    const ref = offer.kind.case === 'jobOffer' ? offer.kind.value.job! : undefined;
    // The agent starts the job and sends its accept just as the database goes away.
    postgres.stop('immediate');
    stream.send({ case: 'jobAccept', value: { job: ref } });
    const ended = await stream.ended;
    assert.match(ended.details, /could not store/, 'the control plane says it could not store the accept');
    client.close();
    await sleep(OFFER_TIMEOUT_MS + 1_000);
    await postgres.start();
    await stack.waitForApi(30_000);
    await sleep(3_000); // reaper passes with the store back, the offer long expired
    await assertKeptOnResume(stack, address, credentials, labels, jobId, ref!);
  });
});
