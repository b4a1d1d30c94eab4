import { create, fromJson, type JsonValue, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampNow, ValueSchema } from '@bufbuild/protobuf/wkt';
import {
  ConnectRequestSchema,
  JobState,
  LogStream,
  type ConnectRequest,
  type JobRef,
  type JobStatusSchema,
} from '@cronium/proto/agent/v1';
import { executorFor, type ExecutionResult, type Executor, type ExecutorName, type JobSpec, type LogStreamName } from './job.ts';
import { jobRefBytes, logChunkRequest } from './log-chunk.ts';
import { Outbox, refKey } from './outbox.ts';
import { completeUtf8Length } from './utf8.ts';
import { maskJson, maskText, secretForms, StreamMasker } from './secret-mask.ts';
import type { Spool } from './spool.ts';
import { executionSpan } from './tracing.ts';

export interface RunnerOptions {
  readonly slots: number;
  readonly executors: readonly Executor[];
  /** Sends a message now if connected; dropped otherwise (the outbox covers what must arrive). */
  readonly send: (message: ConnectRequest) => void;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** Unacknowledged log bytes per job before the process reader is made to wait. */
  readonly maxUnackedBytes?: number;
  /** Durable copy of accepted jobs and their unacknowledged results. */
  readonly spool: Spool;
}

const TERMINAL_STATES = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED]);

const streams: Record<LogStreamName, LogStream> = {
  stdout: LogStream.STDOUT,
  stderr: LogStream.STDERR,
  system: LogStream.SYSTEM,
};

const outcomes: Record<ExecutionResult['outcome'], JobState> = {
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  timed_out: JobState.TIMED_OUT,
  cancelled: JobState.CANCELLED,
};

interface RunningJob {
  readonly ref: JobRef;
  readonly abort: AbortController;
  /** Fenced out: its results are dropped. */
  stale: boolean;
  finished: boolean;
  readonly offsets: Record<LogStreamName, number>;
  readonly carry: Record<LogStreamName, Buffer>;
  logged: number;
  truncated: boolean;
  readonly logLimit: number;
  /** Every form of the job's secret values, masked in its log and error. */
  readonly secretForms: readonly string[];
  readonly masks: Record<LogStreamName, StreamMasker>;
  /** The job reference encoded once, for its log chunks. */
  readonly refBytes: Uint8Array;
  /** Output not sent yet, of one stream (see #send). */
  pending: Buffer[];
  pendingStream: LogStreamName;
  pendingBytes: number;
  flushTimer: NodeJS.Timeout | undefined;
  /** Resolves once the terminal status is acknowledged, or the attempt is fenced out or forgotten. */
  readonly reported: Promise<void>;
  readonly markReported: () => void;
}

/** How long output may wait to fill a larger chunk while earlier chunks are unacknowledged. */
const COALESCE_MS = 5;

/**
 * Runs the jobs offered to this agent: accepts within its slots, runs each on
 * its executor, and turns progress into outbox entries (status, log chunks)
 * that survive reconnects until acknowledged.
 */
export class Runner {
  readonly #options: RunnerOptions;
  readonly #jobs = new Map<string, RunningJob>();
  readonly outbox = new Outbox<ConnectRequest>();
  #maxChunkBytes = 64 * 1024;
  #draining = false;

  constructor(options: RunnerOptions) {
    this.#options = options;
  }

  set maxChunkBytes(value: number) {
    if (value > 0) this.#maxChunkBytes = value;
  }

