// Starts real Cronium processes (control plane, agent) for end-to-end tests and
// talks to them through the public API the way an integration would.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createRequire } from 'node:module';
import { CONTROL_PLANE_NODE_FLAGS } from '../control-plane/src/node-flags.ts';
import { AGENT_NODE_FLAGS } from '../agent/src/node-flags.ts';

export const root = resolve(import.meta.dirname, '..');
export const TEST_IMAGE = process.env.CRONIUM_TEST_BASE_IMAGE || 'cronium-test/base:bookworm';
export const ADMIN_TOKEN = 'test-admin-token';

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/** A fresh Postgres database for one test file; dropped by the returned cleanup. */
export async function freshDatabase(prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  return {
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    async drop() {
      const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

export interface StackOptions {
  /** Postgres URL; embedded PGlite when absent. */
  readonly databaseUrl?: string;
  readonly natsUrl?: string;
  readonly env?: Record<string, string>;
  readonly agentEnv?: Record<string, string>;
  readonly agentArgs?: readonly string[];
}

/** A control plane and its orchestrator agent as separate processes, with their logs in the data dir. */
export class Stack {
  readonly dataDir = mkdtempSync(join(tmpdir(), 'cronium-e2e-'));
  readonly options: StackOptions;
  httpPort = 0;
  grpcPort = 0;
  agentPort = 0;
  controlPlane?: ChildProcess;
  agent?: ChildProcess;

  constructor(options: StackOptions = {}) {
    this.options = options;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  async start(): Promise<this> {
    this.httpPort = await freePort();
    this.grpcPort = await freePort();
    this.agentPort = await freePort();
    await this.startControlPlane();
    await this.startAgent();
    await this.waitForAgent();
    return this;
  }

  controlPlaneEnv(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      CRONIUM_DATA_DIR: this.dataDir,
      CRONIUM_HTTP_PORT: String(this.httpPort),
      CRONIUM_GRPC_PORT: String(this.grpcPort),
      CRONIUM_AGENT_PORT: String(this.agentPort),
      CRONIUM_ADMIN_TOKEN: ADMIN_TOKEN,
      CRONIUM_DATABASE_URL: this.options.databaseUrl ?? '',
      CRONIUM_NATS_URL: this.options.natsUrl ?? '',
      CRONIUM_LEASE_TTL_MS: '10000',
      CRONIUM_HEARTBEAT_MS: '1000',
      CRONIUM_RESTART_GRACE_MS: '15000',
      // Tests poll hard with one token; the limit has its own test.
      CRONIUM_API_RATE: '0',
      ...this.options.env,
    };
  }

  async startControlPlane(): Promise<void> {
    this.controlPlane = spawn(process.execPath, [...CONTROL_PLANE_NODE_FLAGS, join(root, 'control-plane/src/main.ts')], {
      env: this.controlPlaneEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logFile = createWriteStream(join(this.dataDir, 'control-plane.log'), { flags: 'a' });
    this.controlPlane.stdout!.pipe(logFile);
    this.controlPlane.stderr!.pipe(logFile);
    await this.waitForApi();
  }

  async startAgent(): Promise<void> {
    this.agent = spawn(
      process.execPath,
      [
        ...AGENT_NODE_FLAGS,
        join(root, 'agent/src/main.ts'),
        '--control-plane',
        `localhost:${this.agentPort}`,
        '--data-dir',
        join(this.dataDir, 'agents', 'local-orchestrator'),
        ...(this.options.agentArgs ?? []),
      ],
      {
        env: {
          ...process.env,
          CRONIUM_IMAGE_BASH: TEST_IMAGE,
          CRONIUM_IMAGE_PYTHON: TEST_IMAGE,
          CRONIUM_IMAGE_NODE: TEST_IMAGE,
          CRONIUM_AGENT_STOP_GRACE_SECONDS: '2',
          // Below the control plane's 15 s restart grace, so a restart never outlasts an agent's backoff.
          CRONIUM_AGENT_RECONNECT_MAX_SECONDS: '4',
          ...this.options.agentEnv,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const logFile = createWriteStream(join(this.dataDir, 'agent.log'), { flags: 'a' });
    this.agent.stdout!.pipe(logFile);
    this.agent.stderr!.pipe(logFile);
  }

  async waitForApi(timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.controlPlane?.exitCode !== null && this.controlPlane?.exitCode !== undefined) {
        throw new Error(`control plane exited with ${this.controlPlane.exitCode}; log in ${this.dataDir}`);
      }
      try {
        const res = await fetch(`${this.baseUrl}/api/cronium.api.v1.EventService/ListEvents`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
          body: '{}',
        });
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
    throw new Error(`control plane API did not come up; log in ${this.dataDir}`);
  }

  async waitForAgent(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = (() => {
        try {
          return readFileSync(join(this.dataDir, 'agent.log'), 'utf8');
        } catch {
          return '';
        }
      })();
      const connects = text.split('\n').filter((line) => line.includes('connected to control plane')).length;
      if (connects > this.#agentConnects) {
        this.#agentConnects = connects;
        return;
      }
      await sleep(100);
    }
    throw new Error(`agent did not connect; logs in ${this.dataDir}`);
  }

  #agentConnects = 0;

  /** kill -9 of the control plane. */
  async killControlPlane(): Promise<void> {
    const child = this.controlPlane;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await Promise.all(this.remoteAgents.map((agent) => agent.stop()));
    for (const child of [this.agent, this.controlPlane]) {
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
    }
    if (!process.env.CRONIUM_KEEP_TEST_DATA) rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A Connect unary call with JSON, exactly as curl would make it. */
  async call<T = any>(method: string, body: unknown, token: string | null = ADMIN_TOKEN): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.baseUrl}/api/${method}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as T };
  }

  /** Like call, but throws unless the call succeeded. */
  async ok<T = any>(method: string, body: unknown): Promise<T> {
    const { status, body: result } = await this.call<T>(method, body);
    if (status !== 200) throw new Error(`${method} answered ${status}: ${JSON.stringify(result)}`);
    return result;
  }

  async joinToken(labels: Record<string, string> = {}, ttlSeconds = 600): Promise<string> {
    return (await this.ok('cronium.api.v1.AgentService/CreateJoinToken', { labels, ttlSeconds })).token;
  }

  /** A remote agent enrolled with a fresh join token, started and connected. */
  async remoteAgent(options: { labels?: Record<string, string>; pinned?: Record<string, string>; slots?: number; env?: Record<string, string> } = {}): Promise<RemoteAgent> {
    const token = await this.joinToken(options.pinned ?? {});
    const labels = Object.entries(options.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
    const args = ['--join-token', token, '--slots', String(options.slots ?? 2), ...(labels ? ['--labels', labels] : [])];
    const agent = new RemoteAgent(`localhost:${this.agentPort}`, args, options.env).start();
    this.remoteAgents.push(agent);
    await agent.connected();
    return agent;
  }

  readonly remoteAgents: RemoteAgent[] = [];

  async agents(): Promise<any[]> {
    return (await this.ok('cronium.api.v1.AgentService/ListAgents', {})).agents;
  }

  async createEvent(event: Record<string, unknown>): Promise<any> {
    return (await this.ok('cronium.api.v1.EventService/CreateEvent', { event })).event;
  }

  async runEvent(id: string, input?: unknown): Promise<any> {
    return (await this.ok('cronium.api.v1.EventService/RunEvent', { id, input })).run;
  }

  async getJob(id: string): Promise<any> {
    return (await this.ok('cronium.api.v1.JobService/GetJob', { id })).job;
  }

  async waitForJob(id: string, predicate: (job: any) => boolean, timeoutMs = 60_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let job: any;
    while (Date.now() < deadline) {
      job = await this.getJob(id);
      if (predicate(job)) return job;
      await sleep(100);
    }
    throw new Error(`job ${id} did not reach the expected state; last: ${JSON.stringify(job)}`);
  }

  async waitForTerminal(id: string, timeoutMs = 60_000): Promise<any> {
    return this.waitForJob(id, (job) => ['JOB_STATUS_SUCCEEDED', 'JOB_STATUS_FAILED', 'JOB_STATUS_TIMED_OUT', 'JOB_STATUS_CANCELLED'].includes(job.status), timeoutMs);
  }

  /** Follows WatchJob live until `until` returns true for a message; resolves with the messages so far. */
  async watchJobUntil(id: string, until: (message: any) => boolean, timeoutMs = 30_000): Promise<any[]> {
    const payload = Buffer.from(JSON.stringify({ id }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), payload]);
    frame.writeUInt32BE(payload.length, 1);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    const messages: any[] = [];
    try {
      const res = await fetch(`${this.baseUrl}/api/cronium.api.v1.JobService/WatchJob`, {
        method: 'POST',
        headers: { 'content-type': 'application/connect+json', authorization: `Bearer ${ADMIN_TOKEN}` },
        body: frame,
        signal: abort.signal,
      });
      let buffer = Buffer.alloc(0);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer = Buffer.concat([buffer, chunk]);
        while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
          const length = buffer.readUInt32BE(1);
          const flags = buffer[0]!;
          const body = JSON.parse(buffer.subarray(5, 5 + length).toString());
          buffer = buffer.subarray(5 + length);
          if (flags & 0x02) return messages;
          messages.push(body);
          if (until(body)) return messages;
        }
      }
      return messages;
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }

  /** WatchJob over the Connect protocol's JSON streaming framing, as curl would send it. */
  async watchJob(id: string, token: string = ADMIN_TOKEN): Promise<any[]> {
    const payload = Buffer.from(JSON.stringify({ id }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), payload]);
    frame.writeUInt32BE(payload.length, 1);
    const res = await fetch(`${this.baseUrl}/api/cronium.api.v1.JobService/WatchJob`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+json', authorization: `Bearer ${token}` },
      body: frame,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    const messages: any[] = [];
    for (let at = 0; at + 5 <= bytes.length; ) {
      const flags = bytes[at]!;
      const length = bytes.readUInt32BE(at + 1);
      const body = JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString());
      if (flags & 0x02) {
        if (body.error) throw new Error(`WatchJob ended with ${JSON.stringify(body.error)}`);
      } else messages.push(body);
      at += 5 + length;
    }
    return messages;
  }
}

/** The agent program: the built single binary when CRONIUM_AGENT_BINARY names it, else the source. */
export function agentCommand(): { command: string; args: string[] } {
  const binary = process.env.CRONIUM_AGENT_BINARY;
  return binary ? { command: binary, args: [] } : { command: process.execPath, args: [join(root, 'agent/src/main.ts')] };
}

/** A remote-executor agent process with its own data folder. */
export class RemoteAgent {
  readonly dataDir: string;
  readonly logPath: string;
  process?: ChildProcess;
  readonly controlPlane: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  #connects = 0;

  constructor(controlPlane: string, args: readonly string[], env: Record<string, string> = {}) {
    this.controlPlane = controlPlane;
    this.args = args;
    this.env = env;
    this.dataDir = mkdtempSync(join(tmpdir(), 'cronium-agent-'));
    this.logPath = join(this.dataDir, 'agent.log');
  }

  start(): this {
    const { command, args } = agentCommand();
    this.process = spawn(
      command,
      [...args, '--mode', 'remote-executor', '--control-plane', this.controlPlane, '--data-dir', this.dataDir, ...this.args],
      {
        env: {
          PATH: process.env.PATH ?? '',
          CRONIUM_IMAGE_BASH: TEST_IMAGE,
          CRONIUM_IMAGE_PYTHON: TEST_IMAGE,
          CRONIUM_IMAGE_NODE: TEST_IMAGE,
          CRONIUM_AGENT_STOP_GRACE_SECONDS: '2',
          // Below the control plane's 15 s restart grace, so a restart never outlasts an agent's backoff.
          CRONIUM_AGENT_RECONNECT_MAX_SECONDS: '4',
          ...this.env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const log = createWriteStream(this.logPath, { flags: 'a' });
    this.process.stdout!.pipe(log, { end: false });
    this.process.stderr!.pipe(log, { end: false });
    // Resolves once the process is gone and everything it wrote is in the log file.
    this.#done = new Promise((resolve) => this.process!.once('close', () => log.end(resolve)));
    return this;
  }

  log(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Waits for the next successful connection (or for the process to exit, which throws). */
  async connected(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const connects = this.log().split('\n').filter((line) => line.includes('connected to control plane')).length;
      if (connects > this.#connects) {
        this.#connects = connects;
        return;
      }
      if (this.process?.exitCode !== null && this.process?.exitCode !== undefined) {
        throw new Error(`agent exited with ${this.process.exitCode}: ${this.log().slice(-2000)}`);
      }
      await sleep(100);
    }
    throw new Error(`agent did not connect: ${this.log().slice(-2000)}`);
  }

  #done: Promise<void> = Promise.resolve();

  /** Resolves with the exit code, once the log holds all the process wrote. */
  async exited(): Promise<number | null> {
    await this.#done;
    return this.process!.exitCode;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = this.exited();
    child.kill(signal);
    await exited;
  }

  async stop(): Promise<void> {
    const timer = setTimeout(() => this.process?.kill('SIGKILL'), 15_000);
    await this.kill('SIGTERM');
    clearTimeout(timer);
    if (!process.env.CRONIUM_KEEP_TEST_DATA) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Containers the Docker engine still has for a job. */
export function containersOf(jobId: string): string[] {
  return execFileSync('docker', ['ps', '-aq', '--filter', `label=cronium.job=${jobId}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** The agent removes a job's container right after reporting its result: what is still there after `timeoutMs`. */
export async function containersGone(jobId: string, timeoutMs = 15_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let left = containersOf(jobId);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = containersOf(jobId);
  }
  return left;
}

/**
 * A job container's network: `none`, or the namespace of a network sandbox
 * (`container:<id>`) that was itself started with `none`.
 */
export function networkOf(info: { HostConfig: { NetworkMode: string } }): string {
  const mode = info.HostConfig.NetworkMode;
  if (!mode.startsWith('container:')) return mode;
  const [sandbox] = JSON.parse(execFileSync('docker', ['inspect', mode.slice('container:'.length)], { encoding: 'utf8' }));
  if (sandbox.Config.Labels['cronium.network-sandbox'] !== '1') throw new Error(`joins a container that is not a network sandbox: ${mode}`);
  return sandbox.HostConfig.NetworkMode;
}

type MetricFamily = { name: string; metrics: { value?: string; count?: string; labels?: Record<string, string> }[] };
const parsePrometheus: (text: string) => MetricFamily[] = createRequire(import.meta.url)('parse-prometheus-text-format');

/** A Prometheus text-format scrape, parsed; `value(name, labels)` reads one sample (a histogram's count), 0 when absent. */
export async function scrapeMetrics(url: string): Promise<{ families: Map<string, MetricFamily>; contentType: string; value(name: string, labels?: Record<string, string>): number }> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
  const families = new Map(parsePrometheus(await res.text()).map((family) => [family.name, family]));
  return {
    families,
    contentType: res.headers.get('content-type') ?? '',
    value(name, labels = {}) {
      const family = families.get(name);
      if (!family) throw new Error(`${name} is not exported`);
      const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
      return sample ? Number(sample.value ?? sample.count) : 0;
    },
  };
}
