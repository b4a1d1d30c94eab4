// The control plane killed with SIGKILL again and again while jobs are being
// offered, accepted and run (Postgres store): agents reconnect, jobs keep
// running, results and logs arrive once, no job is lost or doubled.
// CRONIUM_FAULT_ROUNDS sets the number of kills (5 here by default; 20 for the long run).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Stack, freshDatabase, type RemoteAgent } from './harness.ts';
import { StartCounter, checkHistory, waitAllTerminal } from './history.ts';

const ROUNDS = Number(process.env.CRONIUM_FAULT_ROUNDS ?? 5);

describe('control plane killed during dispatch', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let counter: StartCounter;

  before(async () => {
    counter = await new StartCounter().start();
    database = await freshDatabase('e2e_cp_kills');
    stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_OFFER_TIMEOUT_MS: '3000' } });
    await stack.start();
  });
  after(async () => {
    await stack?.stop();
    await database?.drop();
    counter?.close();
  });

  test(`${ROUNDS} kill -9 of the control plane with jobs flowing: one terminal state each, none lost, none doubled`, { timeout: 900_000 }, async () => {
    const env = { CRONIUM_DOCKER_NETWORK: 'host' };
    const agents: RemoteAgent[] = [
      await stack.remoteAgent({ labels: { pool: 'cp-kill' }, slots: 3, env }),
      await stack.remoteAgent({ labels: { pool: 'cp-kill' }, slots: 3, env }),
    ];
    const target = { selector: { required: [{ key: 'pool', op: 'LABEL_OP_EQ', values: ['cp-kill'] }] } };
    const once = await stack.createEvent({ name: 'no retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(), network: true, retries: 0, target });
    const retried = await stack.createEvent({ name: 'two retries', type: 'EVENT_TYPE_PYTHON', script: counter.script(), network: true, retries: 2, target });
    const jobs = new Map<string, { retries: number }>();
    const runSome = async () => {
      for (const event of [once, retried, once, once]) {
        for (const job of (await stack.runEvent(event.id)).jobs) jobs.set(job.id, { retries: event.retries ?? 0 });
      }
    };
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    const inFlight = { offered: 0, running: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      await runSome();
      // Offers, accepts and starts are in flight a moment after the runs were made.
      await sleep(100 + Math.random() * 1200);
      const { rows } = await db.query(`select status, count(*)::int as n from jobs where status in ('offered', 'running') group by status`);
      for (const row of rows) inFlight[row.status as 'offered' | 'running'] += row.n;
      await stack.killControlPlane();
      await sleep(Math.random() * 1000);
      await stack.startControlPlane();
      await Promise.all(agents.map((agent) => agent.connected(60_000)));
    }
    await runSome();
    await db.end();
    assert.ok(inFlight.offered + inFlight.running > 0, 'the kills found jobs in flight');

    assert.deepEqual(await waitAllTerminal((id) => stack.getJob(id), jobs.keys(), 180_000), [], 'every job reached a terminal state');
    const history = await checkHistory(database.url, jobs, counter, { stepLogs: true });
    console.log('control plane kills', { rounds: ROUNDS, inFlightAtKills: inFlight, history });
    // Only a kill can fail these scripts, and they all ran to the end.
    assert.equal(history.byStatus.succeeded, jobs.size, `every job succeeded: ${JSON.stringify(history)}`);
  });
});
