// A trivial bash job through the whole stack, against the bare Docker Engine API.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { freshDatabase, Stack, withClient } from './lib/stack.ts';
import { root, TEST_IMAGE } from '../test/harness.ts';
import { nowMs, round, signed, summarize } from './lib/stats.ts';
import { bareRun, runAndWatch } from './lib/one-job.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const SCRIPT = 'echo hello';
const WARMUP = 3;
const MAX_SAMPLES = 15;
/** Rounds of the settings ablation (one sample of each variant per round). */
const ABLATION_ROUNDS = 5;
const MIN_SAMPLES = 8;
/**
 * After each Cronium sample, before the baselines: the agent removes the job's
 * container and makes the next network sandbox after it has reported, and
 * that work must not slow the baselines down.
 */
const SETTLE_MS = 1000;

/**
 * The container the agent creates (agent/src/executors/docker.ts): same image,
 * user, mounts, hardening and limits, output attached before start, inspect
 * after the exit, then remove — without the agent, the queue or the link.
 */
async function hardenedRun(docker: Dockerode, jobDir: string, libDir: string): Promise<number> {
  const start = nowMs();
  const container = await docker.createContainer({
    Image: TEST_IMAGE,
    Cmd: ['bash', '/cronium/job/script.sh'],
    Env: ['CRONIUM_JOB_DIR=/cronium/job', 'HOME=/tmp'],
    WorkingDir: '/tmp',
    User: '65534:65534',
    Labels: { 'cronium.bench': 'hardened' },
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      Binds: [`${jobDir}:/cronium/job:rw`, `${libDir}:/cronium/lib:ro`],
      NetworkMode: 'none',
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,noexec,nosuid,size=64m' },
      PidsLimit: 256,
      Memory: 256 * 1024 * 1024,
      MemorySwap: 256 * 1024 * 1024,
      NanoCpus: 1e9,
      Init: true,
      Privileged: false,
      AutoRemove: false,
    },
  });
  const stream = await container.attach({ stream: true, stdout: true, stderr: true });
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.resume();
  });
  await container.start();
  await container.wait();
  await ended;
  await container.inspect();
  await container.remove({ force: true, v: true });
  return nowMs() - start;
}

