// An event's schedule and policies as the API takes them: an interval's anchor
// and the count towards maxExecutions survive edits of other fields, and start
// again when the schedule or the limit changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Concurrency, EventSchema, EventType, IntervalUnit, MissedFire, type Event } from '@cronium/proto/api/v1/event';
import { eventFields } from '../src/api/event-input.ts';
import type { EventRow } from '../src/store/schema.ts';

function event(fields: Omit<MessageInitShape<typeof EventSchema>, '$typeName'> = {}): Event {
  return create(EventSchema, {
    name: 'sync',
    type: EventType.BASH,
    script: 'true',
    schedule: { interval: { every: 5, unit: IntervalUnit.MINUTES } },
    ...fields,
  });
}

/** The stored row an update compares with. */
function stored(fields: ReturnType<typeof eventFields>, executionCount: number): EventRow {
  return { ...fields, schedule: JSON.parse(fields.schedule as string), execution_count: executionCount } as unknown as EventRow;
}

test('defaults: run once for missed fires, concurrency allowed, 10 s retry base, no limit', () => {
  const fields = eventFields(event());
  assert.equal(fields.missed_fire_policy, 'run_once');
  assert.equal(fields.concurrency_policy, 'allow');
  assert.equal(fields.retry_delay_seconds, 10);
  assert.equal(fields.max_executions, 0);
  const policies = eventFields(event({ missedFirePolicy: MissedFire.SKIP, concurrencyPolicy: Concurrency.REPLACE, retryDelaySeconds: 3 }));
  assert.deepEqual([policies.missed_fire_policy, policies.concurrency_policy, policies.retry_delay_seconds], ['skip', 'replace', 3]);
});

test('an interval without a start time is anchored at the save, in whole seconds', () => {
  const before = Date.now();
  const schedule = JSON.parse(eventFields(event()).schedule as string);
  const anchor = Date.parse(schedule.anchor);
  assert.equal(anchor % 1000, 0);
  assert.ok(anchor <= before + 1000 && anchor > before - 1000, schedule.anchor);
  assert.deepEqual(schedule.interval, { every: 5, unit: 'minutes' });
});

test('editing other fields keeps the anchor and the count; changing the schedule or the limit restarts both', async () => {
  const first = eventFields(event({ maxExecutions: 10 }));
  const previous = stored(first, 4);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const renamed = eventFields(event({ name: 'renamed', maxExecutions: 10 }), previous);
  assert.equal(JSON.parse(renamed.schedule as string).anchor, previous.schedule!.anchor);
  assert.equal(renamed.execution_count, 4);
  const rescheduled = eventFields(event({ maxExecutions: 10, schedule: { interval: { every: 6, unit: IntervalUnit.MINUTES } } }), previous);
  assert.notEqual(JSON.parse(rescheduled.schedule as string).anchor, previous.schedule!.anchor);
  assert.equal(rescheduled.execution_count, 0);
  assert.equal(eventFields(event({ maxExecutions: 20 }), previous).execution_count, 0);
});

test('bad policies and limits name their field', () => {
  assert.throws(() => eventFields(event({ retryDelaySeconds: 3601 })), /^ConnectError: \[invalid_argument\] event\.retryDelaySeconds:/);
  assert.throws(() => eventFields(event({ concurrencyPolicy: 9 as Concurrency })), /event\.concurrencyPolicy:/);
  assert.throws(() => eventFields(event({ missedFirePolicy: 9 as MissedFire })), /event\.missedFirePolicy:/);
  assert.throws(() => eventFields(event({ schedule: { interval: { every: 5 } } })), /event\.schedule\.interval\.unit:/);
});
