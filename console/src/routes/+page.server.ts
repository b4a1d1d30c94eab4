import { recentRuns } from '#lib/server/recent-runs.ts';
import { isAdmin } from '#lib/roles.ts';
import { agentView } from '#lib/views.ts';
import { durations, failingEvents, percentile } from '#lib/run-stats.ts';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const now = Date.now();
  const [{ runs, capped }, { agents }, { events }] = await Promise.all([
    recentRuns(locals.api, 24, now),
    // Agents are admin only.
    isAdmin(locals.me) ? locals.api.agents.listAgents({}) : Promise.resolve({ agents: [] }),
    locals.api.events.listEvents({}),
  ]);
  const byStatus: Record<string, number> = {};
  const hourly = Array.from({ length: 24 }, () => ({ succeeded: 0, failed: 0, other: 0 }));
  for (const run of runs) {
    byStatus[run.status] = (byStatus[run.status] ?? 0) + 1;
    const hoursAgo = Math.min(23, Math.floor((now - Date.parse(run.createdAt!)) / 3600_000));
    const bucket = hourly[23 - hoursAgo]!;
    if (run.status === 'succeeded') bucket.succeeded++;
    else if (run.finished) bucket.failed++;
    else bucket.other++;
  }
  const finished = runs.filter((run) => run.finished).length;
  const views = agents.map(agentView);
  const took = durations(runs);
  return {
    total: runs.length,
    capped,
    byStatus,
    hourly,
    successRate: finished ? (byStatus.succeeded ?? 0) / finished : null,
    duration: { p50: percentile(took, 50), p95: percentile(took, 95) },
    failing: failingEvents(runs),
    agents: {
      online: views.filter((a) => a.status === 'online').length,
      draining: views.filter((a) => a.status === 'draining').length,
      offline: views.filter((a) => a.status === 'offline').length,
    },
    eventCount: events.length,
    recent: runs.slice(0, 8),
    names: Object.fromEntries(events.map((event) => [event.id, event.name])),
  };
};
