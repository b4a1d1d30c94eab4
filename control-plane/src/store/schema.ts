import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string, string>;
/** A column with a database default: optional on insert. */
type Defaulted<T> = ColumnType<T, T | undefined, T>;

export type JobStatus = 'queued' | 'offered' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'timed_out', 'cancelled'];
export const ACTIVE_JOB_STATUSES: readonly JobStatus[] = ['offered', 'running'];

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'partial' | 'timed_out' | 'cancelled';

export type EventType = 'bash' | 'python' | 'node' | 'http';
export type EventStatus = 'active' | 'paused' | 'draft' | 'archived';
export type MissedFirePolicy = 'run_once' | 'skip';
export type ConcurrencyPolicy = 'allow' | 'forbid' | 'replace';
export type IntervalUnit = 'seconds' | 'minutes' | 'hours' | 'days';

/** As stored: cron (with timezone) or an interval, each optionally not before startAt; startAt alone runs once. */
export interface ScheduleSpec {
  readonly cron: string;
  readonly timezone: string;
  readonly interval?: { readonly every: number; readonly unit: IntervalUnit };
  /** ISO instant. */
  readonly startAt?: string;
  /** ISO instant an interval without startAt counts from: when the schedule was saved. */
  readonly anchor?: string;
}

export type LabelOp = 'eq' | 'ne' | 'in' | 'exists' | 'gt' | 'lt';

export interface LabelTerm {
  readonly key: string;
  readonly op: LabelOp;
  readonly values: readonly string[];
}

export interface Selector {
  readonly required: readonly LabelTerm[];
  readonly preferred: readonly { readonly term: LabelTerm; readonly weight: number }[];
  readonly count: number;
  readonly all: boolean;
}

export type Target = { readonly selector: Selector } | { readonly serverIds: readonly string[] };

