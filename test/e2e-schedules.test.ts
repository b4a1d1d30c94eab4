// Schedules fire on real control planes: one run per scheduled instant, on
// one leader among replicas sharing Postgres, with the leadership handed over
// when the leader is killed.
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Stack, freePort, freshDatabase } from './harness.ts';

async function scheduledRuns(stack: Stack, eventId: string): Promise<string[]> {
  const runs = (await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId, pageSize: 500 })).runs ?? [];
  return runs.map((run: any) => run.input.scheduledAt as string).sort();
}

describe('schedules', () => {
  let first: Stack;
  let second: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;

  before(async () => {
    database = await freshDatabase('e2e_schedules');
    // Replicas share the cluster's keys through the database, sealed with one master key.
    const env = { CRONIUM_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
    first = new Stack({ databaseUrl: database.url, env });
    await first.start();
    // A second replica on the same database (its own ports and data folder, no agent of its own).
    second = new Stack({ databaseUrl: database.url, env });
    second.httpPort = await freePort();
    second.grpcPort = await freePort();
    second.agentPort = await freePort();
    await second.startControlPlane();
  });
  after(async () => {
    await first?.stop();
    await second?.stop();
    await database?.drop();
  });

  test('an every-second schedule makes one run per second, across two replicas, until paused', { timeout: 60_000 }, async () => {
    const event = await first.createEvent({ name: 'every second', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: '* * * * * *', timezone: 'UTC' } });
    await sleep(4_500);
    const fired = await scheduledRuns(first, event.id);
    assert.ok(fired.length >= 3, `fired ${fired.length} times in 4.5 s`);
    assert.equal(new Set(fired).size, fired.length, 'no instant fired twice');
    for (const at of fired) assert.match(at, /:\d\d\.000Z$/, 'fires on the second');
    for (let i = 1; i < fired.length; i++) assert.equal(Date.parse(fired[i]!) - Date.parse(fired[i - 1]!), 1000, `no gap: ${fired}`);
    const job = await first.waitForTerminal((await first.ok('cronium.api.v1.RunService/ListRuns', { eventId: event.id })).runs.at(-1).jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');

    await first.ok('cronium.api.v1.EventService/UpdateEvent', {
      event: { ...event, status: 'EVENT_STATUS_PAUSED' },
    });
    await sleep(1200);
    const paused = (await scheduledRuns(first, event.id)).length;
    await sleep(2000);
    assert.equal((await scheduledRuns(first, event.id)).length, paused, 'a paused event does not fire');
  });

  test('killing the leader hands the schedule to the other replica within seconds, without doubles', { timeout: 90_000 }, async () => {
    const event = await second.createEvent({ name: 'survives a leader', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: '* * * * * *', timezone: 'UTC' } });
    await sleep(2500);
    // The first replica started first and leads; SIGKILL ends its Postgres session and so its lock.
    const leads = (stack: Stack) => readFileSync(join(stack.dataDir, 'control-plane.log'), 'utf8').includes('scheduler leadership taken');
    assert.ok(leads(first) && !leads(second), 'the first replica leads, the second waits');
    await first.killControlPlane();
    const killedAt = Date.now();
    await sleep(6000);
    const fired = await scheduledRuns(second, event.id);
    assert.equal(new Set(fired).size, fired.length, 'no instant fired twice');
    const afterKill = fired.filter((at) => Date.parse(at) > killedAt);
    assert.ok(afterKill.length >= 3, `the other replica took over within seconds: ${fired}`);
    const handover = Date.parse(afterKill[0]!) - killedAt;
    assert.ok(handover < 3000, `first fire after the kill came ${handover} ms later`);
    assert.ok(leads(second), 'the second replica took the leadership');
    await first.startControlPlane();
  });
});
