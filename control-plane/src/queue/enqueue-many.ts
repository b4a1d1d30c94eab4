import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventRow } from '../store/schema.ts';
import { failUnusableServerJobs, newRun, type RegisteredAgent } from './enqueue.ts';

export interface RunRequest {
  readonly event: EventRow;
  readonly input: unknown;
}

/**
 * {@link enqueueRun} for many events in the caller's transaction: every run
 * and job in one statement, the rows passed as one JSON parameter each (so
 * the statement's size does not grow with its parameters' count). Returns
 * each request's run id, in order. With `notBefore`, the runs and jobs are
 * dated no earlier than it (and the jobs may not run before it): for a
 * transaction begun ahead of the moment it commits at.
 */
export async function enqueueRuns(tx: Db, requests: readonly RunRequest[], agents: readonly RegisteredAgent[], { notBefore }: { notBefore?: Date } = {}): Promise<string[]> {
  if (requests.length === 0) return [];
  const now = Math.max(Date.now(), notBefore?.getTime() ?? 0);
  const built = requests.map(({ event, input }) => ({ event, input, ...newRun(event, input, agents, now) }));
  const runs = built.map(({ runId, event, input }) => ({ id: runId, event_id: event.id, owner_id: event.owner_id, status: 'running', input: input ?? null }));
  const jobs = built.flatMap((run) => run.jobs);
  const createdAt = sql`greatest(now(), ${notBefore ?? null}::timestamptz)`;
  await sql`
    with new_runs as (
      insert into runs (id, event_id, owner_id, status, input, created_at)
      select id, event_id, owner_id, status, coalesce(input, 'null'), ${createdAt} from json_populate_recordset(null::runs, ${JSON.stringify(runs)}::json)
    )
    insert into jobs (id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, pinned_agent_id, server_id, error, scheduling_deadline, created_at, run_after)
    select id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, pinned_agent_id, server_id, error, scheduling_deadline, ${createdAt}, ${createdAt}
      from json_populate_recordset(null::jobs, ${JSON.stringify(jobs)}::json)`.execute(tx);
  const serverJobIds = jobs.filter((job) => job.server_id !== null).map((job) => job.id);
  if (serverJobIds.length > 0) {
    await failUnusableServerJobs(tx, await tx.selectFrom('jobs').selectAll().where('id', 'in', serverJobIds).forUpdate().execute());
  }
  return built.map((run) => run.runId);
}
