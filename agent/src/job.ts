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

/** A server reached over SSH (servers that run nothing of ours). Credentials are decrypted by the control plane for this job only. */
export interface SshTarget {
  readonly serverId: string;
  readonly host: string;
  readonly port: number;
  readonly username: string;
  /** PEM/OpenSSH private key; empty when a password is used. */
  readonly privateKey: string;
  readonly password: string;
  /** The pinned host key, as `ssh-keygen -l` prints it (`SHA256:…`); a different key fails before authentication. */
  readonly hostKeyFingerprint: string;
}

export type ExecutorName = 'docker' | 'ssh' | 'http';

/** The executor a job needs: SSH when it targets a server, else by kind. */
export function executorFor(spec: Pick<JobSpec, 'kind' | 'ssh'>): ExecutorName {
  return spec.ssh ? 'ssh' : spec.kind === 'http' ? 'http' : 'docker';
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
  /** Set when the job runs on a server over SSH instead of in a container. */
  readonly ssh?: SshTarget;
  /** Secret variables (also in env and variables): their values are masked in the log. */
  readonly secrets?: Readonly<Record<string, string>>;
  /** W3C traceparent of the trace the job belongs to (OpenTelemetry), when the control plane traces. */
  readonly traceParent?: string;
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
  /**
   * Resolves once the control plane has stored the result `run` returned (or
   * the attempt was fenced out): cleanup that can wait goes after it, so it
   * does not compete with the result's delivery. Absent: nothing to wait for.
   */
  readonly reported?: Promise<void>;
}

export interface Executor {
  readonly name: ExecutorName;
  readonly kinds: readonly JobKind[];
  run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult>;
}
