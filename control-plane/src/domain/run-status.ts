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

/** Exponential backoff with full jitter for retry `attempt` (1-based), capped at 10 minutes. */
export function retryDelayMs(attempt: number, baseMs = 1000, random = Math.random): number {
  const ceiling = Math.min(10 * 60_000, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
