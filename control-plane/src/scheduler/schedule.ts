import { Cron } from 'croner';
import type { IntervalUnit, ScheduleSpec } from '../store/schema.ts';

const UNIT_MS: Record<IntervalUnit, number> = { seconds: 1_000, minutes: 60_000, hours: 3_600_000, days: 86_400_000 };

/** Longest interval taken: about ten years. */
export const MAX_INTERVAL_MS = 3_650 * UNIT_MS.days;

export function intervalMs(interval: NonNullable<ScheduleSpec['interval']>): number {
  return interval.every * UNIT_MS[interval.unit];
}

/** Whether the schedule fires at all (a cron, an interval or a one-shot start time). */
export function isScheduled(schedule: ScheduleSpec | null | undefined): schedule is ScheduleSpec {
  return Boolean(schedule && (schedule.cron || schedule.interval || schedule.startAt));
}

/** Parsed crons by (expression, time zone): parsing costs far more than a next instant, and many events share one. */
const parsedCrons = new Map<string, Cron>();
const MAX_PARSED_CRONS = 10_000;

function cronOf(schedule: ScheduleSpec): Cron {
  const timezone = schedule.timezone || 'UTC';
  const key = `${timezone} ${schedule.cron}`;
  let cron = parsedCrons.get(key);
  if (!cron) {
    // UTC as a fixed offset: croner's time-zone path converts through Intl on every step, about 100 times slower.
    cron = new Cron(schedule.cron, timezone === 'UTC' ? { utcOffset: 0, paused: true } : { timezone, paused: true });
    if (parsedCrons.size >= MAX_PARSED_CRONS) parsedCrons.clear();
    parsedCrons.set(key, cron);
  }
  return cron;
}

/**
 * A function giving the first instant strictly after its argument, or
 * undefined when the schedule never fires again. Intervals count whole steps
 * of elapsed time from startAt (its first fire), or else from the anchor (its
 * first fire one step later): a day is 24 hours, whatever the calendar says.
 */
function stepper(schedule: ScheduleSpec): (after: Date) => Date | undefined {
  const startAt = schedule.startAt ? Date.parse(schedule.startAt) : undefined;
  if (schedule.cron) {
    const cron = cronOf(schedule);
    return (after) => {
      const from = startAt !== undefined && startAt - 1 > after.getTime() ? new Date(startAt - 1) : after;
      return cron.nextRun(from) ?? undefined;
    };
  }
  if (schedule.interval) {
    const step = intervalMs(schedule.interval);
    const first = startAt ?? Date.parse(schedule.anchor ?? new Date().toISOString()) + step;
    return (after) => {
      if (after.getTime() < first) return new Date(first);
      return new Date(first + (Math.floor((after.getTime() - first) / step) + 1) * step);
    };
  }
  if (startAt !== undefined) return (after) => (after.getTime() < startAt ? new Date(startAt) : undefined);
  return () => undefined;
}

/** The first instant strictly after `after`, or undefined when the schedule never fires again. */
export function nextFire(schedule: ScheduleSpec, after: Date): Date | undefined {
  return stepper(schedule)(after);
}

/** The next `count` instants strictly after `after`. */
export function upcomingFires(schedule: ScheduleSpec, after: Date, count: number): Date[] {
  const next = stepper(schedule);
  const times: Date[] = [];
  for (let at = next(after); at && times.length < count; at = next(at)) times.push(at);
  return times;
}

/**
 * The instants a schedule fired in (after, until], oldest first, at most
 * `limit` (the newest ones when there are more: a long outage does not replay
 * every missed fire).
 */
export function fireTimes(schedule: ScheduleSpec, after: Date, until: Date, limit = 1): Date[] {
  const next = stepper(schedule);
  if (schedule.interval && !schedule.cron) {
    // Straight to the newest `limit` steps: an every-second interval need not be walked through a day.
    const step = intervalMs(schedule.interval);
    const skipTo = new Date(Math.max(after.getTime(), until.getTime() - limit * step));
    after = skipTo;
  }
  const times: Date[] = [];
  for (let at = next(after); at && at <= until; at = next(at)) {
    times.push(at);
    if (times.length > limit) times.shift();
  }
  return times;
}

/** What is wrong with a schedule, as (field within the schedule, problem); undefined when it is fine. */
export function scheduleProblem(schedule: ScheduleSpec, now: Date, { mustFireAgain = true } = {}): { field: string; problem: string } | undefined {
  if (schedule.cron && schedule.interval) return { field: 'interval', problem: 'give either cron or interval, not both' };
  if (schedule.cron) {
    const fields = schedule.cron.trim().split(/\s+/);
    if (!schedule.cron.trim().startsWith('@') && fields.length !== 5 && fields.length !== 6) {
      return { field: 'cron', problem: `${JSON.stringify(schedule.cron)} has ${fields.length} fields; 5 (minute first) or 6 (second first)` };
    }
    try {
      new Intl.DateTimeFormat('en', { timeZone: schedule.timezone || 'UTC' });
    } catch {
      return { field: 'timezone', problem: `${JSON.stringify(schedule.timezone)} is not an IANA time zone` };
    }
    try {
      cronOf(schedule);
    } catch (error) {
      return { field: 'cron', problem: (error as Error).message };
    }
  }
  if (schedule.interval) {
    if (!Number.isInteger(schedule.interval.every) || schedule.interval.every < 1) return { field: 'interval.every', problem: 'at least 1' };
    if (intervalMs(schedule.interval) > MAX_INTERVAL_MS) return { field: 'interval.every', problem: 'at most 3650 days' };
  }
  if (schedule.startAt !== undefined && Number.isNaN(Date.parse(schedule.startAt))) return { field: 'startAt', problem: 'not a valid instant' };
  if (mustFireAgain && isScheduled(schedule) && !nextFire(schedule, now)) {
    if (schedule.cron) return { field: 'cron', problem: `${JSON.stringify(schedule.cron)} never fires${schedule.startAt ? ` after ${schedule.startAt}` : ''}` };
    return { field: 'startAt', problem: `${schedule.startAt} is in the past: the schedule would never fire` };
  }
  return undefined;
}