/** The agent's settings one at a time on top of the bare run: which of them cost the time. */
const VARIANTS: Record<string, (jobDir: string, libDir: string) => Dockerode.ContainerCreateOptions> = {
  'user 65534': () => ({ User: '65534:65534' }),
  'two bind mounts': (jobDir, libDir) => ({ HostConfig: { Binds: [`${jobDir}:/cronium/job:rw`, `${libDir}:/cronium/lib:ro`] } }),
  "NetworkMode 'none'": () => ({ HostConfig: { NetworkMode: 'none' } }),
  'CapDrop ALL + no-new-privileges': () => ({ HostConfig: { CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges'] } }),
  'read-only root + /tmp tmpfs': () => ({ HostConfig: { ReadonlyRootfs: true, Tmpfs: { '/tmp': 'rw,noexec,nosuid,size=64m' } } }),
  'pids, memory and CPU limits': () => ({ HostConfig: { PidsLimit: 256, Memory: 256 * 1024 * 1024, MemorySwap: 256 * 1024 * 1024, NanoCpus: 1e9 } }),
  'Init (tini)': () => ({ HostConfig: { Init: true } }),
};

async function variantRun(docker: Dockerode, options: Dockerode.ContainerCreateOptions): Promise<number> {
  const start = nowMs();
  const container = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['bash', '-c', SCRIPT], ...options });
  await container.start();
  await container.wait();
  await container.remove({ force: true });
  return nowMs() - start;
}

async function attachedRun(docker: Dockerode): Promise<number> {
  const start = nowMs();
  const container = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['bash', '-c', SCRIPT], AttachStdout: true, AttachStderr: true });
  const stream = await container.attach({ stream: true, stdout: true, stderr: true });
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.resume();
  });
  await container.start();
  await container.wait();
  await ended;
  await container.inspect();
  await container.remove({ force: true });
  return nowMs() - start;
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase('bench_docker');
  const stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000' } });
  const docker = new Dockerode();
  const scratch = mkdtempSync(join(tmpdir(), 'cronium-bench-docker-'));
  try {
    const jobDir = join(scratch, 'job');
    mkdirSync(jobDir);
    chmodSync(scratch, 0o755);
    chmodSync(jobDir, 0o777);
    writeFileSync(join(jobDir, 'script.sh'), `${SCRIPT}\n`, { mode: 0o644 });
    const libDir = join(root, 'agent', 'runtime');

    await stack.start();
    const event = await stack.createEvent({ name: 'bench-docker', type: 'EVENT_TYPE_BASH', script: SCRIPT });
    ctx.log(`warm-up: ${WARMUP} of each`);
    for (let i = 0; i < WARMUP; i++) {
      await runAndWatch(stack, event.id);
      await bareRun(docker, TEST_IMAGE, SCRIPT);
      await hardenedRun(docker, jobDir, libDir);
    }
    const ours: { e2e: number; jobId: string }[] = [];
    const bare: number[] = [];
    const bareNone: number[] = [];
    const hardened: number[] = [];
    // Interleaved, so that drift in the machine's load hits all three alike.
    while (ours.length < MAX_SAMPLES && (ours.length < MIN_SAMPLES || ctx.timeLeft() > 12_000)) {
      ours.push(await runAndWatch(stack, event.id));
      await sleep(SETTLE_MS);
      bare.push(await bareRun(docker, TEST_IMAGE, SCRIPT));
      bareNone.push(await variantRun(docker, { HostConfig: { NetworkMode: 'none' } }));
      hardened.push(await hardenedRun(docker, jobDir, libDir));
    }
    ctx.log(`${ours.length} samples of each`);

    const ids = ours.map((s) => s.jobId);
    const rows = await withClient(database.url, async (client) =>
      (
        await client.query(
          `select (extract(epoch from offered_at - created_at) * 1000)::float8 as queued,
                  (extract(epoch from started_at - offered_at) * 1000)::float8 as starting,
                  (extract(epoch from finished_at - started_at) * 1000)::float8 as running,
                  (extract(epoch from finished_at - created_at) * 1000)::float8 as total
             from jobs where id = any($1::text[])`,
          [ids],
        )
      ).rows as { queued: number; starting: number; running: number; total: number }[],
    );

    r.distribution('ours.e2e', 'Cronium: RunEvent sent → terminal status received on WatchJob', 'ms', summarize(ours.map((s) => s.e2e)));
    r.distribution('ours.db', 'Cronium: created_at → finished_at (jobs table; finished_at is the agent\'s clock, to the ms)', 'ms', summarize(rows.map((x) => x.total)));
    r.distribution('ours.queued', 'Cronium phase: created_at → offered_at', 'ms', summarize(rows.map((x) => x.queued)));
    r.distribution('ours.starting', 'Cronium phase: offered_at → started_at (accept, job folder, create, attach and start, hand-over to the supervisor)', 'ms', summarize(rows.map((x) => x.starting)));
    r.distribution('ours.running', 'Cronium phase: started_at → finished_at (the script, its exit line, log drain, read results; the container is removed after the result is stored)', 'ms', summarize(rows.map((x) => x.running)));
    r.distribution('bare', 'Bare Engine API (dockerode): create → start → wait → remove', 'ms', summarize(bare), true);
    r.distribution('bare.none', "Bare Engine API with NetworkMode 'none' (the jobs' network mode): create → start → wait → remove", 'ms', summarize(bareNone), true);
    r.distribution('bare.hardened', 'Engine API with the agent\'s container settings: create (same user, mounts, hardening, limits, tini) → attach → start → wait → inspect → remove', 'ms', summarize(hardened), true);

    const e2e = r.compare('Cronium end to end vs bare Engine API, p50', 'ours.e2e', 'bare', 'p50');
    r.compare('Cronium end to end vs bare Engine API, p99', 'ours.e2e', 'bare', 'p99');
    const db = r.compare('Cronium created_at → finished_at vs bare Engine API, p50', 'ours.db', 'bare', 'p50');
    r.compare("Cronium end to end vs bare Engine API with NetworkMode 'none', p50", 'ours.e2e', 'bare.none', 'p50');
    r.compare('Cronium end to end vs Engine API with the agent\'s settings, p50', 'ours.e2e', 'bare.hardened', 'p50');
    r.compare('Engine API with the agent\'s settings vs bare, p50', 'bare.hardened', 'bare', 'p50');
    const overhead = (e2e.ratio - 1) * 100;
    const overheadDb = (db.ratio - 1) * 100;
    r.value('overhead.e2e', 'Overhead of a Cronium job over the bare Engine API at p50 (end to end)', '%', overhead);
    r.value('overhead.db', 'Overhead at p50, created_at → finished_at', '%', overheadDb);
    r.target(
      'Docker job overhead over bare Engine API',
      '≤ +10% at p50',
      `${signed(overhead)}% end to end (p50 ${round(r.stat('ours.e2e', 'p50'))} ms vs ${round(r.stat('bare', 'p50'))} ms); ${signed(overheadDb)}% created_at → finished_at`,
      overhead <= 10,
    );
    if (ctx.timeLeft() > 25_000) {
      ctx.log(`settings ablation: ${ABLATION_ROUNDS} rounds`);
      const names = [...Object.keys(VARIANTS), 'attach before start + inspect'];
      const samples = new Map<string, number[]>(names.map((n) => [n, []]));
      const plain: number[] = [];
      for (let i = 0; i < ABLATION_ROUNDS && ctx.timeLeft() > 10_000; i++) {
        plain.push(await bareRun(docker, TEST_IMAGE, SCRIPT));
        for (const [name, make] of Object.entries(VARIANTS)) samples.get(name)!.push(await variantRun(docker, make(jobDir, libDir)));
        samples.get('attach before start + inspect')!.push(await attachedRun(docker));
      }
      const plainP50 = summarize(plain).p50;
      const rows = names.map((name) => {
        const s = summarize(samples.get(name)!);
        return { setting: name, samples: s.n, p50Ms: round(s.p50), addedAtP50Ms: round(s.p50 - plainP50) };
      });
      r.details.ablation = { bareP50Ms: round(plainP50), samples: plain.length, variants: rows };
      const ranked = [...rows].sort((a, b) => b.addedAtP50Ms - a.addedAtP50Ms);
      r.note(
        `Settings one at a time on top of the bare run (${plain.length} rounds, p50 against a bare p50 of ${round(plainP50)} ms in the same rounds): ` +
          ranked.map((row) => `${row.setting} ${row.addedAtP50Ms >= 0 ? '+' : ''}${row.addedAtP50Ms} ms`).join(', ') +
          '. Few samples each on a shared Docker engine: read the large ones only.',
      );
    }
    const settingsShare = r.stat('bare.hardened', 'p50') - r.stat('bare', 'p50');
    const oursExtra = r.stat('ours.e2e', 'p50') - r.stat('bare', 'p50');
    r.note(
      `Of the ${round(oursExtra)} ms Cronium adds at p50, the container settings themselves (hardening, mounts, limits, tini, attach, inspect) account for ${round(settingsShare)} ms in Docker; the rest (${round(oursExtra - settingsShare)} ms) is Cronium: the API request and the queue (queued phase p50 ${round(r.stat('ours.queued', 'p50'))} ms), the link, the job folder, and the status and watch round trips.`,
    );
  } finally {
    await stack.stop().catch(() => {});
    await database.drop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
}

