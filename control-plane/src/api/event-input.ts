import { EventStatus, EventType, type Event } from '@cronium/proto/api/v1/event';
import { Priority, type LabelTerm as LabelTermMessage, type Target } from '@cronium/proto/api/v1/common';
import type { EventStatus as EventStatusName, LabelTerm, Selector, Target as TargetRow, NewEventRow } from '../store/schema.ts';
import { eventStatuses, eventTypes, labelOps, priorities, reverse } from '../wire/api-messages.ts';
import { termError } from '../domain/selector.ts';
import { invalid } from './errors.ts';
import { Cron } from 'croner';

const typeNames = reverse(eventTypes);
const statusNames = reverse(eventStatuses);
const opNames = reverse(labelOps);
const priorityNumbers = reverse(priorities);

export const DEFAULT_TIMEOUT_SECONDS = 3600;
export const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;
export const DEFAULT_MEMORY_MB = 256;
export const DEFAULT_CPUS = 1;
export const DEFAULT_SCHEDULING_TIMEOUT_SECONDS = 600;
const MAX_SCRIPT_BYTES = 1024 * 1024;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export type EventFields = Omit<NewEventRow, 'id' | 'owner_id' | 'created_at' | 'updated_at' | 'deleted_at'>;

/** Checks an event from the API and turns it into columns; every error names its field. */
export function eventFields(event: Event | undefined): EventFields {
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
  if (event.schedule?.cron) scheduleCheck(event.schedule.cron, event.schedule.timezone || 'UTC');
  return {
    name,
    description: event.description,
    type,
    script: type === 'http' ? '' : event.script,
    env: JSON.stringify(event.env),
    timeout_seconds: event.timeoutSeconds || DEFAULT_TIMEOUT_SECONDS,
    retries: event.retries,
    target: JSON.stringify(targetFields(event.target)),
    schedule: JSON.stringify(event.schedule?.cron ? { cron: event.schedule.cron, timezone: event.schedule.timezone || 'UTC' } : null),
    status,
    priority: event.priority === Priority.UNSPECIFIED ? 1 : priorityNumbers.get(event.priority)!,
    http: JSON.stringify(http),
    memory_mb: event.memoryMb || DEFAULT_MEMORY_MB,
    cpus: event.cpus || DEFAULT_CPUS,
    network: event.network,
    scheduling_timeout_seconds: event.schedulingTimeoutSeconds || DEFAULT_SCHEDULING_TIMEOUT_SECONDS,
  };
}

function scheduleCheck(cron: string, timezone: string): void {
  let next: Date | null;
  try {
    next = new Cron(cron, { timezone, paused: true }).nextRun();
  } catch (error) {
    throw invalid('event.schedule', (error as Error).message);
  }
  if (!next) throw invalid('event.schedule.cron', `${JSON.stringify(cron)} never fires`);
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
