import { Cron } from 'croner';

/**
 * The instants a schedule fired in (after, until], oldest first, at most
 * `limit` (the newest ones when there are more: a long outage does not replay
 * every missed fire).
 */
export function fireTimes(schedule: { cron: string; timezone: string }, after: Date, until: Date, limit = 1): Date[] {
  const cron = new Cron(schedule.cron, { timezone: schedule.timezone || 'UTC', paused: true });
  const times: Date[] = [];
  for (let next = cron.nextRun(after); next && next <= until; next = cron.nextRun(next)) {
    times.push(next);
    if (times.length > limit) times.shift();
  }
  return times;
}

/** The next instant after `from`, or undefined when the schedule never fires again. */
export function nextFire(schedule: { cron: string; timezone: string }, from: Date): Date | undefined {
  return new Cron(schedule.cron, { timezone: schedule.timezone || 'UTC', paused: true }).nextRun(from) ?? undefined;
}
