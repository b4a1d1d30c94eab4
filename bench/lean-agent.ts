// A lean load-generator agent: a real agent-link client (mutual TLS, grpc-js,
// the cronium.agent.v1 proto) that runs no executor. It answers each offer at
// once with JobAccept, JobStatus STARTED and JobStatus SUCCEEDED (each status
// with an `at` timestamp), keeps every status until the control plane
// acknowledges it (the outbox rule of agent/src/runner.ts), heartbeats at the
// interval the Welcome asks for, never takes more jobs than its slots, drops
// an attempt the control plane fences out (CancelJob stale), and reopens a
// stream the control plane ends (Hello with the attempts it holds, then the
// unacknowledged statuses again), as agent/src/link/connection.ts does.
//
// It is used in two ways: `LeanAgent` in this process, or `LeanFleet`, which
// forks this file as a child process hosting several agents, so that the load
// generator does not share an event loop with the benchmark's own clock.
import { fork, type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { TimestampSchema, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  AgentLinkService,
  AgentMode,
  ConnectRequestSchema,
  Executor,
  JobState,
  type ConnectRequest,
  type ConnectResponse,
  type JobRef,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';
import { nowMs } from './lib/stats.ts';

const definition = grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition;
const LinkClient = grpc.makeGenericClientConstructor(definition, 'AgentLinkService');

export interface LeanAgentOptions {
  /** host:port of the control plane's agent link. */
  readonly address: string;
  readonly agentId: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly slots: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Keep a per-job timing record (for latency benchmarks). */
  readonly record: boolean;
  /** How long each job "runs" between STARTED and SUCCEEDED (0: at once, in the same turn). */
  readonly holdMs?: number;
}

/** Per-job times on this machine's wall clock, in epoch milliseconds with sub-millisecond resolution. */
export interface JobRecord {
  readonly jobId: string;
  readonly agentId: string;
  readonly offerAt: number;
  readonly startedSentAt: number;
  startedAckAt: number;
  terminalAckAt: number;
}

export interface LeanAgentStats {
  readonly agentId: string;
  offers: number;
  rejects: number;
  terminalSent: number;
  startedAcked: number;
  terminalAcked: number;
  staleCancels: number;
  heartbeats: number;
  /** Streams reopened after the control plane ended one. */
  reconnects: number;
  maxExecuting: number;
  firstOfferAt: number;
  lastTerminalAckAt: number;
  /** Statuses still waiting for their ack. */
  unacked: number;
  lastDisconnect?: string;
}

function timestampAt(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6));
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos });
}

export class LeanAgent {
  readonly options: LeanAgentOptions;
  readonly stats: LeanAgentStats;
  readonly records = new Map<string, JobRecord>();
  /** Unacknowledged statuses by `leaseId/state`. */
  readonly #outbox = new Map<string, ConnectRequest>();
  /** Lease id → job id of attempts not yet finished here. */
  readonly #executing = new Map<string, string>();
  #client: grpc.Client | undefined;
  #call: grpc.ClientDuplexStream<ConnectRequest, ConnectResponse> | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #stopping = false;
  /** Set when the first connection fails (later drops are reconnected and counted in stats.reconnects). */
  failure: string | undefined;

  constructor(options: LeanAgentOptions) {
    this.options = options;
    this.stats = {
      agentId: options.agentId,
      offers: 0,
      rejects: 0,
      terminalSent: 0,
      startedAcked: 0,
      terminalAcked: 0,
      staleCancels: 0,
      heartbeats: 0,
      reconnects: 0,
      maxExecuting: 0,
      firstOfferAt: 0,
      lastTerminalAckAt: 0,
      unacked: 0,
    };
  }

