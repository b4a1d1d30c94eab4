// Faults on real processes: agents killed with SIGKILL mid-job, and the
// control plane stopped for 20 s while jobs run. Every job ends in exactly one
// terminal state, none is lost, a job without retries never starts twice, and
// logs arrive whole. CRONIUM_FAULT_ROUNDS sets the number of agent kills (20).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RemoteAgent, Stack, freshDatabase } from './harness.ts';
import { StartCounter, checkHistory, waitAllTerminal } from './history.ts';

const ROUNDS = Number(process.env.CRONIUM_FAULT_ROUNDS ?? 20);

describe('agents killed mid-job', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let counter: StartCounter;

  before(async () => {
    counter = await new StartCounter().start();
    database = await freshDatabase('e2e_faults');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_OFFER_TIMEOUT_MS: '2000', CRONIUM_LEASE_TTL_MS: '6000', CRONIUM_RESTART_GRACE_MS: '6000' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
    counter?.close();
  });

  test(`${ROUNDS} SIGKILLs at random points: one terminal state each, none lost, no job without retries started twice`, { timeout: 600_000 }, async () => {
    const agentEnv = { CRONIUM_DOCKER_NETWORK: 'host' };
    const victims = [await stack.remoteAgent({ labels: { pool: 'faulty' }, slots: 3, env: agentEnv }), await stack.remoteAgent({ labels: { pool: 'faulty' }, slots: 3, env: agentEnv })];
    const selector = { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['faulty'] }] };
    const once = await stack.createEvent({ name: 'no retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(), network: true, retries: 0, target: { selector } });
    const retried = await stack.createEvent({ name: 'three retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(), network: true, retries: 3, retryDelaySeconds: 1, target: { selector } });
    const jobs = new Map<string, { retries: number }>();
    const runSome = async () => {
      for (const event of [once, retried, once]) {
        const run = await stack.runEvent(event.id);
        for (const job of run.jobs) jobs.set(job.id, { retries: event.retries ?? 0 });
      }
    };
    for (let round = 0; round < ROUNDS; round++) {
      await runSome();
      await sleep(300 + Math.random() * 1500);
      const victim = victims[round % victims.length]!;
      await victim.kill('SIGKILL');
      victim.start();
      await victim.connected();
    }
    await runSome();

    assert.deepEqual(await waitAllTerminal((id) => stack.getJob(id), jobs.keys(), 120_000), [], 'every job reached a terminal state');
    const listed = (await stack.ok('cronium.api.v1.JobService/ListJobs', { pageSize: 500 })).jobs.filter((job: any) => jobs.has(job.id));
    assert.equal(listed.length, jobs.size, 'no job lost (as the API lists them)');
    const history = await checkHistory(database.url, jobs, counter, { stepLogs: true });
    console.log('agent kills', { rounds: ROUNDS, history });
    // The kills really hit running jobs (otherwise this test shows nothing).
    assert.ok(history.interrupted > 0 || history.retried > 0, `some jobs were interrupted: ${JSON.stringify(history)}`);
  });
});

describe('control plane stopped for 20 s', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  before(async () => {
    database = await freshDatabase('e2e_outage');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_RESTART_GRACE_MS: '60000' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
  });

  test('jobs finish meanwhile; results and full logs arrive after it returns, once', { timeout: 180_000 }, async () => {
    const agent: RemoteAgent = await stack.remoteAgent({ labels: { pool: 'outage' }, slots: 4 });
    const event = await stack.createEvent({
      name: 'outlives the outage',
      type: 'EVENT_TYPE_BASH',
      script: 'for i in $(seq 1 12); do echo "tick $i"; sleep 1; done\ncronium_output \'{"ok": true}\'',
      target: { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['outage'] }] } },
    });
    const runs = await Promise.all([1, 2, 3].map(() => stack.runEvent(event.id)));
    const ids = runs.map((run) => run.jobs[0].id);
    await Promise.all(ids.map((id) => stack.waitForJob(id, (job) => job.status === 'JOB_STATUS_RUNNING')));

    const cp = stack.controlPlane!;
    const stopped = new Promise((done) => cp.once('exit', done));
    cp.kill('SIGTERM');
    await stopped;
    await sleep(20_000);
    await stack.startControlPlane();
    await agent.connected(60_000);

    for (const id of ids) {
      const job = await stack.waitForTerminal(id, 60_000);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
      assert.equal(job.attempt, 1);
      assert.deepEqual(job.output, { ok: true });
      const lines = (await stack.watchJob(id)).filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');
      assert.equal(lines, Array.from({ length: 12 }, (_, i) => `tick ${i + 1}\n`).join(''));
    }
    const listed = (await stack.ok('cronium.api.v1.JobService/ListJobs', { eventId: event.id })).jobs;
    assert.equal(listed.length, 3);
  });
});
