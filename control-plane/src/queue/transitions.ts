import { sql, type ExpressionBuilder } from 'kysely';
import { inTransaction, type Db } from '../store/database.ts';
import type { Database, JobRow, JobStatus, RunRow } from '../store/schema.ts';
import { DEFAULT_RETRY_DELAY_SECONDS, isTerminal, retryDelayMs, runOutcome } from '../domain/run-status.ts';
import { afterRunSettled } from './after-run.ts';
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

async function lockFenced(tx: Tx, fence: Fence): Promise<JobRow | undefined> {
  return tx
    .selectFrom('jobs')
    .selectAll()
    .where(fenced(fence))
    .forUpdate()
    .executeTakeFirst();
}

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

export async function acceptOffer(db: Db, fence: Fence, leaseTtlMs: number): Promise<FenceOutcome> {
  // One guarded UPDATE takes the accept; only when it matches nothing is the row read to tell a duplicate from a stale fence.
  const accepted = await db
    .updateTable('jobs')
    .set({ accepted_at: sql<Date>`now()`, lease_expires_at: interval(leaseTtlMs) })
    .where(fenced(fence))
    .where('status', 'in', ['offered', 'running'])
    .where('accepted_at', 'is', null)
    .executeTakeFirst();
  if (accepted.numUpdatedRows > 0n) return 'applied';
  const job = await db
    .selectFrom('jobs')
    .select(['status', 'accepted_at'])
    .where(fenced(fence))
    .executeTakeFirst();
  return job && job.accepted_at && (job.status === 'offered' || job.status === 'running') ? 'duplicate' : 'stale';
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

export async function markStarted(db: Db, fence: Fence, at: Date, leaseTtlMs: number): Promise<{ outcome: FenceOutcome; job?: JobRow }> {
  const started = await db
    .updateTable('jobs')
    .set({
      status: 'running',
      started_at: at,
      accepted_at: sql<Date>`coalesce(accepted_at, now())`,
      lease_expires_at: interval(leaseTtlMs),
    })
    .where(fenced(fence))
    .where('status', '=', 'offered')
    .returningAll()
    .executeTakeFirst();
  if (started) return { outcome: 'applied', job: started };
  const job = await db
    .selectFrom('jobs')
    .selectAll()
    .where(fenced(fence))
    .executeTakeFirst();
  // A start for an attempt that already ended (e.g. its lease expired) is stale: the agent must stop it.
  return job?.status === 'running' ? { outcome: 'duplicate', job } : { outcome: 'stale' };
}

export async function completeAttempt(
  db: Db,
  fence: Fence,
  result: AttemptResult,
): Promise<{ outcome: FenceOutcome; finished?: Finished }> {
  return inTransaction(db, async (tx) => {
    const job = await lockFenced(tx, fence);
    if (!job || job.status === 'queued') return { outcome: 'stale' };
    if (isTerminal(job.status)) return { outcome: 'duplicate' };
    return { outcome: 'applied', finished: await finishLocked(tx, job, result) };
  });
}

/**
 * Ends the current attempt of a locked job: another attempt when retries are
 * left and the job was not cancelled, else its terminal state (and the run's
 * when it was the last job).
 */
export async function finishLocked(tx: Tx, job: JobRow, result: AttemptResult, options: { retry: boolean } = { retry: true }): Promise<Finished> {
  if (result.variablesSet) await saveVariablesSet(tx, job.owner_id, result.variablesSet);
  const retryable = options.retry && (result.status === 'failed' || result.status === 'timed_out') && !job.cancel_requested;
  if (retryable && job.attempt < job.max_attempts) {
    const delayMs = retryDelayMs(job.attempt, (job.spec.retryDelaySeconds ?? DEFAULT_RETRY_DELAY_SECONDS) * 1000);
    await recordAttempt(tx, job, result, interval(delayMs));
    const retried = await tx
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
    return { job: retried, retried: true };
  }
  const finished = await tx
    .updateTable('jobs')
    .set({
      status: result.status,
      exit_code: result.exitCode,
      error: result.error,
      output: result.output === undefined ? null : JSON.stringify(result.output),
      condition: result.condition ?? null,
      log_truncated: result.logTruncated ?? false,
      oom_killed: result.oomKilled ?? false,
      finished_at: result.finishedAt ?? sql<Date>`now()`,
      lease_expires_at: null,
      offer_expires_at: null,
      cancel_requested: job.cancel_requested || result.status === 'cancelled',
    })
    .where('id', '=', job.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  await recordAttempt(tx, job, result, null);
  const run = await settleRun(tx, job.run_id);
  return { job: finished, run, retried: false };
}

/** The attempt's row in job_attempts, in the transaction that ends it (once: a replay changes nothing). */
async function recordAttempt(tx: Tx, job: JobRow, result: AttemptResult, retryAt: ReturnType<typeof interval> | null): Promise<void> {
  await tx
    .insertInto('job_attempts')
    .values({
      job_id: job.id,
      attempt: job.attempt,
      status: result.status,
      exit_code: result.exitCode,
      error: result.error,
      agent_id: job.agent_id,
      started_at: job.started_at,
      finished_at: result.finishedAt ?? sql<Date>`now()`,
      retry_at: retryAt,
    })
    .onConflict((oc) => oc.columns(['job_id', 'attempt']).doNothing())
    .execute();
}

/**
 * Ends the run when its last job ended. The run row is locked first: jobs of
 * one run finishing at once in different transactions take turns, and the
 * last one reads the others' committed states (READ COMMITTED takes a fresh
 * snapshot per statement), so some transaction always sees every job ended.
 */
async function settleRun(tx: Tx, runId: string): Promise<RunRow | undefined> {
  await tx.selectFrom('runs').select('id').where('id', '=', runId).forUpdate().execute();
  const jobs = await tx.selectFrom('jobs').select(['status', 'exit_code']).where('run_id', '=', runId).execute();
  const outcome = runOutcome(jobs.map((job) => ({ status: job.status, exitCode: job.exit_code })));
  if (!outcome) return undefined;
  const settled = await tx
    .updateTable('runs')
    .set({ status: outcome.status, exit_code: outcome.exitCode, finished_at: sql<Date>`now()` })
    .where('id', '=', runId)
    .where('status', '=', 'running')
    .returningAll()
    .executeTakeFirst();
  if (settled) await afterRunSettled(tx, settled);
  return settled;
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
    const run = await inTransaction(db, (tx) => settleRun(tx, id));
    if (run) settled.push(run);
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
    const finished: Finished[] = [];
    for (const job of expired) {
      finished.push(
        await finishLocked(
          tx,
          job,
          job.cancel_requested
            ? { status: 'cancelled', exitCode: null, error: 'cancelled; the agent did not confirm before its lease expired' }
            : { status: 'failed', exitCode: null, error: `agent lost: ${job.agent_id} stopped reporting and its lease expired` },
        ),
      );
    }
    return finished;
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
    const finished: Finished[] = [];
    for (const job of overdue) {
      const why = await reason(job);
      const error = `not scheduled within ${job.spec.schedulingTimeoutSeconds} s: ${why}`;
      finished.push(await finishLocked(tx, job, { status: 'failed', exitCode: null, error }, { retry: false }));
    }
    return finished;
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
