// What an idle control plane and agent cost: CPU and resident memory.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { freshDatabase, Stack } from './lib/stack.ts';
import { cpuMs, postgresBackends, rssMb } from './lib/procstat.ts';
import { round, summarize } from './lib/stats.ts';

const SETTLE_MS = 5_000;
const WINDOW_MS = 20_000;

interface Usage {
  readonly cpuPercent: number;
  readonly rss: ReturnType<typeof summarize>;
  /** RSS each second, in MB. */
  readonly series: number[];
}

/** CPU over the window (percent of one core) and RSS sampled every second, for each pid. */
async function observe(pids: Record<string, () => number[]>, windowMs: number): Promise<Record<string, Usage>> {
  const sum = (ids: number[], f: (pid: number) => number) => ids.reduce((total, pid) => total + (f(pid) || 0), 0);
  const startCpu = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, sum(f(), cpuMs)]));
  const rss: Record<string, number[]> = Object.fromEntries(Object.keys(pids).map((k) => [k, []]));
  const started = performance.now();
  while (performance.now() - started < windowMs) {
    for (const [k, f] of Object.entries(pids)) rss[k]!.push(sum(f(), rssMb));
    await sleep(1_000);
  }
  const wall = performance.now() - started;
  return Object.fromEntries(
    Object.entries(pids).map(([k, f]) => [k, { cpuPercent: ((sum(f(), cpuMs) - startCpu[k]!) / wall) * 100, rss: summarize(rss[k]!), series: rss[k]!.map(round) }]),
  );
}

async function idleStack(name: 'postgres' | 'pglite', ctx: BenchContext, r: ResultBuilder): Promise<Record<string, Usage>> {
  const database = name === 'postgres' ? await freshDatabase('bench_idle') : undefined;
  // The defaults of a real deployment, not the harness's quick test timings.
  const stack = new Stack({ databaseUrl: database?.url, env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000' } });
  // A bare Node process idling beside it: the floor of a Node program on this machine.
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await stack.start();
    ctx.log(`${name}: settling ${SETTLE_MS / 1000} s, then ${WINDOW_MS / 1000} s idle`);
    await sleep(SETTLE_MS);
    const dbName = database?.url.split('/').pop();
    const groups: Record<string, () => number[]> = {
      controlPlane: () => [stack.controlPlane!.pid!],
      agent: () => [stack.agent!.pid!],
      bareNode: () => [bare.pid!],
    };
    if (dbName) groups.postgres = () => postgresBackends(dbName);
    const usage = await observe(groups, WINDOW_MS);
    const label = name === 'postgres' ? 'on Postgres' : 'on embedded PGlite (the npm start default)';
    r.value(`${name}.cp.cpu`, `Control plane ${label}: CPU, idle`, '% of one core', usage.controlPlane!.cpuPercent);
    r.distribution(`${name}.cp.rss`, `Control plane ${label}: RSS, sampled each second`, 'MB', usage.controlPlane!.rss);
    r.value(`${name}.agent.cpu`, `Orchestrator agent (${name} control plane): CPU, idle`, '% of one core', usage.agent!.cpuPercent);
    r.distribution(`${name}.agent.rss`, `Orchestrator agent (${name} control plane): RSS, sampled each second`, 'MB', usage.agent!.rss);
    r.details[name] = { rssSeriesMb: Object.fromEntries(Object.entries(usage).map(([k, u]) => [k, u.series])) };
    for (const [who, u] of Object.entries(usage)) {
      const first = u.series[0] ?? NaN;
      const last = u.series[u.series.length - 1] ?? NaN;
      if (last - first > 5) r.note(`${label}: the ${who} RSS grew from ${first} MB to ${last} MB during the ${WINDOW_MS / 1000} s idle window.`);
    }
    if (usage.postgres) r.value(`${name}.pg.cpu`, "This database's Postgres backends: CPU, idle", '% of one core', usage.postgres.cpuPercent);
    r.value(`${name}.bare.cpu`, 'A bare Node process (setInterval only): CPU', '% of one core', usage.bareNode!.cpuPercent, true);
    r.distribution(`${name}.bare.rss`, 'A bare Node process (setInterval only): RSS', 'MB', usage.bareNode!.rss, true);
    return usage;
  } finally {
    bare.kill();
    await stack.stop().catch(() => {});
    await database?.drop().catch(() => {});
  }
}

export const idle: Benchmark = {
  name: 'idle',
  title: 'Idle cost of the control plane and the agent',
  budgetMs: 80_000,
  async run(ctx, r) {
    r.how.push(
      `A control plane and its orchestrator agent (Docker executor) started by \`test/harness.ts\` with the deployment defaults (heartbeat 5 s, lease TTL 30 s), no jobs, no API calls; after ${SETTLE_MS / 1000} s to settle, CPU time (utime + stime from /proc) over ${WINDOW_MS / 1000} s and RSS (VmRSS) sampled every second.`,
      `Twice: with Postgres (\`CRONIUM_DATABASE_URL\`) and with the embedded PGlite store (the \`npm start\` default, no database URL).`,
      `Baseline, side by side in the same window: a bare Node process that only runs \`setInterval\`.`,
    );
    const pgUsage = await idleStack('postgres', ctx, r);
    const liteUsage = ctx.timeLeft() > 35_000 ? await idleStack('pglite', ctx, r) : undefined;
    if (!liteUsage) r.note('The PGlite run was skipped: out of time.');
    r.compare('Control plane on Postgres vs bare Node, RSS p50', 'postgres.cp.rss', 'postgres.bare.rss', 'p50');
    r.compare('Agent vs bare Node, RSS p50', 'postgres.agent.rss', 'postgres.bare.rss', 'p50');
    if (liteUsage) r.compare('Control plane on PGlite vs bare Node, RSS p50', 'pglite.cp.rss', 'pglite.bare.rss', 'p50');
    const describe = (u: Record<string, Usage>) =>
      `control plane ${round(u.controlPlane!.cpuPercent)}% CPU, ${round(u.controlPlane!.rss.max)} MB; agent ${round(u.agent!.cpuPercent)}% CPU, ${round(u.agent!.rss.max)} MB`;
    const meets = (u: Record<string, Usage>) => u.controlPlane!.cpuPercent <= 1 && u.controlPlane!.rss.max <= 150 && u.agent!.rss.max <= 80;
    r.target(
      'idle cost',
      'control plane ≤ 1% CPU, ≤ 150 MB; agent ≤ 80 MB',
      `Postgres: ${describe(pgUsage)}` + (liteUsage ? `; PGlite: ${describe(liteUsage)}` : '') + ' (RSS = max over the window)',
      meets(pgUsage) && (!liteUsage || meets(liteUsage)),
    );
  },
};
