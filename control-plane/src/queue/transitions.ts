import { sql } from 'kysely';
import { inTransaction, type Db } from '../store/database.ts';
import type { JobRow, JobStatus, RunRow } from '../store/schema.ts';
import { isTerminal, retryDelayMs, runOutcome } from '../domain/run-status.ts';
import { afterRunsSettled } from './after-run.ts';
import { valuesTable, type ValuesColumn } from '../store/values.ts';
import { saveVariablesSet } from '../variables/store.ts';

/** Identifies one attempt under one lease; every state change is guarded by it. */
export interface Fence {
  readonly jobId: string;
  readonly attempt: number;
  readonly leaseId: string;
}

/** applied: the change was made; duplicate: it was made before; stale: the fence no longer holds. */
export type FenceOutcome = 'applied' | 'duplicate' | 'stale';

export interface AttemptResult {
  readonly status: Extract<JobStatus, 'succeeded' | 'failed' | 'timed_out' | 'cancelled'>;
  readonly exitCode: number | null;
  readonly error: string;
  readonly output?: unknown;
  readonly condition?: boolean;
  readonly logTruncated?: boolean;
  readonly oomKilled?: boolean;
  readonly variablesSet?: Readonly<Record<string, string>>;
  readonly finishedAt?: Date;
}

export interface Finished {
  readonly job: JobRow;
  /** Set when this attempt ended the run. */
  readonly run?: RunRow;
  /** True when the job went back to the queue for another attempt. */
  readonly retried: boolean;
}

type Tx = Db;

function interval(ms: number) {
  return sql<Date>`now() + ${ms} * interval '1 millisecond'`;
}

function fenceKey(fence: Fence): string {
  return `${fence.jobId}/${fence.attempt}/${fence.leaseId}`;
}

function rowFence(row: { id: string; attempt: number; lease_id: string | null }): string {
  return fenceKey({ jobId: row.id, attempt: row.attempt, leaseId: row.lease_id ?? '' });
}

/** The fences as an inline table `v(id, attempt, lease_id, …extra)`, matched by {@link FENCE_HOLDS}. */
function fenceValues(fences: readonly Fence[], extra: readonly ValuesColumn[] = [], extraValues: (i: number) => readonly unknown[] = () => []) {
  return valuesTable(
    'v',
    [['id', 'text'], ['attempt', 'int'], ['lease_id', 'text'], ...extra],
    fences.map((fence, i) => [fence.jobId, fence.attempt, fence.leaseId, ...extraValues(i)]),
  );
}

const FENCE_HOLDS = sql`jobs.id = v.id and jobs.attempt = v.attempt and jobs.lease_id = v.lease_id`;

/** The current rows of the fenced jobs, by fence: a fence with no row here is stale. */
async function rowsByFence(db: Db, fences: readonly Fence[]): Promise<Map<string, JobRow>> {
  if (fences.length === 0) return new Map();
  const rows = await db.selectFrom('jobs').selectAll().where('id', 'in', [...new Set(fences.map((fence) => fence.jobId))]).execute();
  return new Map(rows.map((row) => [rowFence(row), row]));
}

/**
 * Applies a batch of fenced changes once per distinct fence (the first item
 * wins) and gives every item its outcome, in order: a repeat of a fence that
 * held is a duplicate, as it would be had it come in a later batch.
 */
async function oncePerFence<T, R extends { outcome: FenceOutcome }>(
  items: readonly T[],
  fence: (item: T) => Fence,
  apply: (unique: T[]) => Promise<R[]>,
): Promise<R[]> {
  const firstOf = new Map<string, number>();
  const unique: T[] = [];
  const slots = items.map((item) => {
    const key = fenceKey(fence(item));
    const seen = firstOf.get(key);
    if (seen !== undefined) return { index: seen, repeat: true };
    firstOf.set(key, unique.length);
    unique.push(item);
    return { index: unique.length - 1, repeat: false };
  });
  const results = unique.length > 0 ? await apply(unique) : [];
  return slots.map(({ index, repeat }) => {
    const result = results[index]!;
    return repeat && result.outcome !== 'stale' ? ({ outcome: 'duplicate' } as R) : result;
  });
}

