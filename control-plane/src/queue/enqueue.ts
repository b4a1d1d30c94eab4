import { randomUUID } from 'node:crypto';
import type { Db } from '../store/database.ts';
import type { EventRow, JobSpec, NewJobRow, RunRow, Selector } from '../store/schema.ts';
import { EMPTY_SELECTOR, selectorMatches } from '../domain/selector.ts';

export interface RegisteredAgent {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * Creates a run and its jobs in one transaction. A selector with `all` or
 * `count` fans out to that many of the matching registered agents, one job
 * pinned to each; otherwise one job goes to whichever agent matches first.
 */
export async function enqueueRun(
  db: Db,
  event: EventRow,
  input: unknown,
  agents: readonly RegisteredAgent[],
): Promise<{ run: RunRow; jobIds: string[] }> {
  const selector: Selector = 'selector' in event.target ? event.target.selector : EMPTY_SELECTOR;
  const pins = fanOutTargets(selector, agents);
  const spec: JobSpec = {
    eventName: event.name,
    kind: event.type,
    script: event.script,
    env: event.env,
    timeoutSeconds: event.timeout_seconds,
    input: input ?? null,
    memoryMb: event.memory_mb,
    cpus: event.cpus,
    network: event.network,
    http: event.http,
    schedulingTimeoutSeconds: event.scheduling_timeout_seconds,
  };
  return db.transaction().execute(async (tx) => {
    const run = await tx
      .insertInto('runs')
      .values({
        id: randomUUID(),
        event_id: event.id,
        owner_id: event.owner_id,
        status: 'running',
        input: JSON.stringify(input ?? null),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    const jobs: NewJobRow[] = pins.map((pinnedAgentId) => ({
      id: randomUUID(),
      run_id: run.id,
      event_id: event.id,
      owner_id: event.owner_id,
      max_attempts: event.retries + 1,
      status: 'queued',
      priority: event.priority,
      spec: JSON.stringify(spec),
      selector: JSON.stringify(selector),
      pinned_agent_id: pinnedAgentId,
      error: '',
      scheduling_deadline: new Date(Date.now() + event.scheduling_timeout_seconds * 1000),
    }));
    await tx.insertInto('jobs').values(jobs).execute();
    return { run, jobIds: jobs.map((job) => job.id) };
  });
}

/** One entry per job: the agent it is pinned to, or null for "any matching agent". */
function fanOutTargets(selector: Selector, agents: readonly RegisteredAgent[]): (string | null)[] {
  if (!selector.all && selector.count <= 1) return [null];
  const matching = agents.filter((agent) => selectorMatches(selector, agent.labels)).map((agent) => agent.id);
  const chosen = selector.all ? matching : matching.slice(0, selector.count);
  return chosen.length > 0 ? chosen : [null];
}
