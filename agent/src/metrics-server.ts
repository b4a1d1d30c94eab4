import { createServer, type Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** What a scrape reads from the running agent. */
export interface AgentGauges {
  readonly slots: number;
  readonly runningJobs: () => number;
  readonly freeSlots: () => number;
  /** Status events and log chunks the control plane has not acknowledged yet. */
  readonly unacknowledged: () => number;
  readonly spoolBytes: () => number;
  readonly connected: () => boolean;
}

/** Prometheus `/metrics` and `/healthz` on plain HTTP, for a scraper on the agent's host or pod network. */
export async function startMetricsServer(address: string, gauges: AgentGauges): Promise<Server> {
  const registry = new Registry();
  // The event-loop delay is sampled every 100 ms, not prom-client's 10 ms: 100 wakeups a second cost an idle process ~0.5% of a core.
  collectDefaultMetrics({ register: registry, prefix: 'cronium_agent_', eventLoopMonitoringPrecision: 100 });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge('cronium_agent_slots', 'Jobs this agent runs at once', () => gauges.slots);
  gauge('cronium_agent_running_jobs', 'Jobs running now', gauges.runningJobs);
  gauge('cronium_agent_free_slots', 'Slots free for new offers (0 while draining)', gauges.freeSlots);
  gauge('cronium_agent_unacknowledged_messages', 'Status events and log chunks waiting for the control plane', gauges.unacknowledged);
  gauge('cronium_agent_spool_bytes', 'Unacknowledged results and logs kept on disk', gauges.spoolBytes);
  gauge('cronium_agent_connected', '1 while the stream to a control plane is up', () => (gauges.connected() ? 1 : 0));

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(error)}\n`),
    );
  });
  const at = address.lastIndexOf(':');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(address.slice(at + 1)), address.slice(0, at).replace(/^\[|\]$/g, ''), () => resolve());
  });
  server.unref();
  return server;
}