  get executing(): number {
    return [...this.#jobs.values()].filter((job) => !job.finished).length;
  }

  get freeSlots(): number {
    return this.#draining ? 0 : Math.max(0, this.#options.slots - this.executing);
  }

  get executorNames(): ExecutorName[] {
    return this.#options.executors.map((e) => e.name);
  }

  /** Attempts still running, or whose results are not acknowledged yet (listed in Hello). */
  held(): JobRef[] {
    return [...this.#jobs.values()].map((job) => job.ref);
  }

  running(): JobRef[] {
    return [...this.#jobs.values()].filter((job) => !job.finished).map((job) => job.ref);
  }

  drain(): void {
    this.#draining = true;
  }

  /** Resolves when no job is executing. */
  async idle(): Promise<void> {
    while (this.executing > 0) await new Promise((r) => setTimeout(r, 100));
  }

  offer(ref: JobRef, spec: JobSpec, logLimit: number): void {
    const executor = this.#options.executors.find((e) => e.name === executorFor(spec) && e.kinds.includes(spec.kind));
    const reject = (reason: string) => this.#options.send(create(ConnectRequestSchema, { kind: { case: 'jobReject', value: { job: ref, reason } } }));
    if (this.#jobs.has(ref.leaseId)) return;
    if (this.#draining) return reject('agent is draining');
    if (this.freeSlots <= 0) return reject('no free slot');
    if (!executor) return reject(`no ${executorFor(spec)} executor for ${spec.kind} jobs on this agent`);
    const full = this.#options.spool.fullReason;
    if (full) return reject(full);
    const job = newJob(ref, logLimit, secretForms(Object.values(spec.secrets ?? {})));
    this.#jobs.set(ref.leaseId, job);
    this.#options.spool.open(ref);
    this.#options.send(create(ConnectRequestSchema, { kind: { case: 'jobAccept', value: { job: ref } } }));
    void this.#execute(job, executor, spec);
  }

  /** Stops a job: a cancel (its result is reported) or a fence (its result is dropped). */
  cancel(ref: JobRef, reason: string, stale: boolean): void {
    const job = this.#jobs.get(ref.leaseId);
    if (!job) return;
    // The control plane repeats a cancel with every heartbeat until the job stops.
    if (!stale && job.abort.signal.aborted) return;
    if (stale) {
      job.stale = true;
      job.markReported();
      this.outbox.dropLease(ref.leaseId);
      if (job.finished) this.#forget(job);
    }
    this.#options.log(stale ? 'attempt fenced out; stopping it' : 'cancelling job', { jobId: ref.jobId, reason });
    job.abort.abort(reason);
  }

  /** After a reconnect: the control plane says which held attempts are still ours. */
  resume(decisions: readonly { job?: JobRef; keep: boolean }[]): void {
    for (const decision of decisions) if (decision.job && !decision.keep) this.cancel(decision.job, 'not current after reconnect', true);
  }

  ackStatus(ref: JobRef, state: JobState): void {
    this.outbox.ack(`${refKey(ref)}/status/${state}`);
    if (TERMINAL_STATES.has(state)) this.#jobs.get(ref.leaseId)?.markReported();
    this.#forgetIfDone(ref.leaseId);
  }

  /** Takes back what an earlier process left in the spool. A job it was running did not survive (its container is gone): it is reported failed. */
  recover(): number {
    const leases = this.#options.spool.recover();
    for (const { ref, messages } of leases) {
      const job = newJob(ref, 0, []);
      job.finished = true;
      this.#jobs.set(ref.leaseId, job);
      let ended = false;
      for (const message of messages) {
        if (message.kind.case === 'jobStatus') {
          ended ||= TERMINAL_STATES.has(message.kind.value.state);
          this.outbox.add({ leaseId: ref.leaseId, key: `${refKey(ref)}/status/${message.kind.value.state}`, message, bytes: 0 });
        } else if (message.kind.case === 'logChunk') {
          const chunk = message.kind.value;
          this.outbox.add({ leaseId: ref.leaseId, key: `${refKey(ref)}/log/${chunk.stream}/${chunk.offset}`, message, bytes: chunk.data.length });
        }
      }
      if (!ended) this.#status(job, JobState.FAILED, { exitCode: -1, error: 'the agent restarted while this job was running' });
    }
    return leases.length;
  }

  #forgetIfDone(leaseId: string): void {
    const job = this.#jobs.get(leaseId);
    if (job?.finished && !this.outbox.has(leaseId)) this.#forget(job);
  }

  #forget(job: RunningJob): void {
    job.markReported();
    this.#jobs.delete(job.ref.leaseId);
    this.#options.spool.release(job.ref.leaseId);
  }

  ackLog(ref: JobRef, stream: LogStream, offset: bigint): void {
    this.outbox.ackWhere(ref.leaseId, (entry) => {
      const m = entry.message.kind;
      return m.case === 'logChunk' && m.value.stream === stream && m.value.offset + BigInt(m.value.data.length) <= offset;
    });
    this.#forgetIfDone(ref.leaseId);
  }

  #enqueue(job: RunningJob, key: string, message: ConnectRequest, bytes: number): void {
    if (job.stale) return;
    this.#options.spool.append(job.ref.leaseId, message);
    this.outbox.add({ leaseId: job.ref.leaseId, key, message, bytes });
    this.#options.send(message);
  }

  #status(job: RunningJob, state: JobState, extra: MessageInitShape<typeof JobStatusSchema> = {}): void {
    const message = create(ConnectRequestSchema, {
      kind: { case: 'jobStatus', value: { job: job.ref, state, at: timestampNow(), ...extra } },
    });
    this.#enqueue(job, `${refKey(job.ref)}/status/${state}`, message, 0);
  }

  /** One chunk of the pieces (together at most maxChunkBytes). */
  #chunk(job: RunningJob, stream: LogStreamName, pieces: readonly Buffer[], length: number): void {
    const offset = job.offsets[stream];
    job.offsets[stream] += length;
    const message = logChunkRequest(job.ref, job.refBytes, streams[stream], offset, pieces);
    this.#enqueue(job, `${refKey(job.ref)}/log/${stream}/${offset}`, message, length);
  }

