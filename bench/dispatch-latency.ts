// Dispatch latency, measured as Hatchet and Graphile Worker measure it: from the
// job's commit as ready to the agent reporting it started, split into phases.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as natsConnect } from 'nats';
import { openDatabase, type Db } from '../control-plane/src/store/database.ts';
import { enqueueRun } from '../control-plane/src/queue/enqueue.ts';
import { subjects } from '../control-plane/src/bus/bus.ts';
import type { BenchContext, Benchmark } from './lib/context.ts';
import type { ResultBuilder } from './lib/result.ts';
import { LeanFleet, type JobRecord } from './lean-agent.ts';
import { freshDatabase, issueLeanAgents, NATS_URL, startControlPlaneOnly, waitForAgents, withClient, type Stack } from './lib/stack.ts';
import { openLoop } from './lib/load.ts';
import { commitLatency } from './lib/pg-baselines.ts';
import { CpuMeter, postgresBackends } from './lib/procstat.ts';
import { nowMs, round, summarize } from './lib/stats.ts';
import { profileEnv, profiling, summarizeProfiles } from './lib/profile.ts';

/** BENCH_DISPATCH_RATE and BENCH_DISPATCH_SECONDS override the issue's 200/s and the 15 s window (for exploring). */
const RATE = Number(process.env.BENCH_DISPATCH_RATE) || 200;
const WARMUP_MS = 3_000;
const MEASURE_MS = (Number(process.env.BENCH_DISPATCH_SECONDS) || 15) * 1000;
const SLOTS = 16;
/** After the load, how long jobs may take to finish before the rest count as not started. */
const DRAIN_MS = 10_000;
/** A rate the control plane keeps up with: the path's latency without a queue. */
const LIGHT_RATE = 20;

type Mode = 'api' | 'direct';

interface JobTimes {
  readonly id: string;
  readonly created: number;
  readonly offered: number;
  readonly started: number | null;
  readonly status: string;
  /** When the transaction that made the job committed (track_commit_timestamp), from the RunEvent's audit row, which no later change touches. */
  readonly committed: number | null;
}

async function tracksCommitTimes(url: string): Promise<boolean> {
  return withClient(url, async (client) => (await client.query(`select current_setting('track_commit_timestamp') as on`)).rows[0].on === 'on');
}

async function jobTimes(url: string, eventId: string, commitTimes: boolean): Promise<JobTimes[]> {
  const committed = commitTimes ? `(extract(epoch from pg_xact_commit_timestamp(a.xmin)) * 1000)::float8` : 'null::float8';
  return withClient(url, async (client) => {
    const { rows } = await client.query<JobTimes>(
      `select j.id, j.status,
              (extract(epoch from j.created_at) * 1000)::float8 as created,
              (extract(epoch from j.offered_at) * 1000)::float8 as offered,
              (extract(epoch from j.started_at) * 1000)::float8 as started,
              ${committed} as committed
         from jobs j left join audit_events a on a.object_type = 'run' and a.object_id = j.run_id and a.method like '%/RunEvent'
        where j.event_id = $1`,
      [eventId],
    );
    return rows;
  });
}

async function waitForDone(url: string, eventId: string, expected: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let done = 0;
  while (Date.now() < deadline) {
    done = await withClient(url, async (client) =>
      Number((await client.query(`select count(*) from jobs where event_id = $1 and status = 'succeeded'`, [eventId])).rows[0].count),
    );
    if (done >= expected) break;
    await sleep(200);
  }
  return done;
}

interface Phase {
  /** Prefix of the figure ids. */
  readonly id: string;
  readonly label: string;
  readonly mode: Mode;
  readonly rate: number;
  readonly measureMs: number;
}

