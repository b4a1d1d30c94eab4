import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventRow } from '../store/schema.ts';
import { enqueueRuns, fansOut, type RegisteredAgent } from '../queue/enqueue.ts';
import { applyConcurrencyPolicies } from '../queue/start-run.ts';
import type { Cancelled } from '../queue/transitions.ts';

export interface InstantFired {
  readonly started: { readonly eventId: string; readonly runId: string }[];
  readonly skipped: { readonly eventId: string; readonly reason: string }[];
  /** Jobs that CONCURRENCY_REPLACE cancelled: after the commit, their agents must be told. */
  readonly cancelled: Cancelled[];
}

/**
 * One scheduled instant of many events, in one transaction. Each (event,
 * instant) is claimed under its unique key, so an instant another leader
 * already fired is left out; the claimed events are locked and read again (an
 * edit, a pause or the last allowed execution may have come since they were
 * listed); then, under each event's maxExecutions and concurrency policy, all
 * their runs and jobs are inserted together and the fires, execution counts
 * and pauses are recorded with one statement. `agents` is asked (in the
 * transaction) only when an event fans out.
 *
 * For events under ALLOW, the scheduler prepares the transaction a little
 * ahead of the instant and commits it when the instant comes (`beforeCommit`
 * waits for it): nothing is visible before then, and the rows are dated no
 * earlier than the instant.
 */
export async function fireEvents(
  db: Db,
  at: Date,
  eventIds: readonly string[],
  agents: (tx: Db) => Promise<readonly RegisteredAgent[]>,
  beforeCommit: () => Promise<void> = async () => {},
): Promise<InstantFired> {
  // Claimed in one order by every leader: two of them on the same instant wait for each other, never deadlock.
  const ids = [...eventIds].sort();
  return db.transaction().execute(async (tx) => {
    const claimed = (
      await sql<EventRow>`
        with claimed as (
          insert into schedule_fires (event_id, fire_at, created_at) select id, ${at}, greatest(now(), ${at}) from unnest(${ids}::text[]) as id
          on conflict do nothing returning event_id
        )
        -- No key update: inserts that only check a foreign key to the event (RunEvent under ALLOW) need not wait.
        select events.* from events join claimed on claimed.event_id = events.id order by events.id for no key update of events`.execute(tx)
    ).rows;
    if (claimed.length === 0) return { started: [], skipped: [], cancelled: [] };
    const dated = { notBefore: at };
    const skipped: { eventId: string; reason: string }[] = [];
    const fireable = claimed.filter((event) => {
      const reason = whyNotFireable(event);
      if (reason) skipped.push({ eventId: event.id, reason });
      return !reason;
    });
    const { starting, forbidden, cancelled } = await applyConcurrencyPolicies(tx, fireable);
    skipped.push(...forbidden.map(({ eventId, reason }) => ({ eventId, reason })));
    const input = { scheduledAt: at.toISOString() };
    const { runIds } = await enqueueRuns(
      tx,
      starting.map((event) => ({ event, input })),
      starting.some((event) => fansOut(event)) ? await agents(tx) : [],
      dated,
    );
    const started = starting.map((event, i) => ({ eventId: event.id, runId: runIds[i]! }));
    await recordFires(tx, at, started, skipped);
    await beforeCommit();
    return { started, skipped, cancelled };
  });
}

function whyNotFireable(event: EventRow): string | undefined {
  if (event.status !== 'active' || event.deleted_at !== null) return 'the event is no longer active';
  if (event.max_executions > 0 && event.execution_count >= event.max_executions) return `maxExecutions (${event.max_executions}) reached`;
  return undefined;
}

/** Each claimed fire's run (or why it made none); the started events' execution counts, pausing those at their maxExecutions. */
async function recordFires(tx: Db, at: Date, started: InstantFired['started'], skipped: InstantFired['skipped']): Promise<void> {
  const outcomes = [...started.map(({ eventId, runId }) => ({ event_id: eventId, run_id: runId, reason: '' })), ...skipped.map(({ eventId, reason }) => ({ event_id: eventId, run_id: null, reason }))];
  await sql`
    with fires as (
      update schedule_fires set run_id = outcome.run_id, skipped_reason = outcome.reason
        from json_to_recordset(${JSON.stringify(outcomes)}::json) as outcome(event_id text, run_id text, reason text)
       where schedule_fires.event_id = outcome.event_id and schedule_fires.fire_at = ${at}
    )
    update events
       set execution_count = execution_count + 1,
           status = case when max_executions > 0 and execution_count + 1 >= max_executions then 'paused' else status end
     where id = any(${started.map((fire) => fire.eventId)}::text[])`.execute(tx);
}
