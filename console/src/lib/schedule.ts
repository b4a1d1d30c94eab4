// The schedule part of the event form → the API's Schedule message. Shared by
// the form action (server) and the live preview (browser), so both read the
// fields the same way.
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { IntervalSchema, IntervalUnit, ScheduleSchema, type Schedule } from '@cronium/proto/api/v1/event';

export interface ScheduleFields {
  kind: string;
  cron: string;
  timezone: string;
  intervalEvery: string;
  intervalUnit: string;
  /** ISO 8601 instant, or empty. */
  startAt: string;
}

export const intervalUnits = ['SECONDS', 'MINUTES', 'HOURS', 'DAYS'] as const;

export class ScheduleError extends Error {}

export function scheduleFromFields(fields: ScheduleFields): Schedule | undefined {
  const startAt = fields.startAt.trim() ? instant(fields.startAt.trim()) : undefined;
  switch (fields.kind) {
    case 'cron':
      if (!fields.cron.trim()) return undefined;
      return create(ScheduleSchema, { cron: fields.cron.trim(), timezone: fields.timezone.trim(), startAt });
    case 'interval': {
      const every = Number(fields.intervalEvery);
      if (!Number.isInteger(every) || every < 1) throw new ScheduleError('Interval: a whole number of 1 or more');
      const unit = IntervalUnit[fields.intervalUnit as keyof typeof IntervalUnit] ?? IntervalUnit.MINUTES;
      return create(ScheduleSchema, { interval: create(IntervalSchema, { every, unit }), startAt });
    }
    case 'once':
      if (!startAt) throw new ScheduleError('Run once: choose the start time');
      return create(ScheduleSchema, { startAt });
    default:
      return undefined;
  }
}

function instant(value: string) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new ScheduleError('Start time: not a date and time');
  return timestampFromDate(date);
}

/** `2026-12-01T10:30` in the browser's zone ↔ an ISO instant (datetime-local has no zone). */
export function localInputValue(iso: string | null): string {
  if (!iso) return '';
  const date = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
