// Pooled ssh2 connections, one group per server key (host, port, username,
// pinned host key, hash of the credentials).
//
// - reuse: a job leases a slot on an open connection when one has room;
// - caps: at most `maxConnectionsPerServer` connections per server and
//   `maxChannelsPerConnection` open channels per connection. Each connection
//   keeps one shared SFTP session (1 channel) and one spare channel for short
//   extra commands (kill, cleanup), so it serves maxChannels - 2 jobs at once
//   (each job holds one exec channel). OpenSSH's default MaxSessions is 10.
// - health: a connection whose socket ended, errored or missed keepalives is
//   dropped at once; one that sat idle is checked with an SFTP round trip
//   before it is handed out again; a lease released as broken closes it;
// - idle close: a connection without leases closes after `idleTimeoutMs`;
// - backoff: after a failed connect, the next attempt to that server waits
//   (exponential, with jitter); callers arriving meanwhile share that one
//   attempt instead of each hammering the server;
// - close(): closes everything and fails waiting callers.

import { createHash } from 'node:crypto';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import type { SshTarget } from '../job.ts';
import { connectSsh, formatAddress, normalizeFingerprint } from './ssh-fingerprint.ts';

export type SshPoolTarget = Pick<SshTarget, 'host' | 'port' | 'username' | 'privateKey' | 'password' | 'hostKeyFingerprint'>;

export interface SshPoolOptions {
  /** Connections per server (default 4). */
  readonly maxConnectionsPerServer?: number;
  /**
   * Open channels per connection (default 8, minimum 3): one shared SFTP
   * session, one spare for short extra commands, the rest one per job.
   */
  readonly maxChannelsPerConnection?: number;
  /** Close a connection after this long without a lease (default 60 s). */
  readonly idleTimeoutMs?: number;
  /** Check a connection with an SFTP round trip before reuse when idle this long (default 5 s). */
  readonly healthCheckAfterIdleMs?: number;
  /** Limit of that check (default 5 s). */
  readonly healthCheckTimeoutMs?: number;
  /** Handshake + authentication limit (default 15 s). */
  readonly connectTimeoutMs?: number;
  /** Limit for the server to answer a channel open (exec, SFTP); no answer drops the connection (default 20 s). */
  readonly channelOpenTimeoutMs?: number;
  /** ssh2 keepalive interval (default 15 s; 0 = off); 3 missed keepalives drop the connection. */
  readonly keepaliveIntervalMs?: number;
  /** First delay after a failed connect (default 500 ms); doubles per failure. */
  readonly backoffInitialMs?: number;
  /** Largest delay (default 10 s). */
  readonly backoffMaxMs?: number;
}

export interface SshPoolStats {
  /** Server groups known to the pool. */
  readonly servers: number;
  /** Open connections. */
  readonly connections: number;
  /** Connects in progress. */
  readonly connecting: number;
  /** Leases held (one per running job). */
  readonly leases: number;
  /** Callers waiting for room. */
  readonly waiting: number;
  /** Open channels (SFTP sessions included). */
  readonly channels: number;
  /** Connection attempts started. */
  readonly connects: number;
  readonly connectFailures: number;
  /** Leases handed out. */
  readonly acquires: number;
  /** Leases on a connection that had served an earlier lease. */
  readonly reuses: number;
  /** Connections dropped because they died or failed a health check. */
  readonly dropped: number;
}

/** One job's slot on a pooled connection. Call release() exactly once. */
export interface SshLease {
  /** Pool-wide id of the connection. */
  readonly connectionId: number;
  /** True when the connection had served an earlier lease (no connection setup paid). */
  readonly reused: boolean;
  /** `host:port` for messages. */
  readonly address: string;
  /**
   * Runs a command. The lease's first open exec uses its own slot; further
   * execs while that one is open use the connection's spare slot (waiting for it).
   */
  exec(command: string): Promise<ClientChannel>;
  /** The connection's shared SFTP session. */
  sftp(): Promise<SFTPWrapper>;
  /** Whether the connection is still up. */
  readonly alive: boolean;
  /** Gives the slot back; `broken` closes the connection (e.g. it failed mid-use). */
  release(broken?: boolean): void;
}

