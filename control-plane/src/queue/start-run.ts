import { inTransaction, type Db } from '../store/database.ts';
import type { EventRow, JobRow, RunRow } from '../store/schema.ts';
import { enqueueRun, type RegisteredAgent } from './enqueue.ts';
import { cancelJob, type Cancelled } from './transitions.ts';

export type StartOutcome =
  | { readonly started: true; readonly run: RunRow; readonly jobIds: string[]; readonly jobs: JobRow[]; readonly cancelled: Cancelled[] }
  | { readonly started: false; readonly reason: string; readonly runningRunId: string };

/**
 * Starts a run of an event under its concurrency policy. Under FORBID and
 * REPLACE the event row is locked first, so starts of one event (a schedule
 * fire, RunEvent calls) take turns and each sees the runs the others made;
 * ALLOW decides nothing, so its starts skip that lock (a hot spot under many
 * RunEvent calls). FORBID: no run while one is still running (the reason
 * says which). REPLACE: the running runs' jobs are cancelled in the same
 * transaction, then the new run is made; the caller tells the agents
 * (`cancelled`) after the commit.
 */
export async function startRun(db: Db, event: EventRow, input: unknown, agents: readonly RegisteredAgent[]): Promise<StartOutcome> {
  return inTransaction(db, async (tx) => {
    let cancelled: Cancelled[] = [];
    if (event.concurrency_policy !== 'allow') {
      await tx.selectFrom('events').select('id').where('id', '=', event.id).forUpdate().execute();
      const decided = await applyConcurrencyPolicies(tx, [event]);
      const refused = decided.forbidden[0];
      if (refused) return { started: false, reason: refused.reason, runningRunId: refused.runningRunId };
      cancelled = decided.cancelled;
    }
    const { run, jobIds, jobs } = await enqueueRun(tx, event, input, agents);
    return { started: true, run, jobIds, jobs, cancelled };
  });
}

/**
 * The concurrency policies of events about to start a run each, the events
 * locked by the caller. ALLOW decides nothing. FORBID: no run while one is
 * still running (`forbidden`, with the reason). REPLACE: the running runs'
 * open jobs are cancelled (`cancelled`: the caller tells the agents after the
 * commit).
 */
export async function applyConcurrencyPolicies(tx: Db, events: readonly EventRow[]) {
  const forbidden: { eventId: string; reason: string; runningRunId: string }[] = [];
  const deciding = events.filter((event) => event.concurrency_policy !== 'allow');
  if (deciding.length === 0) return { starting: events, forbidden, cancelled: [] };
  const running = await tx
    .selectFrom('runs')
    .select(['id', 'event_id'])
    .where('event_id', 'in', deciding.map((event) => event.id))
    .where('status', '=', 'running')
    .orderBy('created_at')
    .execute();
  const runningOf = new Map<string, string[]>();
  for (const run of running) runningOf.set(run.event_id, [...(runningOf.get(run.event_id) ?? []), run.id]);
  const replaced: string[] = [];
  const starting = events.filter((event) => {
    const runs = event.concurrency_policy === 'allow' ? undefined : runningOf.get(event.id);
    if (!runs) return true;
    if (event.concurrency_policy === 'forbid') {
      forbidden.push({ eventId: event.id, reason: `run ${runs[0]} of this event is still running and its concurrency policy is CONCURRENCY_FORBID`, runningRunId: runs[0]! });
      return false;
    }
    replaced.push(...runs);
    return true;
  });
  return { starting, forbidden, cancelled: await cancelReplaced(tx, replaced) };
}

async function cancelReplaced(tx: Db, runIds: readonly string[]): Promise<Cancelled[]> {
  if (runIds.length === 0) return [];
  const jobs = await tx.selectFrom('jobs').select('id').where('run_id', 'in', runIds).where('status', 'in', ['queued', 'offered', 'running']).execute();
  const cancelled: Cancelled[] = [];
  for (const job of jobs) {
    const result = await cancelJob(tx, job.id, 'replaced by a newer run (concurrency policy CONCURRENCY_REPLACE)');
    if (result) cancelled.push(result);
  }
  return cancelled;
}
