// Plain, serialisable views of API messages for pages (server loads and the
// browser's WatchJob stream share them).
import { toJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampDate, ValueSchema, type Timestamp, type Value } from '@bufbuild/protobuf/wkt';
import { AgentStatus, type Agent } from '@cronium/proto/api/v1/agent';
import { LabelOp, type LabelTerm, type Target } from '@cronium/proto/api/v1/common';
import { Action, Concurrency, EventStatus, EventType, IntervalUnit, MissedFire, type Event, type EventAction, type ScheduleFire } from '@cronium/proto/api/v1/event';
import { JobStatus, LogStream, type Job, type JobAttempt, type LogEntry } from '@cronium/proto/api/v1/job';
import { RunStatus, type Run } from '@cronium/proto/api/v1/run';
import { ServerStatus, type Server } from '@cronium/proto/api/v1/server';

/** `JOB_STATUS_SUCCEEDED` style enum value → `succeeded`. */
function enumName(values: Record<number, string>, value: number): string {
  return (values[value] ?? 'UNSPECIFIED').toLowerCase().replace(/_/g, ' ');
}

function iso(ts: Timestamp | undefined): string | null {
  return ts ? timestampDate(ts).toISOString() : null;
}

function json(value: Value | undefined): JsonValue | undefined {
  return value ? toJson(ValueSchema, value) : undefined;
}