export async function acceptOffer(db: Db, fence: Fence, leaseTtlMs: number): Promise<FenceOutcome> {
  return (await acceptOffers(db, [fence], leaseTtlMs))[0]!;
}

/** Takes many accepts with one guarded UPDATE; only the fences it did not match are read, to tell a duplicate from a stale fence. */
export async function acceptOffers(db: Db, fences: readonly Fence[], leaseTtlMs: number): Promise<FenceOutcome[]> {
  const results = await oncePerFence(fences, (fence) => fence, async (unique) => {
    const { rows } = await sql<JobRow>`
      update jobs set accepted_at = now(), lease_expires_at = ${interval(leaseTtlMs)}
        from ${fenceValues(unique)}
       where ${FENCE_HOLDS} and jobs.status in ('offered', 'running') and jobs.accepted_at is null
      returning jobs.id, jobs.attempt, jobs.lease_id`.execute(db);
    const applied = new Set(rows.map(rowFence));
    const current = await rowsByFence(db, unique.filter((fence) => !applied.has(fenceKey(fence))));
    return unique.map((fence): { outcome: FenceOutcome } => {
      if (applied.has(fenceKey(fence))) return { outcome: 'applied' };
      // Accepted before, by an earlier accept or by the start (which may even have ended it already, when the start and the result were stored first).
      return { outcome: current.get(fenceKey(fence))?.accepted_at ? 'duplicate' : 'stale' };
    });
  });
  return results.map((result) => result.outcome);
}

/** The agent turned the offer down: the job goes back to the queue, same attempt. */
export async function rejectOffer(db: Db, fence: Fence): Promise<FenceOutcome> {
  const result = await db
    .updateTable('jobs')
    .set({ status: 'queued', agent_id: null, lease_id: null, offer_expires_at: null, accepted_at: null })
    .where('id', '=', fence.jobId)
    .where('attempt', '=', fence.attempt)
    .where('lease_id', '=', fence.leaseId)
    .where('status', '=', 'offered')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n ? 'applied' : 'stale';
}

export interface StartReport {
  readonly fence: Fence;
  readonly at: Date;
}

export async function markStarted(db: Db, fence: Fence, at: Date, leaseTtlMs: number): Promise<{ outcome: FenceOutcome; job?: JobRow }> {
  return (await markStartedMany(db, [{ fence, at }], leaseTtlMs))[0]!;
}

/** Many starts with one guarded UPDATE. A start for an attempt that already ended (e.g. its lease expired) is stale: the agent must stop it. */
export async function markStartedMany(db: Db, starts: readonly StartReport[], leaseTtlMs: number): Promise<{ outcome: FenceOutcome; job?: JobRow }[]> {
  return oncePerFence(starts, (start) => start.fence, async (unique) => {
    const { rows } = await sql<JobRow>`
      update jobs set status = 'running', started_at = v.at, accepted_at = coalesce(jobs.accepted_at, now()), lease_expires_at = ${interval(leaseTtlMs)}
        from ${fenceValues(unique.map((start) => start.fence), [['at', 'timestamptz']], (i) => [unique[i]!.at])}
       where ${FENCE_HOLDS} and jobs.status = 'offered'
      returning jobs.*`.execute(db);
    const started = new Map(rows.map((row) => [rowFence(row), row]));
    const current = await rowsByFence(db, unique.filter((start) => !started.has(fenceKey(start.fence))).map((start) => start.fence));
    return unique.map(({ fence }): { outcome: FenceOutcome; job?: JobRow } => {
      const job = started.get(fenceKey(fence));
      if (job) return { outcome: 'applied', job };
      const now = current.get(fenceKey(fence));
      return now?.status === 'running' ? { outcome: 'duplicate', job: now } : { outcome: 'stale' };
    });
  });
}

export interface AttemptReport {
  readonly fence: Fence;
  readonly result: AttemptResult;
}

export async function completeAttempt(db: Db, fence: Fence, result: AttemptResult): Promise<{ outcome: FenceOutcome; finished?: Finished }> {
  return (await completeAttempts(db, [{ fence, result }]))[0]!;
}

/**
 * Many attempts' results in one transaction: their jobs are locked with one
 * statement (in id order, so concurrent batches take turns instead of
 * deadlocking), the fence is checked on the locked rows, and the ones that
 * hold end together ({@link finishManyLocked}).
 */
