// Unit tests of how a run's status follows from its jobs, and of retry backoff.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isTerminal, retryDelayMs, runOutcome, type JobResult } from '../src/domain/run-status.ts';
import type { JobStatus } from '../src/store/schema.ts';

function job(status: JobStatus, exitCode: number | null = null): JobResult {
  return { status, exitCode };
}

describe('runOutcome', () => {
  test('no jobs, or any job still queued, offered or running: not settled', () => {
    assert.equal(runOutcome([]), undefined);
    assert.equal(runOutcome([job('queued')]), undefined);
    assert.equal(runOutcome([job('succeeded', 0), job('offered')]), undefined);
    assert.equal(runOutcome([job('failed', 1), job('running')]), undefined);
  });

  test('all succeeded → SUCCESS', () => {
    assert.deepEqual(runOutcome([job('succeeded', 0)]), { status: 'succeeded', exitCode: 0 });
    assert.deepEqual(runOutcome([job('succeeded', null)]), { status: 'succeeded', exitCode: 0 });
    assert.deepEqual(runOutcome([job('succeeded', 0), job('succeeded', 0), job('succeeded', 0)]), { status: 'succeeded', exitCode: 0 });
  });

  test('the only job failed → FAILED with its exit code', () => {
    assert.deepEqual(runOutcome([job('failed', 3)]), { status: 'failed', exitCode: 3 });
    assert.deepEqual(runOutcome([job('failed', null)]), { status: 'failed', exitCode: 1 }, 'no exit code (e.g. lost agent) is 1');
    assert.deepEqual(runOutcome([job('timed_out', null)]), { status: 'timed_out', exitCode: 1 });
    assert.deepEqual(runOutcome([job('cancelled', null)]), { status: 'cancelled', exitCode: 1 });
  });

  test('some succeeded, some not → PARTIAL with 100 + number not succeeded', () => {
    assert.deepEqual(runOutcome([job('succeeded', 0), job('succeeded', 0), job('failed', 7)]), { status: 'partial', exitCode: 101 });
    assert.deepEqual(runOutcome([job('succeeded', 0), job('failed', 2), job('timed_out'), job('cancelled')]), {
      status: 'partial',
      exitCode: 103,
    });
  });

  test('several jobs, all failed → FAILED with 100 + number failed', () => {
    assert.deepEqual(runOutcome([job('failed', 1), job('failed', 2)]), { status: 'failed', exitCode: 102 });
    assert.deepEqual(runOutcome([job('timed_out'), job('timed_out'), job('timed_out')]), { status: 'timed_out', exitCode: 103 });
    assert.deepEqual(runOutcome([job('failed', 1), job('timed_out')]), { status: 'failed', exitCode: 102 }, 'mixed failures are FAILED');
  });
});

test('isTerminal', () => {
  for (const status of ['succeeded', 'failed', 'timed_out', 'cancelled'] as const) assert.equal(isTerminal(status), true, status);
  for (const status of ['queued', 'offered', 'running'] as const) assert.equal(isTerminal(status), false, status);
});

describe('retryDelayMs', () => {
  const fixed = (value: number) => () => value;

  test('full jitter within [0, ceiling], ceiling doubling from the base', () => {
    assert.equal(retryDelayMs(1, 1000, fixed(0)), 0);
    assert.equal(retryDelayMs(1, 1000, fixed(0.5)), 500);
    assert.equal(retryDelayMs(1, 1000, fixed(1)), 1000);
    assert.equal(retryDelayMs(2, 1000, fixed(1)), 2000);
    assert.equal(retryDelayMs(4, 1000, fixed(0.25)), 2000);
    assert.equal(retryDelayMs(3, 100, fixed(1)), 400);
    assert.equal(retryDelayMs(3, 10_000, fixed(1)), 40_000);
  });

  test('attempt 0 or below is treated as the first', () => {
    assert.equal(retryDelayMs(0, 1000, fixed(1)), 1000);
    assert.equal(retryDelayMs(-5, 1000, fixed(0.5)), 500);
  });

  test('capped at 10 minutes, even for huge attempt numbers', () => {
    const cap = 10 * 60_000;
    assert.equal(retryDelayMs(20, 1000, fixed(1)), cap);
    assert.equal(retryDelayMs(20, 1000, fixed(0.5)), cap / 2);
    assert.equal(retryDelayMs(5000, 1000, fixed(1)), cap);
  });

  test('with the default random, stays within bounds and is an integer', () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(600_000, 1000 * 2 ** (attempt - 1));
      for (let i = 0; i < 20; i++) {
        const delay = retryDelayMs(attempt);
        assert.ok(Number.isInteger(delay));
        assert.ok(delay >= 0 && delay <= ceiling, `attempt ${attempt}: ${delay}`);
      }
    }
  });
});
