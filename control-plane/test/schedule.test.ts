// The instants schedules fire at: cron, intervals of elapsed time, one-shot start times.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fireTimes, nextFire, scheduleProblem, upcomingFires } from '../src/scheduler/schedule.ts';
import type { ScheduleSpec } from '../src/store/schema.ts';

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());
const at = (s: string) => new Date(s);

describe('fire instants', () => {
  test('a 6-field cron fires on every second second', () => {
    const times = upcomingFires({ cron: '*/2 * * * * *', timezone: 'UTC' }, at('2026-01-01T00:00:00.500Z'), 3);
    assert.deepEqual(iso(times), ['2026-01-01T00:00:02.000Z', '2026-01-01T00:00:04.000Z', '2026-01-01T00:00:06.000Z']);
  });

  test('a cron in a time zone fires at local time', () => {
    const [first] = upcomingFires({ cron: '0 9 * * *', timezone: 'Europe/Berlin' }, at('2026-07-01T00:00:00Z'), 1);
    assert.equal(first!.toISOString(), '2026-07-01T07:00:00.000Z');
  });

  test('a cron with a start time fires first at or after it', () => {
    const schedule: ScheduleSpec = { cron: '0 * * * *', timezone: 'UTC', startAt: '2026-01-01T05:00:00.000Z' };
    assert.deepEqual(iso(upcomingFires(schedule, at('2026-01-01T00:00:00Z'), 2)), ['2026-01-01T05:00:00.000Z', '2026-01-01T06:00:00.000Z']);
  });

  test('an interval counts whole steps from its start time, which is its first fire', () => {
    const schedule: ScheduleSpec = { cron: '', timezone: 'UTC', interval: { every: 90, unit: 'minutes' }, startAt: '2026-01-01T00:00:00.000Z' };
    assert.deepEqual(iso(upcomingFires(schedule, at('2025-12-31T00:00:00Z'), 3)), [
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T01:30:00.000Z',
      '2026-01-01T03:00:00.000Z',
    ]);
    assert.equal(nextFire(schedule, at('2026-01-01T01:30:00.000Z'))!.toISOString(), '2026-01-01T03:00:00.000Z', 'strictly after');
  });

  test('a day is 24 hours of elapsed time, not a day of the month; 40 days is fine', () => {
    const daily: ScheduleSpec = { cron: '', timezone: 'Europe/Berlin', interval: { every: 1, unit: 'days' }, startAt: '2026-03-28T12:00:00.000Z' };
    const times = upcomingFires(daily, at('2026-03-28T00:00:00Z'), 3).map((d) => d.getTime());
    assert.deepEqual([times[1]! - times[0]!, times[2]! - times[1]!], [86_400_000, 86_400_000], 'across a DST change too');
    const forty: ScheduleSpec = { cron: '', timezone: 'UTC', interval: { every: 40, unit: 'days' }, startAt: '2026-01-31T00:00:00.000Z' };
    assert.deepEqual(iso(upcomingFires(forty, at('2026-01-01T00:00:00Z'), 2)), ['2026-01-31T00:00:00.000Z', '2026-03-12T00:00:00.000Z']);
  });

  test('an interval without a start time fires one step after its anchor', () => {
    const schedule: ScheduleSpec = { cron: '', timezone: 'UTC', interval: { every: 5, unit: 'seconds' }, anchor: '2026-01-01T00:00:00.000Z' };
    assert.deepEqual(iso(upcomingFires(schedule, at('2026-01-01T00:00:00Z'), 2)), ['2026-01-01T00:00:05.000Z', '2026-01-01T00:00:10.000Z']);
  });

  test('a start time alone fires once', () => {
    const schedule: ScheduleSpec = { cron: '', timezone: 'UTC', startAt: '2026-01-01T00:00:10.000Z' };
    assert.deepEqual(iso(upcomingFires(schedule, at('2026-01-01T00:00:00Z'), 5)), ['2026-01-01T00:00:10.000Z']);
    assert.equal(nextFire(schedule, at('2026-01-01T00:00:10Z')), undefined);
  });

  test('fireTimes keeps the newest instants of a long window, for intervals without walking it', () => {
    const schedule: ScheduleSpec = { cron: '', timezone: 'UTC', interval: { every: 1, unit: 'seconds' }, startAt: '2020-01-01T00:00:00.000Z' };
    assert.deepEqual(iso(fireTimes(schedule, at('2020-01-01T00:00:00Z'), at('2026-01-01T00:00:00.500Z'), 2)), [
      '2025-12-31T23:59:59.000Z',
      '2026-01-01T00:00:00.000Z',
    ]);
    const cron: ScheduleSpec = { cron: '*/2 * * * * *', timezone: 'UTC' };
    assert.deepEqual(iso(fireTimes(cron, at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:05Z'), 100)), [
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:04.000Z',
    ]);
  });
});

describe('scheduleProblem names the part at fault', () => {
  const now = at('2026-01-01T00:00:00Z');
  const problem = (schedule: Partial<ScheduleSpec>) => scheduleProblem({ cron: '', timezone: 'UTC', ...schedule }, now)?.field;
  test('cron, time zone, interval, start time', () => {
    assert.equal(problem({ cron: '61 * * * *' }), 'cron');
    assert.equal(problem({ cron: '* * * *' }), 'cron');
    assert.equal(problem({ cron: '* * * * * * 2030' }), 'cron', 'no year field');
    assert.equal(problem({ cron: '0 0 31 2 *' }), 'cron', 'never fires');
    assert.equal(problem({ cron: '* * * * *', timezone: 'Mars/Olympus' }), 'timezone');
    assert.equal(problem({ interval: { every: 0, unit: 'seconds' } }), 'interval.every');
    assert.equal(problem({ cron: '* * * * *', interval: { every: 1, unit: 'seconds' } }), 'interval');
    assert.equal(problem({ startAt: '2025-12-31T00:00:00.000Z' }), 'startAt', 'a one-shot in the past never fires');
    assert.equal(problem({ cron: '* * * * *' }), undefined);
    assert.equal(problem({ cron: '0 9 * * 1-5', timezone: 'America/New_York' }), undefined);
    assert.equal(problem({ interval: { every: 3, unit: 'days' } }), undefined);
  });
});
