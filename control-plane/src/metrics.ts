import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { sql } from 'kysely';
import type { Db, PoolStats } from './store/database.ts';
import { readyAt } from './domain/run-status.ts';

/** What a scrape reads live from the running control plane. */
export interface MetricSources {
  readonly db: Db;
  /** Agent streams open on this replica. */
  readonly streams: () => number;
  /** Agents by status, as the registry reports them. */
  readonly agentsByStatus: () => Promise<Record<string, number>>;
  readonly bus: () => { readonly kind: string; readonly connected: boolean };
  /** Postgres pools by name (none on the embedded store). */
  readonly pools: () => Readonly<Record<string, PoolStats>>;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The control plane's Prometheus metrics, on a registry of its own. */
export class Metrics {
  readonly registry = new Registry();
  readonly jobsFinished = new Counter({
    name: 'cronium_jobs_finished_total',
    help: 'Jobs that reached a terminal status on this replica, by status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly attemptsRetried = new Counter({
    name: 'cronium_job_attempts_retried_total',
    help: 'Attempts that failed and were queued for another attempt',
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'cronium_queue_wait_seconds',
    help: 'From a job being ready (created, or its retry delay over) to its offer',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly dispatchLatency = new Histogram({
    name: 'cronium_dispatch_latency_seconds',
    help: 'From a job being ready to its agent reporting it started',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly logBytes = new Counter({
    name: 'cronium_log_bytes_total',
    help: 'Job log bytes received from agents',
    registers: [this.registry],
  });

  constructor(sources: MetricSources) {
    // The event-loop delay is sampled every 100 ms, not prom-client's 10 ms: 100 wakeups a second cost an idle process ~0.5% of a core.
    collectDefaultMetrics({ register: this.registry, prefix: 'cronium_', eventLoopMonitoringPrecision: 100 });
    new Gauge({
      name: 'cronium_jobs',
      help: 'Jobs not yet finished, by status (cluster-wide, from the database)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        const rows = await sql<{ status: string; count: number }>`
          select status, count(*)::int as count from jobs where status in ('queued', 'offered', 'running') group by status`.execute(sources.db);
        this.reset();
        for (const status of ['queued', 'offered', 'running']) this.set({ status }, 0);
        for (const row of rows.rows) this.set({ status: row.status }, row.count);
      },
    });
    new Gauge({
      name: 'cronium_agents',
      help: 'Registered agents by status (cluster-wide)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [status, count] of Object.entries(await sources.agentsByStatus())) this.set({ status }, count);
      },
    });
    new Gauge({
      name: 'cronium_agent_streams',
      help: 'Agent streams open on this replica',
      registers: [this.registry],
      collect() {
        this.set(sources.streams());
      },
    });
    new Gauge({
      name: 'cronium_postgres_pool_connections',
      help: 'Postgres pool connections by pool (api, link) and state (total, idle, waiting = queries waiting for a connection)',
      labelNames: ['pool', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, stats] of Object.entries(sources.pools())) {
          for (const state of ['total', 'idle', 'waiting'] as const) this.set({ pool, state }, stats[state]);
        }
      },
    });
    new Gauge({
      name: 'cronium_bus_connected',
      help: '1 when the bus (NATS, or the in-process one) is connected',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        const bus = sources.bus();
        this.reset();
        this.set({ kind: bus.kind }, bus.connected ? 1 : 0);
      },
    });
  }

  /** A job's start as the agent reported it, measured from when it was ready. */
  observeStarted(job: { readonly created_at: Date; readonly run_after: Date; readonly started_at: Date | null }): void {
    if (!job.started_at) return;
    this.dispatchLatency.observe(Math.max(0, job.started_at.getTime() - readyAt(job).getTime()) / 1000);
  }

  observeOffered(job: { readonly created_at: Date; readonly run_after: Date; readonly offered_at: Date | null }): void {
    if (!job.offered_at) return;
    this.queueWait.observe(Math.max(0, job.offered_at.getTime() - readyAt(job).getTime()) / 1000);
  }
}
