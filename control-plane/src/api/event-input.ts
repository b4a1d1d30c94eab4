import { Concurrency, EventStatus, EventType, IntervalUnit, MissedFire, type Event, type Schedule } from '@cronium/proto/api/v1/event';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Priority, type LabelTerm as LabelTermMessage, type Target } from '@cronium/proto/api/v1/common';
import type { EventRow, EventStatus as EventStatusName, LabelTerm, Selector, ScheduleSpec, Target as TargetRow, NewEventRow } from '../store/schema.ts';
import { concurrencyPolicies, eventStatuses, eventTypes, intervalUnits, labelOps, missedFirePolicies, priorities, reverse } from '../wire/api-messages.ts';
import { scheduleProblem } from '../scheduler/schedule.ts';
import { DEFAULT_RETRY_DELAY_SECONDS } from '../domain/run-status.ts';
import { termError } from '../domain/selector.ts';
import { invalid } from './errors.ts';
import { actionFields } from './action-input.ts';

const typeNames = reverse(eventTypes);
const statusNames = reverse(eventStatuses);
const opNames = reverse(labelOps);
const priorityNumbers = reverse(priorities);
const missedFireNames = reverse(missedFirePolicies);
const concurrencyNames = reverse(concurrencyPolicies);
const unitNames = reverse(intervalUnits);

export const DEFAULT_TIMEOUT_SECONDS = 3600;
export const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;
export const DEFAULT_MEMORY_MB = 256;
export const DEFAULT_CPUS = 1;
export const DEFAULT_SCHEDULING_TIMEOUT_SECONDS = 600;
const MAX_RETRY_DELAY_SECONDS = 3600;
const MAX_EXECUTIONS = 1_000_000;
const MAX_SCRIPT_BYTES = 1024 * 1024;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export type EventFields = Omit<NewEventRow, 'id' | 'owner_id' | 'created_at' | 'updated_at' | 'deleted_at'>;

/**
 * Checks an event from the API and turns it into columns; every error names
 * its field. `previous` is the stored event on an update: an unchanged
 * schedule keeps its interval anchor and its count towards maxExecutions.
 */
