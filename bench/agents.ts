// Many agents on one control plane: what their streams and heartbeats cost it.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { loadOrCreateCa } from '../control-plane/src/pki/ca.ts';
import { freePort, root } from '../test/harness.ts';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { LeanFleet, type FleetAgent } from './lean-agent.ts';
import { freshDatabase, Stack, withClient } from './lib/stack.ts';
import { CpuMeter, cpuMs, postgresBackends, rssMb } from './lib/procstat.ts';
import { round, summarize } from './lib/stats.ts';
import { profileEnv, profiling, summarizeProfiles } from './lib/profile.ts';

/** BENCH_AGENTS overrides the issue's 5,000. */
const AGENTS = Number(process.env.BENCH_AGENTS) || 5_000;
const HEARTBEAT_MS = 5_000;
const CONNECT_CONCURRENCY = 64;
/** Agents not connected by then are left out (and the figure says how many made it). */
const CONNECT_WITHIN_MS = 75_000;
const IDLE_WINDOW_MS = 10_000;
const WINDOW_MS = 20_000;
const BASELINE_MS = 10_000;
/**
 * Issuing a certificate takes ~4 ms here, so 5,000 take ~20 s: they are kept
 * (with their own CA, copied into the control plane's data folder) for later runs.
 */
const CACHE = join(root, 'bench', '.cache', 'agents');
const CACHE_DAYS = 20;

interface Credentials {
  readonly ca: string;
  readonly agents: FleetAgent[];
}

async function credentials(n: number, ctx: BenchContext): Promise<Credentials> {
  const pki = join(CACHE, 'pki');
  const listPath = join(CACHE, 'agents.json');
  let cached: { createdAt: number; agents: FleetAgent[] } | undefined;
  if (existsSync(listPath)) {
    cached = JSON.parse(readFileSync(listPath, 'utf8'));
    if (Date.now() - cached!.createdAt > CACHE_DAYS * 86_400_000) cached = undefined;
  }
  if (!cached) {
    mkdirSync(CACHE, { recursive: true });
    rmSync(pki, { recursive: true, force: true });
    cached = { createdAt: Date.now(), agents: [] };
  }
  const ca = await loadOrCreateCa(pki);
  if (cached.agents.length < n) {
    ctx.log(`issuing ${n - cached.agents.length} agent certificates (kept in bench/.cache for later runs)`);
    for (let i = cached.agents.length; i < n; i++) {
      const agentId = `lean-scale-${i}`;
      const pair = await ca.issueAgent(agentId, 30);
      cached.agents.push({ agentId, cert: pair.cert, key: pair.key });
    }
    writeFileSync(listPath, JSON.stringify(cached));
  }
  return { ca: ca.certPem, agents: cached.agents.slice(0, n) };
}

async function usage(pid: number, windowMs: number): Promise<{ cpuPercent: number; rss: ReturnType<typeof summarize> }> {
  const start = cpuMs(pid);
  const began = performance.now();
  const rss: number[] = [];
  while (performance.now() - began < windowMs) {
    rss.push(rssMb(pid));
    await sleep(1_000);
  }
  return { cpuPercent: ((cpuMs(pid) - start) / (performance.now() - began)) * 100, rss: summarize(rss) };
}

async function connectedCount(url: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query('select count(*) from agents where connected')).rows[0].count));
}

