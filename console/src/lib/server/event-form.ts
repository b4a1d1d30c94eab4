// An event form's fields → the API's Event message, on top of the stored event
// when editing (fields the form does not show are kept).
import { create } from '@bufbuild/protobuf';
import { LabelOp, LabelTermSchema, SelectorSchema, ServersSchema, TargetSchema, type Target } from '@cronium/proto/api/v1/common';
import {
  Action, Concurrency, EventActionSchema, EventSchema, EventStatus, EventType, HttpRequestSchema, MissedFire,
  NotifyActionSchema, RunEventActionSchema, type Event, type EventAction,
} from '@cronium/proto/api/v1/event';
import { ScheduleError, scheduleFromFields } from '#lib/schedule.ts';

export class FormError extends Error {}

function text(form: FormData, name: string): string {
  return String(form.get(name) ?? '').trim();
}

function count(form: FormData, name: string, label: string): number {
  const raw = text(form, name);
  if (raw === '') return 0;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new FormError(`${label}: a whole number of 0 or more`);
  return value;
}

/** `KEY=value` lines; blank lines and `#` comments are skipped. */
export function parseEnv(source: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [i, raw] of source.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new FormError(`Environment line ${i + 1}: write KEY=value`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  return env;
}

function enumValue<T extends number>(values: Record<string, number | string>, name: string, fallback: T): T {
  const value = values[name];
  return (typeof value === 'number' ? value : fallback) as T;
}

export function eventFromForm(form: FormData, base?: Event): Event {
  const event = base ?? create(EventSchema, {});
  event.name = text(form, 'name');
  event.description = text(form, 'description');
  event.type = enumValue<EventType>(EventType, text(form, 'type'), EventType.BASH);
  event.status = enumValue<EventStatus>(EventStatus, text(form, 'status'), EventStatus.ACTIVE);
  event.script = String(form.get('script') ?? '').replace(/\r\n/g, '\n');
  event.env = parseEnv(String(form.get('env') ?? ''));
  event.timeoutSeconds = count(form, 'timeoutSeconds', 'Timeout');
  event.retries = count(form, 'retries', 'Retries');
  event.retryDelaySeconds = count(form, 'retryDelaySeconds', 'Retry delay');
  event.schedule = scheduleFromForm(form);
  event.maxExecutions = count(form, 'maxExecutions', 'Maximum runs');
  event.missedFirePolicy = enumValue<MissedFire>(MissedFire, text(form, 'missedFire'), MissedFire.RUN_ONCE);
  event.concurrencyPolicy = enumValue<Concurrency>(Concurrency, text(form, 'concurrency'), Concurrency.ALLOW);
  event.actions = actionsFromForm(form);
  if (event.type === EventType.HTTP) {
    event.http = create(HttpRequestSchema, { headers: event.http?.headers, body: event.http?.body, method: text(form, 'httpMethod') || 'GET', url: text(form, 'httpUrl') });
  }
  event.target = targetFromForm(form, event.target);
  return event;
}

function scheduleFromForm(form: FormData) {
  // Without a script the browser cannot turn the local time into an instant: read it as UTC.
  const local = text(form, 'startAtLocal');
  const startAt = text(form, 'startAt') || (local ? `${local}Z` : '');
  // Forms from before the schedule kinds had only a cron field.
  const kind = text(form, 'scheduleKind') || (text(form, 'cron') ? 'cron' : 'none');
  try {
    return scheduleFromFields({ kind, cron: text(form, 'cron'), timezone: text(form, 'timezone'), intervalEvery: text(form, 'intervalEvery'), intervalUnit: text(form, 'intervalUnit'), startAt });
  } catch (error) {
    throw error instanceof ScheduleError ? new FormError(error.message) : error;
  }
}

/** One action per row of the actions table: trigger, kind (runEvent or notify), the event or channel, and the message. */
function actionsFromForm(form: FormData): EventAction[] {
  const triggers = form.getAll('actionTrigger').map(String);
  const kinds = form.getAll('actionKind').map(String);
  const targets = form.getAll('actionTarget').map(String);
  const templates = form.getAll('actionTemplate').map(String);
  const subjects = form.getAll('actionSubject').map(String);
  return triggers.map((name, i) => {
    const trigger = enumValue<Action>(Action, name, Action.ON_SUCCESS);
    const target = (targets[i] ?? '').trim();
    if (!target) throw new FormError(`Action ${i + 1}: choose ${kinds[i] === 'notify' ? 'a channel' : 'an event'}`);
    if (kinds[i] === 'notify') {
      const notify = create(NotifyActionSchema, { channelId: target, template: templates[i] ?? '', subject: (subjects[i] ?? '').trim() });
      return create(EventActionSchema, { trigger, kind: { case: 'notify', value: notify } });
    }
    return create(EventActionSchema, { trigger, kind: { case: 'runEvent', value: create(RunEventActionSchema, { eventId: target }) } });
  });
}

function targetFromForm(form: FormData, base: Target | undefined): Target | undefined {
  if (text(form, 'targetKind') === 'servers') {
    const serverIds = form.getAll('serverIds').map(String).filter(Boolean);
    return create(TargetSchema, { kind: { case: 'servers', value: create(ServersSchema, { serverIds }) } });
  }
  const keys = form.getAll('termKey').map(String);
  const ops = form.getAll('termOp').map(String);
  const values = form.getAll('termValues').map(String);
  const required = keys
    .map((key, i) => ({ key: key.trim(), op: ops[i] ?? 'EQ', values: (values[i] ?? '').split(',').map((v) => v.trim()).filter(Boolean) }))
    .filter((term) => term.key)
    .map((term) => create(LabelTermSchema, { key: term.key, op: enumValue<LabelOp>(LabelOp, term.op, LabelOp.EQ), values: term.values }));
  // Preferred terms and fan-out are not on the form yet: keep what was stored.
  const kept = base?.kind.case === 'selector' ? base.kind.value : create(SelectorSchema, {});
  if (required.length === 0 && kept.preferred.length === 0 && kept.count === 0 && !kept.all) return undefined;
  return create(TargetSchema, { kind: { case: 'selector', value: create(SelectorSchema, { ...kept, required }) } });
}
