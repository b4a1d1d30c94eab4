// Durable throughput: no-op jobs through the queue, the dispatcher and four
// agents, against what the same Postgres does with a bare SKIP LOCKED queue.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { openDatabase } from '../control-plane/src/store/database.ts';
import { enqueueRun } from '../control-plane/src/queue/enqueue.ts';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { LeanFleet } from './lean-agent.ts';
import { freshDatabase, issueLeanAgents, startControlPlaneOnly, waitForAgents, withClient, type Stack } from './lib/stack.ts';
import { CpuMeter, postgresBackends } from './lib/procstat.ts';
import { round, summarize } from './lib/stats.ts';
import { countStatus, measureBatch } from './lib/bulk.ts';
import { profileEnv, profiling, summarizeProfiles } from './lib/profile.ts';

const AGENTS = 4;
const SLOTS = 64;
const WARMUP_JOBS = 1_000;
const MIN_JOBS = 5_000;
const MAX_JOBS = 20_000;
/** The measured batch is sized to take about this long at the warm-up's rate. */
const TARGET_SECONDS = 30;
/** Hard stop for the measured batch. */
const MAX_MEASURE_MS = 60_000;
const BASELINE_MS = 4_000;
const BASELINE_ROWS = 30_000;

/** A copy of the jobs table (same columns and indexes, no foreign keys) filled with queued copies of a job. */
async function fillCopy(client: pg.Client, templateJobId: string, rows: number): Promise<void> {
  await client.query('drop table if exists jobs_copy');
  await client.query('create table jobs_copy (like jobs including defaults including indexes)');
  await client.query(
    `insert into jobs_copy (id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, error)
     select gen_random_uuid()::text, t.run_id, t.event_id, t.owner_id, t.max_attempts, 'queued', t.priority, t.spec, t.selector, ''
       from (select * from jobs where id = $1) t, generate_series(1, $2)`,
    [templateJobId, rows],
  );
  await client.query('vacuum analyze jobs_copy');
}

const CLAIM = `update jobs_copy set status = 'offered', agent_id = $1, lease_id = gen_random_uuid()::text, offered_at = now(),
                      offer_expires_at = now() + interval '5 seconds'
                where id in (select id from jobs_copy where status = 'queued' and run_after <= now()
                              order by priority desc, created_at, id for update skip locked limit $2)
               returning *`;
const COMPLETE = `update jobs_copy set status = 'succeeded', exit_code = 0, finished_at = now() where id = any($1::text[])`;

