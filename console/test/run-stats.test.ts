// The dashboard's figures: duration percentiles by nearest rank, and the events that fail most.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durations, failingEvents, percentile } from '../src/lib/run-stats.ts';
import type { RunView } from '../src/lib/views.ts';

const run = (eventId: string, status: string, startMs: number, tookMs: number | null): RunView => ({
  id: `${eventId}-${startMs}`,
  eventId,
  status,
  finished: tookMs !== null,
  exitCode: null,
  input: undefined,
  jobs: [],
  createdAt: new Date(startMs).toISOString(),
  finishedAt: tookMs === null ? null : new Date(startMs + tookMs).toISOString(),
});

test('percentiles by nearest rank; none without finished runs', () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([30, 10, 20], 50), 20);
  assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 95), 95);
  assert.equal(percentile([5], 99), 5);
  assert.deepEqual(durations([run('a', 'succeeded', 0, 1500), run('a', 'running', 10, null)]), [1500]);
});

test('failing events: most failures first, succeeded and cancelled runs do not count', () => {
  const runs = [
    run('backup', 'failed', 1_000, 10),
    run('backup', 'timed out', 2_000, 10),
    run('report', 'partial', 3_000, 10),
    run('report', 'cancelled', 4_000, 10),
    run('ok', 'succeeded', 5_000, 10),
    run('busy', 'running', 6_000, null),
  ];
  assert.deepEqual(failingEvents(runs), [
    { eventId: 'backup', failures: 2, lastFailureAt: new Date(2_000).toISOString() },
    { eventId: 'report', failures: 1, lastFailureAt: new Date(3_000).toISOString() },
  ]);
});