export class PoolClosedError extends Error {
  constructor() {
    super('SSH connection pool closed');
    this.name = 'PoolClosedError';
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('aborted', 'AbortError');
}

/** Waits for a promise unless the signal aborts first (the promise keeps running). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

/** The key a connection is pooled under; secrets enter it only hashed. */
export function serverKey(t: SshPoolTarget): string {
  return hash(
    JSON.stringify([t.host.toLowerCase(), t.port, t.username, normalizeFingerprint(t.hostKeyFingerprint), hash(t.privateKey), hash(t.password)]),
  );
}

interface Waiter {
  wake(): void;
}

class Counters {
  connects = 0;
  connectFailures = 0;
  acquires = 0;
  reuses = 0;
  dropped = 0;
}

class Server {
  readonly key: string;
  readonly target: SshPoolTarget;
  readonly address: string;
  readonly conns = new Set<Conn>();
  connecting = 0;
  failures = 0;
  nextAttemptAt = 0;
  /** The shared connect attempt while the server is failing. */
  probe: Promise<Conn> | null = null;
  readonly waiters = new Set<Waiter>();
  readonly counters = new Counters();
  constructor(key: string, target: SshPoolTarget) {
    this.key = key;
    this.target = target;
    this.address = formatAddress(target.host, target.port);
  }
  notify(): void {
    for (const w of [...this.waiters]) w.wake();
  }
}

let nextConnectionId = 1;

class Conn {
  readonly id = nextConnectionId++;
  readonly server: Server;
  readonly client: Client;
  alive = true;
  leases = 0;
  /** Leases served so far (a lease on a connection that served one is a reuse). */
  served = 0;
  extras = 0;
  execs = 0;
  lastUsed = Date.now();
  idleTimer: NodeJS.Timeout | undefined;
  sftpSession: Promise<SFTPWrapper> | undefined;
  sftpOpen = false;
  readonly channelWaiters = new Set<Waiter>();
  readonly #openTimeoutMs: number;
  readonly #onStuck: () => void;
  constructor(server: Server, client: Client, openTimeoutMs: number, onStuck: () => void) {
    this.server = server;
    this.client = client;
    this.#openTimeoutMs = openTimeoutMs;
    this.#onStuck = onStuck;
  }

  /** Opens a channel with `open`, failing (and dropping the connection) when the server does not answer in time. */
  #open<T>(what: string, open: (cb: (err: Error | undefined, value: T) => void) => void, dispose: (late: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        reject(new Error(`no answer from ${this.server.address} to opening ${what} within ${this.#openTimeoutMs / 1000} s`));
        this.#onStuck();
      }, this.#openTimeoutMs);
      timer.unref();
      try {
        open((err, value) => {
          if (done) {
            if (!err) dispose(value);
            return;
          }
          done = true;
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(value);
        });
      } catch (err) {
        done = true;
        clearTimeout(timer);
        reject(err as Error);
      }
    });
  }

  get channels(): number {
    return this.execs + (this.sftpOpen ? 1 : 0);
  }

  sftp(): Promise<SFTPWrapper> {
    if (!this.sftpSession) {
      const session = this.#open<SFTPWrapper>('an SFTP session', (cb) => this.client.sftp(cb), (late) => late.end()).then(
        (sftp) => {
          this.sftpOpen = true;
          const reset = () => {
            if (this.sftpSession === session) this.sftpSession = undefined;
            if (this.sftpOpen) {
              this.sftpOpen = false;
              this.notifyChannels();
            }
          };
          sftp.once('close', reset);
          sftp.once('end', reset);
          sftp.on('error', () => {});
          return sftp;
        },
        (err: Error) => {
          throw new Error(`cannot open an SFTP session on ${this.server.address}: ${err.message} (the server needs the sftp subsystem)`);
        },
      );
      this.sftpSession = session;
      session.catch(() => {
        if (this.sftpSession === session) this.sftpSession = undefined;
      });
    }
    return this.sftpSession;
  }

  exec(command: string): Promise<ClientChannel> {
    return this.#open<ClientChannel>('a channel', (cb) => this.client.exec(command, cb), (late) => late.close());
  }

  notifyChannels(): void {
    for (const w of [...this.channelWaiters]) w.wake();
  }
}

class Lease implements SshLease {
  readonly #pool: SshPool;
  readonly #conn: Conn;
  readonly reused: boolean;
  #released = false;
  #mainOpen = false;

  constructor(pool: SshPool, conn: Conn, reused: boolean) {
    this.#pool = pool;
    this.#conn = conn;
    this.reused = reused;
  }

  get connectionId(): number {
    return this.#conn.id;
  }
  get address(): string {
    return this.#conn.server.address;
  }
  get alive(): boolean {
    return this.#conn.alive;
  }

