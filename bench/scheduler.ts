// Scheduler precision: how late (or early) cron fires are, with many events due
// every second, against croner firing the same schedules in a bare process.
import { setTimeout as sleep } from 'node:timers/promises';
import { Cron } from 'croner';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { freshDatabase, startControlPlaneOnly, withClient, type Stack } from './lib/stack.ts';
import { CpuMeter, postgresBackends } from './lib/procstat.ts';
import { nowMs, round, summarize } from './lib/stats.ts';

const CRON = '* * * * * *';
const WARMUP_MS = 3_000;
const WINDOW_MS = 12_000;

/** Creates n events that fire every second, through the API, a few at a time. */
async function createScheduled(stack: Stack, n: number, prefix: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await stack.createEvent({ name: `${prefix}-${i}`, type: 'EVENT_TYPE_BASH', script: 'true', schedule: { cron: CRON, timezone: 'UTC' } });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

/** How long before each instant the committed-fires poll starts, to catch a commit made early. */
const WATCH_BEFORE_MS = 10;
/** For this long after its instant, an instant's fires are polled back to back; then with 1 ms between polls. */
const WATCH_CLOSELY_MS = 50;

/**
 * When the fires due in [from, to) became visible to another connection, that is committed (what a user listing
 * runs sees), ms after their instant (negative: early). From WATCH_BEFORE_MS before each instant, its fires are
 * counted on a connection of its own until all are there; each poll's new rows count as seen when its answer
 * arrives (so at most one poll late). Fires not visible by `until` count at their age then.
 */
async function commitLateness(url: string, events: number, from: number, to: number, until: number): Promise<{ lateness: number[]; lastByInstant: number[] }> {
  const lateness: number[] = [];
  const lastByInstant: number[] = [];
  await withClient(url, async (client) => {
    for (let at = from; at < to; at += 1000) {
      let seen = 0;
      if (at - WATCH_BEFORE_MS > nowMs()) await sleep(at - WATCH_BEFORE_MS - nowMs());
      while (seen < events && nowMs() < until) {
        // The database is this phase's own: every fire at the instant is one of its events'. (No list of ids to send and match each poll.)
        const { rows } = await client.query('select count(*)::int as n from schedule_fires where fire_at = to_timestamp($1 / 1000.0)', [at]);
        const arrived = nowMs();
        for (; seen < rows[0].n; seen++) lateness.push(arrived - at);
        if (arrived > at + WATCH_CLOSELY_MS) await sleep(1);
      }
      for (; seen < events; seen++) lateness.push(until - at);
      lastByInstant.push(round(lateness.at(-1)!));
    }
  });
  return { lateness, lastByInstant };
}

interface Fires {
  /** created_at − fire_at of each fire in the window, ms (negative = early). */
  readonly lateness: number[];
  readonly expected: number;
  readonly missing: number;
}

/** Fires due in [from, to): their lateness, and those not made by `readAt` counted at their age then. */
async function fires(url: string, from: number, to: number, events: number, readAt: number): Promise<Fires> {
  const rows = await withClient(url, async (client) =>
    (
      await client.query(
        `select (extract(epoch from created_at - fire_at) * 1000)::float8 as late
           from schedule_fires where fire_at >= to_timestamp($1 / 1000.0) and fire_at < to_timestamp($2 / 1000.0)`,
        [from, to],
      )
    ).rows.map((row) => row.late as number),
  );
  const seconds = Math.round((to - from) / 1000);
  const expected = seconds * events;
  const missing = Math.max(0, expected - rows.length);
  // Fires not made yet are at least as late as the time from their instant to now (the oldest possible: `to`).
  const lateness = [...rows, ...Array.from({ length: missing }, () => readAt - to)];
  return { lateness, expected, missing };
}

/** The same number of croner jobs in this process: how late their callbacks run. */
async function bareCroner(n: number, ms: number): Promise<number[]> {
  const lateness: number[] = [];
  const jobs = Array.from({ length: n }, () =>
    new Cron(CRON, { timezone: 'UTC' }, () => {
      const at = nowMs();
      // Every second: the instant it was due is the whole second before (a callback in the last 100 ms of a second counts as early).
      const into = at % 1000;
      lateness.push(into < 900 ? into : into - 1000);
    }),
  );
  await sleep(ms);
  for (const job of jobs) job.stop();
  return lateness;
}

async function phase(id: string, events: number, ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const database = await freshDatabase(`bench_sched_${id}`);
  let stack: Stack | undefined;
  try {
    stack = await startControlPlaneOnly({ databaseUrl: database.url, env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000' } });
    ctx.log(`${id}: creating ${events} events firing every second`);
    await createScheduled(stack, events, `bench-${id}`);
    await sleep(WARMUP_MS);
    // A whole second ahead: the watcher below connects before the first instant.
    const from = Math.ceil(nowMs() / 1000) * 1000 + 1000;
    const to = from + WINDOW_MS;
    const cp = new CpuMeter(() => [stack!.controlPlane!.pid!]).start();
    const pgCpu = new CpuMeter(() => postgresBackends(database.url.split('/').pop()!)).start();
    const sampler = setInterval(() => pgCpu.sample(), 1_000);
    ctx.log(`${id}: measuring ${WINDOW_MS / 1000} s of fires`);
    const committed = await commitLateness(database.url, events, from, to, to + 2_000);
    await sleep(to + 2_000 - nowMs());
    clearInterval(sampler);
    const cpu = { controlPlane: round(cp.stop().percentOfCore), postgres: round(pgCpu.stop().percentOfCore) };
    const result = await fires(database.url, from, to, events, nowMs());
    const early = result.lateness.filter((late) => late < 0).length;
    const label = `${events} events every second`;
    const notMade = result.missing > 0 ? ` (${result.missing} of ${result.expected} fires not made 2 s after the window, counted at their age then)` : '';
    r.distribution(`${id}.late`, `Cronium, ${label}: fire lateness, scheduled instant → the fire's run is committed (visible to another connection)${notMade}`, 'ms', summarize(committed.lateness));
    r.distribution(`${id}.lateStart`, `Cronium, ${label}: fire lateness, scheduled instant → the fire's recorded time (schedule_fires.created_at)${notMade}`, 'ms', summarize(result.lateness));
    const visibleEarly = committed.lateness.filter((late) => late < 0).length;
    r.value(`${id}.early`, `Cronium, ${label}: fires made early (recorded before their instant)`, 'fires', early);
    r.value(`${id}.visibleEarly`, `Cronium, ${label}: fires committed early (visible before their instant)`, 'fires', visibleEarly);
    r.value(`${id}.rate`, `Cronium, ${label}: fires made per second (of ${events} due)`, 'fires/s', (result.expected - result.missing) / (WINDOW_MS / 1000));
    r.details[id] = { events, expected: result.expected, missing: result.missing, early, visibleEarly, commitLateOfLastFireByInstantMs: committed.lastByInstant, cpuPercentOfOneCore: cpu };
    r.note(`${label}: the control plane used ${cpu.controlPlane}% of one core and this database's Postgres backends ${cpu.postgres}% while firing.`);
  } finally {
    await stack?.stop().catch(() => {});
    await database.drop().catch(() => {});
  }
}

export const schedulerPrecision: Benchmark = {
  name: 'scheduler',
  title: 'Scheduler precision, events due every second',
  budgetMs: 90_000,
  async run(ctx, r) {
    r.how.push(
      `A control plane on Postgres (fresh database, memory bus, no agent: the runs' jobs just queue), holding the scheduler leadership. Events are created through the API with the schedule \`${CRON}\` (every second, UTC), then after at least ${WARMUP_MS / 1000} s the fires due in a ${WINDOW_MS / 1000} s window are read from \`schedule_fires\`.`,
      `Lateness (the target's figure) = when the fire is committed − \`fire_at\` (the scheduled instant): from ${WATCH_BEFORE_MS} ms before each instant, the benchmark counts that instant's \`schedule_fires\` rows on a connection of its own until all are visible (back to back for ${WATCH_CLOSELY_MS} ms after the instant, then 1 ms apart), and each poll's new rows count as seen when its answer arrives (at most one poll late). Also given: \`schedule_fires.created_at\` − \`fire_at\`, the fire's recorded time: its transaction's start (Postgres \`now()\`), or the instant itself for a transaction prepared ahead of it; "early" counts fires recorded before their instant (\`created_at\` < \`fire_at\`) and fires seen committed before it (the poll starts ${WATCH_BEFORE_MS} ms ahead of each instant); the target's figure is their sum. Fires not made 2 s after the window are counted at their age then (a lower bound).`,
      `Two phases on fresh databases: 10 events (the path itself) and 1,000 events (the issue's figure).`,
      `Baseline, same run: the same number of croner jobs with the same cron expression in the benchmark process; lateness = when the callback runs − its scheduled instant.`,
    );
    ctx.log('baseline: croner alone, 1,000 jobs, 5 s');
    r.distribution('croner.1000', 'croner alone, 1,000 jobs every second: callback lateness', 'ms', summarize(await bareCroner(1_000, 5_000)), true);
    r.distribution('croner.10', 'croner alone, 10 jobs every second: callback lateness', 'ms', summarize(await bareCroner(10, 3_000)), true);
    await phase('ten', 10, ctx, r);
    if (ctx.timeLeft() > 35_000) await phase('thousand', 1_000, ctx, r);
    else r.note('The 1,000-event phase was skipped: out of time.');
    r.compare('10 events: Cronium vs croner alone, p50', 'ten.late', 'croner.10', 'p50');
    r.compare('10 events: Cronium vs croner alone, p99', 'ten.late', 'croner.10', 'p99');
    const thousand = r.figures.find((f) => f.id === 'thousand.late')?.summary;
    if (thousand) {
      r.compare('1,000 events: Cronium vs croner alone, p50', 'thousand.late', 'croner.1000', 'p50');
      r.compare('1,000 events: Cronium vs croner alone, p99', 'thousand.late', 'croner.1000', 'p99');
      const early = r.stat('thousand.early', 'value') + r.stat('thousand.visibleEarly', 'value');
      r.target(
        'scheduler precision, 1,000 events every second',
        'p99 ≤ 10 ms late, 0 early',
        `p50 ${round(thousand.p50)} ms, p99 ${round(thousand.p99)} ms late to the commit (recorded time: p99 ${round(r.stat('thousand.lateStart', 'p99'))} ms), ${early} early; ${round(r.stat('thousand.rate', 'value'))} of 1,000 fires/s made (10 events: p99 ${round(r.stat('ten.late', 'p99'))} ms)`,
        thousand.p99 <= 10 && early === 0,
      );
    }
  },
};