async function phase(p: Phase, ctx: BenchContext, r: ResultBuilder): Promise<void> {
  const { id, label, mode, rate, measureMs } = p;
  const database = await freshDatabase(`bench_dispatch_${id}`);
  let stack: Stack | undefined;
  let fleet: LeanFleet | undefined;
  let db: Db | undefined;
  const scratch = mkdtempSync(join(tmpdir(), 'cronium-bench-'));
  const nc = mode === 'direct' ? await natsConnect({ servers: NATS_URL, name: 'cronium-bench' }) : undefined;
  const profile = profiling ? profileEnv(`dispatch-latency-${id}`) : undefined;
  try {
    stack = await startControlPlaneOnly({
      databaseUrl: database.url,
      natsUrl: mode === 'direct' ? NATS_URL : undefined,
      env: { CRONIUM_HEARTBEAT_MS: '5000', CRONIUM_LEASE_TTL_MS: '30000', ...profile?.env },
    });
    const { ca, agents } = await issueLeanAgents(stack, `lean-${id}`, 1);
    fleet = await LeanFleet.start({ address: `localhost:${stack.agentPort}`, ca, agents, slots: SLOTS, labels: { bench: 'lean' }, record: true });
    await waitForAgents(stack, agents.map((a) => a.agentId));

    const warm = await stack.createEvent({ name: 'bench-warmup', type: 'EVENT_TYPE_BASH', script: 'true' });
    const measured = await stack.createEvent({ name: 'bench-dispatch', type: 'EVENT_TYPE_BASH', script: 'true' });
    const requestMs: number[] = [];
    /** Client-side time per job: RunEvent sent (api) or enqueue transaction committed (direct). */
    const clientT0 = new Map<string, number>();

    let fire: (eventId: string) => Promise<void>;
    if (mode === 'api') {
      const s = stack;
      fire = async (eventId) => {
        const sent = nowMs();
        const run = await s.runEvent(eventId);
        const answered = nowMs();
        if (eventId === measured.id) {
          requestMs.push(answered - sent);
          clientT0.set(run.jobs[0].id, sent);
        }
      };
    } else {
      const opened = await openDatabase({ url: database.url, dataDir: scratch, poolSize: 8 });
      db = opened.db;
      const rows = new Map((await db.selectFrom('events').selectAll().execute()).map((row) => [row.id, row]));
      const conn = nc!;
      const kysely = db;
      fire = async (eventId) => {
        const { jobIds } = await enqueueRun(kysely, rows.get(eventId)!, null, []);
        const committed = nowMs();
        // What the API does after a commit (kickDispatch): wake the dispatchers of every replica.
        conn.publish(subjects.dispatch, new Uint8Array());
        if (eventId === measured.id) clientT0.set(jobIds[0]!, committed);
      };
    }

    ctx.log(`${id}: warm-up ${WARMUP_MS / 1000} s at ${rate}/s`);
    await openLoop(rate, WARMUP_MS, () => fire(warm.id));
    await waitForDone(database.url, warm.id, Math.floor((WARMUP_MS / 1000) * rate), 10_000);

    const cp = new CpuMeter(() => [stack!.controlPlane!.pid!]).start();
    const pgCpu = new CpuMeter(() => postgresBackends(database.url.split('/').pop()!)).start();
    const agentCpu = new CpuMeter(() => [fleet!.pid]).start();
    const benchCpu = process.cpuUsage();
    const sampler = setInterval(() => pgCpu.sample(), 500);
    ctx.log(`${id}: measuring ${measureMs / 1000} s at ${rate}/s`);
    const loadStart = nowMs();
    const load = await openLoop(rate, measureMs, () => fire(measured.id));
    const loadEnd = nowMs();
    const cpu = { controlPlane: cp.stop(), postgres: pgCpu.stop(), leanAgent: agentCpu.stop() };
    const benchUsed = process.cpuUsage(benchCpu);
    const benchPercent = ((benchUsed.user + benchUsed.system) / 1000 / cpu.controlPlane.wallMs) * 100;
    const drainMs = Math.max(3_000, Math.min(DRAIN_MS, ctx.timeLeft() - 20_000));
    const done = await waitForDone(database.url, measured.id, load.issued - load.failed, drainMs);
    clearInterval(sampler);
    const cutoff = nowMs();

    const records = new Map<string, JobRecord>((await fleet.records()).map((rec) => [rec.jobId, rec]));
    const { stats: fleetStats, failures } = await fleet.stats();
    if (failures.length > 0) throw new Error(`lean agent failed: ${failures.join('; ')}`);
    const jobs = await jobTimes(database.url, measured.id, mode === 'api' && (await tracksCommitTimes(database.url)));
    const total: number[] = [];
    const fromCommit: number[] = [];
    const queued: number[] = [];
    const offered: number[] = [];
    const started: number[] = [];
    const recorded: number[] = [];
    const dbStarted: number[] = [];
    const fromClient: number[] = [];
    let notStarted = 0;
    let startedInWindow = 0;
    for (const job of jobs) {
      const rec = records.get(job.id);
      if (!rec || job.offered === null) {
        // Never started before the cutoff: its latency is at least its age then.
        notStarted++;
        total.push(cutoff - job.created);
        continue;
      }
      if (rec.startedSentAt >= loadStart && rec.startedSentAt <= loadEnd) startedInWindow++;
      total.push(rec.startedSentAt - job.created);
      if (job.committed !== null) fromCommit.push(rec.startedSentAt - job.committed);
      queued.push(job.offered - job.created);
      offered.push(rec.offerAt - job.offered);
      started.push(rec.startedSentAt - rec.offerAt);
      if (rec.startedAckAt > 0) recorded.push(rec.startedAckAt - rec.startedSentAt);
      if (job.started !== null) dbStarted.push(job.started - job.created);
      const t0 = clientT0.get(job.id);
      if (t0 !== undefined) fromClient.push(rec.startedSentAt - t0);
    }
    const windowS = (loadEnd - loadStart) / 1000;
    const censored = notStarted > 0 ? ` (${notStarted} jobs not started ${round(drainMs / 1000)} s after the load ended, counted at their age then)` : '';

    r.distribution(`${id}.total`, `${label}: dispatch latency, created_at → agent sends STARTED${censored}`, 'ms', summarize(total));
    if (fromCommit.length > 0) r.distribution(`${id}.commit`, `${label}: dispatch latency, the job's COMMIT → agent sends STARTED (the issue's measure)`, 'ms', summarize(fromCommit));
    r.distribution(`${id}.queued`, `${label}: queued phase, created_at → offered_at`, 'ms', summarize(queued));
    r.distribution(`${id}.offered`, `${label}: offered phase, offered_at → offer received by the agent`, 'ms', summarize(offered));
    r.distribution(`${id}.started`, `${label}: started phase, offer received → STARTED sent (lean agent)`, 'ms', summarize(started));
    r.distribution(`${id}.recorded`, `${label}: STARTED sent → its ack (state 'running' committed)`, 'ms', summarize(recorded));
    r.distribution(`${id}.db`, `${label}: created_at → started_at, both from the jobs table (started_at to the ms)`, 'ms', summarize(dbStarted));
    if (mode === 'api') {
      r.distribution(`${id}.request`, `${label}: RunEvent request round trip (Connect JSON over HTTP/1.1) seen by the client`, 'ms', summarize(requestMs));
      r.distribution(`${id}.client`, `${label}: RunEvent sent by the client → agent sends STARTED`, 'ms', summarize(fromClient));
    } else {
      r.distribution(`${id}.client`, `${label}: enqueue COMMIT returned to the client → agent sends STARTED`, 'ms', summarize(fromClient));
    }
    r.value(`${id}.offered_rate`, `${label}: jobs created per second (asked: ${rate}/s)`, 'jobs/s', load.issued / windowS);
    r.value(`${id}.started_rate`, `${label}: jobs started per second during the load`, 'jobs/s', startedInWindow / windowS);
    r.details[id] = {
      rate,
      issued: load.issued,
      failedRequests: load.failed,
      late: load.late,
      errors: load.errors,
      succeededByCutoff: done,
      notStarted,
      leanAgent: fleetStats.map(({ offers, rejects, terminalAcked, staleCancels, heartbeats, reconnects, lastDisconnect, maxExecuting, unacked }) => ({
        offers, rejects, terminalAcked, staleCancels, heartbeats, reconnects, lastDisconnect, maxExecuting, unacked,
      })),
      cpuPercentOfOneCore: {
        controlPlane: round(cpu.controlPlane.percentOfCore),
        postgresBackends: round(cpu.postgres.percentOfCore),
        leanAgentProcess: round(cpu.leanAgent.percentOfCore),
        benchProcess: round(benchPercent),
      },
    };
    const reconnects = fleetStats.reduce((sum, s) => sum + s.reconnects, 0);
    if (reconnects > 0) r.note(`${label}: the control plane ended the agent's stream ${reconnects} times (${fleetStats[0]?.lastDisconnect}); the lean agent reconnected and resent, as the real agent does.`);
    const behind = startedInWindow / windowS < 0.95 * rate;
    r.note(
      `${label}: ${load.issued} jobs created at ${round(load.issued / windowS)}/s, ${round(startedInWindow / windowS)}/s started during the load` +
        (behind ? ' — the control plane fell behind, so the queue and the latency grew for as long as the load lasted' : '') +
        `. During the load the control plane used ${round(cpu.controlPlane.percentOfCore)}% of one core, this database's Postgres backends ${round(cpu.postgres.percentOfCore)}%, the lean agent ${round(cpu.leanAgent.percentOfCore)}%, the load generator ${round(benchPercent)}%.`,
    );
  } finally {
    await fleet?.stop().catch(() => {});
    await stack?.stop().catch(() => {});
    if (profile) r.details[`${id}.profile`] = summarizeProfiles(profile.dir);
    await db?.destroy().catch(() => {});
    await nc?.close().catch(() => {});
    await database.drop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
}

export const dispatchLatency: Benchmark = {
  name: 'dispatch-latency',
  title: 'Dispatch latency at 200 jobs/s, warm agent',
  budgetMs: 110_000,
  async run(ctx, r) {
    r.how.push(
      `A control plane on Postgres (a fresh database, no orchestrator agent) and one lean agent: \`bench/lean-agent.ts\`, a grpc-js client of the agent-link proto over mutual TLS with a certificate from the control plane's CA, in its own process. It accepts each offer and at once sends JobStatus STARTED and SUCCEEDED with \`at\` timestamps, keeps each status until acknowledged, heartbeats every 5 s, ${SLOTS} slots.`,
      `Jobs are no-op bash events created open-loop (each request starts on schedule, whether or not the previous one has answered) after a ${WARMUP_MS / 1000} s warm-up, in three phases, each on its own fresh control plane and database:`,
      `**RunEvent at ${RATE}/s** for ${MEASURE_MS / 1000} s (the issue's figure): the public API (Connect JSON over HTTP), which commits the run and its job and wakes the dispatcher in-process (memory bus, the single-node default).`,
      `**enqueueRun + NATS kick at ${RATE}/s** for ${MEASURE_MS / 1000} s: the control plane's own \`enqueueRun\` (control-plane/src/queue/enqueue.ts) called from the benchmark process against the same database, then an empty message on \`cronium.dispatch\` over NATS, which is how another replica's API wakes this replica's dispatcher (this control plane runs with CRONIUM_NATS_URL). Without the kick the dispatcher would only find the job at its next 1 s poll.`,
      `**RunEvent at ${LIGHT_RATE}/s** for 10 s: a rate far below saturation, for the latency of the path itself without a queue.`,
      `The issue's measure starts at the job's COMMIT: Postgres \`pg_xact_commit_timestamp\` (track_commit_timestamp, which scripts/test-services.sh turns on) of the RunEvent transaction, read from its audit row, which nothing changes later. The stricter \`created_at\` rows start at the enqueue transaction's \`now()\`, i.e. its BEGIN, so they also hold the transaction's own statements (the run and job insert, the audit row) and its commit.`,
      `Every latency ends when the agent sends STARTED, on the agent's clock (the same machine clock, sub-millisecond, calibrated against \`Date.now()\`). Phases: queued = created_at → offered_at (the claim transaction's \`now()\`); offered = offered_at → the offer reaching the agent; started = offer → STARTED sent. The "client" rows start instead when the client sent RunEvent, or saw its enqueue COMMIT return. Jobs not started ${DRAIN_MS / 1000} s after the load ended are counted at their age then (a lower bound).`,
      `Baseline, same run, same Postgres: a one-row INSERT in its own transaction (autocommit), one client, 2,000 samples after 200 warm-up.`,
    );
    ctx.log('baseline: Postgres single-row commit');
    const database = await freshDatabase('bench_commit');
    try {
      r.distribution('pg.commit', 'Postgres: one-row INSERT, autocommit, one client', 'ms', await commitLatency(database.url, 2_000), true);
    } finally {
      await database.drop();
    }
    await phase({ id: 'api', label: `RunEvent at ${RATE}/s`, mode: 'api', rate: RATE, measureMs: MEASURE_MS }, ctx, r);
    if (ctx.timeLeft() > 35_000) await phase({ id: 'direct', label: `enqueueRun + NATS at ${RATE}/s`, mode: 'direct', rate: RATE, measureMs: MEASURE_MS }, ctx, r);
    else r.note('The enqueueRun + NATS phase was skipped: out of time.');
    if (ctx.timeLeft() > 20_000) await phase({ id: 'light', label: `RunEvent at ${LIGHT_RATE}/s`, mode: 'api', rate: LIGHT_RATE, measureMs: 10_000 }, ctx, r);
    else r.note(`The ${LIGHT_RATE}/s phase was skipped: out of time.`);

    for (const [id, name] of [
      ['api', `RunEvent at ${RATE}/s`],
      ['direct', `enqueueRun + NATS at ${RATE}/s`],
      ['light', `RunEvent at ${LIGHT_RATE}/s`],
    ] as const) {
      if (!r.figures.some((f) => f.id === `${id}.total`)) continue;
      r.compare(`${name}: dispatch latency vs one Postgres commit, p50`, `${id}.total`, 'pg.commit', 'p50');
      r.compare(`${name}: dispatch latency vs one Postgres commit, p99`, `${id}.total`, 'pg.commit', 'p99');
    }
    const summary = (figure: string) => r.figures.find((f) => f.id === figure)?.summary;
    const api = summary('api.total')!;
    const apiCommit = summary('api.commit');
    const direct = summary('direct.total');
    const directCommit = summary('direct.client');
    const light = summary('light.total');
    const judged = apiCommit ?? api;
    r.target(
      'dispatch latency, warm agent, 200 jobs/s',
      'p50 ≤ 3 ms, p99 ≤ 15 ms',
      (apiCommit ? `RunEvent at ${RATE}/s, COMMIT → STARTED: p50 ${round(apiCommit.p50)} ms, p99 ${round(apiCommit.p99)} ms; ` : '') +
        `RunEvent at ${RATE}/s, created_at → STARTED: p50 ${round(api.p50)} ms, p99 ${round(api.p99)} ms (${round(r.stat('api.started_rate', 'value'))} jobs/s started)` +
        (direct ? `; enqueueRun + NATS: created_at → STARTED p50 ${round(direct.p50)} ms, p99 ${round(direct.p99)} ms` : '') +
        (directCommit ? `, COMMIT seen → STARTED p50 ${round(directCommit.p50)} ms, p99 ${round(directCommit.p99)} ms` : '') +
        (light ? `; at ${LIGHT_RATE}/s: created_at → STARTED p50 ${round(light.p50)} ms, p99 ${round(light.p99)} ms` : ''),
      judged.p50 <= 3 && judged.p99 <= 15,
    );
  },
};