async function run(ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const { ca, agents } = await credentials(AGENTS, ctx);
  const database = await freshDatabase('bench_agents');
  const profile = profiling ? profileEnv('agents') : undefined;
  const stack = new Stack({ databaseUrl: database.url, env: { CRONIUM_HEARTBEAT_MS: String(HEARTBEAT_MS), CRONIUM_LEASE_TTL_MS: '30000', ...profile?.env } });
  let fleet: LeanFleet | undefined;
  const dbName = database.url.split('/').pop()!;
  try {
    // The control plane adopts the cached CA, so the cached agent certificates verify.
    mkdirSync(join(stack.dataDir, 'pki'), { recursive: true, mode: 0o700 });
    for (const file of ['ca.crt', 'ca.key']) copyFileSync(join(CACHE, 'pki', file), join(stack.dataDir, 'pki', file));
    stack.httpPort = await freePort();
    stack.grpcPort = await freePort();
    stack.agentPort = await freePort();
    await stack.startControlPlane();
    const pid = stack.controlPlane!.pid!;
    await sleep(2_000);

    ctx.log(`baseline: the control plane with no agent, ${IDLE_WINDOW_MS / 1000} s`);
    const empty = await usage(pid, IDLE_WINDOW_MS);
    r.value('empty.cpu', 'Control plane with no agent connected: CPU', '% of one core', empty.cpuPercent, true);
    r.distribution('empty.rss', 'Control plane with no agent connected: RSS', 'MB', empty.rss, true);

    ctx.log(`connecting ${AGENTS} lean agents, ${CONNECT_CONCURRENCY} at a time`);
    const rampStart = performance.now();
    const rampCp = new CpuMeter(() => [pid]).start();
    const rampPg = new CpuMeter(() => postgresBackends(dbName)).start();
    const rampSampler = setInterval(() => rampPg.sample(), 1_000);
    let rampFleet: CpuMeter | undefined;
    fleet = await LeanFleet.start({
      address: `localhost:${stack.agentPort}`,
      ca,
      agents,
      slots: 1,
      labels: { bench: 'scale' },
      record: false,
      connectConcurrency: CONNECT_CONCURRENCY,
      tolerateFailures: true,
      connectWithinMs: Math.min(CONNECT_WITHIN_MS, Math.max(10_000, ctx.timeLeft() - 70_000)),
    }, (fleetPid) => (rampFleet = new CpuMeter(() => [fleetPid]).start()));
    const rampSeconds = (performance.now() - rampStart) / 1000;
    clearInterval(rampSampler);
    const rampCpu = {
      controlPlane: round(rampCp.stop().percentOfCore),
      postgres: round(rampPg.stop().percentOfCore),
      leanAgents: round(rampFleet?.stop().percentOfCore ?? NaN),
    };
    r.details.connectCpuPercentOfOneCore = rampCpu;
    let registered = 0;
    for (let i = 0; i < 100; i++) {
      registered = await connectedCount(database.url);
      if (registered >= fleet.connected) break;
      await sleep(200);
    }
    ctx.log(`${fleet.connected} connected in ${round(rampSeconds)} s (${fleet.failed} failed); settling ${HEARTBEAT_MS / 1000} s`);
    r.value('connected', `Agents connected (of ${AGENTS})`, 'agents', fleet.connected);
    r.value('ramp', `Time to connect them, ${CONNECT_CONCURRENCY} at a time (TLS handshake, Hello → Welcome)`, 's', rampSeconds);
    r.value('ramp.rate', 'Agents connected per second', 'agents/s', fleet.connected / rampSeconds);
    r.note(
      `While the agents connected (${round(fleet.connected / rampSeconds)}/s), the control plane used ${rampCpu.controlPlane}% of one core, this database's Postgres backends ${rampCpu.postgres}% and the lean agents' process ${rampCpu.leanAgents}% (TLS handshakes, one grpc-js channel each).` +
        (fleet.connected < AGENTS ? ` Connecting stopped after ${round(rampSeconds)} s with ${fleet.connected} of ${AGENTS} connected, to stay within the time budget.` : ''),
    );
    if (fleet.failed > 0) r.note(`${fleet.failed} agents could not connect: ${fleet.errors.join('; ')}`);
    await sleep(HEARTBEAT_MS);

    ctx.log(`measuring ${WINDOW_MS / 1000} s of heartbeats`);
    const pgCpu = new CpuMeter(() => postgresBackends(dbName)).start();
    const fleetCpu = new CpuMeter(() => [fleet!.pid]).start();
    const sampler = setInterval(() => pgCpu.sample(), 1_000);
    const before = (await fleet.stats()).stats.reduce((sum, s) => sum + s.heartbeats, 0);
    const loaded = await usage(pid, WINDOW_MS);
    const after = (await fleet.stats()).stats.reduce((sum, s) => sum + s.heartbeats, 0);
    clearInterval(sampler);
    const pgPercent = pgCpu.stop().percentOfCore;
    const fleetPercent = fleetCpu.stop().percentOfCore;
    const stillConnected = await connectedCount(database.url);
    const beatsPerSecond = (after - before) / (WINDOW_MS / 1000);
    r.value('beats', 'Heartbeats sent per second by the agents', 'heartbeats/s', beatsPerSecond);
    r.value('cp.cpu', `Control plane with ${fleet.connected} agents heartbeating every ${HEARTBEAT_MS / 1000} s: CPU`, '% of one core', loaded.cpuPercent);
    r.distribution('cp.rss', `Control plane with ${fleet.connected} agents: RSS, sampled each second`, 'MB', loaded.rss);
    r.value('pg.cpu', "This database's Postgres backends during the window: CPU", '% of one core', pgPercent);
    r.value('fleet.cpu', `The ${fleet.connected} lean agents (one process): CPU`, '% of one core', fleetPercent);
    r.value('still', 'Agents still shown connected after the window', 'agents', stillConnected);

    ctx.log(`baseline: Postgres alone doing the heartbeat writes, ${BASELINE_MS / 1000} s`);
    const statement = 'update agents set last_heartbeat_at = $2 where id = $1';
    const pool = new pg.Pool({ connectionString: database.url, max: 4 });
    await Promise.all(Array.from({ length: 4 }, () => pool.query('select 1')));
    const basePg = new CpuMeter(() => postgresBackends(dbName)).start();
    const began = performance.now();
    let sent = 0;
    while (performance.now() - began < BASELINE_MS) {
      const due = Math.floor(((performance.now() - began) / 1000) * beatsPerSecond);
      const batch: Promise<unknown>[] = [];
      for (; sent < due; sent++) batch.push(pool.query({ name: 'beat', text: statement, values: [agents[sent % agents.length]!.agentId, new Date()] }));
      await Promise.all(batch);
      await sleep(5);
    }
    const basePercent = basePg.stop().percentOfCore;
    await pool.end();
    r.value('pg.baseline', `Postgres alone: the same ${round(beatsPerSecond)} single-row UPDATEs of agents per second (4 clients): backend CPU`, '% of one core', basePercent, true);

    r.compare('Control plane CPU with the agents vs with none', 'cp.cpu', 'empty.cpu', 'value');
    r.compare('Control plane RSS with the agents vs with none, p50', 'cp.rss', 'empty.rss', 'p50');
    r.compare("Postgres CPU for the control plane's heartbeats vs the same UPDATEs alone", 'pg.cpu', 'pg.baseline', 'value');
    const perAgentKb = ((loaded.rss.p50 - empty.rss.p50) * 1024) / Math.max(1, fleet.connected);
    r.note(
      `Per connected agent: ${round(perAgentKb)} KB of control-plane RSS and ${round((loaded.cpuPercent - empty.cpuPercent) / Math.max(1, fleet.connected) * 1000)} thousandths of a percent of a core; each heartbeat costs the control plane an UPDATE of its agents row (and a lease renewal when it holds jobs).`,
    );
    const within = loaded.cpuPercent <= 15 && loaded.rss.max <= 600;
    // Costs grow with the number of agents: over the target with fewer than 5,000 is a clear "not met".
    const met = fleet.connected >= 5_000 ? within : within ? null : false;
    r.target(
      'agents on one control plane, heartbeats every 5 s',
      '5,000 agents, ≤ 15% of one core, RSS ≤ 600 MB',
      `${fleet.connected} agents${fleet.connected < 5_000 ? ` (all that connected within ${round(rampSeconds)} s)` : ''}: ${round(loaded.cpuPercent)}% of one core (+ Postgres ${round(pgPercent)}%), RSS max ${round(loaded.rss.max)} MB`,
      met,
    );
    r.details.heartbeatsPerSecond = round(beatsPerSecond);
  } finally {
    await fleet?.stop().catch(() => {});
    await stack.stop().catch(() => {});
    if (profile) r.details.profile = summarizeProfiles(profile.dir);
    await database.drop().catch(() => {});
  }
}

