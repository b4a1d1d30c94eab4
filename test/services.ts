// Infrastructure a fault test owns and may break: a Postgres cluster and a
// NATS server of its own, on free ports in temp folders (never the machine's
// shared ones, which other tests use).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from './harness.ts';

const PG_BIN = process.env.CRONIUM_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Runs a Postgres tool as the postgres user when we are root (Postgres refuses to run as root). */
function asPostgres(tool: string, args: readonly string[]): string {
  const command = join(PG_BIN, tool);
  return userInfo().uid === 0
    ? execFileSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    : execFileSync(command, [...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A throwaway Postgres cluster (trust auth, fsync off) the test can stop and start. */
export class PostgresServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'cronium-pg-'));
  port = 0;

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async init(): Promise<this> {
    if (userInfo().uid === 0) execFileSync('chown', ['-R', 'postgres:postgres', this.dir]);
    asPostgres('initdb', ['-D', join(this.dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
    this.port = await freePort();
    await this.start();
    return this;
  }

  async start(): Promise<void> {
    asPostgres('pg_ctl', [
      '-D', join(this.dir, 'data'),
      '-l', join(this.dir, 'postgres.log'),
      '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
      '-w', 'start',
    ]);
    // pg_ctl -w returns once the server accepts connections; make sure TCP does too.
    for (let i = 0; i < 100; i++) {
      const client = new pg.Client({ connectionString: this.url });
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`postgres on ${this.port} did not come up; log in ${this.dir}`);
  }

  /** Stops at once, as a crash would (open transactions roll back). */
  stop(mode: 'immediate' | 'fast' = 'immediate'): void {
    asPostgres('pg_ctl', ['-D', join(this.dir, 'data'), '-m', mode, '-w', 'stop']);
  }

  async destroy(): Promise<void> {
    try {
      this.stop('immediate');
    } catch {
      // not running
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A NATS server of the test's own, on a free port. */
export class NatsServer {
  port = 0;
  process?: ChildProcess;

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (!this.port) this.port = await freePort();
    this.process = spawn(process.env.CRONIUM_NATS_SERVER ?? '/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(this.port)], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const listening = await new Promise<boolean>((done) => {
        const socket = connect(this.port, '127.0.0.1', () => {
          socket.destroy();
          done(true);
        });
        socket.on('error', () => done(false));
      });
      if (listening) return this;
      await sleep(100);
    }
    throw new Error(`nats-server on ${this.port} did not come up`);
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
}