export async function completeAttempts(db: Db, reports: readonly AttemptReport[]): Promise<{ outcome: FenceOutcome; finished?: Finished }[]> {
  return inTransaction(db, (tx) =>
    oncePerFence(reports, (report) => report.fence, async (unique) => {
      const locked = await tx
        .selectFrom('jobs')
        .selectAll()
        .where('id', 'in', [...new Set(unique.map((report) => report.fence.jobId))])
        .orderBy('id')
        .forUpdate()
        .execute();
      const byFence = new Map(locked.map((row) => [rowFence(row), row]));
      const outcomes = unique.map(({ fence }): { outcome: FenceOutcome; job?: JobRow } => {
        const job = byFence.get(fenceKey(fence));
        if (!job || job.status === 'queued') return { outcome: 'stale' };
        return isTerminal(job.status) ? { outcome: 'duplicate' } : { outcome: 'applied', job };
      });
      const applying = outcomes.flatMap((outcome, i) => (outcome.job ? [{ job: outcome.job, result: unique[i]!.result }] : []));
      const finished = await finishManyLocked(tx, applying);
      let next = 0;
      return outcomes.map(({ outcome, job }) => (job ? { outcome, finished: finished[next++] } : { outcome }));
    }),
  );
}

/**
 * Ends the current attempt of a locked job: another attempt when retries are
 * left and the job was not cancelled, else its terminal state (and the run's
 * when it was the last job).
 */
export async function finishLocked(tx: Tx, job: JobRow, result: AttemptResult, options: { retry: boolean } = { retry: true }): Promise<Finished> {
  return (await finishManyLocked(tx, [{ job, result }], options))[0]!;
}

const END_COLUMNS: readonly ValuesColumn[] = [
  ['id', 'text'],
  ['status', 'text'],
  ['exit_code', 'int'],
  ['error', 'text'],
  ['output', 'jsonb'],
  ['condition', 'bool'],
  ['log_truncated', 'bool'],
  ['oom_killed', 'bool'],
  ['finished_at', 'timestamptz'],
  ['cancel_requested', 'bool'],
];

/**
 * {@link finishLocked} for many locked jobs (distinct ids) in one
 * transaction: the terminal ones are written with one UPDATE and their runs
 * settled together; retries (rare) are written one by one.
 */
export async function finishManyLocked(
  tx: Tx,
  items: readonly { readonly job: JobRow; readonly result: AttemptResult }[],
  options: { retry: boolean } = { retry: true },
): Promise<Finished[]> {
  const finished: Finished[] = new Array(items.length);
  const ending: number[] = [];
  for (const [i, { job, result }] of items.entries()) {
    if (result.variablesSet) await saveVariablesSet(tx, job.owner_id, result.variablesSet);
    const retryable = options.retry && (result.status === 'failed' || result.status === 'timed_out') && !job.cancel_requested;
    if (retryable && job.attempt < job.max_attempts) finished[i] = { job: await queueNextAttempt(tx, job, result), retried: true };
    else ending.push(i);
  }
  if (ending.length === 0) return finished;
  const { rows } = await sql<JobRow>`
    update jobs set status = v.status, exit_code = v.exit_code, error = v.error, output = v.output, condition = v.condition,
                    log_truncated = v.log_truncated, oom_killed = v.oom_killed, finished_at = coalesce(v.finished_at, now()),
                    lease_expires_at = null, offer_expires_at = null, cancel_requested = v.cancel_requested
      from ${valuesTable('v', END_COLUMNS, ending.map((i) => endValues(items[i]!.job, items[i]!.result)))}
     where jobs.id = v.id
    returning jobs.*`.execute(tx);
  const ended = new Map(rows.map((row) => [row.id, row]));
  const runs = await settleRuns(tx, rows.map((row) => row.run_id));
  // The run goes with the last of its jobs in this batch: that one ended it.
  const lastOfRun = new Map(ending.map((i) => [items[i]!.job.run_id, i]));
  for (const i of ending) {
    const job = ended.get(items[i]!.job.id)!;
    finished[i] = { job, run: lastOfRun.get(job.run_id) === i ? runs.get(job.run_id) : undefined, retried: false };
  }
  return finished;
}

