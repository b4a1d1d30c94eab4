import { sql, type ExpressionBuilder, type InsertObject, type RawBuilder } from 'kysely';
import { inTransaction, type Db } from '../store/database.ts';
import type { Database, JobRow, JobStatus, RunRow } from '../store/schema.ts';
import { DEFAULT_RETRY_DELAY_SECONDS, isTerminal, retryDelayMs, runOutcome } from '../domain/run-status.ts';
import { afterRunsSettled } from './after-run.ts';
import { valuesTable, type ValuesColumn } from '../store/values.ts';
import { saveVariablesSet } from '../variables/store.ts';

/** Identifies one attempt under one lease; every state change is guarded by it. */
export interface Fence {
  readonly jobId: string;
  readonly attempt: number;
  readonly leaseId: string;
  /** The agent that reports: when set, only the agent the attempt was offered to may change it. */
  readonly agentId?: string;
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

/** The fence's guards on a jobs query: the attempt, its lease and, when the fence names one, the agent holding it. */
function fenced(fence: Fence) {
  return (eb: ExpressionBuilder<Database, 'jobs'>) =>
    eb.and([
      eb('id', '=', fence.jobId),
      eb('attempt', '=', fence.attempt),
      eb('lease_id', '=', fence.leaseId),
      ...(fence.agentId === undefined ? [] : [eb('agent_id', '=', fence.agentId)]),
    ]);
}

function interval(ms: number) {
  return sql<Date>`now() + ${ms} * interval '1 millisecond'`;
}

function fenceKey(fence: Fence): string {
  return `${fence.jobId}/${fence.attempt}/${fence.leaseId}`;
}

function rowFence(row: { id: string; attempt: number; lease_id: string | null }): string {
  return fenceKey({ jobId: row.id, attempt: row.attempt, leaseId: row.lease_id ?? '' });
}

/** The fences as an inline table `v(id, attempt, lease_id, agent_id, …extra)`, matched by {@link FENCE_HOLDS}. */
function fenceValues(fences: readonly Fence[], extra: readonly ValuesColumn[] = [], extraValues: (i: number) => readonly unknown[] = () => []) {
  return valuesTable(
    'v',
    [['id', 'text'], ['attempt', 'int'], ['lease_id', 'text'], ['agent_id', 'text'], ...extra],
    fences.map((fence, i) => [fence.jobId, fence.attempt, fence.leaseId, fence.agentId ?? null, ...extraValues(i)]),
  );
}

/** {@link fenced} for a set-based statement: a fence that names an agent holds only for the agent the attempt was offered to. */
const FENCE_HOLDS = sql`jobs.id = v.id and jobs.attempt = v.attempt and jobs.lease_id = v.lease_id and (v.agent_id is null or jobs.agent_id = v.agent_id)`;

/** Whether a row read for a fence is that fence's attempt on that fence's agent (another agent's report never moves it). */
function heldBy(row: JobRow | undefined, fence: Fence): JobRow | undefined {
  return row && (fence.agentId === undefined || row.agent_id === fence.agentId) ? row : undefined;
}

/** The current rows of the fenced jobs, by fence: a fence with no row here is stale. */
async function rowsByFence(db: Db, fences: readonly Fence[]): Promise<Map<string, JobRow>> {
  if (fences.length === 0) return new Map();
  const rows = await db.selectFrom('jobs').selectAll().where('id', 'in', [...new Set(fences.map((fence) => fence.jobId))]).execute();
  const byFence = new Map(rows.map((row) => [rowFence(row), row]));
  const held = new Map<string, JobRow>();
  for (const fence of fences) {
    const row = heldBy(byFence.get(fenceKey(fence)), fence);
    if (row) held.set(fenceKey(fence), row);
  }
  return held;
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

/**
 * `jobs.id = any(…)` that first locks all those rows, in id order, before the
 * statement changes any (an init plan runs once, ahead of the scan). Every
 * statement or transaction that locks several jobs does so in id order
 * ({@link lockJobs}), so two of them never wait on each other in a cycle.
 */
function lockedInOrder(ids: readonly string[]) {
  return sql`jobs.id = any(array(select id from jobs where id in (${sql.join([...new Set(ids)])}) order by id for update))`;
}

/** Locks the jobs, in id order: a transaction that will change several takes them all first. */
export async function lockJobs(tx: Tx, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.selectFrom('jobs').select('id').where('id', 'in', [...new Set(ids)]).orderBy('id').forUpdate().execute();
}

/** Takes many accepts with one guarded UPDATE; only the fences it did not match are read, to tell a duplicate from a stale fence. */
export async function acceptOffers(db: Db, fences: readonly Fence[], leaseTtlMs: number): Promise<FenceOutcome[]> {
  const results = await oncePerFence(fences, (fence) => fence, async (unique) => {
    const { rows } = await sql<JobRow>`
      update jobs set accepted_at = now(), lease_expires_at = ${interval(leaseTtlMs)}
        from ${fenceValues(unique)}
       where ${FENCE_HOLDS} and jobs.status in ('offered', 'running') and jobs.accepted_at is null
         and ${lockedInOrder(unique.map((fence) => fence.jobId))}
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
    .where(fenced(fence))
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
       where ${FENCE_HOLDS} and jobs.status = 'offered' and ${lockedInOrder(unique.map((start) => start.fence.jobId))}
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
  /** The attempt's start, when it came in the same batch as its result: both are stored by one statement. */
  readonly startedAt?: Date;
}

export async function completeAttempt(db: Db, fence: Fence, result: AttemptResult): Promise<{ outcome: FenceOutcome; finished?: Finished }> {
  return (await completeAttempts(db, [{ fence, result }]))[0]!;
}

/** Results that end a job whatever its row says: no retry follows them. */
function endsForGood(result: AttemptResult): boolean {
  return result.status === 'succeeded' || result.status === 'cancelled';
}

/**
 * Many attempts' results in one transaction. Results that end their job for
 * good are written by one guarded UPDATE (the fence and the job's state are
 * its WHERE clause); the rest (failures that may be retried, and fences the
 * UPDATE did not match) are locked, in id order, checked on the locked rows,
 * and ended by {@link finishManyLocked}.
 */
export async function completeAttempts(db: Db, reports: readonly AttemptReport[]): Promise<{ outcome: FenceOutcome; finished?: Finished }[]> {
  return inTransaction(db, (tx) =>
    oncePerFence(reports, (report) => report.fence, async (unique) => {
      const final = unique.filter((report) => endsForGood(report.result));
      const ended = await endJobs(tx, final, 'fenced');
      const endedByFence = new Map(ended.map((row) => [rowFence(row), row]));
      for (const row of ended) {
        const { result } = final.find((report) => fenceKey(report.fence) === rowFence(row))!;
        if (result.variablesSet) await saveVariablesSet(tx, row.owner_id, result.variablesSet);
      }
      const rest = unique.filter((report) => !endedByFence.has(fenceKey(report.fence)));
      const locked = rest.length === 0 ? [] : await tx.selectFrom('jobs').selectAll().where('id', 'in', [...new Set(rest.map((report) => report.fence.jobId))]).orderBy('id').forUpdate().execute();
      const lockedByFence = new Map(locked.map((row) => [rowFence(row), row]));
      const applying = rest.flatMap((report) => {
        const job = heldBy(lockedByFence.get(fenceKey(report.fence)), report.fence);
        return job && job.status !== 'queued' && !isTerminal(job.status) ? [{ job, result: report.result, startedAt: report.startedAt }] : [];
      });
      const finishedByFence = new Map<string, Finished>();
      for (const [i, done] of (await withRuns(tx, ended)).entries()) finishedByFence.set(rowFence(ended[i]!), done);
      for (const [i, done] of (await finishManyLocked(tx, applying)).entries()) finishedByFence.set(rowFence(applying[i]!.job), done);
      return unique.map(({ fence }) => {
        const finished = finishedByFence.get(fenceKey(fence));
        if (finished) return { outcome: 'applied', finished };
        const job = heldBy(lockedByFence.get(fenceKey(fence)), fence);
        return { outcome: !job || job.status === 'queued' ? 'stale' : 'duplicate' };
      });
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

/**
 * {@link finishLocked} for many locked jobs (distinct ids) in one
 * transaction: the terminal ones are written with one UPDATE and their runs
 * settled together; retries (rare) are written one by one.
 */
export async function finishManyLocked(
  tx: Tx,
  items: readonly { readonly job: JobRow; readonly result: AttemptResult; readonly startedAt?: Date }[],
  options: { retry: boolean } = { retry: true },
): Promise<Finished[]> {
  const finished: Finished[] = new Array(items.length);
  const ending: number[] = [];
  for (const [i, { job, result }] of items.entries()) {
    if (result.variablesSet) await saveVariablesSet(tx, job.owner_id, result.variablesSet);
    const retryable = options.retry && (result.status === 'failed' || result.status === 'timed_out') && !job.cancel_requested;
    if (retryable && job.attempt < job.max_attempts) finished[i] = { job: await queueNextAttempt(tx, job, result, items[i]!.startedAt), retried: true };
    else ending.push(i);
  }
  const rows = await endJobs(
    tx,
    ending.map((i) => ({ fence: { jobId: items[i]!.job.id, attempt: items[i]!.job.attempt, leaseId: '' }, result: items[i]!.result, startedAt: items[i]!.startedAt })),
    'locked',
  );
  for (const [k, done] of (await withRuns(tx, rows)).entries()) finished[ending[k]!] = done;
  return finished;
}

/**
 * Writes the terminal state of many attempts with one UPDATE. `fenced` checks
 * each fence and that the job is still offered or running (rows not matched
 * are left out of the answer); `locked` is for rows the caller holds and has
 * checked. Returns the rows written.
 */
async function endJobs(tx: Tx, reports: readonly AttemptReport[], guard: 'fenced' | 'locked'): Promise<JobRow[]> {
  if (reports.length === 0) return [];
  const where =
    guard === 'fenced'
      ? sql`${FENCE_HOLDS} and jobs.status in ('offered', 'running') and ${lockedInOrder(reports.map((report) => report.fence.jobId))}`
      : sql`jobs.id = v.id`;
  const { rows } = await sql<JobRow>`
    update jobs set status = v.status, exit_code = v.exit_code, error = v.error, output = v.output, condition = v.condition,
                    log_truncated = v.log_truncated, oom_killed = v.oom_killed, finished_at = coalesce(v.finished_at, now()),
                    started_at = coalesce(jobs.started_at, v.started_at),
                    accepted_at = case when v.started_at is null then jobs.accepted_at else coalesce(jobs.accepted_at, now()) end,
                    lease_expires_at = null, offer_expires_at = null, cancel_requested = jobs.cancel_requested or v.status = 'cancelled'
      from ${fenceValues(reports.map((report) => report.fence), END_COLUMNS, (i) => endValues(reports[i]!))}
     where ${where}
    returning jobs.*`.execute(tx);
  await recordAttempts(tx, endedAttempts(rows));
  // In the callers' order.
  const order = new Map(reports.map((report, i) => [report.fence.jobId, i]));
  return rows.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
}

const END_COLUMNS: readonly ValuesColumn[] = [
  ['status', 'text'],
  ['exit_code', 'int'],
  ['error', 'text'],
  ['output', 'jsonb'],
  ['condition', 'bool'],
  ['log_truncated', 'bool'],
  ['oom_killed', 'bool'],
  ['finished_at', 'timestamptz'],
  ['started_at', 'timestamptz'],
];

function endValues({ result, startedAt }: AttemptReport): unknown[] {
  return [
    result.status,
    result.exitCode,
    result.error,
    result.output === undefined ? null : JSON.stringify(result.output),
    result.condition ?? null,
    result.logTruncated ?? false,
    result.oomKilled ?? false,
    result.finishedAt ?? null,
    startedAt ?? null,
  ];
}

/** Settles the runs of jobs just ended; the run goes with the last of its jobs here: that one ended it. */
async function withRuns(tx: Tx, ended: readonly JobRow[]): Promise<Finished[]> {
  const runs = await settleRuns(tx, ended);
  const lastOfRun = new Map(ended.map((job, i) => [job.run_id, i]));
  return ended.map((job, i) => ({ job, run: lastOfRun.get(job.run_id) === i ? runs.get(job.run_id) : undefined, retried: false }));
}

async function queueNextAttempt(tx: Tx, job: JobRow, result: AttemptResult, startedAt?: Date): Promise<JobRow> {
  const delayMs = retryDelayMs(job.attempt, (job.spec.retryDelaySeconds ?? DEFAULT_RETRY_DELAY_SECONDS) * 1000);
  await recordAttempts(tx, [
    {
      job_id: job.id,
      attempt: job.attempt,
      status: result.status,
      exit_code: result.exitCode,
      error: result.error,
      agent_id: job.agent_id,
      started_at: job.started_at ?? startedAt ?? null,
      finished_at: result.finishedAt ?? sql<Date>`now()`,
      retry_at: interval(delayMs),
    },
  ]);
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

/** The ended attempts' rows in job_attempts, by one statement, in the transaction that ends them (once: a replay changes nothing). */
async function recordAttempts(tx: Tx, attempts: readonly InsertObject<Database, 'job_attempts'>[]): Promise<void> {
  if (attempts.length === 0) return;
  await tx
    .insertInto('job_attempts')
    .values([...attempts])
    .onConflict((oc) => oc.columns(['job_id', 'attempt']).doNothing())
    .execute();
}

/** The job_attempts rows of attempts that ended their jobs, from the rows the ending UPDATE returned. */
function endedAttempts(rows: readonly JobRow[]): InsertObject<Database, 'job_attempts'>[] {
  return rows.map((row) => ({
    job_id: row.id,
    attempt: row.attempt,
    status: row.status,
    exit_code: row.exit_code,
    error: row.error,
    agent_id: row.agent_id,
    started_at: row.started_at,
    finished_at: row.finished_at ?? sql<Date>`now()`,
    retry_at: null,
  }));
}

/**
 * Ends the runs whose last job ended (given the jobs just ended, or run ids).
 * A run of one job (the usual case) is ended by one UPDATE: its only job is
 * locked by this transaction, so nothing else can change its outcome. Other
 * runs are locked first (in id order): jobs of one run finishing at once in
 * different transactions take turns, and the last one reads the others'
 * committed states (READ COMMITTED takes a fresh snapshot per statement), so
 * some transaction always sees every job ended. Returns the runs this call
 * ended, by id.
 */
async function settleRuns(tx: Tx, ended: readonly (JobRow | string)[]): Promise<Map<string, RunRow>> {
  const settled = new Map<string, RunRow>();
  const alone = ended.flatMap((job) => {
    const outcome = typeof job === 'string' ? undefined : runOutcome([{ status: job.status, exitCode: job.exit_code }]);
    return typeof job !== 'string' && outcome ? [[job.run_id, outcome.status, outcome.exitCode] as const] : [];
  });
  if (alone.length > 0) {
    // A run's jobs are all inserted with it (enqueueRun), so a count of one stays one.
    for (const run of await updateRuns(tx, alone, sql`(select count(*) from jobs where jobs.run_id = runs.id) = 1`)) settled.set(run.id, run);
  }
  const ids = [...new Set(ended.map((job) => (typeof job === 'string' ? job : job.run_id)))].filter((id) => !settled.has(id)).sort();
  if (ids.length > 0) {
    await tx.selectFrom('runs').select('id').where('id', 'in', ids).orderBy('id').forUpdate().execute();
    const jobs = await tx.selectFrom('jobs').select(['run_id', 'status', 'exit_code']).where('run_id', 'in', ids).execute();
    const jobsOf = new Map<string, typeof jobs>();
    for (const job of jobs) jobsOf.set(job.run_id, [...(jobsOf.get(job.run_id) ?? []), job]);
    const outcomes = ids.flatMap((id) => {
      const outcome = runOutcome((jobsOf.get(id) ?? []).map((job) => ({ status: job.status, exitCode: job.exit_code })));
      return outcome ? [[id, outcome.status, outcome.exitCode] as const] : [];
    });
    for (const run of await updateRuns(tx, outcomes, sql`true`)) settled.set(run.id, run);
  }
  const runs = [...settled.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  await afterRunsSettled(tx, runs);
  return settled;
}

/** Ends running runs with the given outcomes (id, status, exit code) where `also` holds; returns those ended. */
async function updateRuns(tx: Tx, outcomes: readonly (readonly [string, string, number])[], also: RawBuilder<unknown>): Promise<RunRow[]> {
  if (outcomes.length === 0) return [];
  // Rows are found by `id = any(…)`, each one's values by its position, with no join to a VALUES list: on statistics
  // older than the table's growth, the planner drove such a join from the runs and checked `also` on every running
  // run (1.7 s for 128 runs among 20,000 queued ones; EXPLAIN ANALYZE in bench/analysis.md).
  const ids = outcomes.map(([id]) => id);
  const position = sql`array_position(${ids}::text[], runs.id)`;
  const { rows } = await sql<RunRow>`
    update runs set status = (${outcomes.map(([, status]) => status)}::text[])[${position}],
                    exit_code = (${outcomes.map(([, , exitCode]) => exitCode)}::int[])[${position}], finished_at = now()
     where runs.id = any(${ids}::text[]) and runs.status = 'running' and ${also}
    returning runs.*`.execute(tx);
  return rows;
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

/**
 * Heartbeat: extends the leases the agent still holds, and returns them (with
 * whether a user asked to cancel, so the cancel reaches the agent even when
 * the bus lost it).
 */
export async function renewLeases(
  db: Db,
  agentId: string,
  leaseIds: readonly string[],
  leaseTtlMs: number,
): Promise<Pick<JobRow, 'id' | 'attempt' | 'lease_id' | 'cancel_requested'>[]> {
  if (leaseIds.length === 0) return [];
  const renewed = await db
    .updateTable('jobs')
    .set({ lease_expires_at: interval(leaseTtlMs) })
    .where('agent_id', '=', agentId)
    .where('lease_id', 'in', leaseIds)
    .where('status', 'in', ['offered', 'running'])
    .where('accepted_at', 'is not', null)
    .returning(['id', 'attempt', 'lease_id', 'cancel_requested'])
    .execute();
  return renewed;
}

/** Which of these leases are still the current attempt of a live job on this agent (an accept may still be on its way). */
export async function liveLeases(db: Db, agentId: string, leaseIds: readonly string[]): Promise<Set<string>> {
  if (leaseIds.length === 0) return new Set();
  const rows = await db
    .selectFrom('jobs')
    .select('lease_id')
    .where('agent_id', '=', agentId)
    .where('lease_id', 'in', leaseIds)
    .where('status', 'in', ['offered', 'running'])
    .execute();
  return new Set(rows.map((row) => row.lease_id!));
}

/**
 * Offers nobody accepted in time go back to the queue, same attempt. With
 * `madeSince`, only offers made from then on: an offer a previous process made
 * may have been accepted and started by an agent whose accept died with that
 * process; the agent reports it when it reconnects (resumeAttempts).
 */
export async function requeueExpiredOffers(db: Db, madeSince?: Date): Promise<number> {
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
        .$if(madeSince !== undefined, (qb) => qb.where('offered_at', '>=', madeSince!))
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

export interface Cancelled {
  readonly job: JobRow;
  readonly finished?: Finished;
  /** The job's agent must be told to stop it (or drop the offer). */
  readonly notifyAgent: boolean;
  readonly reason: string;
}

/**
 * Cancels a job: a queued or not-yet-accepted job ends at once; an accepted one
 * is marked and the caller asks its agent to stop it.
 */
export async function cancelJob(db: Db, jobId: string, reason = 'cancelled by a user'): Promise<Cancelled | undefined> {
  return inTransaction(db, async (tx) => {
    const job = await tx.selectFrom('jobs').selectAll().where('id', '=', jobId).forUpdate().executeTakeFirst();
    if (!job) return undefined;
    if (isTerminal(job.status)) return { job, notifyAgent: false, reason };
    if (job.status === 'queued' || (job.status === 'offered' && !job.accepted_at)) {
      const finished = await finishLocked(tx, job, { status: 'cancelled', exitCode: null, error: reason === 'cancelled by a user' ? 'cancelled' : `cancelled: ${reason}` });
      return { job: finished.job, finished, notifyAgent: job.status === 'offered', reason };
    }
    const marked = await tx
      .updateTable('jobs')
      .set({ cancel_requested: true })
      .where('id', '=', job.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { job: marked, notifyAgent: true, reason };
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