  async exec(command: string): Promise<ClientChannel> {
    if (this.#released) throw new Error('SSH lease already released');
    const conn = this.#conn;
    if (!conn.alive) throw new Error(`connection to ${conn.server.address} lost`);
    const main = !this.#mainOpen;
    if (main) this.#mainOpen = true;
    else await this.#pool.waitForSpareChannel(conn);
    conn.execs++;
    let freed = false;
    const free = () => {
      if (freed) return;
      freed = true;
      conn.execs--;
      if (main) this.#mainOpen = false;
      else conn.extras--;
      conn.notifyChannels();
    };
    try {
      const channel = await conn.exec(command);
      channel.once('close', free);
      return channel;
    } catch (err) {
      free();
      throw err;
    }
  }

  sftp(): Promise<SFTPWrapper> {
    if (this.#released) return Promise.reject(new Error('SSH lease already released'));
    return this.#conn.sftp();
  }

  release(broken = false): void {
    if (this.#released) return;
    this.#released = true;
    this.#pool.releaseLease(this.#conn, broken);
  }
}

export class SshPool {
  readonly #servers = new Map<string, Server>();
  readonly #opts: Required<SshPoolOptions>;
  #closed = false;

  constructor(options: SshPoolOptions = {}) {
    this.#opts = {
      maxConnectionsPerServer: Math.max(1, options.maxConnectionsPerServer ?? 4),
      maxChannelsPerConnection: Math.max(3, options.maxChannelsPerConnection ?? 8),
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      healthCheckAfterIdleMs: options.healthCheckAfterIdleMs ?? 5_000,
      healthCheckTimeoutMs: options.healthCheckTimeoutMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      channelOpenTimeoutMs: options.channelOpenTimeoutMs ?? 20_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 15_000,
      backoffInitialMs: options.backoffInitialMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 10_000,
    };
  }

  /** Jobs one connection serves at once. */
  get leasesPerConnection(): number {
    return this.#opts.maxChannelsPerConnection - 2;
  }

  /**
   * A slot on a healthy connection to the server: an open one with room, else
   * a new one (up to the cap), else waits for room. Rejects with an
   * SshConnectError when the server cannot be reached or refuses the
   * credentials or presents another host key, and with the signal's reason
   * when aborted.
   */
  async acquire(target: SshPoolTarget, signal?: AbortSignal): Promise<SshLease> {
    const server = this.#server(target);
    for (;;) {
      if (this.#closed) throw new PoolClosedError();
      if (signal?.aborted) throw abortError(signal);
      const conn = this.#pick(server);
      if (conn) {
        conn.leases++;
        clearTimeout(conn.idleTimer);
        conn.idleTimer = undefined;
        if (conn.served > 0 && conn.leases === 1 && Date.now() - conn.lastUsed >= this.#opts.healthCheckAfterIdleMs) {
          if (!(await this.#healthy(conn))) {
            conn.leases--;
            this.#drop(conn, true);
            continue;
          }
          if (!conn.alive) {
            conn.leases--;
            continue;
          }
        }
        const reused = conn.served > 0;
        conn.served++;
        server.counters.acquires++;
        if (reused) server.counters.reuses++;
        return new Lease(this, conn, reused);
      }
      if (server.conns.size + server.connecting < this.#opts.maxConnectionsPerServer || server.failures > 0) {
        await abortable(this.#connect(server), signal);
        continue;
      }
      await this.#wait(server.waiters, signal);
    }
  }

  /** Totals, or one server's numbers when a target is given. */
  stats(target?: SshPoolTarget): SshPoolStats {
    const servers = target ? [this.#servers.get(serverKey(target))].filter((s): s is Server => s !== undefined) : [...this.#servers.values()];
    const out = {
      servers: servers.length,
      connections: 0,
      connecting: 0,
      leases: 0,
      waiting: 0,
      channels: 0,
      connects: 0,
      connectFailures: 0,
      acquires: 0,
      reuses: 0,
      dropped: 0,
    };
    for (const s of servers) {
      out.connections += s.conns.size;
      out.connecting += s.connecting;
      out.waiting += s.waiters.size;
      for (const c of s.conns) {
        out.leases += c.leases;
        out.channels += c.channels;
        out.waiting += c.channelWaiters.size;
      }
      out.connects += s.counters.connects;
      out.connectFailures += s.counters.connectFailures;
      out.acquires += s.counters.acquires;
      out.reuses += s.counters.reuses;
      out.dropped += s.counters.dropped;
    }
    return out;
  }

  /** Closes every connection; waiting and later acquire() calls fail with PoolClosedError. */
  async close(): Promise<void> {
    this.#closed = true;
    const closing: Promise<void>[] = [];
    for (const server of this.#servers.values()) {
      server.notify();
      for (const conn of [...server.conns]) {
        conn.notifyChannels();
        closing.push(
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 2000);
            timer.unref();
            conn.client.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
        );
        this.#drop(conn, false);
      }
    }
    await Promise.all(closing);
  }

  /** @internal used by leases. */
  releaseLease(conn: Conn, broken: boolean): void {
    conn.leases--;
    conn.lastUsed = Date.now();
    if (broken) this.#drop(conn, true);
    else this.#maybeIdle(conn);
    conn.server.notify();
  }

  /** @internal waits for the connection's spare channel (an exec beyond a lease's own). */
  async waitForSpareChannel(conn: Conn): Promise<void> {
    // Leases each own a slot, the SFTP session one; extras share what is left.
    while (1 + Math.max(conn.leases, 0) + conn.extras >= this.#opts.maxChannelsPerConnection) {
      if (!conn.alive) throw new Error(`connection to ${conn.server.address} lost`);
      if (this.#closed) throw new PoolClosedError();
      await this.#wait(conn.channelWaiters, undefined);
    }
    conn.extras++;
  }

  #server(target: SshPoolTarget): Server {
    const key = serverKey(target);
    let server = this.#servers.get(key);
    if (!server) {
      server = new Server(key, { ...target });
      this.#servers.set(key, server);
    }
    return server;
  }

  /** The open connection with the most room. */
  #pick(server: Server): Conn | undefined {
    let best: Conn | undefined;
    for (const c of server.conns) {
      if (!c.alive || c.leases >= this.leasesPerConnection) continue;
      if (!best || c.leases < best.leases) best = c;
    }
    return best;
  }

  async #healthy(conn: Conn): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const check = (async () => {
        const sftp = await conn.sftp();
        await new Promise<void>((resolve, reject) => sftp.realpath('.', (err) => (err ? reject(err) : resolve())));
      })();
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('health check timed out')), this.#opts.healthCheckTimeoutMs);
      });
      await Promise.race([check, timeout]);
      return conn.alive;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Opens one connection (or joins the shared attempt while the server is failing). */
  #connect(server: Server): Promise<unknown> {
    if (server.failures === 0) return this.#open(server);
    if (!server.probe) {
      const probe = (async () => {
        const wait = server.nextAttemptAt - Date.now();
        if (wait > 0) await sleep(wait);
        if (this.#closed) throw new PoolClosedError();
        return this.#open(server);
      })();
      server.probe = probe;
      probe.then(
        () => {
          if (server.probe === probe) server.probe = null;
        },
        () => {
          if (server.probe === probe) server.probe = null;
        },
      );
    }
    return server.probe;
  }

  async #open(server: Server): Promise<Conn> {
    server.connecting++;
    server.counters.connects++;
    try {
      const { client } = await connectSsh(server.target, {
        expectedFingerprint: server.target.hostKeyFingerprint,
        timeoutMs: this.#opts.connectTimeoutMs,
        keepaliveIntervalMs: this.#opts.keepaliveIntervalMs,
        keepaliveCountMax: 3,
      });
      server.failures = 0;
      server.nextAttemptAt = 0;
      const conn: Conn = new Conn(server, client, this.#opts.channelOpenTimeoutMs, () => this.#drop(conn, true));
      client.on('error', () => this.#drop(conn, true));
      client.once('end', () => this.#drop(conn, true));
      client.once('close', () => this.#drop(conn, true));
      if (this.#closed) {
        this.#drop(conn, false);
        throw new PoolClosedError();
      }
      server.conns.add(conn);
      // Open the shared SFTP session now: it overlaps the job's first exec.
      conn.sftp().catch(() => {});
      this.#maybeIdle(conn);
      return conn;
    } catch (err) {
      if (!(err instanceof PoolClosedError)) {
        server.failures++;
        server.counters.connectFailures++;
        const base = Math.min(this.#opts.backoffInitialMs * 2 ** (server.failures - 1), this.#opts.backoffMaxMs);
        server.nextAttemptAt = Date.now() + Math.round(base * (0.8 + Math.random() * 0.4));
      }
      throw err;
    } finally {
      server.connecting--;
      server.notify();
    }
  }

  #maybeIdle(conn: Conn): void {
    if (!conn.alive || conn.leases > 0 || conn.idleTimer) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = undefined;
      if (conn.leases === 0) this.#drop(conn, false);
    }, this.#opts.idleTimeoutMs);
    conn.idleTimer.unref();
  }

  #drop(conn: Conn, unexpected: boolean): void {
    if (!conn.alive) return;
    conn.alive = false;
    clearTimeout(conn.idleTimer);
    conn.idleTimer = undefined;
    const server = conn.server;
    server.conns.delete(conn);
    if (unexpected && !this.#closed) server.counters.dropped++;
    conn.client.on('error', () => {});
    conn.client.end();
    conn.notifyChannels();
    server.notify();
  }

  #wait(waiters: Set<Waiter>, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          waiters.delete(waiter);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        waiters.delete(waiter);
        reject(abortError(signal!));
      };
      waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
