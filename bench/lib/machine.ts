// What the figures were measured on: they mean little without it.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import pg from 'pg';
import Dockerode from 'dockerode';
import { root } from '../../test/harness.ts';

export interface Machine {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly postgres: string;
  readonly docker: string;
  /** 1-minute load average when the benchmark started: other work on the machine skews the figures. */
  readonly loadAverage1m: number;
  readonly commit: string;
}

export const ADMIN_PG_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim();
    return dirty ? `${head} (with uncommitted changes)` : head;
  } catch {
    return 'unknown';
  }
}

export async function describeMachine(): Promise<Machine> {
  let postgres = 'unavailable';
  try {
    const client = new pg.Client({ connectionString: ADMIN_PG_URL });
    await client.connect();
    postgres = (await client.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
    await client.end();
  } catch {
    // reported as unavailable
  }
  let docker = 'unavailable';
  try {
    docker = (await new Dockerode().version()).Version;
  } catch {
    // reported as unavailable
  }
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    postgres,
    docker,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    commit: gitCommit(),
  };
}
