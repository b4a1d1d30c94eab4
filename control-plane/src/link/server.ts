import * as grpc from '@grpc/grpc-js';
import { create, fromBinary } from '@bufbuild/protobuf';
import {
  AgentLinkService,
  AgentMode,
  CancelJobSchema,
  ConnectResponseSchema,
  EnrollResponseSchema,
  EnrollmentService,
  RenewResponseSchema,
  type ConnectRequest,
  type ConnectResponse,
  type EnrollRequest,
  type EnrollResponse,
  type Hello,
  type RenewRequest,
  type RenewResponse,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition, isUndecodable } from '@cronium/proto/grpc';
import type { Bus } from '../bus/bus.ts';
import { subjects } from '../bus/bus.ts';
import { resumeAttempts } from '../queue/transitions.ts';
import { fenceOf } from '../wire/agent-messages.ts';
import { AgentSession, type SessionDeps } from './session.ts';
import { retryConflicts } from '../store/retry.ts';
import { linkServerCredentials, peerAgentId } from './credentials.ts';
import type { CertificateAuthority } from '../pki/ca.ts';
import { EnrollmentRefused, redeemJoinToken, type JoinTokenSigner } from '../enrollment/join-tokens.ts';
import type { TerminalChannel } from './terminal-channel.ts';
import { HeartbeatWriter } from './heartbeats.ts';

export interface LinkServerOptions extends Omit<SessionDeps, 'heartbeats'> {
  readonly port: number;
  readonly host: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  readonly ca: CertificateAuthority;
  readonly joinTokens: JoinTokenSigner;
  readonly agentCertDays: number;
  readonly onSessionsChanged: () => void;
  /** An agent's update could not be stored: what it sent (an accept, a start, a heartbeat) may be missing until it reconnects. */
  readonly onStoreFailed?: () => void;
  /** Interactive terminals riding on the agents' streams. */
  readonly terminals?: TerminalChannel;
}

const HELLO_TIMEOUT_MS = 10_000;
/** An accept not stored with a batch by then is stored on its own (at most a quarter of the offer timeout). */
const ACCEPT_PATIENCE_MS = 1_000;
/** How often the heartbeats heard are written, all agents in one statement (the lease TTL is tens of seconds). */
const HEARTBEAT_WRITE_MS = 1_000;
/**
 * Link protocol versions this control plane speaks. An agent one version
 * behind keeps working (the control plane talks down to it); others are
 * refused with a message that says which side to upgrade.
 */
export const LINK_PROTOCOL = { oldest: 1, newest: 1 } as const;

function protocolRefusal(version: number): string | undefined {
  const range = `${LINK_PROTOCOL.oldest} to ${LINK_PROTOCOL.newest}`;
  if (version < LINK_PROTOCOL.oldest) return `the agent speaks link protocol ${version}; this control plane speaks ${range}: upgrade the agent`;
  if (version > LINK_PROTOCOL.newest) return `the agent speaks link protocol ${version}, newer than this control plane's ${range}: upgrade the control plane first`;
  return undefined;
}
/** Messages handled per database round; log chunks in a batch become one insert. */
const MAX_BATCH = 256;
/** Pause reading from an agent when this many messages wait, so memory stays bounded. */
const HIGH_WATER = 2048;

const modeNames = new Map<AgentMode, string>([
  [AgentMode.ORCHESTRATOR, 'orchestrator'],
  [AgentMode.REMOTE_EXECUTOR, 'remote-executor'],
]);

/** The mTLS gRPC endpoint agents hold their one stream to. */
export class LinkServer {
  readonly #options: LinkServerOptions;
  readonly #sessionDeps: SessionDeps;
  readonly #heartbeats: HeartbeatWriter;
  readonly #server: grpc.Server;
  readonly sessions = new Map<string, AgentSession>();
  readonly #calls = new Set<grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>>();
  #boundPort = 0;
  readonly #callOf = new WeakMap<AgentSession, grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>>();

