import * as grpc from '@grpc/grpc-js';
import { create, fromBinary } from '@bufbuild/protobuf';
import {
  AgentLinkService,
  AgentMode,
  CancelJobSchema,
  ConnectResponseSchema,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';
import type { Bus } from '../bus/bus.ts';
import { subjects } from '../bus/bus.ts';
import { resumeAttempts } from '../queue/transitions.ts';
import { fenceOf } from '../wire/agent-messages.ts';
import { AgentSession, type SessionDeps } from './session.ts';

export interface LinkServerOptions extends SessionDeps {
  readonly port: number;
  readonly host: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  readonly onSessionsChanged: () => void;
}

const HELLO_TIMEOUT_MS = 10_000;
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
  readonly #server: grpc.Server;
  readonly sessions = new Map<string, AgentSession>();
  readonly #calls = new Set<grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>>();
  #boundPort = 0;

  constructor(options: LinkServerOptions) {
    this.#options = options;
    this.#server = new grpc.Server({
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
    });
    this.#server.addService(grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition, {
      connect: (call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>) => this.#connect(call),
    });
  }

  get port(): number {
    return this.#boundPort;
  }

  async start(): Promise<void> {
    const { ca, cert, key } = this.#options.tls;
    const credentials = grpc.ServerCredentials.createSsl(Buffer.from(ca), [{ private_key: Buffer.from(key), cert_chain: Buffer.from(cert) }], true);
    this.#boundPort = await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(`${this.#options.host}:${this.#options.port}`, credentials, (error, port) => (error ? reject(error) : resolve(port))),
    );
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
  }

  #connect(call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>): void {
    const { log } = this.#options;
    this.#calls.add(call);
    const fail = (code: grpc.status, details: string) => {
      log('agent refused', { peer: call.getPeer(), details });
      call.emit('error', { code, details });
    };
    const certificateName = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
    const queue: ConnectRequest[] = [];
    let session: AgentSession | undefined;
    let working = false;
    let closed = false;
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
            if (first.kind.value.agentId !== certificateName) {
              return fail(grpc.status.PERMISSION_DENIED, `Hello names agent ${first.kind.value.agentId} but the certificate names ${certificateName}`);
            }
            session = await this.#open(first.kind.value, call);
            continue;
          }
          const batch = queue.splice(0, MAX_BATCH);
          if (call.isPaused() && queue.length < HIGH_WATER / 2) call.resume();
          await session.handle(batch);
        }
      } catch (error) {
        log('agent stream failed', { agentId: session?.id, error: String(error) });
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane could not store the update; reconnect' });
      } finally {
        working = false;
      }
      if (queue.length > 0 && !closed) void drainQueue();
    };

    call.on('data', (message: ConnectRequest) => {
      queue.push(message);
      if (queue.length >= HIGH_WATER) call.pause();
      void drainQueue();
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
    const previous = this.sessions.get(hello.agentId);
    if (previous) previous.send(create(ConnectResponseSchema, { kind: { case: 'drain', value: {} } }));
    const session = new AgentSession(hello, this.#options, (message) => call.write(message));
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
          last_heartbeat_at: eb.ref('excluded.last_heartbeat_at'),
        })),
      )
      .execute();
    const unsubscribe = bus.subscribe(subjects.agentCancel(session.id), (data) => {
      const cancel = fromBinary(CancelJobSchema, data);
      if (cancel.job) session.cancel(cancel.job, cancel.reason);
    });
    sessionCleanup.set(session, unsubscribe);
    this.sessions.set(session.id, session);
    log('agent connected', { agentId: session.id, version: hello.version, slots: session.slots, resumed: decisions.size });
    this.#options.onSessionsChanged();
    return session;
  }

  async #close(session: AgentSession): Promise<void> {
    sessionCleanup.get(session)?.();
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.#options.log('agent disconnected', { agentId: session.id });
    await this.#options.db.updateTable('agents').set({ connected: false }).where('id', '=', session.id).execute().catch(() => {});
  }
}

const sessionCleanup = new WeakMap<AgentSession, () => void>();