/** Claim + complete loops on the copy table: jobs per second. */
async function rawQueueRate(url: string, clients: number, batch: number, ms: number): Promise<number> {
  const conns = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  try {
    let done = 0;
    const start = performance.now();
    const end = start + ms;
    await Promise.all(
      conns.map(async (c, i) => {
        while (performance.now() < end) {
          const claimed = await c.query({ name: 'claim', text: CLAIM, values: [`raw-${i}`, batch] });
          if (claimed.rowCount === 0) break;
          await c.query({ name: 'complete', text: COMPLETE, values: [claimed.rows.map((row) => row.id)] });
          done += claimed.rowCount ?? 0;
        }
      }),
    );
    return done / ((performance.now() - start) / 1000);
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase('bench_throughput');
  const scratch = mkdtempSync(join(tmpdir(), 'cronium-bench-'));
  let stack: Stack | undefined;
  let fleet: LeanFleet | undefined;
  const profile = profiling ? profileEnv('throughput') : undefined;
  try {
    stack = await startControlPlaneOnly({ databaseUrl: database.url, env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000', ...profile?.env } });
    const event = await stack.createEvent({ name: 'bench-noop', type: 'EVENT_TYPE_BASH', script: 'true' });
    // One job made by the product's own enqueueRun: the template every other job copies.
    const { db } = await openDatabase({ url: database.url, dataDir: scratch, poolSize: 1 });
    const eventRow = await db.selectFrom('events').selectAll().where('id', '=', event.id).executeTakeFirstOrThrow();
    const templateJobId = (await enqueueRun(db, eventRow, null, [])).jobIds[0]!;
    await db.destroy();

    ctx.log(`baselines: raw SKIP LOCKED queue on a copy of the jobs table (${BASELINE_ROWS} rows)`);
    await withClient(database.url, (client) => fillCopy(client, templateJobId, BASELINE_ROWS));
    const one = await rawQueueRate(database.url, 1, 1, BASELINE_MS);
    await withClient(database.url, (client) => fillCopy(client, templateJobId, BASELINE_ROWS));
    const four = await rawQueueRate(database.url, AGENTS, 1, BASELINE_MS);
    await withClient(database.url, (client) => fillCopy(client, templateJobId, BASELINE_ROWS));
    const batched = await rawQueueRate(database.url, 1, 100, BASELINE_MS);
    await withClient(database.url, (client) => client.query('drop table jobs_copy'));
    r.value('raw.one', 'Postgres alone: claim + complete one job at a time, 1 client (SKIP LOCKED on a copy of the jobs table)', 'jobs/s', one, true);
    r.value('raw.four', `Postgres alone: claim + complete one job at a time, ${AGENTS} clients`, 'jobs/s', four, true);
    r.value('raw.batch', 'Postgres alone: claim + complete in batches of 100, 1 client', 'jobs/s', batched, true);

    const { ca, agents } = await issueLeanAgents(stack, 'lean-throughput', AGENTS);
    fleet = await LeanFleet.start({ address: `localhost:${stack.agentPort}`, ca, agents, slots: SLOTS, labels: { bench: 'lean' }, record: false });
    await waitForAgents(stack, agents.map((a) => a.agentId));
    // The template job itself goes first, before the counting starts.
    for (let i = 0; i < 50 && (await countStatus(database.url, event.id, 'succeeded')) < 1; i++) await sleep(100);

    ctx.log(`warm-up: ${WARMUP_JOBS} jobs`);
    const warm = await measureBatch(database.url, [fleet], event.id, WARMUP_JOBS, templateJobId, 40_000);
    const warmRate = warm.jobs / warm.seconds;
    const budget = Math.min(MAX_MEASURE_MS, ctx.timeLeft() - 15_000);
    const n = Math.max(MIN_JOBS, Math.min(MAX_JOBS, Math.round((warmRate * TARGET_SECONDS) / 1000) * 1000));
    ctx.log(`warm-up ran at ${round(warmRate)} jobs/s; measuring ${n} jobs (at most ${Math.round(budget / 1000)} s)`);

    const cp = new CpuMeter(() => [stack!.controlPlane!.pid!]).start();
    const pgCpu = new CpuMeter(() => postgresBackends(database.url.split('/').pop()!)).start();
    const agentCpu = new CpuMeter(() => [fleet!.pid]).start();
    const sampler = setInterval(() => pgCpu.sample(), 500);
    const activityBefore = await withClient(database.url, databaseActivity);
    const main = await measureBatch(database.url, [fleet], event.id, n, templateJobId, budget);
    clearInterval(sampler);
    const cpu = { controlPlane: cp.stop(), postgres: pgCpu.stop(), leanAgent: agentCpu.stop() };
    // Backends report their counts at most once a second, when idle.
    await sleep(2_000);
    const activityAfter = await withClient(database.url, databaseActivity);
    r.details.databaseWorkPerJob = Object.fromEntries(
      Object.entries(activityAfter).map(([name, value]) => [name, round((value - (activityBefore[name] ?? 0)) / Math.max(1, main.jobs))]),
    );
    const rate = main.jobs / main.seconds;

    // Jobs finished per second of the run, from the agents' terminal timestamps (finished_at).
    const perSecond = await withClient(database.url, async (client) =>
      (
        await client.query(
          `select count(*)::int as n from jobs where event_id = $1 and status = 'succeeded' and finished_at >= to_timestamp($2 / 1000.0)
              and finished_at < to_timestamp($3 / 1000.0)
            group by floor(extract(epoch from finished_at))`,
          [event.id, main.firstOffer + 1000, main.lastAck - 1000],
        )
      ).rows.map((row) => row.n as number),
    );
    const left = await countStatus(database.url, event.id, 'queued');
    const fleetStats = (await fleet.stats()).stats;
    r.details.leanAgents = fleetStats.map(({ agentId, offers, rejects, terminalAcked, staleCancels, heartbeats, reconnects, lastDisconnect, maxExecuting, unacked }) => ({
      agentId, offers, rejects, terminalAcked, staleCancels, heartbeats, reconnects, lastDisconnect, maxExecuting, unacked,
    }));
    const reconnects = fleetStats.reduce((sum, s) => sum + s.reconnects, 0);
    const stale = fleetStats.reduce((sum, s) => sum + s.staleCancels, 0);
    if (reconnects > 0) {
      const reasons = [...new Set(fleetStats.flatMap((s) => (s.lastDisconnect ? [s.lastDisconnect] : [])))];
      r.note(`The control plane ended agent streams ${reconnects} times during the run (${reasons.join('; ')}); the lean agents reconnected and resent their unacknowledged statuses, as the real agent does, and the figures include that.`);
    }
    const offers = fleetStats.reduce((sum, s) => sum + s.offers, 0);
    r.details.offersPerJob = round(offers / (1 + WARMUP_JOBS + main.jobs));
    if (stale > 0) {
      r.note(
        `The control plane fenced out ${stale} attempts the lean agents had already accepted and started (CancelJob stale), and made ${offers} offers for ${1 + WARMUP_JOBS + main.jobs} jobs: offers whose accept waited in the session queue past the offer timeout were requeued and offered again, so those jobs started twice.`,
      );
    }

    r.value('cronium', `Cronium: ${main.jobs} no-op jobs, ${AGENTS} lean agents × ${SLOTS} slots, first offer → last terminal status acknowledged`, 'jobs/s', rate);
    r.value('cronium.warm', `Cronium: warm-up batch of ${WARMUP_JOBS} jobs`, 'jobs/s', warmRate);
    if (perSecond.length > 0) r.distribution('cronium.per_second', 'Cronium: jobs finished in each whole second of the measured batch', 'jobs/s', summarize(perSecond));
    r.compare(`Cronium (${AGENTS} agents) vs Postgres one at a time, 1 client`, 'cronium', 'raw.one', 'value');
    r.compare(`Cronium (${AGENTS} agents) vs Postgres one at a time, ${AGENTS} clients`, 'cronium', 'raw.four', 'value');
    r.compare('Cronium vs Postgres batched by 100', 'cronium', 'raw.batch', 'value');
    r.target(
      'durable throughput, no-op jobs, 4 agents',
      '≥ 5,000 jobs/s',
      `${round(rate)} jobs/s (${main.jobs} jobs in ${round(main.seconds)} s${main.complete ? '' : `, stopped at the time limit with ${left} still queued`})`,
      rate >= 5_000,
    );
    r.details.batch = { jobs: n, finished: main.jobs, complete: main.complete, seconds: round(main.seconds), stillQueued: left };
    r.details.cpuPercentOfOneCore = {
      controlPlane: round(cpu.controlPlane.percentOfCore),
      postgresBackends: round(cpu.postgres.percentOfCore),
      leanAgentProcess: round(cpu.leanAgent.percentOfCore),
    };
    const perJobCp = cpu.controlPlane.cpuMs / Math.max(1, main.jobs);
    const perJobPg = cpu.postgres.cpuMs / Math.max(1, main.jobs);
    r.note(
      `During the measured batch the control plane used ${round(cpu.controlPlane.percentOfCore)}% of one core (${round(perJobCp)} ms of CPU per job), this database's Postgres backends ${round(cpu.postgres.percentOfCore)}% (${round(perJobPg)} ms per job) and the four lean agents ${round(cpu.leanAgent.percentOfCore)}%. The machine has ${cpus().length} cores.`,
    );
  } finally {
    await fleet?.stop().catch(() => {});
    await stack?.stop().catch(() => {});
    if (profile) r.details.profile = summarizeProfiles(profile.dir);
    await database.drop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** What Postgres did for this database: commits, and rows written per table (HOT updates rewrite no index). */
async function databaseActivity(client: pg.Client): Promise<Record<string, number>> {
  const commits = await client.query(`select xact_commit::int as n from pg_stat_database where datname = current_database()`);
  const tables = await client.query(
    `select relname, n_tup_ins::int as ins, n_tup_upd::int as upd, n_tup_hot_upd::int as hot from pg_stat_user_tables where relname in ('jobs', 'runs', 'job_attempts', 'agents')`,
  );
  const activity: Record<string, number> = { commits: commits.rows[0].n };
  for (const row of tables.rows) Object.assign(activity, { [`${row.relname}.inserted`]: row.ins, [`${row.relname}.updated`]: row.upd, [`${row.relname}.hotUpdated`]: row.hot });
  return activity;
}

export const throughput: Benchmark = {
  name: 'throughput',
  title: 'Durable throughput, no-op jobs, 4 agents',
  budgetMs: 130_000,
  async run(ctx, r) {
    r.how.push(
      `A control plane on Postgres (fresh database, memory bus, no orchestrator agent) and ${AGENTS} lean agents (\`bench/lean-agent.ts\`, real mTLS agent-link clients, in one child process) with ${SLOTS} slots each; each accepts an offer and at once reports STARTED and SUCCEEDED.`,
      `The jobs are no-op bash jobs, each in its own run as RunEvent makes them: one is made by the control plane's \`enqueueRun\`, and the rest are copied from it in one transaction (so they become visible at once). A warm-up batch of ${WARMUP_JOBS} jobs comes first; the measured batch is sized from its rate to about ${TARGET_SECONDS} s (between ${MIN_JOBS.toLocaleString('en-US')} and ${MAX_JOBS.toLocaleString('en-US')} jobs) and stops after ${MAX_MEASURE_MS / 1000} s at most.`,
      `Throughput = jobs / (first offered_at of the batch → the last SUCCEEDED acknowledged by the control plane, i.e. committed). The dispatcher finds the batch at its next 1 s poll; the clock starts at the first offer, so that wait is not counted.`,
      `Baselines, same run, same database: a copy of the jobs table (\`create table … (like jobs including defaults including indexes)\`, ${BASELINE_ROWS.toLocaleString('en-US')} queued copies of the same job) drained for ${BASELINE_MS / 1000} s each by \`UPDATE jobs_copy SET status='offered', … WHERE id IN (SELECT id … WHERE status='queued' ORDER BY priority DESC, created_at, id FOR UPDATE SKIP LOCKED LIMIT k) RETURNING *\` then \`UPDATE … SET status='succeeded' WHERE id = ANY($1)\`, prepared statements, autocommit: k = 1 with 1 client, k = 1 with ${AGENTS} clients, k = 100 with 1 client.`,
    );
    await run(ctx, r);
  },
};
