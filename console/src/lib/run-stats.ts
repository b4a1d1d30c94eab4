// Figures the dashboard shows about a set of runs.
import type { RunView } from './views.ts';

/** Nearest-rank percentile of durations in ms, or null when there are none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** How long finished runs took, created → finished. */
export function durations(runs: readonly RunView[]): number[] {
  return runs.filter((run) => run.finished && run.createdAt && run.finishedAt).map((run) => Date.parse(run.finishedAt!) - Date.parse(run.createdAt!));
}

/** Events whose runs ended other than succeeded or cancelled, most failures first. */
export function failingEvents(runs: readonly RunView[], limit = 5): { eventId: string; failures: number; lastFailureAt: string }[] {
  const byEvent = new Map<string, { failures: number; lastFailureAt: string }>();
  for (const run of runs) {
    if (!run.finished || run.status === 'succeeded' || run.status === 'cancelled' || !run.createdAt) continue;
    const entry = byEvent.get(run.eventId) ?? { failures: 0, lastFailureAt: run.createdAt };
    entry.failures++;
    if (run.createdAt > entry.lastFailureAt) entry.lastFailureAt = run.createdAt;
    byEvent.set(run.eventId, entry);
  }
  return [...byEvent.entries()]
    .map(([eventId, entry]) => ({ eventId, ...entry }))
    .sort((a, b) => b.failures - a.failures || b.lastFailureAt.localeCompare(a.lastFailureAt))
    .slice(0, limit);
}
