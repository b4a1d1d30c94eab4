// NATS (a server this test owns) killed mid-run and brought back: the bus may
// delay work, never lose it. Jobs queued meanwhile are dispatched from the
// database, WatchJob still ends, a cancel still reaches its agent, and every
// job ends once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack, freshDatabase } from './harness.ts';
import { StartCounter, checkHistory, waitAllTerminal } from './history.ts';
import { NatsServer } from './services.ts';

const OUTAGE_MS = 10_000;

describe('NATS down mid-run', () => {
  let nats: NatsServer;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let stack: Stack;
  let counter: StartCounter;

  before(async () => {
    nats = await new NatsServer().start();
    database = await freshDatabase('e2e_nats_outage');
    counter = await new StartCounter().start();
    stack = new Stack({ databaseUrl: database.url, natsUrl: nats.url });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await nats?.stop();
    await database?.drop();
    counter?.close();
  });

  test(`a ${OUTAGE_MS / 1000} s outage delays work, loses none; WatchJob ends; cancel arrives`, { timeout: 240_000 }, async () => {
    await stack.remoteAgent({ labels: { pool: 'nats' }, slots: 4, env: { CRONIUM_DOCKER_NETWORK: 'host' } });
    const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['nats'] }] } };
    const once = await stack.createEvent({ name: 'no retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(2, 6), network: true, retries: 0, target });
    const long = await stack.createEvent({ name: 'until cancelled', type: 'EVENT_TYPE_BASH', script: 'sleep 600', target });
    const jobs = new Map<string, { retries: number }>();
    const runSome = async (count: number) => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) for (const job of (await stack.runEvent(once.id)).jobs) ids.push(job.id);
      for (const id of ids) jobs.set(id, { retries: 0 });
      return ids;
    };
    await runSome(4);
    const cancelMe = (await stack.runEvent(long.id)).jobs[0].id;
    await stack.waitForJob(cancelMe, (job) => job.status === 'JOB_STATUS_RUNNING', 60_000);

    await nats.stop();
    const outageEnds = Date.now() + OUTAGE_MS;
    const during = await runSome(6);
    await stack.ok('cronium.api.v1.JobService/CancelJob', { id: cancelMe });
    // A watcher started during the outage still ends with the job's end (the store is rechecked when the bus is quiet).
    const watched = await stack.watchJob(during[0]!);
    assert.ok(['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED'].includes(watched.at(-1)?.job?.status), JSON.stringify(watched.at(-1)));
    const cancelled = await stack.waitForTerminal(cancelMe, 30_000);
    assert.equal(cancelled.status, 'JOB_STATUS_CANCELLED', 'the cancel reached the agent without the bus');
    assert.deepEqual(await waitAllTerminal((id) => stack.getJob(id), during, 60_000), [], 'jobs queued during the outage ran');
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    assert.match(metrics, /cronium_bus_connected\{kind="nats"\} 0/, 'the outage is visible');
    await sleep(Math.max(0, outageEnds - Date.now()));

    await nats.start();
    await runSome(4);
    assert.deepEqual(await waitAllTerminal((id) => stack.getJob(id), jobs.keys(), 90_000), [], 'every job reached a terminal state');
    const history = await checkHistory(database.url, jobs, counter, { stepLogs: true });
    assert.equal(history.byStatus.succeeded, jobs.size, JSON.stringify(history));
    const deadline = Date.now() + 30_000;
    while (!/cronium_bus_connected\{kind="nats"\} 1/.test(await (await fetch(`${stack.baseUrl}/metrics`)).text()) && Date.now() < deadline) await sleep(250);
    assert.match(await (await fetch(`${stack.baseUrl}/metrics`)).text(), /cronium_bus_connected\{kind="nats"\} 1/, 'the bus reconnected');
  });
});
