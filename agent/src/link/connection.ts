import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import {
  AgentLinkService,
  AgentMode,
  ConnectRequestSchema,
  Executor,
  type ConnectRequest,
  type ConnectResponse,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';
import type { Runner } from '../runner.ts';
import { executorsFor, jobSpecOf } from './codec.ts';
import type { Terminals } from '../terminal/terminals.ts';

export const PROTOCOL_VERSION = 1;

export interface ConnectionOptions {
  readonly agentId: string;
  readonly name: string;
  readonly version: string;
  readonly mode: 'orchestrator' | 'remote-executor';
  readonly labels: Readonly<Record<string, string>>;
  readonly slots: number;
  /** Ceiling of the full-jitter reconnect backoff. */
  readonly reconnectMaxMs: number;
  /** host:port of each control plane; tried in turn. */
  readonly controlPlanes: readonly string[];
  /** Read at each connect, so a renewed certificate is used from the next stream on. */
  readonly tls: () => { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer };
  /** Called after each Welcome (e.g. to renew the certificate when due). */
  readonly onConnected?: (address: string) => void;
  readonly runner: Runner;
  /** Interactive terminals multiplexed on the stream. */
  readonly terminals?: Terminals;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
}

const definition = grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition;
const LinkClient = grpc.makeGenericClientConstructor(definition, 'AgentLinkService');

const BACKOFF_BASE_MS = 1_000;
/** A connection that lasted this long resets the backoff. */
const STABLE_MS = 30_000;

/**
 * Keeps one stream to a control plane open: reconnects with full-jitter
 * backoff, resends the outbox after each Welcome, heartbeats, and hands offers
 * and cancels to the runner.
 */
export class Connection {
  readonly #options: ConnectionOptions;
  #call: grpc.ClientDuplexStream<ConnectRequest, ConnectResponse> | undefined;
  #welcomed = false;
  #stopped = false;
  #failures = 0;
  #target = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  connectedOnce: Promise<void>;
  #markConnected!: () => void;

  constructor(options: ConnectionOptions) {
    this.#options = options;
    this.connectedOnce = new Promise((resolve) => (this.#markConnected = resolve));
  }

  get connected(): boolean {
    return this.#welcomed;
  }

  /** Writes now when the stream is up; otherwise the message is dropped (the outbox resends what matters). */
  send(message: ConnectRequest): void {
    if (this.#welcomed && this.#call) this.#call.write(message);
  }

  async run(): Promise<void> {
    while (!this.#stopped) {
      const address = this.#options.controlPlanes[this.#target % this.#options.controlPlanes.length]!;
      const openedAt = Date.now();
      const reason = await this.#session(address);
      if (this.#stopped) break;
      if (Date.now() - openedAt > STABLE_MS) this.#failures = 0;
      this.#failures += 1;
      this.#target += 1;
      const ceiling = Math.min(this.#options.reconnectMaxMs, BACKOFF_BASE_MS * 2 ** Math.min(this.#failures - 1, 10));
      const delay = Math.round(Math.random() * ceiling);
      this.#options.log('disconnected from control plane; reconnecting', { address, reason, retryInMs: delay });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#call?.cancel();
    this.#wake?.();
  }

  #session(address: string): Promise<string> {
    const { runner, log } = this.#options;
    const tls = this.#options.tls();
    const client = new LinkClient(address, grpc.credentials.createSsl(tls.ca, tls.key, tls.cert), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
    });
    return new Promise<string>((resolve) => {
      const call = (client as unknown as { connect(): grpc.ClientDuplexStream<ConnectRequest, ConnectResponse> }).connect();
      this.#call = call;
      let done = false;
      const finish = (reason: string) => {
        if (done) return;
        done = true;
        this.#welcomed = false;
        this.#call = undefined;
        this.#options.terminals?.closeAll(`the link to the control plane dropped: ${reason}`);
        clearInterval(this.#heartbeat);
        call.removeAllListeners();
        call.on('error', () => {});
        call.cancel();
        client.close();
        resolve(reason);
      };
      call.on('data', (message: ConnectResponse) => {
        try {
          this.#receive(call, message);
          if (message.kind.case === 'welcome') this.#options.onConnected?.(address);
        } catch (error) {
          log('could not handle a control-plane message', { error: String(error) });
        }
      });
      call.on('error', (error: grpc.ServiceError) => finish(error.details || error.message));
      call.on('end', () => finish('stream ended by the control plane'));
      call.write(
        create(ConnectRequestSchema, {
          kind: {
            case: 'hello',
            value: {
              agentId: this.#options.agentId,
              name: this.#options.name,
              version: this.#options.version,
              protocolVersion: PROTOCOL_VERSION,
              mode: this.#options.mode === 'orchestrator' ? AgentMode.ORCHESTRATOR : AgentMode.REMOTE_EXECUTOR,
              executors: [...executorsFor(runner.executorNames), ...(this.#options.terminals?.localEnabled ? [Executor.TERMINAL] : [])],
              labels: { ...this.#options.labels },
              slots: this.#options.slots,
              jobs: runner.held(),
            },
          },
        }),
      );
    });
  }

  #receive(call: grpc.ClientDuplexStream<ConnectRequest, ConnectResponse>, message: ConnectResponse): void {
    const { runner, log } = this.#options;
    if (this.#options.terminals?.receive(message)) return;
    switch (message.kind.case) {
      case 'welcome': {
        const welcome = message.kind.value;
        runner.maxChunkBytes = welcome.maxLogChunkBytes;
        runner.resume(welcome.resume);
        this.#welcomed = true;
        for (const entry of runner.outbox.pending()) call.write(entry.message);
        const beat = () =>
          call.write(create(ConnectRequestSchema, { kind: { case: 'heartbeat', value: { running: runner.running(), freeSlots: runner.freeSlots } } }));
        this.#heartbeat = setInterval(beat, welcome.heartbeatIntervalMs || 5_000);
        log('connected to control plane', { agentId: this.#options.agentId, resumed: welcome.resume.length, protocol: welcome.protocolVersion });
        this.#markConnected();
        return;
      }
      case 'jobOffer': {
        const ref = message.kind.value.job;
        if (!ref) return;
        const spec = jobSpecOf(ref, message.kind.value.spec, this.#options.agentId);
        if (typeof spec === 'string') {
          this.send(create(ConnectRequestSchema, { kind: { case: 'jobReject', value: { job: ref, reason: spec } } }));
          return;
        }
        runner.offer(ref, spec, Number(message.kind.value.spec?.logLimitBytes ?? 0n) || 10 * 1024 * 1024);
        return;
      }
      case 'cancelJob':
        if (message.kind.value.job) runner.cancel(message.kind.value.job, message.kind.value.reason, message.kind.value.stale);
        return;
      case 'statusAck':
        if (message.kind.value.job) runner.ackStatus(message.kind.value.job, message.kind.value.state);
        return;
      case 'logAck':
        if (message.kind.value.job) runner.ackLog(message.kind.value.job, message.kind.value.stream, message.kind.value.offset);
        return;
      case 'drain':
        runner.drain();
        log('control plane asked this agent to drain');
        return;
    }
  }
}