export interface JobView {
  id: string;
  runId: string;
  eventId: string;
  attempt: number;
  status: string;
  terminal: boolean;
  agentId: string;
  exitCode: number | null;
  output: JsonValue | undefined;
  condition: boolean | null;
  error: string;
  waitingReason: string;
  logTruncated: boolean;
  oomKilled: boolean;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

const terminalJobs = new Set([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED]);

export function jobView(job: Job): JobView {
  return {
    id: job.id,
    runId: job.runId,
    eventId: job.eventId,
    attempt: job.attempt,
    status: enumName(JobStatus, job.status),
    terminal: terminalJobs.has(job.status),
    agentId: job.agentId,
    exitCode: job.exitCode ?? null,
    output: json(job.output),
    condition: job.condition ?? null,
    error: job.error,
    waitingReason: job.waitingReason,
    logTruncated: job.logTruncated,
    oomKilled: job.oomKilled,
    createdAt: iso(job.createdAt),
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
  };
}

export interface AttemptView {
  attempt: number;
  status: string;
  exitCode: number | null;
  error: string;
  agentId: string;
  startedAt: string | null;
  finishedAt: string | null;
  retryAt: string | null;
}

export function attemptView(attempt: JobAttempt): AttemptView {
  return {
    attempt: attempt.attempt,
    status: enumName(JobStatus, attempt.status),
    exitCode: attempt.exitCode ?? null,
    error: attempt.error,
    agentId: attempt.agentId,
    startedAt: iso(attempt.startedAt),
    finishedAt: iso(attempt.finishedAt),
    retryAt: iso(attempt.retryAt),
  };
}

export interface LogView {
  stream: 'stdout' | 'stderr' | 'system';
  data: string;
  attempt: number;
  offset: number;
}

export function logView(entry: LogEntry): LogView {
  const stream = entry.stream === LogStream.STDERR ? 'stderr' : entry.stream === LogStream.SYSTEM ? 'system' : 'stdout';
  return { stream, data: entry.data, attempt: entry.attempt, offset: Number(entry.offset) };
}

export interface RunView {
  id: string;
  eventId: string;
  status: string;
  finished: boolean;
  exitCode: number | null;
  input: JsonValue | undefined;
  jobs: JobView[];
  createdAt: string | null;
  finishedAt: string | null;
}

export function runView(run: Run): RunView {
  return {
    id: run.id,
    eventId: run.eventId,
    status: enumName(RunStatus, run.status),
    finished: run.status !== RunStatus.RUNNING && run.status !== RunStatus.UNSPECIFIED,
    exitCode: run.exitCode ?? null,
    input: json(run.input),
    jobs: run.jobs.map(jobView),
    createdAt: iso(run.createdAt),
    finishedAt: iso(run.finishedAt),
  };
}

export interface TermView {
  key: string;
  op: string;
  values: string;
}

export const labelOps: { value: string; label: string }[] = [
  { value: 'EQ', label: '=' },
  { value: 'NE', label: '≠' },
  { value: 'IN', label: 'in' },
  { value: 'EXISTS', label: 'exists' },
  { value: 'GT', label: '>' },
  { value: 'LT', label: '<' },
];

function termView(term: LabelTerm): TermView {
  return { key: term.key, op: LabelOp[term.op] ?? 'EQ', values: term.values.join(', ') };
}

export interface EventView {
  id: string;
  name: string;
  description: string;
  type: string;
  status: string;
  script: string;
  env: Record<string, string>;
  timeoutSeconds: number;
  retries: number;
  scheduleKind: 'none' | 'cron' | 'interval' | 'once';
  cron: string;
  timezone: string;
  intervalEvery: number;
  intervalUnit: string;
  startAt: string | null;
  maxExecutions: number;
  executionCount: number;
  missedFire: string;
  concurrency: string;
  retryDelaySeconds: number;
  actions: ActionView[];
  targetKind: 'selector' | 'servers';
  terms: TermView[];
  serverIds: string[];
  httpMethod: string;
  httpUrl: string;
  network: boolean;
  webhook: { enabled: boolean; path: string };
  updatedAt: string | null;
}

function targetView(target: Target | undefined): Pick<EventView, 'targetKind' | 'terms' | 'serverIds'> {
  if (target?.kind.case === 'servers') return { targetKind: 'servers', terms: [], serverIds: target.kind.value.serverIds };
  const selector = target?.kind.case === 'selector' ? target.kind.value : undefined;
  return { targetKind: 'selector', terms: (selector?.required ?? []).map(termView), serverIds: [] };
}

function scheduleKind(event: Event): EventView['scheduleKind'] {
  const schedule = event.schedule;
  if (schedule?.cron) return 'cron';
  if (schedule?.interval?.every) return 'interval';
  if (schedule?.startAt) return 'once';
  return 'none';
}

export interface ActionView {
  trigger: string;
  kind: 'runEvent' | 'notify';
  /** The event to run or the channel to notify. */
  targetId: string;
  template: string;
  subject: string;
}

function actionView(action: EventAction): ActionView {
  const trigger = Action[action.trigger] ?? 'ON_SUCCESS';
  if (action.kind.case === 'notify') {
    const { channelId, template, subject } = action.kind.value;
    return { trigger, kind: 'notify', targetId: channelId, template, subject };
  }
  return { trigger, kind: 'runEvent', targetId: action.kind.case === 'runEvent' ? action.kind.value.eventId : '', template: '', subject: '' };
}

export function eventView(event: Event): EventView {
  return {
    id: event.id,
    name: event.name,
    description: event.description,
    type: EventType[event.type] ?? 'BASH',
    status: EventStatus[event.status] ?? 'ACTIVE',
    script: event.script,
    env: { ...event.env },
    timeoutSeconds: event.timeoutSeconds,
    retries: event.retries,
    scheduleKind: scheduleKind(event),
    cron: event.schedule?.cron ?? '',
    timezone: event.schedule?.timezone ?? '',
    intervalEvery: event.schedule?.interval?.every ?? 0,
    intervalUnit: IntervalUnit[event.schedule?.interval?.unit ?? IntervalUnit.MINUTES] ?? 'MINUTES',
    startAt: iso(event.schedule?.startAt),
    maxExecutions: event.maxExecutions,
    executionCount: event.executionCount,
    missedFire: MissedFire[event.missedFirePolicy || MissedFire.RUN_ONCE] ?? 'RUN_ONCE',
    concurrency: Concurrency[event.concurrencyPolicy || Concurrency.ALLOW] ?? 'ALLOW',
    retryDelaySeconds: event.retryDelaySeconds,
    actions: event.actions.map(actionView),
    ...targetView(event.target),
    httpMethod: event.http?.method ?? '',
    httpUrl: event.http?.url ?? '',
    network: event.network,
    webhook: { enabled: Boolean(event.webhook?.enabled), path: event.webhook?.path ?? '' },
    updatedAt: iso(event.updatedAt),
  };
}

export interface FireView {
  scheduledAt: string | null;
  runId: string;
  skippedReason: string;
}

export function fireView(fire: ScheduleFire): FireView {
  return { scheduledAt: iso(fire.scheduledAt), runId: fire.runId, skippedReason: fire.skippedReason };
}

export interface AgentView {
  id: string;
  name: string;
  mode: string;
  labels: Record<string, string>;
  pinnedLabels: Record<string, string>;
  executors: string[];
  slots: number;
  runningJobs: number;
  status: string;
  lastHeartbeatAt: string | null;
  version: string;
}

export function agentView(agent: Agent): AgentView {
  return {
    id: agent.id,
    name: agent.name,
    mode: agent.mode,
    labels: { ...agent.labels },
    pinnedLabels: { ...agent.pinnedLabels },
    executors: [...agent.executors],
    slots: agent.slots,
    runningJobs: agent.runningJobs,
    status: enumName(AgentStatus, agent.status),
    lastHeartbeatAt: iso(agent.lastHeartbeatAt),
    version: agent.version,
  };
}

export interface ServerView {
  id: string;
  name: string;
  host: string;
  port: number;
  username: string;
  status: string;
  ready: boolean;
  hostKeyFingerprint: string;
  seenHostKeyFingerprint: string;
  labels: Record<string, string>;
  hasPrivateKey: boolean;
  hasPassword: boolean;
}

export function serverView(server: Server): ServerView {
  return {
    id: server.id,
    name: server.name,
    host: server.host,
    port: server.port,
    username: server.username,
    status: enumName(ServerStatus, server.status),
    ready: server.status === ServerStatus.READY,
    hostKeyFingerprint: server.hostKeyFingerprint,
    seenHostKeyFingerprint: server.seenHostKeyFingerprint,
    labels: { ...server.labels },
    hasPrivateKey: server.hasPrivateKey,
    hasPassword: server.hasPassword,
  };
}
