import type { JobStatus, RunStatus } from '../store/schema.ts';

export interface JobResult {
  readonly status: JobStatus;
  readonly exitCode: number | null;
}

/**
 * A run's status from its jobs, as the original Cronium defined it: all alike →
 * that status; some succeeded and some not → PARTIAL with exit 100 + number not
 * succeeded. Undefined while any job is still going.
 */
export function runOutcome(jobs: readonly JobResult[]): { status: RunStatus; exitCode: number } | undefined {
  if (jobs.length === 0) return undefined;
  if (jobs.some((job) => job.status === 'queued' || job.status === 'offered' || job.status === 'running')) return undefined;
  const notSucceeded = jobs.filter((job) => job.status !== 'succeeded');
  if (notSucceeded.length === 0) return { status: 'succeeded', exitCode: jobs.length === 1 ? (jobs[0]!.exitCode ?? 0) : 0 };
  if (notSucceeded.length < jobs.length) return { status: 'partial', exitCode: 100 + notSucceeded.length };
  const first = notSucceeded[0]!;
  const allSame = notSucceeded.every((job) => job.status === first.status);
  const status: RunStatus = allSame ? (first.status as RunStatus) : 'failed';
  const exitCode = jobs.length === 1 ? (first.exitCode ?? 1) : 100 + notSucceeded.length;
  return { status, exitCode };
}

export function isTerminal(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'timed_out' || status === 'cancelled';
}

/** Base of the retry backoff when an event sets none: 10 s, then up to 20 s, 40 s … */
export const DEFAULT_RETRY_DELAY_SECONDS = 10;

/** Ceiling of the retry backoff. */
export const MAX_RETRY_DELAY_MS = 10 * 60_000;

/**
 * Exponential backoff with full jitter before the retry that follows failed
 * `attempt` (1-based): a random time up to base * 2^(attempt-1), capped at 10
 * minutes. Full jitter spreads retries of jobs that failed together.
 */
export function retryDelayMs(attempt: number, baseMs = 1000, random = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(random() * ceiling);
}

/** When a job (or its retry) became ready to dispatch: its creation, or the end of its retry delay. */
export function readyAt(job: { readonly created_at: Date; readonly run_after: Date }): Date {
  return new Date(Math.max(new Date(job.created_at).getTime(), new Date(job.run_after).getTime()));
}
