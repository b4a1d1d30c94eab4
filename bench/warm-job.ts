// Repeat jobs of one image through warm containers (agent --warm-containers),
// against the bare Engine API and `docker exec` into a running container,
// measured in the same run.
import Dockerode from 'dockerode';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { freshDatabase, Stack, withClient } from './lib/stack.ts';
import { TEST_IMAGE } from '../test/harness.ts';
import { nowMs, round, summarize } from './lib/stats.ts';
import { bareRun, runAndWatch } from './lib/one-job.ts';

const SCRIPT = 'echo hello';
const WARM = 2;
const WARMUP = 3;
const MAX_SAMPLES = 25;
const MIN_SAMPLES = 10;
/**
 * After each Cronium sample, before the baselines: the pool refills (a warm
 * container takes a cold start to make) and the used container is removed,
 * and that work must not slow the baselines down.
 */
const SPACING_MS = 800;

/** The floor for any reuse scheme: a command in a container that is already running. */
async function execRun(container: Dockerode.Container): Promise<number> {
  const start = nowMs();
  const exec = await container.exec({ Cmd: ['bash', '-c', SCRIPT], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  await new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.resume();
  });
  await exec.inspect();
  return nowMs() - start;
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase('bench_warm');
  const stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000' }, agentArgs: ['--warm-containers', String(WARM)] });
  const docker = new Dockerode();
  const sleeper = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', 'infinity'], Labels: { 'cronium.bench': 'exec' } });
  try {
    await sleeper.start();
    await stack.start();
    const event = await stack.createEvent({ name: 'bench-warm', type: 'EVENT_TYPE_BASH', script: SCRIPT });
    ctx.log(`warm-up: ${WARMUP} jobs (the first runs cold and fills the pool)`);
    for (let i = 0; i < WARMUP; i++) {
      await runAndWatch(stack, event.id);
      await sleep(SPACING_MS);
    }
    const ours: { e2e: number; jobId: string }[] = [];
    const bare: number[] = [];
    const exec: number[] = [];
    while (ours.length < MAX_SAMPLES && (ours.length < MIN_SAMPLES || ctx.timeLeft() > 10_000)) {
      ours.push(await runAndWatch(stack, event.id));
      await sleep(SPACING_MS);
      bare.push(await bareRun(docker, TEST_IMAGE, SCRIPT));
      exec.push(await execRun(sleeper));
    }
    ctx.log(`${ours.length} samples of each`);
    const rows = await withClient(database.url, async (client) =>
      (
        await client.query(
          `select (extract(epoch from finished_at - created_at) * 1000)::float8 as total,
                  (extract(epoch from finished_at - started_at) * 1000)::float8 as running,
                  (extract(epoch from started_at - offered_at) * 1000)::float8 as starting
             from jobs where id = any($1::text[])`,
          [ours.map((s) => s.jobId)],
        )
      ).rows as { total: number; running: number; starting: number }[],
    );
    r.distribution('warm.db', 'Cronium, warm container: created_at → finished_at (jobs table)', 'ms', summarize(rows.map((x) => x.total)));
    r.distribution('warm.e2e', 'Cronium, warm container: RunEvent sent → terminal status on WatchJob', 'ms', summarize(ours.map((s) => s.e2e)));
    r.distribution('warm.starting', 'Cronium phase: offered_at → started_at (accept, job folder, hand-over to the warm container)', 'ms', summarize(rows.map((x) => x.starting)));
    r.distribution('warm.running', 'Cronium phase: started_at → finished_at (the script, its exit line, log drain, read results)', 'ms', summarize(rows.map((x) => x.running)));
    r.distribution('bare', 'Bare Engine API: create → start → wait → remove of the same command', 'ms', summarize(bare), true);
    r.distribution('exec', 'docker exec of the same command in an already running container (the floor for any reuse)', 'ms', summarize(exec), true);
    r.compare('Cronium warm (created_at → finished_at) vs bare Engine API, p50', 'warm.db', 'bare', 'p50');
    r.compare('Cronium warm (created_at → finished_at) vs docker exec, p50', 'warm.db', 'exec', 'p50');
    const p50 = r.stat('warm.db', 'p50');
    r.target(
      'prewarmed container path (repeat jobs of one image)',
      'p50 ≤ 30 ms',
      `p50 ${round(p50)} ms, p99 ${round(r.stat('warm.db', 'p99'))} ms created_at → finished_at (bare Engine API p50 ${round(r.stat('bare', 'p50'))} ms; docker exec p50 ${round(r.stat('exec', 'p50'))} ms)`,
      p50 <= 30,
    );
  } finally {
    await stack.stop().catch(() => {});
    await sleeper.remove({ force: true }).catch(() => {});
    await database.drop().catch(() => {});
  }
}

export const warmJob: Benchmark = {
  name: 'warm-job',
  title: 'Prewarmed containers: repeat jobs of one image',
  budgetMs: 90_000,
  async run(ctx, r) {
    r.how.push(
      `The real stack (control plane on Postgres, orchestrator agent) with the agent started with \`--warm-containers ${WARM}\`: after the first job of an image and limits, the agent keeps ${WARM} containers created, hardened as usual, attached and started, each with its supervisor waiting on stdin; a job's folder goes into one of them, the supervisor runs the interpreter on it and reports its exit on the output streams. Each warm container serves one job and is removed once the result is stored; then the pool refills.`,
      `Samples are repeat runs of \`${SCRIPT}\` (RunEvent, then WatchJob to the terminal status), one at a time, each followed by ${SPACING_MS} ms for the pool to refill before the baselines run; ${WARMUP} warm-up jobs first (the first runs cold).`,
      'Baselines, interleaved: the bare Engine API run of the same command (create, start, wait, remove), and `docker exec` of it in a container that is already running — the least any reuse of a container could cost.',
    );
    await run(ctx, r);
  },
};
