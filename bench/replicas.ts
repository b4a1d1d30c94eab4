// Throughput with two control-plane replicas against one, in one run: the
// same Postgres, NATS, four lean agents and bulk batches of no-op jobs; first
// all four agents on replica A, then two on A and two on B.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase } from '../control-plane/src/store/database.ts';
import { enqueueRun } from '../control-plane/src/queue/enqueue.ts';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { LeanFleet, type FleetAgent } from './lean-agent.ts';
import { NATS_URL, freshDatabase, issueLeanAgents, startControlPlaneOnly, waitForAgents, type Stack } from './lib/stack.ts';
import { countStatus, measureBatch } from './lib/bulk.ts';
import { CpuMeter, postgresBackends } from './lib/procstat.ts';
import { round } from './lib/stats.ts';

const AGENTS = 4;
const SLOTS = 64;
const WARMUP_JOBS = 500;
const JOBS = 4_000;
const PHASE_TIMEOUT_MS = 40_000;

async function phase(
  ctx: BenchContext,
  r: ResultBuilder,
  key: string,
  label: string,
  stacks: readonly Stack[],
  split: readonly FleetAgent[][],
  ca: string,
  url: string,
  eventId: string,
  templateJobId: string,
): Promise<number> {
  const fleets: LeanFleet[] = [];
  try {
    for (const [i, agents] of split.entries()) {
      if (agents.length === 0) continue;
      fleets.push(await LeanFleet.start({ address: `localhost:${stacks[i]!.agentPort}`, ca, agents, slots: SLOTS, labels: { bench: 'lean' }, record: false }));
      await waitForAgents(stacks[i]!, agents.map((agent) => agent.agentId));
    }
    ctx.log(`${label}: warm-up of ${WARMUP_JOBS} jobs`);
    await measureBatch(url, fleets, eventId, WARMUP_JOBS, templateJobId, PHASE_TIMEOUT_MS);
    const cpu = new CpuMeter(() => stacks.map((stack) => stack.controlPlane!.pid!)).start();
    const pg = new CpuMeter(() => postgresBackends(url.split('/').pop()!)).start();
    const sampler = setInterval(() => pg.sample(), 500);
    const batch = await measureBatch(url, fleets, eventId, JOBS, templateJobId, Math.min(PHASE_TIMEOUT_MS, ctx.timeLeft() - 20_000));
    clearInterval(sampler);
    const rate = batch.jobs / batch.seconds;
    r.value(key, `${label}: ${batch.jobs} no-op jobs, first offer → last terminal status committed`, 'jobs/s', rate, key === 'one');
    r.details[key] = {
      jobs: batch.jobs,
      complete: batch.complete,
      seconds: round(batch.seconds),
      cpuPercentOfOneCore: { controlPlanes: round(cpu.stop().percentOfCore), postgresBackends: round(pg.stop().percentOfCore) },
    };
    ctx.log(`${label}: ${round(rate)} jobs/s`);
    return rate;
  } finally {
    for (const fleet of fleets) await fleet.stop().catch(() => {});
  }
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase('bench_replicas');
  const scratch = mkdtempSync(join(tmpdir(), 'cronium-bench-'));
  const env = { CRONIUM_ENCRYPTION_KEY: randomBytes(32).toString('base64'), CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000' };
  const stacks: Stack[] = [];
  try {
    stacks.push(await startControlPlaneOnly({ databaseUrl: database.url, natsUrl: NATS_URL, env }));
    stacks.push(await startControlPlaneOnly({ databaseUrl: database.url, natsUrl: NATS_URL, env }));
    const [a] = stacks;
    const event = await a!.createEvent({ name: 'bench-noop', type: 'EVENT_TYPE_BASH', script: 'true' });
    const { db } = await openDatabase({ url: database.url, dataDir: scratch, poolSize: 1 });
    const eventRow = await db.selectFrom('events').selectAll().where('id', '=', event.id).executeTakeFirstOrThrow();
    const templateJobId = (await enqueueRun(db, eventRow, null, [])).jobIds[0]!;
    await db.destroy();

    // The replicas share one CA (through the database), so these certificates work on both.
    const { ca, agents } = await issueLeanAgents(a!, 'lean-replicas', AGENTS);
    const one = await phase(ctx, r, 'one', `one replica, ${AGENTS} agents`, stacks, [agents, []], ca, database.url, event.id, templateJobId);
    for (let i = 0; i < 50 && (await countStatus(database.url, event.id, 'offered')) > 0; i++) await sleep(100);
    const half = AGENTS / 2;
    const two = await phase(ctx, r, 'two', `two replicas, ${half} agents each`, stacks, [agents.slice(0, half), agents.slice(half)], ca, database.url, event.id, templateJobId);
    r.compare('two replicas vs one', 'two', 'one', 'value');
    r.note(
      `Two replicas ran at ${round(two / one)}× the rate of one on this ${cpus().length}-core machine, where the replicas, Postgres and the lean agents share the same cores: the figure shows the cost or gain of splitting the agents' streams across processes, not the scaling a second machine would give.`,
    );
  } finally {
    for (const stack of stacks) await stack.stop().catch(() => {});
    await database.drop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
}

export const replicas: Benchmark = {
  name: 'replicas',
  title: 'Throughput with two control-plane replicas vs one',
  budgetMs: 150_000,
  async run(ctx, r) {
    r.how.push(
      `Two control planes on one fresh Postgres database and NATS (the dispatch wake-ups cross replicas over NATS), sharing the master key and so the agent CA; ${AGENTS} lean agents (\`bench/lean-agent.ts\`, real mTLS agent-link clients) with ${SLOTS} slots each, which accept each offer and at once report STARTED and SUCCEEDED.`,
      `Phase 1: all ${AGENTS} agents connected to replica A (B runs but has no agents). Phase 2: ${AGENTS / 2} agents on A and ${AGENTS / 2} on B. Each phase runs a warm-up of ${WARMUP_JOBS} jobs and then measures a batch of ${JOBS.toLocaleString('en-US')} no-op jobs inserted at once (copies of one job made by \`enqueueRun\`, one run each), from the first offer to the last terminal status committed.`,
      'The baseline is phase 1, measured in the same run on the same database.',
    );
    await run(ctx, r);
  },
};
