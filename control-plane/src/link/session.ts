import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import {
  ConnectResponseSchema,
  Executor,
  JobState,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  type JobRef,
  type JobReject,
  type JobStatus,
  type LogChunk,
} from '@cronium/proto/agent/v1';
import type { Bus } from '../bus/bus.ts';
import { inTransaction, type Db } from '../store/database.ts';
import type { JobRow } from '../store/schema.ts';
import type { DispatchTarget, OfferContext } from '../dispatcher.ts';
import { acceptOffers, completeAttempts, lockJobs, markStartedMany, rejectOffer, renewLeases, liveLeases, type Fence, type FenceOutcome, type Finished } from '../queue/transitions.ts';
import { appendLogs, type LogChunkRow } from '../queue/logs.ts';
import { GroupCommit } from '../store/group-commit.ts';
import { retryConflicts } from '../store/retry.ts';
import { publishJob, publishLog, kickDispatch } from '../job-events.ts';
import { cancelMessage, fenceOf, logStreamNumbers, offerMessage, refOf, storable, storableJson, terminalStates } from '../wire/agent-messages.ts';
import { plainJson } from '../wire/api-messages.ts';
import type { Metrics } from '../metrics.ts';
import type { HeartbeatWriter } from './heartbeats.ts';

export interface SessionTimings {
  readonly heartbeatIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly offerTimeoutMs: number;
  readonly maxLogChunkBytes: number;
  /** Log bytes kept per job attempt; the agent drops the rest and marks the log truncated. */
  readonly jobLogLimitBytes: number;
}

export interface SessionDeps {
  readonly db: Db;
  readonly bus: Bus;
  readonly timings: SessionTimings;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  readonly metrics?: Metrics;
  /** Where heartbeats go: written for many agents together (`agents.last_heartbeat_at`). */
  readonly heartbeats: Pick<HeartbeatWriter, 'record'>;
}

interface Lease {
  readonly ref: JobRef;
  readonly offeredAt: number;
  accepted: boolean;
  /** Its terminal status has arrived but is not stored yet: the slot is already free. */
  finishing?: boolean;
}

const executorNames = new Map<Executor, string>([
  [Executor.DOCKER, 'docker'],
  [Executor.SSH, 'ssh'],
  [Executor.HTTP, 'http'],
  // A capability, not a job executor: the agent opens terminals on its own host.
  [Executor.TERMINAL, 'terminal'],
]);

/**
 * One connected agent: its credits (free slots), the leases it holds on this
 * replica, and the handling of what it sends, one message at a time.
 */
export class AgentSession implements DispatchTarget {
  readonly id: string;
  /** Names this stream in the registry, so a replica closing an old stream never marks a reconnected agent offline. */
  readonly streamId = randomUUID();
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly executors: readonly string[];
  readonly slots: number;
  readonly #deps: SessionDeps;
  readonly #send: (message: ConnectResponse) => void;
  readonly #leases = new Map<string, Lease>();
  #draining = false;
  /** An offer went unanswered and nothing was heard since: the stream may be dead, so no more offers until the agent shows life. */
  #unresponsive = false;
  /** While a batch is handled: its transaction, and what to do once it commits. */
  #batch: { readonly db: Db; readonly afterCommit: (() => void)[] } | undefined;
  /** Log chunks already published on arrival. */
  readonly #published = new WeakSet<LogChunk>();

  /** `pinned` labels come from enrollment and win over what the agent says. */
  constructor(hello: Hello, deps: SessionDeps, send: (message: ConnectResponse) => void, pinned: Readonly<Record<string, string>> = {}) {
    this.id = hello.agentId;
    this.name = hello.name || hello.agentId;
    this.labels = { ...hello.labels, ...pinned };
    this.executors = hello.executors.map((e) => executorNames.get(e)).filter((e) => e !== undefined);
    this.slots = Math.max(0, hello.slots);
    this.#deps = deps;
    this.#send = send;
  }