function endValues(job: JobRow, result: AttemptResult): unknown[] {
  return [
    job.id,
    result.status,
    result.exitCode,
    result.error,
    result.output === undefined ? null : JSON.stringify(result.output),
    result.condition ?? null,
    result.logTruncated ?? false,
    result.oomKilled ?? false,
    result.finishedAt ?? null,
    job.cancel_requested || result.status === 'cancelled',
  ];
}

async function queueNextAttempt(tx: Tx, job: JobRow, result: AttemptResult): Promise<JobRow> {
  const delayMs = retryDelayMs(job.attempt);
  return tx
    .updateTable('jobs')
    .set({
      status: 'queued',
      attempt: job.attempt + 1,
      agent_id: null,
      lease_id: null,
      offer_expires_at: null,
      lease_expires_at: null,
      accepted_at: null,
      run_after: interval(delayMs),
      scheduling_deadline: interval(delayMs + job.spec.schedulingTimeoutSeconds * 1000),
      error: `attempt ${job.attempt}: ${result.error}`,
      started_at: null,
    })
    .where('id', '=', job.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * Ends the runs whose last job ended. The run rows are locked first (in id
 * order): jobs of one run finishing at once in different transactions take
 * turns, and the last one reads the others' committed states (READ COMMITTED
 * takes a fresh snapshot per statement), so some transaction always sees
 * every job ended. Returns the runs this call ended, by id.
 */
async function settleRuns(tx: Tx, runIds: readonly string[]): Promise<Map<string, RunRow>> {
  const ids = [...new Set(runIds)].sort();
  if (ids.length === 0) return new Map();
  await tx.selectFrom('runs').select('id').where('id', 'in', ids).orderBy('id').forUpdate().execute();
  const jobs = await tx.selectFrom('jobs').select(['run_id', 'status', 'exit_code']).where('run_id', 'in', ids).execute();
  const jobsOf = new Map<string, typeof jobs>();
  for (const job of jobs) jobsOf.set(job.run_id, [...(jobsOf.get(job.run_id) ?? []), job]);
  const outcomes = ids.flatMap((id) => {
    const outcome = runOutcome((jobsOf.get(id) ?? []).map((job) => ({ status: job.status, exitCode: job.exit_code })));
    return outcome ? [[id, outcome.status, outcome.exitCode] as const] : [];
  });
  if (outcomes.length === 0) return new Map();
  const { rows: settled } = await sql<RunRow>`
    update runs set status = v.status, exit_code = v.exit_code, finished_at = now()
      from ${valuesTable('v', [['id', 'text'], ['status', 'text'], ['exit_code', 'int']], outcomes)}
     where runs.id = v.id and runs.status = 'running'
    returning runs.*`.execute(tx);
  settled.sort((a, b) => (a.id < b.id ? -1 : 1));
  await afterRunsSettled(tx, settled);
  return new Map(settled.map((run) => [run.id, run]));
}

/** A safety net for the reaper: runs still open although none of their jobs is. */
export async function settleOpenRuns(db: Db): Promise<RunRow[]> {
  const open = await db
    .selectFrom('runs')
    .select('id')
    .where('status', '=', 'running')
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('jobs').select('id').whereRef('jobs.run_id', '=', 'runs.id').where('status', 'in', ['queued', 'offered', 'running']))),
    )
    .limit(100)
    .execute();
  const settled: RunRow[] = [];
  for (const { id } of open) {
    const run = await inTransaction(db, (tx) => settleRuns(tx, [id]));
    settled.push(...run.values());
  }
  return settled;
}

/** Heartbeat: extends the leases the agent still holds. */
export async function renewLeases(db: Db, agentId: string, leaseIds: readonly string[], leaseTtlMs: number): Promise<void> {
  if (leaseIds.length === 0) return;
  await db
    .updateTable('jobs')
    .set({ lease_expires_at: interval(leaseTtlMs) })
    .where('agent_id', '=', agentId)
    .where('lease_id', 'in', leaseIds)
    .where('status', 'in', ['offered', 'running'])
    .where('accepted_at', 'is not', null)
    .execute();
}

