import { randomUUID } from 'node:crypto';
import { currentTraceParent } from '../tracing.ts';
import { inTransaction, type Db } from '../store/database.ts';
import { sql } from 'kysely';
import type { EventRow, JobRow, JobSpec, RunRow, Selector } from '../store/schema.ts';
import { EMPTY_SELECTOR, selectorMatches } from '../domain/selector.ts';
import { finishLocked } from './transitions.ts';

export interface RegisteredAgent {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** A job of a new run, before it is written: spec and selector as objects. */
export interface NewJob {
  readonly id: string;
  readonly run_id: string;
  readonly event_id: string;
  readonly owner_id: string;
  readonly max_attempts: number;
  readonly status: 'queued';
  readonly priority: number;
  readonly spec: JobSpec;
  readonly selector: Selector;
  readonly pinned_agent_id: string | null;
  readonly server_id: string | null;
  readonly error: string;
  readonly scheduling_deadline: Date;
}

/**
 * A new run of an event and its jobs (not written yet). A selector with `all`
 * or `count` fans out to that many of the matching registered agents, one job
 * pinned to each; otherwise one job goes to whichever agent matches first. A
 * servers target makes one SSH job per server.
 */
export function newRun(event: EventRow, input: unknown, agents: readonly RegisteredAgent[], now = Date.now()): { runId: string; jobs: NewJob[]; serverIds: string[] | undefined } {
  const selector: Selector = 'selector' in event.target ? event.target.selector : EMPTY_SELECTOR;
  const serverIds = 'serverIds' in event.target ? [...event.target.serverIds] : undefined;
  const targets = serverIds ? serverIds.map((serverId) => ({ pinnedAgentId: null, serverId })) : fanOutTargets(selector, agents).map((pinnedAgentId) => ({ pinnedAgentId, serverId: null }));
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
    retryDelaySeconds: event.retry_delay_seconds,
    traceParent: currentTraceParent(),
  };
  const runId = randomUUID();
  const jobs = targets.map(({ pinnedAgentId, serverId }) => ({
    id: randomUUID(),
    run_id: runId,
    event_id: event.id,
    owner_id: event.owner_id,
    max_attempts: event.retries + 1,
    status: 'queued' as const,
    priority: event.priority,
    spec,
    selector,
    pinned_agent_id: pinnedAgentId,
    server_id: serverId,
    error: '',
    scheduling_deadline: new Date(now + event.scheduling_timeout_seconds * 1000),
  }));
  return { runId, jobs, serverIds };
}

/**
 * Fails, at once and with the reason, the just-inserted SSH jobs whose server
 * is gone or whose host key is not approved; returns the jobs as they are now.
 */
export async function failUnusableServerJobs(tx: Db, inserted: readonly JobRow[]): Promise<JobRow[]> {
  const serverIds = [...new Set(inserted.flatMap((job) => (job.server_id ? [job.server_id] : [])))];
  if (serverIds.length === 0) return [...inserted];
  const usable = await tx.selectFrom('servers').select(['id', 'host_key_fingerprint']).where('id', 'in', serverIds).where('deleted_at', 'is', null).execute();
  const approved = new Map(usable.map((server) => [server.id, server.host_key_fingerprint !== '']));
  const jobs = [...inserted];
  for (const [i, job] of jobs.entries()) {
    if (!job.server_id) continue;
    const state = approved.get(job.server_id);
    if (state) continue;
    const error = state === undefined ? `server ${job.server_id} does not exist` : `server ${job.server_id}: host key not approved (TestServer, then ApproveHostKey)`;
    jobs[i] = (await finishLocked(tx, job, { status: 'failed', exitCode: null, error }, { retry: false })).job;
  }
  return jobs;
}

/** Set when a conditional action of another run started this one (see actions/run-actions.ts). */
export interface RunCause {
  readonly runId: string;
  readonly actionDepth: number;
}

/**
 * Creates a run of the event and its jobs ({@link enqueueRuns}); a server
 * that is gone or whose host key is not approved fails its job at once, with
 * the reason.
 */
export async function enqueueRun(
  db: Db,
  event: EventRow,
  input: unknown,
  agents: readonly RegisteredAgent[],
  cause: RunCause | null = null,
): Promise<{ run: RunRow; jobIds: string[]; jobs: JobRow[] }> {
  const request = [{ event, input, cause }];
  if ('serverIds' in event.target) {
    return inTransaction(db, async (tx) => {
      const { runIds, jobs } = await enqueueRuns(tx, request, agents);
      // Its jobs may have failed already, and the run with them.
      const run = await tx.selectFrom('runs').selectAll().where('id', '=', runIds[0]!).executeTakeFirstOrThrow();
      return { run, jobIds: jobs.map((job) => job.id), jobs };
    });
  }
  // One statement, atomic on its own: without a transaction's extra round trips.
  const { runIds, jobs } = await enqueueRuns(db, request, agents);
  // The run as inserted, without reading it back: its created_at is the statement's, like its jobs'.
  const run: RunRow = {
    id: runIds[0]!,
    event_id: event.id,
    owner_id: event.owner_id,
    status: 'running',
    exit_code: null,
    input: JSON.parse(JSON.stringify(input ?? null)),
    created_at: jobs[0]!.created_at,
    finished_at: null,
    action_depth: cause?.actionDepth ?? 0,
    caused_by_run_id: cause?.runId ?? null,
  };
  return { run, jobIds: jobs.map((job) => job.id), jobs };
}

