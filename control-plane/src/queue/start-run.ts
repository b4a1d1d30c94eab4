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
    const cancelled: Cancelled[] = [];
    if (event.concurrency_policy !== 'allow') {
      await tx.selectFrom('events').select('id').where('id', '=', event.id).forUpdate().execute();
      const running = await tx.selectFrom('runs').select('id').where('event_id', '=', event.id).where('status', '=', 'running').orderBy('created_at').execute();
      if (running.length > 0 && event.concurrency_policy === 'forbid') {
        const runningRunId = running[0]!.id;
        return { started: false, reason: forbiddenReason(runningRunId), runningRunId };
      }
      cancelled.push(...(await cancelReplaced(tx, running.map((run) => run.id))));
    }
    const { run, jobIds, jobs } = await enqueueRun(tx, event, input, agents);
    return { started: true, run, jobIds, jobs, cancelled };
  });
}

/** Why CONCURRENCY_FORBID starts no run while `runningRunId` runs. */
export function forbiddenReason(runningRunId: string): string {
  return `run ${runningRunId} of this event is still running and its concurrency policy is CONCURRENCY_FORBID`;
}

/** CONCURRENCY_REPLACE: cancels the open jobs of the running runs a new run replaces. */
export async function cancelReplaced(tx: Db, runIds: readonly string[]): Promise<Cancelled[]> {
  if (runIds.length === 0) return [];
  const jobs = await tx.selectFrom('jobs').select('id').where('run_id', 'in', runIds).where('status', 'in', ['queued', 'offered', 'running']).execute();
  const cancelled: Cancelled[] = [];
  for (const job of jobs) {
    const result = await cancelJob(tx, job.id, 'replaced by a newer run (concurrency policy CONCURRENCY_REPLACE)');
    if (result) cancelled.push(result);
  }
  return cancelled;
}