/** Offers nobody accepted in time go back to the queue, same attempt. */
export async function requeueExpiredOffers(db: Db): Promise<number> {
  // Rows an agent session is changing right now are skipped, never waited for (no deadlock with a session's batch).
  const result = await db
    .updateTable('jobs')
    .set({ status: 'queued', agent_id: null, lease_id: null, offer_expires_at: null })
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('jobs')
        .select('id')
        .where('status', '=', 'offered')
        .where('accepted_at', 'is', null)
        .where('offer_expires_at', '<', sql<Date>`now()`)
        .forUpdate()
        .skipLocked(),
    )
    .where('status', '=', 'offered')
    .where('accepted_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/**
 * Attempts whose lease ran out (agent lost or partitioned): another attempt if
 * retries are left, else failed; a job being cancelled ends cancelled.
 */
export async function expireLeases(db: Db): Promise<Finished[]> {
  return inTransaction(db, async (tx) => {
    const expired = await tx
      .selectFrom('jobs')
      .selectAll()
      .where('status', 'in', ['offered', 'running'])
      .where('accepted_at', 'is not', null)
      .where('lease_expires_at', '<', sql<Date>`now()`)
      .limit(500)
      .forUpdate()
      .skipLocked()
      .execute();
    return finishManyLocked(
      tx,
      expired.map((job) => ({
        job,
        result: job.cancel_requested
          ? { status: 'cancelled', exitCode: null, error: 'cancelled; the agent did not confirm before its lease expired' }
          : { status: 'failed', exitCode: null, error: `agent lost: ${job.agent_id} stopped reporting and its lease expired` },
      })),
    );
  });
}

/** Queued attempts past their scheduling deadline fail, with the reason they waited. */
export async function failUnscheduled(db: Db, reason: (job: JobRow) => Promise<string>): Promise<Finished[]> {
  return inTransaction(db, async (tx) => {
    const overdue = await tx
      .selectFrom('jobs')
      .selectAll()
      .where('status', '=', 'queued')
      .where('scheduling_deadline', '<', sql<Date>`now()`)
      .limit(500)
      .forUpdate()
      .skipLocked()
      .execute();
    const items = [];
    for (const job of overdue) {
      const error = `not scheduled within ${job.spec.schedulingTimeoutSeconds} s: ${await reason(job)}`;
      items.push({ job, result: { status: 'failed', exitCode: null, error } satisfies AttemptResult });
    }
    return finishManyLocked(tx, items, { retry: false });
  });
}

/**
 * Cancels a job: a queued or not-yet-accepted job ends at once; an accepted one
 * is marked and the caller asks its agent to stop it.
 */
export async function cancelJob(db: Db, jobId: string): Promise<{ job: JobRow; finished?: Finished; notifyAgent: boolean } | undefined> {
  return inTransaction(db, async (tx) => {
    const job = await tx.selectFrom('jobs').selectAll().where('id', '=', jobId).forUpdate().executeTakeFirst();
    if (!job) return undefined;
    if (isTerminal(job.status)) return { job, notifyAgent: false };
    if (job.status === 'queued' || (job.status === 'offered' && !job.accepted_at)) {
      const finished = await finishLocked(tx, job, { status: 'cancelled', exitCode: null, error: 'cancelled' });
      return { job: finished.job, finished, notifyAgent: job.status === 'offered' };
    }
    const marked = await tx
      .updateTable('jobs')
      .set({ cancel_requested: true })
      .where('id', '=', job.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { job: marked, notifyAgent: true };
  });
}

/** After a reconnect: which of the attempts an agent reports it may keep. Kept ones get a fresh lease. */
export async function resumeAttempts(
  db: Db,
  agentId: string,
  fences: readonly Fence[],
  leaseTtlMs: number,
): Promise<Map<string, JobRow | undefined>> {
  const decisions = new Map<string, JobRow | undefined>();
  for (const fence of fences) {
    const job = await db
      .updateTable('jobs')
      .set({ lease_expires_at: interval(leaseTtlMs), accepted_at: sql<Date>`coalesce(accepted_at, now())` })
      .where('id', '=', fence.jobId)
      .where('attempt', '=', fence.attempt)
      .where('lease_id', '=', fence.leaseId)
      .where('agent_id', '=', agentId)
      .where('status', 'in', ['offered', 'running'])
      .returningAll()
      .executeTakeFirst();
    decisions.set(fence.leaseId, job);
  }
  return decisions;
}
