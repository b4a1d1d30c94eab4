import { create, fromJson, toJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampFromDate, ValueSchema, type Timestamp } from '@bufbuild/protobuf/wkt';
import { JobAttemptSchema, JobSchema, JobStatus, type Job, type JobAttempt } from '@cronium/proto/api/v1/job';
import { RunSchema, RunStatus, type Run } from '@cronium/proto/api/v1/run';
import { Concurrency, ScheduleFireSchema, type ScheduleFire, EventSchema, EventStatus, EventType, IntervalUnit, MissedFire, type Event, type Schedule } from '@cronium/proto/api/v1/event';
import { LabelOp, Priority, type Target } from '@cronium/proto/api/v1/common';
import type {
  ConcurrencyPolicy,
  IntervalUnit as IntervalUnitName,
  MissedFirePolicy,
  ScheduleSpec,
  EventRow,
  JobAttemptRow,
  ScheduleFireRow,
  EventStatus as EventStatusName,
  EventType as EventTypeName,
  JobRow,
  JobStatus as JobStatusName,
  LabelOp as LabelOpName,
  RunRow,
  RunStatus as RunStatusName,
  Target as TargetRow,
} from '../store/schema.ts';
import { webhookToProto } from './webhook-messages.ts';
import { actionsToProto } from './action-messages.ts';

/** Names used in the database, mapped to the public enums (and back). */
export const jobStatuses: Record<JobStatusName, JobStatus> = {
  queued: JobStatus.QUEUED,
  offered: JobStatus.OFFERED,
  running: JobStatus.RUNNING,
  succeeded: JobStatus.SUCCEEDED,
  failed: JobStatus.FAILED,
  timed_out: JobStatus.TIMED_OUT,
  cancelled: JobStatus.CANCELLED,
};
export const runStatuses: Record<RunStatusName, RunStatus> = {
  running: RunStatus.RUNNING,
  succeeded: RunStatus.SUCCEEDED,
  failed: RunStatus.FAILED,
  partial: RunStatus.PARTIAL,
  timed_out: RunStatus.TIMED_OUT,
  cancelled: RunStatus.CANCELLED,
};
export const eventTypes: Record<EventTypeName, EventType> = {
  bash: EventType.BASH,
  python: EventType.PYTHON,
  node: EventType.NODE,
  http: EventType.HTTP,
};
export const eventStatuses: Record<EventStatusName, EventStatus> = {
  active: EventStatus.ACTIVE,
  paused: EventStatus.PAUSED,
  draft: EventStatus.DRAFT,
  archived: EventStatus.ARCHIVED,
};
export const missedFirePolicies: Record<MissedFirePolicy, MissedFire> = {
  run_once: MissedFire.RUN_ONCE,
  skip: MissedFire.SKIP,
};
export const concurrencyPolicies: Record<ConcurrencyPolicy, Concurrency> = {
  allow: Concurrency.ALLOW,
  forbid: Concurrency.FORBID,
  replace: Concurrency.REPLACE,
};
export const intervalUnits: Record<IntervalUnitName, IntervalUnit> = {
  seconds: IntervalUnit.SECONDS,
  minutes: IntervalUnit.MINUTES,
  hours: IntervalUnit.HOURS,
  days: IntervalUnit.DAYS,
};
export const labelOps: Record<LabelOpName, LabelOp> = {
  eq: LabelOp.EQ,
  ne: LabelOp.NE,
  in: LabelOp.IN,
  exists: LabelOp.EXISTS,
  gt: LabelOp.GT,
  lt: LabelOp.LT,
};
export const priorities: Record<number, Priority> = {
  0: Priority.LOW,
  1: Priority.NORMAL,
  2: Priority.HIGH,
  3: Priority.CRITICAL,
};

export function reverse<K extends string | number, V extends number>(map: Record<K, V>): Map<V, K> {
  return new Map(Object.entries(map).map(([key, value]) => [value as V, (typeof key === 'string' && /^\d+$/.test(key) ? Number(key) : key) as K]));
}

export function time(date: Date | string | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(new Date(date)) : undefined;
}

export function jsonValue(value: unknown) {
  return value === null || value === undefined ? undefined : fromJson(ValueSchema, value as JsonValue);
}

export function plainJson(value: Parameters<typeof toJson<typeof ValueSchema>>[1] | undefined): unknown {
  return value === undefined ? null : toJson(ValueSchema, value);
}

