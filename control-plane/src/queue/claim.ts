import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventType, JobRow } from '../store/schema.ts';
import { pickAgent, type AgentCandidate } from '../domain/selector.ts';

/** The most queued jobs read per step; jobs no agent can take are passed over, up to MAX_WINDOWS steps. */
const CLAIM_WINDOW = 200;
const MAX_WINDOWS = 10;

/** The executor an agent needs for a job: SSH for a server job, else by kind. */
export function executorFor(kind: EventType, serverId: string | null): string {
  return serverId ? 'ssh' : kind === 'http' ? 'http' : 'docker';
}

/**
 * Offers queued jobs to the given agents, at most their free slots each, in
 * priority order. Candidates are read without locks and matched in memory
 * (label selectors, preferences); only the chosen rows are then locked with
 * FOR UPDATE SKIP LOCKED and claimed under a `status = 'queued'` guard, so
 * concurrent claimers (other replicas) skip each other's rows instead of
 * waiting, and the guard alone keeps it correct where row locks mean nothing
 * (embedded PGlite has one connection). Jobs nothing matches are passed over,
 * so they never starve the jobs behind them.
 */
export async function claimJobs(db: Db, agents: readonly AgentCandidate[], offerTimeoutMs: number): Promise<JobRow[]> {
  return offerPicked(db, await pickJobs(db, agents), offerTimeoutMs);
}

/** A queued job chosen for an agent, not claimed yet. */
export interface Pick {
  readonly id: string;
  readonly agentId: string;
  readonly ownerId: string;
}

/** The matching half of {@link claimJobs}: which queued jobs go to which agent, read without locks. */
export async function pickJobs(db: Db, agents: readonly AgentCandidate[]): Promise<Pick[]> {
  // Plain copies: an agent may be a class whose freeSlots is a getter, which a spread would not copy.
  const free = new Map(
    agents.map((agent) => [agent.id, { id: agent.id, labels: agent.labels, executors: agent.executors, freeSlots: agent.freeSlots }]),
  );
  const slotsLeft = () => [...free.values()].reduce((sum, agent) => sum + Math.max(0, agent.freeSlots), 0);
  if (slotsLeft() === 0) return [];
  const pinnable = [...free.keys()];
  const picks: Pick[] = [];
  // Most jobs match most agents: read a little more than the free slots, not the whole window, on the hot path.
  // Windows double up to CLAIM_WINDOW when they find too little (jobs nothing matches at the head).
  let windowSize = Math.min(CLAIM_WINDOW, Math.max(32, Math.ceil(slotsLeft() * 1.25)));
  let offset = 0;
  for (let window = 0; window < MAX_WINDOWS && slotsLeft() > 0; window++) {
    const query = db
      .selectFrom('jobs')
      // Of the spec only its kind: the rest (the script, its environment) is neither sent nor parsed here.
      .select(['id', 'owner_id', sql<EventType>`spec->>'kind'`.as('kind'), 'selector', 'pinned_agent_id', 'server_id'])
      .where('status', '=', 'queued')
      .where('run_after', '<=', sql<Date>`now()`)
      .where((eb) => eb.or([eb('pinned_agent_id', 'is', null), eb('pinned_agent_id', 'in', pinnable)]))
      .orderBy('priority', 'desc')
      .orderBy('created_at')
      .orderBy('id')
      .limit(windowSize)
      .offset(offset);
    const candidates = await query.execute();
    for (const job of candidates) {
      const pool = job.pinned_agent_id ? [free.get(job.pinned_agent_id)].filter((a) => a !== undefined) : free.values();
      const agent = pickAgent(job.selector, executorFor(job.kind, job.server_id), pool);
      if (!agent) continue;
      agent.freeSlots -= 1;
      picks.push({ id: job.id, agentId: agent.id, ownerId: job.owner_id });
      if (slotsLeft() === 0) break;
    }
    if (candidates.length < windowSize) break;
    offset += windowSize;
    windowSize = Math.min(CLAIM_WINDOW, windowSize * 2);
  }
  return picks;
}

/**
 * The claiming half: offers the picked jobs still queued, with one statement
 * for all agents (atomic on its own, so no transaction round trips). Rows
 * another claimer holds are skipped, not waited for.
 *
 * The rows are found by id alone, and each one's agent by its position in the
 * arrays: a status test or a join the planner could drive from the queue's
 * index had it scan the whole backlog (on statistics older than the
 * backlog), or lock it row by row (EXPLAIN ANALYZE in bench/analysis.md).
 */
export async function offerPicked(db: Db, picks: readonly Pick[], offerTimeoutMs: number): Promise<JobRow[]> {
  if (picks.length === 0) return [];
  const ids = picks.map((pick) => pick.id);
  const { rows } = await sql<JobRow>`
    with locked as materialized (select id, status from jobs where id = any(${ids}::text[]) for update skip locked)
    update jobs set status = 'offered', agent_id = (${picks.map((pick) => pick.agentId)}::text[])[array_position(${ids}::text[], jobs.id)],
                    lease_id = gen_random_uuid()::text, offered_at = now(),
                    offer_expires_at = now() + ${offerTimeoutMs} * interval '1 millisecond', accepted_at = null
      from locked
     where jobs.id = locked.id and locked.status = 'queued'
    returning jobs.*`.execute(db);
  // Offered in the order they were picked (priority, then age).
  const order = new Map(ids.map((id, i) => [id, i]));
  return rows.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
}