export const dockerJob: Benchmark = {
  name: 'docker-job',
  title: 'Docker job: a trivial bash job end to end vs the bare Engine API',
  budgetMs: 90_000,
  async run(ctx, r) {
    r.how.push(
      `The real stack: a control plane on Postgres (fresh database, memory bus) and the orchestrator agent (\`agent/src/main.ts\`, Docker executor, 4 slots), started by \`test/harness.ts\`; image \`${TEST_IMAGE}\` (bash, local, no pull).`,
      `Each sample runs \`${SCRIPT}\` as a bash event: RunEvent through the API, then WatchJob (Connect JSON stream) until the terminal status arrives; one job at a time. From the jobs table: created_at → finished_at and its phases.`,
      `Baselines, interleaved with the Cronium samples: (1) the bare Engine API through dockerode — create, start, wait, remove of \`bash -c '${SCRIPT}'\` in the same image, default settings; (2) the same with the container settings the agent uses (user 65534, job and helper folders bind-mounted, all capabilities dropped, no-new-privileges, read-only root with a /tmp tmpfs, pids/memory/CPU limits, no network, tini as init), with output attached before start and an inspect after the exit, as the agent does.`,
      `Cronium's container is not the bare run's: its supervisor reports the script's exit on the output streams (no wait for the engine's exit handling), it joins a network-less namespace that the agent made ahead (\`container:<sandbox>\`), and it is removed after the result is stored; the agent does that removal and makes the next sandbox during the ${SETTLE_MS} ms pause below, not while a baseline runs.`,
      `A third baseline is the bare run with \`NetworkMode: 'none'\`, the jobs' network mode. On this machine the Docker engine runs without a bridge (\`dockerd --bridge=none\`), so a container with the default network mode gets no network namespace of its own, while \`none\` creates one; on an engine with the default bridge the bare run would create a namespace and a veth pair too.`,
      `After each Cronium sample the baselines wait ${SETTLE_MS} ms, so that what the agent does after reporting (removing the container, making the next network sandbox) does not slow them down.`,
      `${WARMUP} warm-up runs of each, then up to ${MAX_SAMPLES} samples of each within the time budget; then, if time is left, an ablation: each of the agent's settings alone on top of the bare run, a few rounds, to show which of them cost the time.`,
    );
    await run(ctx, r);
  },
};