  constructor(options: LinkServerOptions) {
    this.#options = options;
    this.#heartbeats = new HeartbeatWriter(options.db, HEARTBEAT_WRITE_MS, (error) => options.log('heartbeat write failed', { error: String(error) }));
    this.#sessionDeps = { ...options, heartbeats: this.#heartbeats };
    this.#server = new grpc.Server({
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      // Channelz keeps per-connection trackers and counters nothing here reads: memory and CPU on every agent's stream.
      'grpc.enable_channelz': 0,
    });
    this.#server.addService(grpcServiceDefinition(AgentLinkService, { tolerateBadRequests: true }) as unknown as grpc.ServiceDefinition, {
      connect: (call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>) => this.#connect(call),
      renew: (call: grpc.ServerUnaryCall<RenewRequest, RenewResponse>, callback: grpc.sendUnaryData<RenewResponse>) =>
        void this.#renew(call, callback),
    });
    this.#server.addService(grpcServiceDefinition(EnrollmentService, { tolerateBadRequests: true }) as unknown as grpc.ServiceDefinition, {
      enroll: (call: grpc.ServerUnaryCall<EnrollRequest, EnrollResponse>, callback: grpc.sendUnaryData<EnrollResponse>) =>
        void this.#enroll(call, callback),
    });
  }

  get port(): number {
    return this.#boundPort;
  }

  async start(): Promise<void> {
    const credentials = linkServerCredentials(this.#options.tls);
    this.#boundPort = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(`${this.#options.host}:${this.#options.port}`, credentials, (error, port) => (error ? reject(error) : resolve(port))),
    );
    // The certificates reach the listener on the next turn (see credentials.ts).
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
  }

  async stop(): Promise<void> {
    for (const call of this.#calls) call.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, 2000);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.#heartbeats.stop();
  }

  #connect(call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>): void {
    const { log } = this.#options;
    this.#calls.add(call);
    const fail = (code: grpc.status, details: string) => {
      log('agent refused', { peer: call.getPeer(), details });
      call.emit('error', { code, details });
    };
    const certificateName = peerAgentId(call);
    const queue: ConnectRequest[] = [];
    let session: AgentSession | undefined;
    let working = false;
    let closed = false;
    let drainScheduled = false;
    const helloTimer = setTimeout(() => fail(grpc.status.DEADLINE_EXCEEDED, 'no Hello within 10 s'), HELLO_TIMEOUT_MS);

    const drainQueue = async () => {
      if (working || closed) return;
      working = true;
      try {
        while (queue.length > 0 && !closed) {
          if (!session) {
            const first = queue.shift()!;
            if (first.kind.case !== 'hello') return fail(grpc.status.FAILED_PRECONDITION, 'the first message must be Hello');
            clearTimeout(helloTimer);
            if (!certificateName) return fail(grpc.status.UNAUTHENTICATED, 'a client certificate issued by this control plane is required');
            if (first.kind.value.agentId !== certificateName) {
              return fail(grpc.status.PERMISSION_DENIED, `Hello names agent ${first.kind.value.agentId} but the certificate names ${certificateName}`);
            }
            const outdated = protocolRefusal(first.kind.value.protocolVersion);
            if (outdated) return fail(grpc.status.FAILED_PRECONDITION, outdated);
            const refusal = await this.#refusal(certificateName);
            if (refusal) return fail(grpc.status.PERMISSION_DENIED, refusal);
            session = await this.#open(first.kind.value, call);
            continue;
          }
          const batch = queue.splice(0, MAX_BATCH);
          if (call.isPaused() && queue.length < HIGH_WATER / 2) call.resume();
          const current = session;
          await retryConflicts(() => current.handle(batch));
        }
      } catch (error) {
        this.#options.onStoreFailed?.();
        log('agent stream failed', { agentId: session?.id, error: String(error) });
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane could not store the update; reconnect' });
      } finally {
        working = false;
      }
      if (queue.length > 0 && !closed) void drainQueue();
    };
    // Whatever arrived in one read is handled together: a start and its result go into one batch.
    const scheduleDrain = () => {
      if (drainScheduled) return;
      drainScheduled = true;
      setImmediate(() => {
        drainScheduled = false;
        void drainQueue();
      });
    };
    /**
     * An accept goes with the next batch, like any message: stored by its
     * start's statement when the start comes with it, else by one statement
     * for the batch's accepts, so the job's row has one writer at a time. One
     * still not stored after a short wait (a backlog, a slow batch) is stored
     * on its own, ahead of the queue, so that it never misses the offer
     * deadline: the job would be offered (and started) a second time.
     */
    const backUpAccept = (current: AgentSession, accept: ConnectRequest) => {
      const timer = setTimeout(() => {
        if (closed || current.acceptStored(accept)) return;
        current.acceptNow(accept).catch((error: unknown) => {
          this.#options.onStoreFailed?.();
          log('agent accept failed', { agentId: current.id, error: String(error) });
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane could not store the accept; reconnect' });
        });
      }, Math.min(ACCEPT_PATIENCE_MS, this.#options.timings.offerTimeoutMs / 4));
      timer.unref();
    };

    call.on('data', (message: ConnectRequest) => {
      if (isUndecodable(message)) return fail(grpc.status.INVALID_ARGUMENT, message.undecodable);
      if (session && this.#options.terminals?.receive(session.id, message)) return;
      if (session && message.kind.case === 'jobAccept') backUpAccept(session, message);
      if (session?.releaseSlot(message)) this.#options.onSessionsChanged();
      session?.publishOnArrival(message);
      queue.push(message);
      if (queue.length >= HIGH_WATER) call.pause();
      scheduleDrain();
    });
    const close = () => {
      if (closed) return;
      closed = true;
      clearTimeout(helloTimer);
      this.#calls.delete(call);
      if (session) void this.#close(session);
    };
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('error', close);
    call.on('close', close);
    call.on('cancelled', close);
  }

  async #open(hello: Hello, call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>): Promise<AgentSession> {
    const { db, bus, timings, log } = this.#options;
    // A new stream from the same agent replaces an old one the server has not seen die yet.
    this.#callOf.get(this.sessions.get(hello.agentId)!)?.end();
    const stored = await db.selectFrom('agents').select(['pinned_labels', 'draining']).where('id', '=', hello.agentId).executeTakeFirst();
    const session = new AgentSession(hello, this.#sessionDeps, (message) => call.write(message), stored?.pinned_labels ?? {});
    if (stored?.draining) session.drain();
    const decisions = await resumeAttempts(db, hello.agentId, hello.jobs.map(fenceOf), timings.leaseTtlMs);
    call.write(
      create(ConnectResponseSchema, {
        kind: {
          case: 'welcome',
          value: {
            heartbeatIntervalMs: timings.heartbeatIntervalMs,
            leaseTtlMs: timings.leaseTtlMs,
            maxLogChunkBytes: timings.maxLogChunkBytes,
            maxOffersInFlight: session.slots,
            protocolVersion: Math.min(hello.protocolVersion, LINK_PROTOCOL.newest),
            resume: hello.jobs.map((job) => ({ job, keep: decisions.get(job.leaseId) !== undefined })),
          },
        },
      }),
    );
    for (const job of decisions.values()) if (job) session.adopt(job);
    await db
      .insertInto('agents')
      .values({
        id: session.id,
        name: session.name,
        mode: modeNames.get(hello.mode) ?? 'orchestrator',
        labels: JSON.stringify(session.labels),
        executors: JSON.stringify(session.executors),
        slots: session.slots,
        version: hello.version,
        connected: true,
        stream_id: session.streamId,
        last_heartbeat_at: new Date(),
      })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          name: eb.ref('excluded.name'),
          mode: eb.ref('excluded.mode'),
          labels: eb.ref('excluded.labels'),
          executors: eb.ref('excluded.executors'),
          slots: eb.ref('excluded.slots'),
          version: eb.ref('excluded.version'),
          connected: true,
          stream_id: eb.ref('excluded.stream_id'),
          last_heartbeat_at: eb.ref('excluded.last_heartbeat_at'),
        })),
      )
      .execute();
    const unsubscribes = [
      bus.subscribe(subjects.agentCancel(session.id), (data) => {
        const cancel = fromBinary(CancelJobSchema, data);
        if (cancel.job) session.cancel(cancel.job, cancel.reason);
      }),
      bus.subscribe(subjects.agentControl(session.id), (data) => {
        const command = new TextDecoder().decode(data);
        if (command === 'drain') session.drain();
        if (command === 'revoke') call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'this agent was revoked' });
      }),
    ];
    sessionCleanup.set(session, () => unsubscribes.forEach((unsubscribe) => unsubscribe()));
    this.#callOf.set(session, call);
    this.#options.terminals?.attach(session, (message) => call.write(message));
    this.sessions.set(session.id, session);
    log('agent connected', { agentId: session.id, version: hello.version, slots: session.slots, resumed: decisions.size });
    this.#options.onSessionsChanged();
    return session;
  }

  /** Why an agent id may not connect, if it may not. */
  async #refusal(agentId: string): Promise<string | undefined> {
    const agent = await this.#options.db.selectFrom('agents').select(['revoked_at']).where('id', '=', agentId).executeTakeFirst();
    return agent?.revoked_at ? `agent ${agentId} was revoked` : undefined;
  }

  async #enroll(call: grpc.ServerUnaryCall<EnrollRequest, EnrollResponse>, callback: grpc.sendUnaryData<EnrollResponse>): Promise<void> {
    const { db, ca, joinTokens, log } = this.#options;
    if (isUndecodable(call.request)) return callback({ code: grpc.status.INVALID_ARGUMENT, details: call.request.undecodable });
    try {
      const { agentId, labels, name } = await redeemJoinToken(db, joinTokens, call.request.joinToken);
      const { cert, serial } = await ca.signAgentCsr(agentId, call.request.csrPem, this.#options.agentCertDays);
      await db
        .insertInto('agents')
        .values({
          id: agentId,
          name: call.request.name || name || agentId,
          mode: 'remote-executor',
          labels: JSON.stringify(labels),
          pinned_labels: JSON.stringify(labels),
          executors: JSON.stringify([]),
          slots: 0,
          version: '',
          certificate_serial: serial,
        })
        .execute();
      log('agent enrolled', { agentId, peer: call.getPeer() });
      callback(null, create(EnrollResponseSchema, { agentId, certificatePem: cert, caPem: ca.certPem }));
    } catch (error) {
      const refused = error instanceof EnrollmentRefused || /certificate signing request/.test(String(error));
      log('enrollment refused', { peer: call.getPeer(), reason: (error as Error).message });
      callback({ code: refused ? grpc.status.PERMISSION_DENIED : grpc.status.INTERNAL, details: refused ? (error as Error).message : 'enrollment failed' });
    }
  }

  async #renew(call: grpc.ServerUnaryCall<RenewRequest, RenewResponse>, callback: grpc.sendUnaryData<RenewResponse>): Promise<void> {
    const agentId = peerAgentId(call);
    if (!agentId) return callback({ code: grpc.status.UNAUTHENTICATED, details: 'a client certificate is required' });
    if (isUndecodable(call.request)) return callback({ code: grpc.status.INVALID_ARGUMENT, details: call.request.undecodable });
    const refusal = await this.#refusal(agentId);
    if (refusal) return callback({ code: grpc.status.PERMISSION_DENIED, details: refusal });
    try {
      const { cert, serial } = await this.#options.ca.signAgentCsr(agentId, call.request.csrPem, this.#options.agentCertDays);
      await this.#options.db.updateTable('agents').set({ certificate_serial: serial }).where('id', '=', agentId).execute();
      this.#options.log('agent certificate renewed', { agentId });
      callback(null, create(RenewResponseSchema, { certificatePem: cert }));
    } catch (error) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: (error as Error).message });
    }
  }

  async #close(session: AgentSession): Promise<void> {
    sessionCleanup.get(session)?.();
    this.#options.terminals?.detach(session);
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.#options.log('agent disconnected', { agentId: session.id });
    await this.#options.db.updateTable('agents').set({ connected: false }).where('id', '=', session.id).where('stream_id', '=', session.streamId).execute().catch(() => {});
  }
}

const sessionCleanup = new WeakMap<AgentSession, () => void>();
