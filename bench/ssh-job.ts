// SSH jobs: the cost of a Cronium job on a server over SSH, on a pooled
// connection and on a fresh one, against plain `ssh host true` and a bare
// ssh2 exec on an already open connection, all against one real sshd.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'ssh2';
import type { Benchmark, BenchContext } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { signed, summarize } from './lib/stats.ts';
import { SshExecutor } from '../agent/src/executors/ssh.ts';
import { SshPool } from '../agent/src/executors/ssh-pool.ts';
import type { JobSpec, SshTarget } from '../agent/src/job.ts';
import { startSshd } from '../test/sshd.ts';
import { root } from '../test/harness.ts';

const WARMUP = 3;
const MAX_SAMPLES = 40;

function spec(ssh: SshTarget): JobSpec {
  return {
    jobId: `bench-ssh-${randomUUID()}`,
    attempt: 1,
    eventId: 'bench',
    runId: 'bench',
    eventName: 'ssh bench',
    kind: 'bash',
    script: 'true',
    env: {},
    timeoutSeconds: 30,
    input: null,
    variables: {},
    memoryBytes: 0,
    cpus: 0,
    network: false,
    ssh,
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

function sshCommand(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...args, 'true'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ssh exited ${code}`))));
  });
}

function bareExec(client: Client): Promise<void> {
  return new Promise((resolve, reject) =>
    client.exec('true', (error, channel) => {
      if (error) return reject(error);
      channel.resume();
      channel.once('close', () => resolve());
    }),
  );
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const sshd = await startSshd();
  const target: SshTarget = {
    serverId: 'bench',
    host: sshd.host,
    port: sshd.port,
    username: sshd.username,
    privateKey: sshd.privateKey,
    password: '',
    hostKeyFingerprint: sshd.hostKeyFingerprint,
  };
  const noop = { signal: new AbortController().signal, log: async () => {}, started: () => {} };
  const runtimeDir = join(root, 'agent/runtime');
  const pooled = new SshExecutor({ runtimeDir });
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: target.host, port: target.port, username: target.username, privateKey: target.privateKey });
  });
  const samples = { pooled: [] as number[], fresh: [] as number[], ssh: [] as number[], bare: [] as number[] };
  try {
    for (let i = 0; i < WARMUP; i++) {
      await pooled.run(spec(target), noop);
      await bareExec(client);
      await sshCommand(sshd.sshArgs());
    }
    for (let i = 0; i < MAX_SAMPLES && ctx.timeLeft() > 10_000; i++) {
      samples.pooled.push(await timed(() => pooled.run(spec(target), noop)));
      const fresh = new SshExecutor({ runtimeDir, pool: new SshPool() });
      samples.fresh.push(await timed(() => fresh.run(spec(target), noop)));
      await fresh.pool.close();
      samples.ssh.push(await timed(() => sshCommand(sshd.sshArgs())));
      samples.bare.push(await timed(() => bareExec(client)));
    }
  } finally {
    await pooled.close();
    client.end();
    await sshd.stop();
  }
  r.distribution('bare', 'bare ssh2 exec of `true` on an open connection', 'ms', summarize(samples.bare), true);
  r.distribution('ssh', 'plain `ssh host true` (OpenSSH client, new connection each time)', 'ms', summarize(samples.ssh), true);
  r.distribution('pooled', 'Cronium SSH job (`true`), pooled connection: folder, upload, run, results, cleanup', 'ms', summarize(samples.pooled));
  r.distribution('fresh', 'Cronium SSH job (`true`), fresh connection each time', 'ms', summarize(samples.fresh));
  r.compare('pooled job vs bare exec', 'pooled', 'bare', 'p50');
  r.compare('pooled job vs plain ssh', 'pooled', 'ssh', 'p50');
  r.compare('fresh-connection job vs pooled job', 'fresh', 'pooled', 'p50');
  const extra = r.stat('pooled', 'p50') - r.stat('bare', 'p50');
  r.target(
    'SSH job on a pooled connection, over bare exec',
    '≤ +5 ms',
    `${signed(Math.round(extra))} ms at p50 (pooled job ${Math.round(r.stat('pooled', 'p50'))} ms vs bare exec ${Math.round(r.stat('bare', 'p50'))} ms; fresh connection ${Math.round(r.stat('fresh', 'p50'))} ms; plain ssh ${Math.round(r.stat('ssh', 'p50'))} ms)`,
    extra <= 5,
  );
  r.note(
    'A Cronium SSH job is one exec channel on the pooled connection: the agent sends the files and environment on its stdin without waiting; on the server the wrapper makes the folder (mkdir), runs the job in its own session (setsid), prints the results and removes the folder (rm). The bare exec is one channel running the `true` builtin, with no process of its own.',
  );
}

export const sshJob: Benchmark = {
  name: 'ssh-job',
  title: 'SSH job: pooled and fresh connections vs plain ssh and a bare exec',
  budgetMs: 60_000,
  async run(ctx, r) {
    r.how.push(
      'One real OpenSSH server (Debian sshd on loopback, started by `test/sshd.ts`) with a test user and key. The agent\'s SSH executor (`agent/src/executors/ssh.ts`) is called directly with a `true` bash job, so the figure is the executor and its pool, without the control plane.',
      `Interleaved, after ${WARMUP} warm-up rounds, up to ${MAX_SAMPLES} rounds of: a job on a pooled connection (one executor kept for the whole run); a job with a new pool (connect, authenticate and open SFTP each time); plain \`ssh host true\` with the OpenSSH client; a bare ssh2 exec of \`true\` on a connection opened once.`,
    );
    await run(ctx, r);
  },
};
