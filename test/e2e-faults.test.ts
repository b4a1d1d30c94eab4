// Faults on real processes: agents killed with SIGKILL mid-job, and the
// control plane stopped for 20 s while jobs run. Every job ends in exactly one
// terminal state, none is lost, a job without retries never starts twice, and
// logs arrive whole. CRONIUM_FAULT_ROUNDS sets the number of agent kills (20).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { RemoteAgent, Stack, freshDatabase } from './harness.ts';

const ROUNDS = Number(process.env.CRONIUM_FAULT_ROUNDS ?? 20);
const TERMINAL = ['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED', 'JOB_STATUS_TIMED_OUT', 'JOB_STATUS_CANCELLED'];

/** Counts job starts outside the containers: each job reports (job, attempt) here when it begins. */
async function startCounter(): Promise<{ server: Server; port: number; starts: Map<string, number[]> }> {
  const starts = new Map<string, number[]>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const job = url.searchParams.get('job') ?? '';
    starts.set(job, [...(starts.get(job) ?? []), Number(url.searchParams.get('attempt'))]);
    res.end('ok');
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { server, port: (server.address() as { port: number }).port, starts };
}

function script(port: number): string {
  return [
    'import os, random, time, urllib.request',
    `urllib.request.urlopen(f"http://127.0.0.1:${port}/start?job={os.environ['CRONIUM_JOB_ID']}&attempt={os.environ['CRONIUM_ATTEMPT']}").read()`,
    'for i in range(random.randint(2, 8)):',
    '    print("step", i, flush=True)',
    '    time.sleep(0.25)',
  ].join('\n');
}

describe('agents killed mid-job', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let counter: Awaited<ReturnType<typeof startCounter>>;

  before(async () => {
    counter = await startCounter();
    database = await freshDatabase('e2e_faults');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_OFFER_TIMEOUT_MS: '2000', CRONIUM_LEASE_TTL_MS: '6000', CRONIUM_RESTART_GRACE_MS: '6000' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
    counter?.server.close();
  });

  test(`${ROUNDS} SIGKILLs at random points: one terminal state each, none lost, no job without retries started twice`, { timeout: 600_000 }, async () => {
    const agentEnv = { CRONIUM_DOCKER_NETWORK: 'host' };
    const victims = [await stack.remoteAgent({ labels: { pool: 'faulty' }, slots: 3, env: agentEnv }), await stack.remoteAgent({ labels: { pool: 'faulty' }, slots: 3, env: agentEnv })];
    const selector = { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['faulty'] }] };
    const once = await stack.createEvent({ name: 'no retries', type: 'EVENT_TYPE_PYTHON', script: script(counter.port), network: true, retries: 0, target: { selector } });
    const retried = await stack.createEvent({ name: 'three retries', type: 'EVENT_TYPE_PYTHON', script: script(counter.port), network: true, retries: 3, retryDelaySeconds: 1, target: { selector } });
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

    const deadline = Date.now() + 120_000;
    let pending = [...jobs.keys()];
    while (pending.length > 0 && Date.now() < deadline) {
      const states = await Promise.all(pending.map((id) => stack.getJob(id)));
      pending = states.filter((job) => !TERMINAL.includes(job.status)).map((job) => job.id);
      if (pending.length > 0) await sleep(500);
    }
    assert.deepEqual(pending, [], 'every job reached a terminal state');

    const listed = (await stack.ok('cronium.api.v1.JobService/ListJobs', { pageSize: 500 })).jobs.filter((job: any) => jobs.has(job.id));
    assert.equal(listed.length, jobs.size, 'no job lost');
    let restartedFailures = 0;
    for (const job of listed) {
      const { retries } = jobs.get(job.id)!;
      const starts = counter.starts.get(job.id) ?? [];
      if (retries === 0) assert.ok(starts.length <= 1, `job ${job.id} without retries started ${starts.length} times`);
      assert.equal(new Set(starts).size, starts.length, `job ${job.id}: an attempt started twice (${starts})`);
      assert.ok(job.attempt <= retries + 1, `job ${job.id} ran ${job.attempt} attempts with ${retries} retries`);
      if (/restarted|lease expired/.test(job.error)) restartedFailures++;
      const run = (await stack.ok('cronium.api.v1.RunService/GetRun', { id: job.runId })).run;
      assert.notEqual(run.status, 'RUN_STATUS_RUNNING', 'the run settled');
    }
    // The kills really hit running jobs (otherwise this test shows nothing).
    assert.ok(restartedFailures > 0 || listed.some((job: any) => job.attempt > 1), 'some jobs were interrupted');
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