export const agentsScale: Benchmark = {
  name: 'agents',
  title: `${AGENTS.toLocaleString('en-US')} agents on one control plane`,
  budgetMs: 150_000,
  async run(ctx, r) {
    r.how.push(
      `A control plane on Postgres (fresh database, memory bus, no orchestrator agent) and ${AGENTS.toLocaleString('en-US')} lean agents (\`bench/lean-agent.ts\`), all in one child process, each with its own mTLS connection, client certificate and Connect stream, heartbeating every ${HEARTBEAT_MS / 1000} s (the control plane's default interval), no jobs.`,
      `They connect ${CONNECT_CONCURRENCY} at a time, for at most ${CONNECT_WITHIN_MS / 1000} s (those not connected by then are left out and the figures say how many made it); after one heartbeat interval to settle, the control plane's CPU (utime + stime from /proc) is measured over ${WINDOW_MS / 1000} s and its RSS sampled each second.`,
      `Baselines, same run: the same control plane with no agent (${IDLE_WINDOW_MS / 1000} s, before they connect), and Postgres alone applying the same number of single-row \`UPDATE agents SET last_heartbeat_at\` per second from 4 clients.`,
      `The certificates (4 ms each to issue here) come from a CA kept in \`bench/.cache/agents\` and copied into the control plane's data folder, so later runs reuse them.`,
    );
    await run(ctx, r);
  },
};