  async #log(job: RunningJob, stream: LogStreamName, raw: Buffer): Promise<void> {
    if (job.stale || job.truncated) return;
    // Masked before anything is counted, spooled or sent: no secret leaves the host.
    const data = job.masks[stream].push(raw);
    const room = job.logLimit - job.logged;
    if (data.length > room) {
      this.#send(job, stream, Buffer.concat([job.carry[stream], data.subarray(0, room)]));
      job.carry[stream] = Buffer.alloc(0);
      job.logged = job.logLimit;
      job.truncated = true;
      this.#send(job, 'system', Buffer.from(`[cronium] log truncated: the job wrote more than ${job.logLimit} bytes\n`));
      this.#flush(job);
      return;
    }
    job.logged += data.length;
    const joined = job.carry[stream].length > 0 ? Buffer.concat([job.carry[stream], data]) : data;
    const complete = completeUtf8Length(joined);
    job.carry[stream] = Buffer.from(joined.subarray(complete));
    if (complete > 0) this.#send(job, stream, joined.subarray(0, complete));
    const limit = this.#options.maxUnackedBytes ?? 4 * 1024 * 1024;
    while (!job.stale && this.outbox.unackedBytes(job.ref.leaseId) > limit) await this.outbox.whenAcked();
  }

  /**
   * Output goes out at once while nothing of the job's is unacknowledged (a
   * slow writer waits for nothing); behind unacknowledged chunks it gathers,
   * for at most COALESCE_MS, into chunks of up to maxChunkBytes, so a fast
   * writer costs a few large messages instead of many small ones.
   */
  #send(job: RunningJob, stream: LogStreamName, data: Buffer): void {
    if (data.length === 0) return;
    if (job.pendingBytes > 0 && (job.pendingStream !== stream || job.pendingBytes + data.length > this.#maxChunkBytes)) this.#flush(job);
    job.pending.push(data);
    job.pendingStream = stream;
    job.pendingBytes += data.length;
    if (job.pendingBytes >= this.#maxChunkBytes || this.outbox.unackedBytes(job.ref.leaseId) === 0) this.#flush(job);
    else job.flushTimer ??= setTimeout(() => this.#flush(job), COALESCE_MS);
  }

  #flush(job: RunningJob): void {
    clearTimeout(job.flushTimer);
    job.flushTimer = undefined;
    if (job.pendingBytes === 0) return;
    const [pieces, length] = [job.pending, job.pendingBytes];
    job.pending = [];
    job.pendingBytes = 0;
    // More than a chunk is pending only as one large piece (see #send): cut it.
    if (length <= this.#maxChunkBytes) return this.#chunk(job, job.pendingStream, pieces, length);
    const [piece] = pieces as [Buffer];
    for (let start = 0; start < piece.length; start += this.#maxChunkBytes) {
      const part = piece.subarray(start, start + this.#maxChunkBytes);
      this.#chunk(job, job.pendingStream, [part], part.length);
    }
  }

  async #execute(job: RunningJob, executor: Executor, spec: JobSpec): Promise<void> {
    const span = executionSpan(spec, executor.name);
    let result: ExecutionResult;
    try {
      result = await executor.run(spec, {
        signal: job.abort.signal,
        log: (stream, data) => this.#log(job, stream, data),
        started: () => this.#status(job, JobState.STARTED),
        reported: job.reported,
      });
    } catch (error) {
      this.#options.log('executor failed', { jobId: spec.jobId, error: String(error) });
      result = { outcome: 'failed', exitCode: -1, error: `agent could not run the job: ${(error as Error).message}`, variablesSet: {}, oomKilled: false };
    }
    for (const stream of ['stdout', 'stderr', 'system'] as const) {
      const held = job.truncated ? Buffer.alloc(0) : job.masks[stream].flush();
      const rest = held.length > 0 ? Buffer.concat([job.carry[stream], held]) : job.carry[stream];
      this.#send(job, stream, rest);
    }
    this.#flush(job);
    job.finished = true;
    span.end(job.stale ? 'fenced out' : result.outcome, result.exitCode, maskText(result.error, job.secretForms));
    if (job.stale) {
      this.#forget(job);
      return;
    }
    this.#status(job, outcomes[result.outcome], {
      exitCode: result.exitCode,
      error: maskText(result.error, job.secretForms),
      output: result.output === undefined ? undefined : toValue(maskJson(result.output, job.secretForms)),
      condition: result.condition,
      variablesSet: { ...result.variablesSet },
      logTruncated: job.truncated,
      oomKilled: result.oomKilled,
      stdoutBytes: BigInt(job.offsets.stdout),
      stderrBytes: BigInt(job.offsets.stderr),
      systemBytes: BigInt(job.offsets.system),
    });
    this.#options.log('job finished', { jobId: spec.jobId, attempt: spec.attempt, outcome: result.outcome, exitCode: result.exitCode });
  }
}

function newJob(ref: JobRef, logLimit: number, forms: readonly string[]): RunningJob {
  let markReported = () => {};
  const reported = new Promise<void>((resolve) => (markReported = resolve));
  return {
    reported,
    markReported,
    secretForms: forms,
    masks: { stdout: new StreamMasker(forms), stderr: new StreamMasker(forms), system: new StreamMasker(forms) },
    ref,
    refBytes: jobRefBytes(ref),
    abort: new AbortController(),
    stale: false,
    finished: false,
    offsets: { stdout: 0, stderr: 0, system: 0 },
    carry: { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), system: Buffer.alloc(0) },
    logged: 0,
    pending: [],
    pendingStream: 'stdout',
    pendingBytes: 0,
    flushTimer: undefined,
    truncated: false,
    logLimit,
  };
}

function toValue(value: unknown) {
  return fromJson(ValueSchema, value as JsonValue);
}