export interface RunRequest {
  readonly event: EventRow;
  readonly input: unknown;
  readonly cause?: RunCause | null;
}

/**
 * Runs of many events ({@link newRun}): every run and job in one statement,
 * the rows passed as one JSON parameter each (so the statement's size does
 * not grow with its parameters' count); SSH jobs whose server cannot be used
 * are failed at once, which needs the caller's transaction. Returns each
 * request's run id, in order, and the jobs as they are now. With `notBefore`,
 * the runs and jobs are dated no earlier than it (and the jobs may not run
 * before it): for a transaction begun ahead of the moment it commits at.
 */
export async function enqueueRuns(
  tx: Db,
  requests: readonly RunRequest[],
  agents: readonly RegisteredAgent[],
  { notBefore }: { notBefore?: Date } = {},
): Promise<{ runIds: string[]; jobs: JobRow[] }> {
  if (requests.length === 0) return { runIds: [], jobs: [] };
  const now = Math.max(Date.now(), notBefore?.getTime() ?? 0);
  const built = requests.map(({ event, input, cause }) => ({ event, input, cause, ...newRun(event, input, agents, now) }));
  const runs = built.map(({ runId, event, input, cause }) => ({
    id: runId,
    event_id: event.id,
    owner_id: event.owner_id,
    status: 'running',
    input: input ?? null,
    caused_by_run_id: cause?.runId ?? null,
    action_depth: cause?.actionDepth ?? 0,
  }));
  const newJobs = built.flatMap((run) => run.jobs);
  const createdAt = sql`greatest(now(), ${notBefore ?? null}::timestamptz)`;
  const { rows } = await sql<JobRow>`
    with new_runs as (
      insert into runs (id, event_id, owner_id, status, input, caused_by_run_id, action_depth, created_at)
      select id, event_id, owner_id, status, coalesce(input, 'null'), caused_by_run_id, action_depth, ${createdAt}
        from json_populate_recordset(null::runs, ${JSON.stringify(runs)}::json)
    )
    insert into jobs (id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, pinned_agent_id, server_id, error, scheduling_deadline, created_at, run_after)
    select id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, pinned_agent_id, server_id, error, scheduling_deadline, ${createdAt}, ${createdAt}
      from json_populate_recordset(null::jobs, ${JSON.stringify(newJobs)}::json)
    returning *`.execute(tx);
  const byId = new Map(rows.map((row) => [row.id, row]));
  const inserted = newJobs.map((job) => byId.get(job.id)!);
  return { runIds: built.map((run) => run.runId), jobs: await failUnusableServerJobs(tx, inserted) };
}

/** Agents a fan-out may pick: online, or reconnecting (heartbeated within one lease); not draining or revoked. */
export async function fanOutAgents(db: Db, leaseTtlMs: number): Promise<RegisteredAgent[]> {
  const rows = await db
    .selectFrom('agents')
    .select(['id', 'labels', 'pinned_labels'])
    .where((eb) => eb.or([eb('connected', '=', true), eb('last_heartbeat_at', '>', new Date(Date.now() - leaseTtlMs))]))
    .where('draining', '=', false)
    .where('revoked_at', 'is', null)
    .orderBy('id')
    .execute();
  return rows.map((row) => ({ id: row.id, labels: { ...row.labels, ...row.pinned_labels } }));
}

/** Whether enqueueRun needs the registered agents for this event (its selector fans out); else it may be given none. */
export function fansOut(event: Pick<EventRow, 'target'>): boolean {
  return 'selector' in event.target && (event.target.selector.all || event.target.selector.count > 1);
}

/** One entry per job: the agent it is pinned to, or null for "any matching agent". */
function fanOutTargets(selector: Selector, agents: readonly RegisteredAgent[]): (string | null)[] {
  if (!selector.all && selector.count <= 1) return [null];
  const matching = agents.filter((agent) => selectorMatches(selector, agent.labels)).map((agent) => agent.id);
  const chosen = selector.all ? matching : matching.slice(0, selector.count);
  return chosen.length > 0 ? chosen : [null];
}
