import { timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { PreviewScheduleRequest } from '@cronium/proto/api/v1/event';
import type { EventRow } from '../store/schema.ts';
import { isScheduled, upcomingFires } from '../scheduler/schedule.ts';
import { scheduleSpec } from './event-input.ts';
import { invalid } from './errors.ts';

const DEFAULT_COUNT = 5;
const MAX_COUNT = 100;

/**
 * The next instants a schedule fires at, computed as the scheduler does. With
 * an event, its stored schedule (or the given one, keeping the event's
 * interval anchor when unchanged) and only as many as maxExecutions leaves.
 */
export function previewSchedule(req: PreviewScheduleRequest, event: EventRow | undefined, now = new Date()): Timestamp[] {
  if (req.count > MAX_COUNT) throw invalid('count', `at most ${MAX_COUNT}`);
  let count = req.count || DEFAULT_COUNT;
  const given = scheduleSpec(req.schedule, 'schedule', event ? event.schedule : undefined, now);
  if (!given && !event) throw invalid('schedule', 'required: a cron, an interval or a startAt (or an eventId)');
  const schedule = given ?? event!.schedule;
  if (!isScheduled(schedule)) return [];
  if (event && event.max_executions > 0) count = Math.min(count, Math.max(0, event.max_executions - event.execution_count));
  return upcomingFires(schedule, now, count).map((at) => timestampFromDate(at));
}
