import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventType, JobRow } from '../store/schema.ts';
import { pickAgent, type AgentCandidate } from '../domain/selector.ts';

/** How many queued jobs one claim looks at; jobs no agent can take are skipped over. */
const CLAIM_WINDOW = 200;

export function executorFor(kind: EventType): string {
  return kind === 'http' ? 'http' : 'docker';
}

/**
 * Offers queued jobs to the given agents, at most their free slots each, in
 * priority order. Rows are locked with SKIP LOCKED so several control planes can
 * claim at once; the status guard keeps it correct where row locks mean nothing
 * (embedded PGlite has one connection).
 */
export async function claimJobs(
  db: Db,
  agents: readonly AgentCandidate[],
  offerTimeoutMs: number,
): Promise<JobRow[]> {
  const free = new Map(agents.map((agent) => [agent.id, { ...agent }]));
  if ([...free.values()].every((agent) => agent.freeSlots <= 0)) return [];
  return db.transaction().execute(async (tx) => {
    const candidates = await tx
      .selectFrom('jobs')
      .select(['id', 'spec', 'selector', 'pinned_agent_id'])
      .where('status', '=', 'queued')
      .where('run_after', '<=', sql<Date>`now()`)
      .orderBy('priority', 'desc')
      .orderBy('created_at')
      .orderBy('id')
      .limit(CLAIM_WINDOW)
      .forUpdate()
      .skipLocked()
      .execute();
    const byAgent = new Map<string, string[]>();
    for (const job of candidates) {
      const pool = job.pinned_agent_id ? [free.get(job.pinned_agent_id)].filter((a) => a !== undefined) : free.values();
      const agent = pickAgent(job.selector, executorFor(job.spec.kind), pool);
      if (!agent) continue;
      agent.freeSlots -= 1;
      byAgent.set(agent.id, [...(byAgent.get(agent.id) ?? []), job.id]);
      if ([...free.values()].every((a) => a.freeSlots <= 0)) break;
    }
    const claimed: JobRow[] = [];
    for (const [agentId, ids] of byAgent) {
      const rows = await tx
        .updateTable('jobs')
        .set({
          status: 'offered',
          agent_id: agentId,
          lease_id: sql<string>`gen_random_uuid()::text`,
          offered_at: sql<Date>`now()`,
          offer_expires_at: sql<Date>`now() + ${offerTimeoutMs} * interval '1 millisecond'`,
          accepted_at: null,
        })
        .where('id', 'in', ids)
        .where('status', '=', 'queued')
        .returningAll()
        .execute();
      claimed.push(...rows);
    }
    return claimed;
  });
}