export function jobToProto(row: JobRow, waitingReason = ''): Job {
  return create(JobSchema, {
    id: row.id,
    runId: row.run_id,
    eventId: row.event_id,
    attempt: row.attempt,
    status: jobStatuses[row.status],
    agentId: row.agent_id ?? '',
    exitCode: row.exit_code ?? undefined,
    output: jsonValue(row.output),
    condition: row.condition ?? undefined,
    error: row.error,
    createdAt: time(row.created_at),
    startedAt: time(row.started_at),
    finishedAt: time(row.finished_at),
    priority: priorities[row.priority] ?? Priority.NORMAL,
    logTruncated: row.log_truncated,
    oomKilled: row.oom_killed,
    waitingReason,
  });
}

export function scheduleFireToProto(row: ScheduleFireRow): ScheduleFire {
  return create(ScheduleFireSchema, {
    scheduledAt: time(row.fire_at),
    runId: row.run_id ?? '',
    skippedReason: row.skipped_reason,
    firedAt: time(row.created_at),
  });
}

export function attemptToProto(row: JobAttemptRow): JobAttempt {
  return create(JobAttemptSchema, {
    attempt: row.attempt,
    status: jobStatuses[row.status],
    exitCode: row.exit_code ?? undefined,
    error: row.error,
    agentId: row.agent_id ?? '',
    startedAt: time(row.started_at),
    finishedAt: time(row.finished_at),
    retryAt: time(row.retry_at),
  });
}

export function runToProto(row: RunRow, jobs: readonly JobRow[]): Run {
  return create(RunSchema, {
    id: row.id,
    eventId: row.event_id,
    status: runStatuses[row.status],
    exitCode: row.exit_code ?? undefined,
    jobs: jobs.map((job) => jobToProto(job)),
    input: jsonValue(row.input),
    createdAt: time(row.created_at),
    finishedAt: time(row.finished_at),
  });
}

export function scheduleToProto(schedule: ScheduleSpec): Schedule {
  return {
    $typeName: 'cronium.api.v1.Schedule',
    cron: schedule.cron,
    timezone: schedule.timezone,
    interval: schedule.interval ? { $typeName: 'cronium.api.v1.Interval', every: schedule.interval.every, unit: intervalUnits[schedule.interval.unit] } : undefined,
    startAt: time(schedule.startAt),
  };
}

function targetToProto(target: TargetRow): Target {
  if ('serverIds' in target) return { $typeName: 'cronium.api.v1.Target', kind: { case: 'servers', value: { $typeName: 'cronium.api.v1.Servers', serverIds: [...target.serverIds] } } };
  const s = target.selector;
  const term = (t: (typeof s.required)[number]) => ({ $typeName: 'cronium.api.v1.LabelTerm' as const, key: t.key, op: labelOps[t.op], values: [...t.values] });
  return {
    $typeName: 'cronium.api.v1.Target',
    kind: {
      case: 'selector',
      value: {
        $typeName: 'cronium.api.v1.Selector',
        required: s.required.map(term),
        preferred: s.preferred.map((p) => ({ $typeName: 'cronium.api.v1.PreferredTerm' as const, term: term(p.term), weight: p.weight })),
        count: s.count,
        all: s.all,
      },
    },
  };
}

export function eventToProto(row: EventRow): Event {
  return create(EventSchema, {
    id: row.id,
    name: row.name,
    description: row.description,
    type: eventTypes[row.type],
    script: row.script,
    env: { ...row.env },
    timeoutSeconds: row.timeout_seconds,
    retries: row.retries,
    target: targetToProto(row.target),
    schedule: row.schedule ? scheduleToProto(row.schedule) : undefined,
    status: eventStatuses[row.status],
    priority: priorities[row.priority] ?? Priority.NORMAL,
    http: row.http ? { ...row.http, headers: { ...row.http.headers } } : undefined,
    memoryMb: row.memory_mb,
    cpus: row.cpus,
    network: row.network,
    webhook: webhookToProto('events', row.webhook_key),
    schedulingTimeoutSeconds: row.scheduling_timeout_seconds,
    actions: actionsToProto(row.actions),
    maxExecutions: row.max_executions,
    executionCount: row.execution_count,
    missedFirePolicy: missedFirePolicies[row.missed_fire_policy],
    concurrencyPolicy: concurrencyPolicies[row.concurrency_policy],
    retryDelaySeconds: row.retry_delay_seconds,
    createdAt: time(row.created_at),
    updatedAt: time(row.updated_at),
  });
}