  get freeSlots(): number {
    if (this.#draining || this.#unresponsive) return 0;
    let busy = 0;
    for (const lease of this.#leases.values()) if (!lease.finishing) busy++;
    return this.slots - busy;
  }

  /**
   * A terminal status arrived (it is stored with the next batch): the agent's
   * slot is free now, so the dispatcher need not wait for the store.
   */
  releaseSlot(message: ConnectRequest): boolean {
    if (message.kind.case !== 'jobStatus' || !terminalStates.has(message.kind.value.state)) return false;
    const lease = this.#leases.get(message.kind.value.job?.leaseId ?? '');
    if (!lease || lease.finishing) return false;
    lease.finishing = true;
    return true;
  }

  get running(): number {
    return this.#leases.size;
  }

  /**
   * A log chunk of an attempt this agent holds (and not one after its result)
   * goes to watchers as it arrives, so they never wait behind the batches
   * being stored; the batch that stores it does not publish it again.
   */
  publishOnArrival(message: ConnectRequest): void {
    if (message.kind.case !== 'logChunk') return;
    const chunk = message.kind.value;
    const lease = this.#leases.get(chunk.job?.leaseId ?? '');
    if (!chunk.job || !lease || lease.finishing) return;
    this.#published.add(chunk);
    publishLog(this.#deps.bus, logRow(chunk.job, chunk));
  }

  send(message: ConnectResponse): void {
    this.#send(message);
  }

  /** Leases kept across a reconnect. */
  adopt(job: JobRow): void {
    this.#leases.set(job.lease_id!, { ref: refOf(job), offeredAt: Date.now(), accepted: true });
    if (job.cancel_requested) this.#send(cancelMessage(refOf(job), 'cancelled', false));
  }

  offer(job: JobRow, context: OfferContext): void {
    this.#leases.set(job.lease_id!, { ref: refOf(job), offeredAt: Date.now(), accepted: false });
    this.#send(offerMessage(job, context, this.#deps.timings.jobLogLimitBytes));
    publishJob(this.#deps.bus, job);
  }

  cancel(ref: JobRef, reason: string): void {
    this.#send(cancelMessage(ref, reason, false));
  }

  get draining(): boolean {
    return this.#draining;
  }

  drain(): void {
    this.#draining = true;
    this.#send(create(ConnectResponseSchema, { kind: { case: 'drain', value: {} } }));
  }

  /** Drops offers the agent never answered; the reaper requeues them in the database. */
  expireOffers(now = Date.now()): void {
    for (const [leaseId, lease] of this.#leases) {
      if (!lease.accepted && now - lease.offeredAt > this.#deps.timings.offerTimeoutMs) {
        this.#leases.delete(leaseId);
        this.#unresponsive = true;
      }
    }
  }

  /**
   * Handles a batch of consecutive messages in one transaction (one commit for
   * many jobs' accepts, starts, results and log chunks). Acks and bus messages
   * go out only after the commit: nothing is acknowledged that was not stored.
   */
  async handle(batch: readonly ConnectRequest[]): Promise<void> {
    this.#unresponsive = false;
    const afterCommit: (() => void)[] = [];
    const run = async (db: Db) => {
      this.#batch = { db, afterCommit };
      try {
        await this.#handleBatch(batch);
      } finally {
        this.#batch = undefined;
      }
    };
    if (needsNoTransaction(batch)) await run(this.#deps.db);
    else await inTransaction(this.#deps.db, run);
    for (const effect of afterCommit) effect();
  }

  /** Another agent's job reference, even with the right lease id, never moves that job. */
  #fence(ref: JobRef | undefined): Fence {
    return { ...fenceOf(ref), agentId: this.id };
  }

  get #db(): Db {
    return this.#batch?.db ?? this.#deps.db;
  }

  #later(effect: () => void): void {
    if (this.#batch) this.#batch.afterCommit.push(effect);
    else effect();
  }

  /**
   * A batch's messages are applied by kind, one set-based statement per kind:
   * accepts and rejects, then starts, then results, then log chunks (of the
   * attempts that held a lease before the results), then the last heartbeat.
   * For any one job the agent sends its start before its chunks and its chunks
   * before its result, and all of it commits together, so each job's own order
   * is kept.
   */
  async #handleBatch(batch: readonly ConnectRequest[]): Promise<void> {
    const starts: JobStatus[] = [];
    const ends: JobStatus[] = [];
    const logs: LogChunk[] = [];
    /** Leases whose result came earlier in the batch: chunks after it are acked but not stored, as when it was applied first. */
    const endedBefore = new Set<string>();
    const late = new Set<LogChunk>();
    let heartbeat: readonly JobRef[] | undefined;
    const accepts: JobRef[] = [];
    const rejects: JobReject[] = [];
    for (const message of batch) {
      switch (message.kind.case) {
        case 'logChunk':
          logs.push(message.kind.value);
          break;
        case 'heartbeat':
          heartbeat = message.kind.value.running;
          break;
        case 'jobAccept':
          if (message.kind.value.job) accepts.push(message.kind.value.job);
          break;
        case 'jobReject':
          rejects.push(message.kind.value);
          break;
        case 'jobStatus': {
          const status = message.kind.value;
          if (!status.job) break;
          if (status.state === JobState.STARTED) starts.push(status);
          else if (terminalStates.has(status.state)) {
            ends.push(status);
            endedBefore.add(status.job.leaseId);
          } else this.#ack(status);
          break;
        }
        default:
          this.#deps.log('agent sent an unexpected message', { agentId: this.id, kind: message.kind.case });
      }
      if (message.kind.case === 'logChunk' && endedBefore.has(message.kind.value.job?.leaseId ?? '')) late.add(message.kind.value);
    }
    // A start whose result is in the same batch is stored with the result, by one statement.
    const ending = new Set(ends.map((status) => leaseOf(status)));
    const alone = starts.filter((status) => !ending.has(leaseOf(status)));
    const folded = new Map(starts.filter((status) => ending.has(leaseOf(status))).map((status) => [leaseOf(status), status]));
    // An accept whose start is in the batch is stored by the start's statement (alone, or folded into its result's),
    // which sets accepted_at. A result without a start (a job that failed before it started) does not store it.
    const implied = new Set(starts.map(leaseOf));
    const alsoAccepts = accepts.filter((ref) => !implied.has(ref.leaseId));
    // When more than one statement will lock jobs, all of them are locked first, in one statement (see lockJobs).
    const mayRetry = ends.some((status) => status.state !== JobState.SUCCEEDED && status.state !== JobState.CANCELLED);
    const lockingStatements = [alsoAccepts, alone, ends].filter((kind) => kind.length > 0).length;
    if (rejects.length > 0 || lockingStatements > 1 || mayRetry) {
      const refs = [...alsoAccepts, ...[...starts, ...ends, ...rejects].flatMap(({ job }) => (job ? [job] : []))];
      await lockJobs(this.#db, refs.map((ref) => this.#fence(ref).jobId));
    }
    if (alsoAccepts.length > 0) {
      // In this batch's transaction, not through the accept group: that one's connection would wait on this batch's locks.
      const outcomes = await acceptOffers(this.#db, alsoAccepts.map((ref) => this.#fence(ref)), this.#deps.timings.leaseTtlMs);
      alsoAccepts.forEach((ref, i) => this.#accepted(ref, outcomes[i]!));
    }
    for (const reject of rejects) await this.#reject(reject.job, reject.reason);
    await this.#started(alone);
    // Which attempts may write their log is decided before the results end their leases.
    const writers = new Set(this.#leases.keys());
    await this.#ended(ends, folded, writers);
    await this.#storeLogs(logs, (chunk) => writers.has(chunk.job?.leaseId ?? '') && !late.has(chunk));
    if (heartbeat) await this.#heartbeat(heartbeat, endedBefore);
  }

  /** `ended`: leases whose result this batch stored (the heartbeat may predate it): done, not stale. */
  async #heartbeat(running: readonly JobRef[], ended: ReadonlySet<string>): Promise<void> {
    const held = running.filter((ref) => this.#leases.has(ref.leaseId)).map((ref) => ref.leaseId);
    const renewed = await renewLeases(this.#db, this.id, held, this.#deps.timings.leaseTtlMs);
    // The bus may have lost the user's cancel; the store has it. The agent treats repeats as one.
    for (const job of renewed) if (job.cancel_requested) this.#later(() => this.#send(cancelMessage(refOf(job), 'cancelled by a user', false)));
    // An attempt the agent still runs whose lease ran out (a partition longer than the lease) must stop: its job moved on.
    const renewedIds = new Set(renewed.map((job) => job.lease_id));
    const unrenewed = running.filter((ref) => !renewedIds.has(ref.leaseId) && !ended.has(ref.leaseId));
    const live = await liveLeases(this.#db, this.id, unrenewed.map((ref) => storable(ref.leaseId)));
    for (const ref of unrenewed) if (!live.has(ref.leaseId)) this.#fencedOut(ref);
    this.#deps.heartbeats.record(this.id);
  }

  /** Whether an accept needs no more storing: it was taken, or its lease is gone (ended, or fenced out). */
  acceptStored(message: ConnectRequest): boolean {
    if (message.kind.case !== 'jobAccept') return true;
    const lease = this.#leases.get(message.kind.value.job?.leaseId ?? '');
    return !lease || lease.accepted;
  }

  /**
   * Stores an accept on its own, ahead of the batch queue: one that waited
   * behind a backlog could miss the offer deadline, and the job would be
   * offered (and started) a second time.
   */
  async acceptNow(message: ConnectRequest): Promise<boolean> {
    if (message.kind.case !== 'jobAccept') return false;
    this.#unresponsive = false;
    const ref = message.kind.value.job;
    if (ref) this.#accepted(ref, await this.#accepts.add(this.#fence(ref)));
    return true;
  }

  /** Accepts arriving while others are being stored go together, with one statement (outside any batch's transaction). */
  readonly #accepts = new GroupCommit<Fence, FenceOutcome>((fences) =>
    retryConflicts(() => acceptOffers(this.#deps.db, fences, this.#deps.timings.leaseTtlMs)),
  );

  #accepted(ref: JobRef, outcome: FenceOutcome): void {
    if (outcome === 'stale') {
      this.#leases.delete(ref.leaseId);
      this.#send(cancelMessage(ref, 'offer expired before it was accepted', true));
      return;
    }
    const lease = this.#leases.get(ref.leaseId);
    if (lease) lease.accepted = true;
    // The database is the judge: an accept it took counts even if this session had already given up on the offer.
    // A duplicate does not bring a lease back: its start and result may have been stored (and the lease ended) first.
    else if (outcome === 'applied') this.#leases.set(ref.leaseId, { ref, offeredAt: Date.now(), accepted: true });
  }

  async #reject(ref: JobRef | undefined, reason: string): Promise<void> {
    this.#deps.log('agent rejected an offer', { agentId: this.id, jobId: ref?.jobId, reason });
    if (ref) this.#leases.delete(ref.leaseId);
    if ((await rejectOffer(this.#db, this.#fence(ref))) === 'applied') this.#later(() => kickDispatch(this.#deps.bus));
  }

  #ack(status: JobStatus): void {
    const ack = create(ConnectResponseSchema, { kind: { case: 'statusAck', value: { job: status.job, state: status.state } } });
    this.#later(() => this.#send(ack));
  }

  async #started(statuses: readonly JobStatus[]): Promise<void> {
    if (statuses.length === 0) return;
    const reports = statuses.map((status) => ({ fence: this.#fence(status.job), at: startedAt(status) }));
    const outcomes = await markStartedMany(this.#db, reports, this.#deps.timings.leaseTtlMs);
    for (const [i, { outcome, job }] of outcomes.entries()) {
      const status = statuses[i]!;
      const ref = status.job!;
      this.#ack(status);
      if (outcome === 'stale') {
        this.#fencedOut(ref);
        continue;
      }
      const lease = this.#leases.get(ref.leaseId);
      if (lease) lease.accepted = true;
      if (outcome === 'applied' && job) {
        this.#later(() => publishJob(this.#deps.bus, job));
        this.#deps.metrics?.observeStarted(job);
      }
    }
  }

  /** Results, with the starts `folded` into them (by lease); a start found stale takes its attempt out of `writers`. */
  async #ended(statuses: readonly JobStatus[], folded: ReadonlyMap<string, JobStatus>, writers: Set<string>): Promise<void> {
    if (statuses.length === 0) return;
    const startOf = (status: JobStatus) => folded.get(leaseOf(status));
    const outcomes = await completeAttempts(
      this.#db,
      statuses.map((status) => ({
        fence: this.#fence(status.job),
        startedAt: startOf(status) ? startedAt(startOf(status)!) : undefined,
        result: {
          status: terminalStates.get(status.state)!,
          exitCode: status.exitCode,
          error: storable(status.error),
          output: status.output ? storableJson(plainJson(status.output)) : undefined,
          condition: status.condition,
          logTruncated: status.logTruncated,
          oomKilled: status.oomKilled,
          variablesSet: storableJson(status.variablesSet),
          finishedAt: status.at ? timestampDate(status.at) : undefined,
        },
      })),
    );
    for (const [i, { outcome, finished }] of outcomes.entries()) {
      const status = statuses[i]!;
      const start = startOf(status);
      if (start) {
        this.#ack(start);
        if (outcome === 'stale') {
          writers.delete(leaseOf(status));
          this.#fencedOut(start.job!);
        } else if (outcome === 'applied' && finished) this.#deps.metrics?.observeStarted(finished.job);
      }
      this.#ack(status);
      this.#leases.delete(status.job!.leaseId);
      if (outcome === 'applied' && finished) this.#later(() => this.#announce(finished));
    }
    this.#later(() => kickDispatch(this.#deps.bus));
  }

  #announce(finished: Finished): void {
    publishJob(this.#deps.bus, finished.job);
    if (finished.retried) this.#deps.metrics?.attemptsRetried.inc();
    else this.#deps.metrics?.jobsFinished.inc({ status: finished.job.status });
    this.#deps.log(finished.retried ? 'attempt failed; job queued for another attempt' : 'job finished', {
      jobId: finished.job.id,
      runId: finished.job.run_id,
      agentId: this.id,
      status: finished.job.status,
      attempt: finished.job.attempt,
    });
  }

  #fencedOut(ref: JobRef): void {
    this.#leases.delete(ref.leaseId);
    this.#later(() => this.#send(cancelMessage(ref, 'this attempt is no longer current', true)));
  }

  /** Only attempts this agent holds a lease for may write (`mayWrite`); a stale attempt's output is dropped, but acked. */
  async #storeLogs(chunks: readonly LogChunk[], mayWrite: (chunk: LogChunk) => boolean): Promise<void> {
    const rows: LogChunkRow[] = [];
    for (const chunk of chunks) {
      const ref = chunk.job;
      if (!ref || !mayWrite(chunk)) continue;
      const row = logRow(ref, chunk);
      rows.push(row);
      // Watchers get the chunks now if not on arrival (they drop repeats by offset); the ack waits for the commit.
      if (!this.#published.has(chunk)) publishLog(this.#deps.bus, row);
    }
    if (rows.length > 0) {
      this.#deps.metrics?.logBytes.inc(rows.reduce((sum, row) => sum + row.data.length, 0));
      await appendLogs(this.#db, rows);
    }
    // Cumulative ack per (job, stream): the end of the last chunk stored.
    const acked = new Map<string, LogChunk>();
    for (const chunk of chunks) acked.set(`${chunk.job?.leaseId}/${chunk.stream}`, chunk);
    for (const chunk of acked.values()) {
      const ack = create(ConnectResponseSchema, {
        kind: { case: 'logAck', value: { job: chunk.job, stream: chunk.stream, offset: chunk.offset + BigInt(chunk.data.length) } },
      });
      this.#later(() => this.#send(ack));
    }
  }
}

/**
 * The common batches whose statements stand alone, so BEGIN and COMMIT would
 * only add round trips: only accepts, only starts (with the accepts they
 * imply), each one statement; or a lone heartbeat (at most two, and none when
 * the agent holds no job).
 */
function needsNoTransaction(batch: readonly ConnectRequest[]): boolean {
  if (batch.length === 1 && batch[0]!.kind.case === 'heartbeat') return true;
  const started = new Set<string>();
  const accepted: string[] = [];
  for (const message of batch) {
    if (message.kind.case === 'jobStatus' && message.kind.value.state === JobState.STARTED) started.add(leaseOf(message.kind.value));
    else if (message.kind.case === 'jobAccept') accepted.push(message.kind.value.job?.leaseId ?? '');
    else return false;
  }
  return started.size === 0 || accepted.every((leaseId) => started.has(leaseId));
}

function logRow(ref: JobRef, chunk: LogChunk): LogChunkRow {
  return { jobId: ref.jobId, attempt: ref.attempt, stream: logStreamNumbers.get(chunk.stream) ?? 3, offset: Number(chunk.offset), data: chunk.data };
}

function leaseOf(status: JobStatus): string {
  return status.job?.leaseId ?? '';
}

function startedAt(status: JobStatus): Date {
  return status.at ? timestampDate(status.at) : new Date();
}
