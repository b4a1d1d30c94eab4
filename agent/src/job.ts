/** JSON value as parsed by JSON.parse. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type JobKind = 'bash' | 'python' | 'node' | 'http';

export type LogStreamName = 'stdout' | 'stderr' | 'system';

export interface HttpRequestSpec {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What an executor needs to run one attempt of a job; free of wire types. */
export interface JobSpec {
  readonly jobId: string;
  readonly attempt: number;
  readonly eventId: string;
  readonly runId: string;
  readonly eventName: string;
  readonly kind: JobKind;
  readonly script: string;
  readonly env: Readonly<Record<string, string>>;
  /** Wall-clock limit; the executor kills the job and reports `timed_out`. */
  readonly timeoutSeconds: number;
  readonly input: JsonValue;
  /** Variables visible to `getVariable` (snapshot at dispatch). */
  readonly variables: Readonly<Record<string, string>>;
  readonly memoryBytes: number;
  readonly cpus: number;
  readonly network: boolean;
  readonly http?: HttpRequestSpec;
}

export type Outcome = 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

export interface ExecutionResult {
  readonly outcome: Outcome;
  readonly exitCode: number;
  /** Human-readable reason when the outcome is not `succeeded`. */
  readonly error: string;
  /** Value given to `output()`; undefined when the script set none. */
  readonly output?: JsonValue;
  /** Value given to `setCondition()`; undefined when the script set none. */
  readonly condition?: boolean;
  /** Variables the script set with `setVariable`. */
  readonly variablesSet: Readonly<Record<string, string>>;
  readonly oomKilled: boolean;
}

export interface RunContext {
  /** Aborted when the job is cancelled; the executor stops it (SIGTERM, then SIGKILL after the grace period). */
  readonly signal: AbortSignal;
  /** Appends log bytes; awaiting it applies backpressure to the process reader. */
  log(stream: LogStreamName, data: Buffer): Promise<void>;
  /** Called once the job has really started (container running, request sent). */
  started(): void;
}

export interface Executor {
  readonly kinds: readonly JobKind[];
  run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult>;
}
