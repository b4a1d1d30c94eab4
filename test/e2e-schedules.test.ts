// Schedules fire on real control planes: one run per scheduled instant, the
// instants PreviewSchedule gives, on one leader among replicas sharing
// Postgres, with the leadership handed over when the leader is killed.
// CRONIUM_SCHEDULER_SOAK_SECONDS sets how long the leader-kill test watches (20).
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

/** The next instants as RFC 3339 strings, normalised to toISOString's form. */
async function preview(stack: Stack, body: Record<string, unknown>): Promise<string[]> {
  const { fireTimes } = await stack.ok('cronium.api.v1.EventService/PreviewSchedule', body);
  return (fireTimes ?? []).map((at: string) => new Date(at).toISOString());
}

async function pause(stack: Stack, eventId: string): Promise<void> {
  const { event } = await stack.ok('cronium.api.v1.EventService/GetEvent', { id: eventId });
  await stack.ok('cronium.api.v1.EventService/UpdateEvent', { event: { ...event, status: 'EVENT_STATUS_PAUSED' } });
}

async function until(predicate: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
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

  test('*/2 * * * * * makes one run every 2 s at exactly the instants PreviewSchedule gave, none early', { timeout: 60_000 }, async () => {
    const event = await first.createEvent({ name: 'every two seconds', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: '*/2 * * * * *' } });
    const expected = await preview(first, { eventId: event.id, count: 4 });
    assert.equal(expected.length, 4);
    for (let i = 1; i < expected.length; i++) assert.equal(Date.parse(expected[i]!) - Date.parse(expected[i - 1]!), 2000);
    assert.deepEqual(await preview(first, { schedule: { cron: '*/2 * * * * *' }, count: 4 }), expected, 'the same schedule given inline previews alike');
    await until(async () => Date.now() > Date.parse(expected.at(-1)!) + 1500, 30_000, 'the fourth instant');
    await pause(first, event.id);
    const runs = (await first.ok('cronium.api.v1.RunService/ListRuns', { eventId: event.id, pageSize: 100 })).runs;
    const fired = runs.map((run: any) => run.input.scheduledAt as string).sort();
    assert.equal(new Set(fired).size, fired.length, `no instant fired twice: ${fired}`);
    assert.deepEqual(fired.filter((at: string) => at >= expected[0]! && at <= expected.at(-1)!), expected, 'every previewed instant fired, and nothing between them');
    for (const run of runs) assert.ok(Date.parse(run.createdAt) >= Date.parse(run.input.scheduledAt), `run made before its instant: ${JSON.stringify(run)}`);
  });

  test('an every-second interval from a start time with maxExecutions 3 makes exactly 3 runs, then the event is PAUSED', { timeout: 60_000 }, async () => {
    const startAt = new Date(Math.ceil((Date.now() + 2000) / 1000) * 1000).toISOString();
    const event = await first.createEvent({
      name: 'three times',
      type: 'EVENT_TYPE_BASH',
      script: 'true',
      schedule: { interval: { every: 1, unit: 'INTERVAL_UNIT_SECONDS' }, startAt },
      maxExecutions: 3,
    });
    const expected = await preview(first, { eventId: event.id, count: 10 });
    assert.deepEqual(expected, [0, 1000, 2000].map((ms) => new Date(Date.parse(startAt) + ms).toISOString()), 'from the start time, stopping at maxExecutions');
    await until(async () => (await first.ok('cronium.api.v1.EventService/GetEvent', { id: event.id })).event.status === 'EVENT_STATUS_PAUSED', 20_000, 'the event to pause');
    await sleep(2500);
    assert.deepEqual(await scheduledRuns(first, event.id), expected, 'exactly the three previewed instants');
    const after = (await first.ok('cronium.api.v1.EventService/GetEvent', { id: event.id })).event;
    assert.equal(after.executionCount, 3);
    const reactivate = await first.call('cronium.api.v1.EventService/UpdateEvent', { event: { ...after, status: 'EVENT_STATUS_ACTIVE' } });
    assert.equal(reactivate.status, 400);
    assert.match(reactivate.body.message, /^event\.maxExecutions: reached/);
  });

  test('an interval without a start time fires every N seconds of elapsed time from its save', { timeout: 60_000 }, async () => {
    const event = await first.createEvent({ name: 'every 2 s', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { interval: { every: 2, unit: 'INTERVAL_UNIT_SECONDS' } } });
    const created = Date.parse(event.createdAt);
    await until(async () => (await scheduledRuns(first, event.id)).length >= 3, 20_000, 'three fires');
    await pause(first, event.id);
    const fired = (await scheduledRuns(first, event.id)).map((at) => Date.parse(at));
    for (let i = 1; i < fired.length; i++) assert.equal(fired[i]! - fired[i - 1]!, 2000, `cadence: ${fired}`);
    assert.ok(fired[0]! > created && fired[0]! <= created + 2000, 'the first fire one step after the save');
    assert.equal(fired[0]! % 1000, 0, 'on whole seconds');
  });

  test('a start time alone fires once, at that instant', { timeout: 60_000 }, async () => {
    const startAt = new Date(Math.ceil((Date.now() + 2500) / 1000) * 1000).toISOString();
    const event = await first.createEvent({ name: 'once', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { startAt } });
    assert.equal(new Date(event.schedule.startAt).toISOString(), startAt);
    assert.deepEqual(await preview(first, { eventId: event.id, count: 5 }), [startAt]);
    await until(async () => (await scheduledRuns(first, event.id)).length > 0, 20_000, 'the one-shot');
    await sleep(2000);
    assert.deepEqual(await scheduledRuns(first, event.id), [startAt]);
    assert.deepEqual(await preview(first, { eventId: event.id }), [], 'nothing left to fire');
    const renamed = await first.call('cronium.api.v1.EventService/UpdateEvent', { event: { ...event, name: 'once, renamed' } });
    assert.equal(renamed.status, 200, 'an unchanged one-shot in the past does not block other edits');
  });

  test('invalid schedules are refused on save and by PreviewSchedule, naming the field', async () => {
    const base = { name: 'bad', type: 'EVENT_TYPE_BASH', script: 'true' };
    const cases: [Record<string, unknown>, string][] = [
      [{ cron: '0 0 31 2 *' }, 'event.schedule.cron'],
      [{ cron: '61 * * * *' }, 'event.schedule.cron'],
      [{ cron: '* * * *' }, 'event.schedule.cron'],
      [{ cron: '* * * * *', timezone: 'Mars/Olympus' }, 'event.schedule.timezone'],
      [{ interval: { every: 0, unit: 'INTERVAL_UNIT_MINUTES' } }, 'event.schedule.interval.every'],
      [{ interval: { every: 5 } }, 'event.schedule.interval.unit'],
      [{ cron: '* * * * *', interval: { every: 5, unit: 'INTERVAL_UNIT_SECONDS' } }, 'event.schedule.interval'],
      [{ startAt: '2001-01-01T00:00:00Z' }, 'event.schedule.startAt'],
    ];
    for (const [schedule, field] of cases) {
      const created = await first.call('cronium.api.v1.EventService/CreateEvent', { event: { ...base, schedule } });
      assert.equal(created.status, 400, JSON.stringify(schedule));
      assert.equal(created.body.code, 'invalid_argument');
      assert.ok(created.body.message.startsWith(`${field}:`), `${JSON.stringify(schedule)}: ${created.body.message}`);
      const previewed = await first.call('cronium.api.v1.EventService/PreviewSchedule', { schedule });
      assert.equal(previewed.status, 400);
      assert.ok(previewed.body.message.startsWith(`${field.replace(/^event\./, '')}:`), previewed.body.message);
    }
    const good = await first.createEvent({ ...base, schedule: { cron: '0 9 * * *' } });
    const updated = await first.call('cronium.api.v1.EventService/UpdateEvent', { event: { ...good, schedule: { cron: '0 0 31 2 *' } } });
    assert.equal(updated.status, 400);
    assert.match(updated.body.message, /^event\.schedule\.cron: "0 0 31 2 \*" never fires/);
    const tooMany = await first.call('cronium.api.v1.EventService/PreviewSchedule', { schedule: { cron: '* * * * *' }, count: 101 });
    assert.match(tooMany.body.message, /^count:/);
    const policy = await first.call('cronium.api.v1.EventService/CreateEvent', { event: { ...base, retryDelaySeconds: 4000 } });
    assert.match(policy.body.message, /^event\.retryDelaySeconds:/);
  });

  test('killing the leader again and again hands the schedule over: every instant PreviewSchedule gave fires once', { timeout: 600_000 }, async () => {
    const windowMs = Number(process.env.CRONIUM_SCHEDULER_SOAK_SECONDS || 20) * 1000;
    const event = await second.createEvent({ name: 'survives a leader', type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: '*/2 * * * * *', timezone: 'UTC' } });
    const expectedAll = await preview(second, { eventId: event.id, count: 100 });
    const started = Date.now();
    // The first replica started first and leads; SIGKILL ends its Postgres session and so its lock.
    const takeovers = (stack: Stack) => readFileSync(join(stack.dataDir, 'control-plane.log'), 'utf8').split('scheduler leadership taken').length - 1;
    assert.ok(takeovers(first) > 0 && takeovers(second) === 0, 'the first replica leads, the second waits');
    let [leader, standby] = [first, second];
    let kills = 0;
    do {
      await sleep(3000);
      const before = takeovers(standby);
      await leader.killControlPlane();
      const killedAt = Date.now();
      kills++;
      await until(async () => takeovers(standby) > before, 10_000, 'the standby to take the leadership');
      const handover = Date.now() - killedAt;
      assert.ok(handover < 5000, `the standby led ${handover} ms after the kill`);
      await leader.startControlPlane();
      [leader, standby] = [standby, leader];
    } while (Date.now() - started < windowMs - 6000);
    await sleep(Math.max(0, started + windowMs - Date.now()));
    const cutoff = Date.now() - 1500;
    await pause(leader, event.id);
    const fired = await scheduledRuns(leader, event.id);
    assert.equal(new Set(fired).size, fired.length, `no instant fired twice: ${fired}`);
    const expected = expectedAll.filter((at) => Date.parse(at) <= cutoff);
    assert.ok(expected.length >= windowMs / 2000 - 2, `the window covered ${expected.length} instants`);
    assert.deepEqual(fired.filter((at) => at >= expected[0]! && at <= expected.at(-1)!), expected, `${kills} leader kills: no previewed instant missed, none added`);
  });
});
