// The scheduler on both stores, with its clock moved by the test: missed-fire
// policies after a leader change, maxExecutions pausing the event, the
// concurrency policies on scheduled fires, and many events firing together.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Db } from '../src/store/database.ts';
import { STORES, insertEvent, openTestStore } from './test-stores.ts';
import type { ConcurrencyPolicy, EventRow, MissedFirePolicy, NewEventRow, ScheduleSpec } from '../src/store/schema.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import { fireEvents } from '../src/scheduler/fire-events.ts';
import { flushWalSoFar } from '../src/store/wal.ts';
import { soleLeader } from '../src/scheduler/leader.ts';
import type { Cancelled } from '../src/queue/transitions.ts';
import { EMPTY_SELECTOR } from '../src/domain/selector.ts';

for (const store of STORES) {
  describe(`scheduler on ${store}`, () => {
    let db: Db;
    let close: (() => Promise<void>) | undefined;
    /** Per test: a whole second a little ahead of the real clock, so its instants come after its events' creation. */
    let base = 0;
    let every10s: ScheduleSpec;
    const iso = (offsetMs: number) => new Date(base + offsetMs).toISOString();
    beforeEach(() => {
      base = Math.ceil(Date.now() / 1000) * 1000 + 2_000;
      every10s = { cron: '', timezone: 'UTC', interval: { every: 10, unit: 'seconds' }, startAt: new Date(base).toISOString() };
    });

    before(async () => {
      ({ db, close } = await openTestStore(store, 'cs'));
    });
    after(async () => {
      await close?.();
    });

    async function makeEvent(schedule: ScheduleSpec, options: { missed?: MissedFirePolicy; concurrency?: ConcurrencyPolicy; maxExecutions?: number } = {}): Promise<EventRow> {
      return insertEvent(db, 'owner-1', {
        schedule: JSON.stringify(schedule),
        missed_fire_policy: options.missed ?? 'run_once',
        concurrency_policy: options.concurrency ?? 'allow',
        max_executions: options.maxExecutions ?? 0,
      });
    }

    /** What every scheduler here is given; on Postgres, the events under ALLOW fire in transactions of their own, prepared ahead. */
    const common = () => ({
      db,
      leadership: soleLeader,
      leaseTtlMs: 30_000,
      onRuns: () => {},
      onCancelled: () => {},
      log: () => {},
      ...(store === 'postgres' ? { prepareAhead: { flushWal: () => flushWalSoFar(db) } } : {}),
    });

    /** A scheduler whose clock reads base + offset; a new one is what a new leader starts as. */
    function scheduler(cancelled: Cancelled[] = []) {
      let offset = 0;
      const instance = new Scheduler({ ...common(), onCancelled: (c) => cancelled.push(...c), clock: () => new Date(base + offset) });
      return { at: (ms: number) => ((offset = ms), instance.tick()) };
    }

    async function fires(eventId: string) {
      const rows = await db.selectFrom('schedule_fires').selectAll().where('event_id', '=', eventId).orderBy('fire_at').execute();
      return rows.map((row) => ({ at: new Date(row.fire_at).toISOString(), ran: row.run_id !== null, skipped: row.skipped_reason }));
    }

    test('after a leader change, RUN_ONCE makes one run for the newest missed instant; SKIP makes none', async () => {
      const once = await makeEvent(every10s, { missed: 'run_once' });
      const skip = await makeEvent(every10s, { missed: 'skip' });
      const leader = scheduler();
      await leader.at(100);
      const next = scheduler();
      await next.at(35_500);
      await next.at(40_100);
      assert.deepEqual((await fires(once.id)).map((f) => f.at), [iso(0), iso(30_000), iso(40_000)]);
      assert.deepEqual((await fires(skip.id)).map((f) => f.at), [iso(0), iso(40_000)]);
      const runs = await db.selectFrom('runs').select('input').where('event_id', '=', once.id).execute();
      assert.deepEqual(runs.map((run) => (run.input as { scheduledAt: string }).scheduledAt).sort(), [iso(0), iso(30_000), iso(40_000)]);
    });

    test('maxExecutions 2 makes two runs, then the event is paused and fires no more', async () => {
      const event = await makeEvent({ ...every10s, interval: { every: 1, unit: 'seconds' } }, { maxExecutions: 2 });
      const s = scheduler();
      for (const at of [100, 1_100, 2_100, 3_100]) await s.at(at);
      assert.deepEqual((await fires(event.id)).map((f) => f.at), [iso(0), iso(1_000)]);
      const row = await db.selectFrom('events').select(['status', 'execution_count']).where('id', '=', event.id).executeTakeFirstOrThrow();
      assert.deepEqual(row, { status: 'paused', execution_count: 2 });
    });

    test('an event paused for a while and set active again does not replay the instants it was paused through', async () => {
      const event = await makeEvent({ ...every10s, interval: { every: 1, unit: 'seconds' } });
      const s = scheduler();
      await s.at(100);
      await s.at(1_100);
      await db.updateTable('events').set({ status: 'paused' }).where('id', '=', event.id).execute();
      await s.at(2_100);
      await s.at(20_100);
      // Set active again "now" (as UpdateEvent stamps it), then the next ticks.
      await db.updateTable('events').set({ status: 'active', updated_at: new Date(base + 20_200) }).where('id', '=', event.id).execute();
      await s.at(20_300);
      await s.at(21_100);
      assert.deepEqual((await fires(event.id)).map((f) => f.at), [iso(0), iso(1_000), iso(21_000)]);
    });

    test('FORBID records a fire made while the last run still runs as skipped, with the reason', async () => {
      const event = await makeEvent(every10s, { concurrency: 'forbid' });
      const s = scheduler();
      await s.at(100);
      await s.at(10_100);
      const [first, second] = await fires(event.id);
      assert.equal(first!.ran, true);
      assert.equal(second!.ran, false);
      assert.match(second!.skipped, /still running and its concurrency policy is CONCURRENCY_FORBID/);
      assert.equal((await db.selectFrom('runs').select('id').where('event_id', '=', event.id).execute()).length, 1);
    });

    test('REPLACE cancels the running run, then makes the new one', async () => {
      const event = await makeEvent(every10s, { concurrency: 'replace' });
      const cancelled: Cancelled[] = [];
      const s = scheduler(cancelled);
      await s.at(100);
      await s.at(10_100);
      const runs = await db.selectFrom('runs').select(['status', 'input']).where('event_id', '=', event.id).orderBy('created_at').execute();
      assert.deepEqual(runs.map((run) => [run.status, (run.input as { scheduledAt: string }).scheduledAt]), [
        ['cancelled', iso(0)],
        ['running', iso(10_000)],
      ]);
      assert.equal(cancelled.length, 1);
      assert.match(cancelled[0]!.job.error, /replaced by a newer run/);
    });

    test('many events due at one instant each get exactly one run per fire, also with two leaders firing at once', async () => {
      // Saved a second before the first instant, however long making them takes.
      const saved = (fields: Partial<NewEventRow> = {}) =>
        insertEvent(db, 'owner-1', { schedule: JSON.stringify({ ...every10s, interval: { every: 1, unit: 'seconds' } }), updated_at: new Date(base - 1_000), ...fields });
      const events = await Promise.all(Array.from({ length: 150 }, () => saved()));
      const capped = await saved({ max_executions: 1 });
      const forbid = await saved({ concurrency_policy: 'forbid' });
      // A fan-out to every agent, with none registered: one job for whichever comes.
      events.push(await saved({ target: JSON.stringify({ selector: { ...EMPTY_SELECTOR, all: true } }) }));
      const started: string[] = [];
      // Two schedulers that both think they lead, ticking at the same instants at the same time.
      const leaders = [0, 1].map(() => {
        let offset = 0;
        const instance = new Scheduler({ ...common(), onRuns: (ids) => started.push(...ids), clock: () => new Date(base + offset) });
        return { at: (ms: number) => ((offset = ms), instance.tick()) };
      });
      for (const at of [100, 1_100, 2_100]) await Promise.all(leaders.map((leader) => leader.at(at)));
      const runs = await db
        .selectFrom('runs')
        .select(['id', 'event_id', 'input'])
        .where('event_id', 'in', [...events, capped, forbid].map((event) => event.id))
        .execute();
      const perEvent = new Map<string, string[]>();
      for (const run of runs) perEvent.set(run.event_id, [...(perEvent.get(run.event_id) ?? []), (run.input as { scheduledAt: string }).scheduledAt]);
      for (const event of events) assert.deepEqual(perEvent.get(event.id)?.sort(), [iso(0), iso(1_000), iso(2_000)], `event ${event.id}: one run per instant`);
      assert.deepEqual(perEvent.get(capped.id), [iso(0)], 'maxExecutions 1: one run');
      assert.deepEqual(perEvent.get(forbid.id), [iso(0)], 'FORBID: no run while the first still runs');
      assert.equal(new Set(started).size, runs.length, 'each run announced once');
      const fired = await db.selectFrom('schedule_fires').select(['event_id', 'run_id', 'skipped_reason']).where('event_id', 'in', events.map((event) => event.id)).execute();
      assert.equal(fired.length, events.length * 3);
      assert.ok(fired.every((fire) => fire.run_id !== null && fire.skipped_reason === ''));
      const jobs = await db.selectFrom('jobs').select(['run_id', 'status']).where('run_id', 'in', runs.map((run) => run.id)).execute();
      assert.equal(jobs.length, runs.length, 'one queued job per run');
      assert.ok(jobs.every((job) => job.status === 'queued'));
      assert.deepEqual(await fires(forbid.id).then((rows) => rows.map((row) => row.ran)), [true, false, false]);
      const counts = await db.selectFrom('events').select(['id', 'execution_count', 'status']).where('id', 'in', [events[0]!.id, capped.id]).execute();
      assert.deepEqual(new Map(counts.map((row) => [row.id, [row.execution_count, row.status]])), new Map([[events[0]!.id, [3, 'active']], [capped.id, [1, 'paused']]]));
    });

    // Postgres only: PGlite's one connection is the preparing transaction, so there is nothing to look from.
    if (store !== 'pglite') test('a fire prepared ahead of its instant shows nothing before its commit, and is dated no earlier than the instant', async () => {
      const events = await Promise.all(Array.from({ length: 3 }, () => makeEvent(every10s)));
      const at = new Date(Date.now() + 60_000);
      const ids = events.map((event) => event.id);
      const visible = async () => (await db.selectFrom('runs').select('id').where('event_id', 'in', ids).execute()).length;
      let seenBeforeCommit = -1;
      const fired = await fireEvents(db, at, ids, async () => [], async () => {
        seenBeforeCommit = (await visible()) + (await db.selectFrom('schedule_fires').select('event_id').where('event_id', 'in', ids).execute()).length;
      });
      assert.equal(seenBeforeCommit, 0, 'nothing visible to another connection before the commit');
      assert.equal(fired.started.length, 3);
      assert.equal(await visible(), 3);
      const dates = [
        ...(await db.selectFrom('schedule_fires').select('created_at').where('event_id', 'in', ids).execute()).map((row) => row.created_at),
        ...(await db.selectFrom('runs').select('created_at').where('event_id', 'in', ids).execute()).map((row) => row.created_at),
        ...(await db.selectFrom('jobs').select(['created_at', 'run_after']).where('event_id', 'in', ids).execute()).flatMap((row) => [row.created_at, row.run_after]),
      ];
      assert.equal(dates.length, 12);
      for (const date of dates) assert.ok(new Date(date).getTime() >= at.getTime(), `${new Date(date).toISOString()} is before the instant ${at.toISOString()}`);
    });

    test('a workflow schedule starts one execution per instant, across leaders, and none while paused', async () => {
      const event = await makeEvent({ cron: '', timezone: 'UTC' });
      const workflow = await db
        .insertInto('workflows')
        .values({
          id: randomUUID(),
          owner_id: 'owner-1',
          name: 'nightly',
          status: 'active',
          nodes: JSON.stringify([{ id: 'a', eventId: event.id, name: '' }]),
          edges: '[]',
          schedule: JSON.stringify(every10s),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      const executions = async () =>
        (await db.selectFrom('workflow_executions').select(['trigger', 'input']).where('workflow_id', '=', workflow.id).orderBy('created_at').execute()).map(
          (row) => [row.trigger, (row.input as { scheduledAt: string }).scheduledAt],
        );
      const leader = scheduler();
      await leader.at(100);
      await leader.at(10_100);
      // A second leader that starts over the same instants fires none of them again.
      const next = scheduler();
      await next.at(10_200);
      assert.deepEqual(await executions(), [
        ['schedule', iso(0)],
        ['schedule', iso(10_000)],
      ]);
      const runs = await db.selectFrom('runs').select('event_id').where('event_id', '=', event.id).execute();
      assert.equal(runs.length, 2, 'each execution started its root node');

      await db.updateTable('workflows').set({ status: 'paused' }).where('id', '=', workflow.id).execute();
      await next.at(20_100);
      assert.equal((await executions()).length, 2, 'a paused workflow does not fire');
    });
  });
}