  /**
   * Connects and resolves after the first Welcome (rejects if that fails).
   * Afterwards, a stream the control plane ends is reopened like the real
   * agent does (full-jitter delay up to 1 s): Hello lists the attempts still
   * held, and unacknowledged statuses are resent after the Welcome.
   */
  start(): Promise<void> {
    const { options } = this;
    const credentials = grpc.credentials.createSsl(Buffer.from(options.ca), Buffer.from(options.key), Buffer.from(options.cert));
    this.#client = new LinkClient(options.address, credentials, {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
    });
    return new Promise<void>((resolve, reject) => this.#open(resolve, reject));
  }

  #open(onWelcome: () => void, onFirstFailure?: (error: Error) => void): void {
    const { options } = this;
    const call = (this.#client as unknown as { connect(): grpc.ClientDuplexStream<ConnectRequest, ConnectResponse> }).connect();
    this.#call = call;
    let welcomed = false;
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      clearInterval(this.#heartbeat);
      call.removeAllListeners();
      call.on('error', () => {});
      if (this.#stopping) return;
      if (!welcomed && onFirstFailure) {
        this.failure = reason;
        onFirstFailure(new Error(`lean agent ${options.agentId}: ${reason}`));
        return;
      }
      this.stats.reconnects++;
      this.lastDisconnect = reason;
      setTimeout(() => {
        if (!this.#stopping) this.#open(() => {});
      }, Math.random() * 1_000);
    };
    call.on('error', (error: grpc.ServiceError) => end(error.details || error.message));
    call.on('end', () => end('stream ended by the control plane'));
    call.on('data', (message: ConnectResponse) => {
      if (message.kind.case === 'welcome') {
        welcomed = true;
        const welcome = message.kind.value;
        for (const decision of welcome.resume) if (decision.job && !decision.keep) this.#drop(decision.job.leaseId);
        this.#heartbeat = setInterval(() => this.#beat(), welcome.heartbeatIntervalMs || 5_000);
        for (const pending of this.#outbox.values()) call.write(pending);
        onWelcome();
        return;
      }
      this.#receive(message);
    });
    call.write(
      create(ConnectRequestSchema, {
        kind: {
          case: 'hello',
          value: {
            agentId: options.agentId,
            name: options.agentId,
            version: 'bench-lean-agent',
            protocolVersion: 1,
            mode: AgentMode.REMOTE_EXECUTOR,
            executors: [Executor.DOCKER, Executor.HTTP],
            labels: { ...options.labels },
            slots: options.slots,
            // Attempts running here or holding unacknowledged statuses.
            jobs: [...this.#refs.values()],
          },
        },
      }),
    );
  }

  /** Forgets an attempt the control plane fenced out: no more statuses for it. */
  #drop(leaseId: string): void {
    this.#executing.delete(leaseId);
    this.#refs.delete(leaseId);
    for (const key of [...this.#outbox.keys()]) if (key.startsWith(`${leaseId}/`)) this.#outbox.delete(key);
    this.stats.unacked = this.#outbox.size;
  }

  /** Why the stream last ended, when it was reopened. */
  lastDisconnect: string | undefined;

  stop(): void {
    this.#stopping = true;
    clearInterval(this.#heartbeat);
    this.#call?.end();
    this.#call?.cancel();
    this.#client?.close();
  }

  #send(message: ConnectRequest): void {
    this.#call?.write(message);
  }

  #beat(): void {
    this.stats.heartbeats++;
    this.#send(
      create(ConnectRequestSchema, {
        kind: { case: 'heartbeat', value: { running: this.#runningRefs(), freeSlots: Math.max(0, this.options.slots - this.#executing.size) } },
      }),
    );
  }

  readonly #refs = new Map<string, JobRef>();

  #runningRefs(): JobRef[] {
    return [...this.#executing.keys()].map((leaseId) => this.#refs.get(leaseId)!).filter(Boolean);
  }

  #status(ref: JobRef, state: JobState, at: number): void {
    const message = create(ConnectRequestSchema, {
      kind: { case: 'jobStatus', value: { job: ref, state, at: timestampAt(at), exitCode: 0 } },
    });
    this.#outbox.set(`${ref.leaseId}/${state}`, message);
    this.stats.unacked = this.#outbox.size;
    this.#send(message);
  }

  #finish(ref: JobRef): void {
    if (!this.#executing.has(ref.leaseId)) return;
    this.#executing.delete(ref.leaseId);
    this.#status(ref, JobState.SUCCEEDED, nowMs());
    this.stats.terminalSent++;
  }

  #receive(message: ConnectResponse): void {
    const stats = this.stats;
    switch (message.kind.case) {
      case 'jobOffer': {
        const offerAt = nowMs();
        const ref = message.kind.value.job;
        if (!ref) return;
        stats.offers++;
        if (stats.firstOfferAt === 0) stats.firstOfferAt = offerAt;
        if (this.#executing.size >= this.options.slots) {
          stats.rejects++;
          this.#send(create(ConnectRequestSchema, { kind: { case: 'jobReject', value: { job: ref, reason: 'no free slot' } } }));
          return;
        }
        this.#executing.set(ref.leaseId, ref.jobId);
        this.#refs.set(ref.leaseId, ref);
        stats.maxExecuting = Math.max(stats.maxExecuting, this.#executing.size);
        this.#send(create(ConnectRequestSchema, { kind: { case: 'jobAccept', value: { job: ref } } }));
        const startedAt = nowMs();
        this.#status(ref, JobState.STARTED, startedAt);
        if (this.options.record) {
          this.records.set(ref.leaseId, { jobId: ref.jobId, agentId: this.options.agentId, offerAt, startedSentAt: startedAt, startedAckAt: 0, terminalAckAt: 0 });
        }
        const hold = this.options.holdMs ?? 0;
        if (hold > 0) setTimeout(() => this.#finish(ref), hold);
        else this.#finish(ref);
        return;
      }
      case 'statusAck': {
        const { job, state } = message.kind.value;
        if (!job) return;
        const at = nowMs();
        if (!this.#outbox.delete(`${job.leaseId}/${state}`)) return;
        stats.unacked = this.#outbox.size;
        const record = this.records.get(job.leaseId);
        if (state === JobState.STARTED) {
          stats.startedAcked++;
          if (record) record.startedAckAt = at;
        } else {
          stats.terminalAcked++;
          stats.lastTerminalAckAt = at;
          this.#refs.delete(job.leaseId);
          if (record) record.terminalAckAt = at;
        }
        return;
      }
      case 'cancelJob': {
        const { job, stale } = message.kind.value;
        if (!job) return;
        this.#executing.delete(job.leaseId);
        if (stale) {
          stats.staleCancels++;
          this.#drop(job.leaseId);
        } else {
          this.#status(job, JobState.CANCELLED, nowMs());
        }
        return;
      }
      default:
        return;
    }
  }
}

// ---------------------------------------------------------------------------
// A fleet of lean agents in a child process.

export interface FleetAgent {
  readonly agentId: string;
  readonly cert: string;
  readonly key: string;
}

export interface FleetOptions {
  readonly address: string;
  readonly ca: string;
  readonly agents: readonly FleetAgent[];
  readonly slots: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly record: boolean;
  readonly holdMs?: number;
  /** Connect this many agents at a time (default: all at once). */
  readonly connectConcurrency?: number;
  /** Resolve start() even if some agents could not connect (default: throw). */
  readonly tolerateFailures?: boolean;
  /** Start no new connection after this many milliseconds (the rest are left out, not counted as failures). */
  readonly connectWithinMs?: number;
}

type ParentMessage = { type: 'start'; options: FleetOptions } | { type: 'stats' } | { type: 'records' } | { type: 'stop' };
type ChildMessage =
  | { type: 'ready'; connected: number; failed: number; errors: string[] }
  | { type: 'error'; error: string }
  | { type: 'stats'; stats: LeanAgentStats[]; failures: string[] }
  | { type: 'records'; records: JobRecord[] };

/** Parent side: forks this file and drives the agents it hosts. */
export class LeanFleet {
  readonly #child: ChildProcess;
  readonly #waiting: ((message: ChildMessage) => void)[] = [];
  /** Agents that connected (got their Welcome). */
  connected = 0;
  failed = 0;
  errors: string[] = [];

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message: ChildMessage) => this.#waiting.shift()?.(message));
  }

  get pid(): number {
    return this.#child.pid!;
  }

  /** `onSpawned` gets the child's pid before its agents connect (to meter it while they do). */
  static async start(options: FleetOptions, onSpawned?: (pid: number) => void): Promise<LeanFleet> {
    const child = fork(new URL(import.meta.url).pathname, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    const fleet = new LeanFleet(child);
    onSpawned?.(child.pid!);
    const answer = await fleet.#ask({ type: 'start', options });
    if (answer.type === 'error') {
      await fleet.stop();
      throw new Error(answer.error);
    }
    if (answer.type === 'ready') {
      fleet.connected = answer.connected;
      fleet.failed = answer.failed;
      fleet.errors = answer.errors;
    }
    return fleet;
  }

  #ask(message: ParentMessage): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`lean agent process exited with ${code}`));
      this.#child.once('exit', onExit);
      this.#waiting.push((answer) => {
        this.#child.off('exit', onExit);
        resolve(answer);
      });
      this.#child.send(message);
    });
  }

  async stats(): Promise<{ stats: LeanAgentStats[]; failures: string[] }> {
    const answer = await this.#ask({ type: 'stats' });
    if (answer.type !== 'stats') throw new Error(`unexpected answer ${answer.type}`);
    return answer;
  }

  async records(): Promise<JobRecord[]> {
    const answer = await this.#ask({ type: 'records' });
    if (answer.type !== 'records') throw new Error(`unexpected answer ${answer.type}`);
    return answer.records;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.send({ type: 'stop' } satisfies ParentMessage);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Child side. */
function serveFleet(): void {
  let agents: LeanAgent[] = [];
  const reply = (message: ChildMessage) => process.send!(message);
  process.on('message', async (message: ParentMessage) => {
    switch (message.type) {
      case 'start': {
        const o = message.options;
        agents = o.agents.map(
          (a) =>
            new LeanAgent({
              address: o.address,
              agentId: a.agentId,
              ca: o.ca,
              cert: a.cert,
              key: a.key,
              slots: o.slots,
              labels: o.labels,
              record: o.record,
              holdMs: o.holdMs,
            }),
        );
        const errors: string[] = [];
        let connected = 0;
        let next = 0;
        const deadline = performance.now() + (o.connectWithinMs ?? Infinity);
        const worker = async () => {
          while (next < agents.length && performance.now() < deadline) {
            const agent = agents[next++]!;
            try {
              await agent.start();
              connected++;
            } catch (error) {
              errors.push(String(error));
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(agents.length, o.connectConcurrency ?? agents.length) }, worker));
        agents = agents.slice(0, next);
        if (errors.length > 0 && !o.tolerateFailures) reply({ type: 'error', error: `${errors.length} agents could not connect: ${errors.slice(0, 3).join('; ')}` });
        else reply({ type: 'ready', connected, failed: errors.length, errors: errors.slice(0, 5) });
        return;
      }
      case 'stats':
        reply({
          type: 'stats',
          stats: agents.map((a) => ({ ...a.stats, lastDisconnect: a.lastDisconnect })),
          failures: agents.flatMap((a) => (a.failure ? [`${a.options.agentId}: ${a.failure}`] : [])),
        });
        return;
      case 'records':
        reply({ type: 'records', records: agents.flatMap((a) => [...a.records.values()]) });
        return;
      case 'stop':
        for (const agent of agents) agent.stop();
        setTimeout(() => process.exit(0), 200);
        return;
    }
  });
  process.on('disconnect', () => process.exit(0));
}

if (import.meta.main && process.send) serveFleet();