export function eventFields(event: Event | undefined, previous?: EventRow): EventFields {
  if (!event) throw invalid('event', 'required');
  const name = event.name.trim();
  if (!name) throw invalid('event.name', 'required');
  // Postgres text cannot hold NUL; refused here with the field's name rather than failing in the store.
  for (const [field, value] of [['event.name', name], ['event.description', event.description], ['event.script', event.script]] as const) {
    if (value.includes('\0')) throw invalid(field, 'must not contain NUL bytes');
  }
  if (name.length > 200) throw invalid('event.name', 'at most 200 characters');
  const type = typeNames.get(event.type);
  if (!type) throw invalid('event.type', 'required: one of EVENT_TYPE_BASH, EVENT_TYPE_PYTHON, EVENT_TYPE_NODE, EVENT_TYPE_HTTP');
  if (type !== 'http' && !event.script.trim()) throw invalid('event.script', `required for ${EventType[event.type]} events`);
  if (Buffer.byteLength(event.script) > MAX_SCRIPT_BYTES) throw invalid('event.script', 'at most 1 MiB');
  if (event.timeoutSeconds > MAX_TIMEOUT_SECONDS) throw invalid('event.timeoutSeconds', `at most ${MAX_TIMEOUT_SECONDS}`);
  if (event.retries > 100) throw invalid('event.retries', 'at most 100');
  if (event.cpus < 0 || event.cpus > 64) throw invalid('event.cpus', 'between 0 and 64');
  if (event.memoryMb !== 0 && event.memoryMb < 6) throw invalid('event.memoryMb', 'at least 6 (MiB)');
  for (const key of Object.keys(event.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw invalid(`event.env.${key}`, 'not a valid environment variable name');
  }
  const status: EventStatusName = event.status === EventStatus.UNSPECIFIED ? 'active' : statusNames.get(event.status)!;
  const http = type === 'http' ? httpFields(event) : null;
  const schedule = scheduleSpec(event.schedule, 'event.schedule', previous?.schedule);
  const missedFire = event.missedFirePolicy === MissedFire.UNSPECIFIED ? 'run_once' : missedFireNames.get(event.missedFirePolicy);
  if (!missedFire) throw invalid('event.missedFirePolicy', 'one of MISSED_FIRE_RUN_ONCE, MISSED_FIRE_SKIP');
  const concurrency = event.concurrencyPolicy === Concurrency.UNSPECIFIED ? 'allow' : concurrencyNames.get(event.concurrencyPolicy);
  if (!concurrency) throw invalid('event.concurrencyPolicy', 'one of CONCURRENCY_ALLOW, CONCURRENCY_FORBID, CONCURRENCY_REPLACE');
  if (event.retryDelaySeconds > MAX_RETRY_DELAY_SECONDS) throw invalid('event.retryDelaySeconds', `at most ${MAX_RETRY_DELAY_SECONDS}`);
  if (event.maxExecutions > MAX_EXECUTIONS) throw invalid('event.maxExecutions', `at most ${MAX_EXECUTIONS}`);
  const recount = !previous || previous.max_executions !== event.maxExecutions || !sameSchedule(previous.schedule, schedule);
  const executionCount = recount ? 0 : previous.execution_count;
  if (status === 'active' && event.maxExecutions > 0 && executionCount >= event.maxExecutions) {
    throw invalid('event.maxExecutions', `reached (${executionCount} of ${event.maxExecutions}): raise it or change the schedule to start counting again`);
  }
  return {
    name,
    description: event.description,
    type,
    script: type === 'http' ? '' : event.script,
    env: JSON.stringify(event.env),
    timeout_seconds: event.timeoutSeconds || DEFAULT_TIMEOUT_SECONDS,
    retries: event.retries,
    target: JSON.stringify(targetFields(event.target)),
    schedule: JSON.stringify(schedule),
    status,
    priority: event.priority === Priority.UNSPECIFIED ? 1 : priorityNumbers.get(event.priority)!,
    http: JSON.stringify(http),
    memory_mb: event.memoryMb || DEFAULT_MEMORY_MB,
    cpus: event.cpus || DEFAULT_CPUS,
    network: event.network,
    scheduling_timeout_seconds: event.schedulingTimeoutSeconds || DEFAULT_SCHEDULING_TIMEOUT_SECONDS,
    actions: JSON.stringify(actionFields(event.actions)),
    max_executions: event.maxExecutions,
    execution_count: executionCount,
    missed_fire_policy: missedFire,
    concurrency_policy: concurrency,
    retry_delay_seconds: event.retryDelaySeconds || DEFAULT_RETRY_DELAY_SECONDS,
  };
}

function sameSchedule(a: ScheduleSpec | null, b: ScheduleSpec | null): boolean {
  const key = (s: ScheduleSpec | null) => (s ? JSON.stringify([s.cron, s.timezone, s.interval?.every, s.interval?.unit, s.startAt]) : 'none');
  return key(a) === key(b);
}

/**
 * A schedule from the API as stored, or null for none; errors name
 * `${field}.<part>`. A new or changed schedule must fire at least once more;
 * an interval without a start time counts from now (whole seconds), or keeps
 * the anchor of the unchanged `previous` one.
 */
export function scheduleSpec(schedule: Schedule | undefined, field: string, previous?: ScheduleSpec | null, now = new Date()): ScheduleSpec | null {
  if (!schedule) return null;
  const hasInterval = schedule.interval !== undefined && (schedule.interval.every !== 0 || schedule.interval.unit !== IntervalUnit.UNSPECIFIED);
  if (!schedule.cron && !hasInterval && !schedule.startAt) return null;
  let interval: ScheduleSpec['interval'];
  if (hasInterval) {
    const unit = unitNames.get(schedule.interval!.unit);
    if (!unit) throw invalid(`${field}.interval.unit`, 'required: one of INTERVAL_UNIT_SECONDS, INTERVAL_UNIT_MINUTES, INTERVAL_UNIT_HOURS, INTERVAL_UNIT_DAYS');
    interval = { every: schedule.interval!.every, unit };
  }
  const spec: ScheduleSpec = {
    cron: schedule.cron.trim(),
    timezone: schedule.timezone || 'UTC',
    ...(interval ? { interval } : {}),
    ...(schedule.startAt ? { startAt: timestampDate(schedule.startAt).toISOString() } : {}),
  };
  const unchanged = previous !== undefined && sameSchedule(previous, spec);
  const problem = scheduleProblem(spec, now, { mustFireAgain: !unchanged });
  if (problem) throw invalid(`${field}.${problem.field}`, problem.problem);
  if (!interval || spec.startAt) return spec;
  const anchor = unchanged && previous?.anchor ? previous.anchor : new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString();
  return { ...spec, anchor };
}

function httpFields(event: Event) {
  const http = event.http;
  if (!http?.url) throw invalid('event.http.url', 'required for EVENT_TYPE_HTTP events');
  let url: URL;
  try {
    url = new URL(http.url);
  } catch {
    throw invalid('event.http.url', 'not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('event.http.url', 'must be http or https');
  const method = (http.method || 'GET').toUpperCase();
  if (!HTTP_METHODS.includes(method)) throw invalid('event.http.method', `one of ${HTTP_METHODS.join(', ')}`);
  return { method, url: url.toString(), headers: { ...http.headers }, body: http.body };
}

function termFields(term: LabelTermMessage | undefined, field: string): LabelTerm {
  if (!term) throw invalid(field, 'required');
  const op = opNames.get(term.op);
  if (!op) throw invalid(`${field}.op`, 'required: one of LABEL_OP_EQ, LABEL_OP_NE, LABEL_OP_IN, LABEL_OP_EXISTS, LABEL_OP_GT, LABEL_OP_LT');
  const result: LabelTerm = { key: term.key, op, values: [...term.values] };
  const problem = termError(result);
  if (problem) throw invalid(`${field}.${problem.split(':')[0]}`, problem.slice(problem.indexOf(':') + 2));
  return result;
}

function targetFields(target: Target | undefined): TargetRow {
  if (target?.kind.case === 'servers') {
    const ids = target.kind.value.serverIds;
    if (ids.length === 0) throw invalid('event.target.servers.serverIds', 'at least one server');
    if (new Set(ids).size !== ids.length) throw invalid('event.target.servers.serverIds', 'a server is listed twice');
    return { serverIds: [...ids] };
  }
  const selector = target?.kind.case === 'selector' ? target.kind.value : undefined;
  const result: Selector = {
    required: (selector?.required ?? []).map((term, i) => termFields(term, `event.target.selector.required[${i}]`)),
    preferred: (selector?.preferred ?? []).map((p, i) => ({
      term: termFields(p.term, `event.target.selector.preferred[${i}].term`),
      weight: p.weight || 1,
    })),
    count: selector?.count ?? 0,
    all: selector?.all ?? false,
  };
  if (result.all && result.count > 1) throw invalid('event.target.selector.count', 'cannot be combined with all');
  return { selector: result };
}