export interface HttpRequestSpec {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Snapshot of what a job runs, taken when the run is created. */
export interface JobSpec {
  readonly eventName: string;
  readonly kind: EventType;
  readonly script: string;
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutSeconds: number;
  readonly input: unknown;
  readonly memoryMb: number;
  readonly cpus: number;
  readonly network: boolean;
  readonly http: HttpRequestSpec | null;
  /** A queued attempt not offered within this fails. */
  readonly schedulingTimeoutSeconds: number;
  /** Base of the retry backoff; absent in jobs made before it existed (then the default). */
  readonly retryDelaySeconds?: number;
  /** W3C traceparent of the API call (or fire) that made the job, when tracing is on. */
  readonly traceParent?: string;
}

export interface EventsTable {
  id: string;
  owner_id: string;
  name: string;
  description: Defaulted<string>;
  type: EventType;
  script: string;
  env: Json<Record<string, string>>;
  timeout_seconds: number;
  retries: Defaulted<number>;
  target: Json<Target>;
  schedule: Json<ScheduleSpec | null>;
  status: EventStatus;
  priority: number;
  http: Json<HttpRequestSpec | null>;
  memory_mb: number;
  cpus: number;
  network: Defaulted<boolean>;
  scheduling_timeout_seconds: Defaulted<number>;
  actions: ColumnType<ActionRow[], string | undefined, string>;
  max_executions: Defaulted<number>;
  execution_count: Defaulted<number>;
  missed_fire_policy: Defaulted<MissedFirePolicy>;
  concurrency_policy: Defaulted<ConcurrencyPolicy>;
  retry_delay_seconds: Defaulted<number>;
  created_at: Timestamp;
  updated_at: Timestamp;
  deleted_at: NullableTimestamp;
  /** POST /hooks/events/<key>; the secret is sealed (secrets/sealer.ts), bound to the row. */
  webhook_key: ColumnType<string | null, string | null | undefined, string | null>;
  webhook_secret_sealed: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface RunsTable {
  id: string;
  event_id: string;
  owner_id: string;
  status: RunStatus;
  exit_code: number | null;
  input: Json<unknown>;
  created_at: Timestamp;
  finished_at: NullableTimestamp;
  /** How many runEvent actions led to this run (0: started by hand or schedule). */
  action_depth: Defaulted<number>;
  caused_by_run_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface JobsTable {
  id: string;
  run_id: string;
  event_id: string;
  owner_id: string;
  attempt: Defaulted<number>;
  max_attempts: number;
  status: JobStatus;
  priority: number;
  spec: Json<JobSpec>;
  selector: Json<Selector>;
  pinned_agent_id: string | null;
  agent_id: string | null;
  lease_id: string | null;
  offer_expires_at: NullableTimestamp;
  lease_expires_at: NullableTimestamp;
  accepted_at: NullableTimestamp;
  run_after: Timestamp;
  exit_code: number | null;
  output: Json<unknown> | null;
  condition: boolean | null;
  error: Defaulted<string>;
  log_truncated: Defaulted<boolean>;
  oom_killed: Defaulted<boolean>;
  cancel_requested: Defaulted<boolean>;
  created_at: Timestamp;
  offered_at: NullableTimestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  scheduling_deadline: NullableTimestamp;
  /** Set for jobs that run on a server over SSH. */
  server_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface ServersTable {
  id: string;
  owner_id: string;
  name: string;
  host: string;
  port: number;
  username: string;
  /** AES-256-GCM, bound to the row (see secrets/sealer.ts). */
  private_key_sealed: string | null;
  password_sealed: string | null;
  host_key_fingerprint: Defaulted<string>;
  seen_host_key_fingerprint: Defaulted<string>;
  labels: Json<Record<string, string>>;
  created_at: Timestamp;
  updated_at: Timestamp;
  deleted_at: NullableTimestamp;
}

export type ServerRow = Selectable<ServersTable>;

/** One row per (event, scheduled instant): a fire happens at most once, whoever leads. */
export interface ScheduleFiresTable {
  event_id: string;
  fire_at: Date;
  run_id: string | null;
  /** Why no run was made for this instant (concurrency policy); '' when one was. */
  skipped_reason: Defaulted<string>;
  created_at: Timestamp;
}

/** One ended attempt of a job, written in the transaction that ends it. */
export interface JobAttemptsTable {
  job_id: string;
  attempt: number;
  status: JobStatus;
  exit_code: number | null;
  error: Defaulted<string>;
  agent_id: string | null;
  started_at: NullableTimestamp;
  finished_at: Timestamp;
  retry_at: NullableTimestamp;
}

export interface JobLogsTable {
  id: Generated<string>;
  job_id: string;
  attempt: Defaulted<number>;
  stream: number;
  offset: string | number;
  data: Uint8Array;
}

export interface VariablesTable {
  owner_id: string;
  key: string;
  /** For a secret: AES-256-GCM, bound to (owner, key) (see variables/sealing.ts). */
  value: string;
  secret: Defaulted<boolean>;
  updated_at: Timestamp;
}

export type ActionTrigger = 'on_success' | 'on_failure' | 'always' | 'on_condition';

/** A conditional action of an event, run when one of its runs ends. */
export type ActionRow =
  | { readonly trigger: ActionTrigger; readonly runEvent: { readonly eventId: string } }
  | { readonly trigger: ActionTrigger; readonly notify: { readonly channelId: string; readonly template: string; readonly subject: string } };

export type ChannelKind = 'webhook' | 'slack' | 'discord' | 'email';

export interface NotificationChannelsTable {
  id: string;
  owner_id: string;
  name: string;
  kind: ChannelKind;
  /** What may be shown (SMTP host, from, to; webhook header names). */
  settings: Json<Record<string, unknown>>;
  /** JSON of the write-only fields, sealed and bound to the row. */
  secrets_sealed: string;
  created_at: Timestamp;
  updated_at: Timestamp;
  deleted_at: NullableTimestamp;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** The notification outbox: written with the run's end, delivered after the commit. */
export interface NotificationDeliveriesTable {
  id: string;
  owner_id: string;
  channel_id: string;
  run_id: string | null;
  event_id: string | null;
  status: Defaulted<DeliveryStatus>;
  attempts: Defaulted<number>;
  last_error: Defaulted<string>;
  message: Json<NotificationMessage>;
  next_attempt_at: Timestamp;
  locked_until: NullableTimestamp;
  created_at: Timestamp;
  delivered_at: NullableTimestamp;
}

/** A rendered notification, plus the facts a webhook receives as JSON. */
export interface NotificationMessage {
  readonly subject: string;
  readonly text: string;
  readonly event: { readonly id: string; readonly name: string } | null;
  readonly run: { readonly id: string; readonly status: string; readonly exitCode: number | null; readonly durationMs: number | null } | null;
}

export interface AgentsTable {
  id: string;
  name: string;
  mode: string;
  labels: Json<Record<string, string>>;
  executors: Json<string[]>;
  slots: number;
  version: string;
  connected: Defaulted<boolean>;
  draining: Defaulted<boolean>;
  last_heartbeat_at: NullableTimestamp;
  created_at: Timestamp;
  pinned_labels: ColumnType<Record<string, string>, string | undefined, string>;
  revoked_at: NullableTimestamp;
  certificate_serial: string | null;
  /** The stream (on whichever replica) that set `connected`; only it may clear it. */
  stream_id: string | null;
}

export interface JoinTokensTable {
  id: string;
  /** The first enrolled agent's id; later uses of a multi-use token make new ids. */
  agent_id: string;
  max_uses: Defaulted<number>;
  uses: Defaulted<number>;
  name: string;
  labels: Json<Record<string, string>>;
  created_by: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
}

export interface ApiTokensTable {
  id: string;
  owner_id: string;
  role: string;
  name: string;
  token_hash: string;
  created_at: Timestamp;
  last_used_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  expires_at: NullableTimestamp;
}

export type EdgeType = 'always' | 'on_success' | 'on_failure' | 'on_condition';
export interface WorkflowNodeSpec {
  readonly id: string;
  readonly eventId: string;
  readonly name: string;
}
export interface WorkflowEdgeSpec {
  readonly from: string;
  readonly to: string;
  readonly type: EdgeType;
}
export type WorkflowStatus = 'active' | 'paused';

export interface WorkflowsTable {
  id: string;
  owner_id: string;
  name: string;
  description: Defaulted<string>;
  status: WorkflowStatus;
  nodes: Json<WorkflowNodeSpec[]>;
  edges: Json<WorkflowEdgeSpec[]>;
  webhook_key: string | null;
  /** Sealed (secrets/sealer.ts), bound to the row. */
  webhook_secret_sealed: string | null;
  /** The schedule trigger, as events store theirs. */
  schedule: ColumnType<ScheduleSpec | null, string | undefined, string>;
  created_at: Timestamp;
  updated_at: Timestamp;
  deleted_at: NullableTimestamp;
}

/** Each (workflow, instant) its schedule fired: the execution it started, or why none. */
export interface WorkflowScheduleFiresTable {
  workflow_id: string;
  fire_at: Date;
  execution_id: string | null;
  skipped_reason: Defaulted<string>;
  created_at: Generated<Date>;
}

export type ExecutionStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';
export type NodeStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

/** One start of a workflow; the graph is copied in, so editing the workflow does not change executions under way. */
export interface WorkflowExecutionsTable {
  id: string;
  workflow_id: string;
  owner_id: string;
  status: ExecutionStatus;
  trigger: string;
  input: Json<unknown>;
  nodes: Json<WorkflowNodeSpec[]>;
  edges: Json<WorkflowEdgeSpec[]>;
  cancel_requested: Defaulted<boolean>;
  created_at: Timestamp;
  finished_at: NullableTimestamp;
}

/** The state of one node in one execution, and the link from its run back to it. */
export interface WorkflowNodeRunsTable {
  execution_id: string;
  node_id: string;
  event_id: string;
  status: NodeStatus;
  run_id: string | null;
  input: Json<unknown> | null;
  output: Json<unknown> | null;
  condition: boolean | null;
  error: Defaulted<string>;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
}

export type WorkflowRow = Selectable<WorkflowsTable>;
export type ExecutionRow = Selectable<WorkflowExecutionsTable>;
export type NodeRunRow = Selectable<WorkflowNodeRunsTable>;

export interface Database {
  events: EventsTable;
  runs: RunsTable;
  jobs: JobsTable;
  job_logs: JobLogsTable;
  variables: VariablesTable;
  agents: AgentsTable;
  api_tokens: ApiTokensTable;
  join_tokens: JoinTokensTable;
  servers: ServersTable;
  schedule_fires: ScheduleFiresTable;
  workflows: WorkflowsTable;
  workflow_executions: WorkflowExecutionsTable;
  workflow_node_runs: WorkflowNodeRunsTable;
  cluster_keys: ClusterKeysTable;
  notification_channels: NotificationChannelsTable;
  notification_deliveries: NotificationDeliveriesTable;
  job_attempts: JobAttemptsTable;
  workflow_schedule_fires: WorkflowScheduleFiresTable;
  users: UsersTable;
  sessions: SessionsTable;
  audit_events: AuditEventsTable;
  idempotency_keys: IdempotencyKeysTable;
  terminal_sessions: TerminalSessionsTable;
  terminal_recording_chunks: TerminalRecordingChunksTable;
}

/** One interactive terminal: who opened it, where, when and why it ended (the audit trail). */
export interface TerminalSessionsTable {
  id: string;
  opened_by: string;
  role: string;
  target_kind: 'server' | 'agent';
  target_id: string;
  target_name: string;
  agent_id: string;
  client_address: Defaulted<string>;
  cols: number;
  rows: number;
  started_at: Timestamp;
  ended_at: NullableTimestamp;
  end_reason: Defaulted<string>;
  /** bigint: read it with Number() (pg gives a string, PGlite a bigint). */
  output_bytes: ColumnType<string | number | bigint, number | undefined, number>;
}

/** The asciicast v2 recording, as consecutive batches of event lines. */
export interface TerminalRecordingChunksTable {
  session_id: string;
  seq: number;
  events: string;
}

/** Key pairs all replicas share (agent CA, join-token signer); private halves sealed with the master key. */
export interface ClusterKeysTable {
  name: string;
  public_pem: string;
  private_sealed: string;
  created_at: Generated<Date>;
}

export type EventRow = Selectable<EventsTable>;
export type NewEventRow = Insertable<EventsTable>;
export type EventUpdate = Updateable<EventsTable>;
export type RunRow = Selectable<RunsTable>;
export type JobRow = Selectable<JobsTable>;
export type NewJobRow = Insertable<JobsTable>;
export type AgentRow = Selectable<AgentsTable>;
export type ChannelRow = Selectable<NotificationChannelsTable>;
export type DeliveryRow = Selectable<NotificationDeliveriesTable>;
export type JobAttemptRow = Selectable<JobAttemptsTable>;
export type ScheduleFireRow = Selectable<ScheduleFiresTable>;

export type RoleName = 'admin' | 'user' | 'viewer';

/** People; `id` is the owner_id of everything they make (the first admin is 'admin'). */
export interface UsersTable {
  id: string;
  email: string;
  name: Defaulted<string>;
  role: RoleName;
  /** scrypt$N$r$p$salt$hash (auth/passwords.ts). */
  password_hash: string;
  disabled: Defaulted<boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
  deleted_at: NullableTimestamp;
}

/** Signed-in sessions; a session token (JWT) is honoured while its row is neither revoked nor expired. */
export interface SessionsTable {
  id: string;
  user_id: string;
  created_at: Timestamp;
  expires_at: Date;
  revoked_at: NullableTimestamp;
}

export interface AuditEventsTable {
  id: Generated<number>;
  at: Timestamp;
  user_id: Defaulted<string>;
  credential_id: Defaulted<string>;
  method: string;
  object_type: Defaulted<string>;
  object_id: Defaulted<string>;
  fields: Json<string[]>;
  remote_address: Defaulted<string>;
  user_agent: Defaulted<string>;
  outcome: Defaulted<string>;
}

/** What a call with an Idempotency-Key answered, kept 24 hours. */
export interface IdempotencyKeysTable {
  owner_id: string;
  key: string;
  request_hash: string;
  response: Json<unknown>;
  created_at: Timestamp;
  expires_at: Date;
}

export type UserRow = Selectable<UsersTable>;
