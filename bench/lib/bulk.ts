// Bulk load for the throughput benchmarks: many queued jobs at once, copied
// from one the product made, and the wait for a fleet to finish them.
import { setTimeout as sleep } from 'node:timers/promises';
import type { LeanFleet } from '../lean-agent.ts';
import { withClient } from './stack.ts';
import { nowMs } from './stats.ts';

/** Inserts n queued jobs (one run each, as RunEvent makes them) copied from a template job, in one transaction. */
export async function enqueueBulk(url: string, templateJobId: string, n: number): Promise<void> {
  await withClient(url, async (client) => {
    await client.query(
      `with t as (select * from jobs where id = $1),
            r as (insert into runs (id, event_id, owner_id, status, input)
                  select gen_random_uuid()::text, t.event_id, t.owner_id, 'running', 'null'::jsonb
                    from t, generate_series(1, $2)
                  returning id, event_id, owner_id)
       insert into jobs (id, run_id, event_id, owner_id, max_attempts, status, priority, spec, selector, error, scheduling_deadline)
       select gen_random_uuid()::text, r.id, r.event_id, r.owner_id, t.max_attempts, 'queued', t.priority, t.spec, t.selector, '', now() + interval '1 hour'
         from r, t`,
      [templateJobId, n],
    );
  });
}

export async function countStatus(url: string, eventId: string, status: string): Promise<number> {
  return withClient(url, async (client) =>
    Number((await client.query('select count(*) from jobs where event_id = $1 and status = $2', [eventId, status])).rows[0].count),
  );
}

/**
 * Enqueues n jobs at once and waits until the fleets report them all
 * acknowledged: jobs per second from the first offer to the last terminal
 * status committed.
 */
export async function measureBatch(
  url: string,
  fleets: readonly LeanFleet[],
  eventId: string,
  n: number,
  templateJobId: string,
  timeoutMs: number,
): Promise<{ jobs: number; seconds: number; firstOffer: number; lastAck: number; complete: boolean }> {
  const allStats = async () => {
    const answers = await Promise.all(fleets.map((fleet) => fleet.stats()));
    return { stats: answers.flatMap((answer) => answer.stats), failures: answers.flatMap((answer) => answer.failures) };
  };
  const before = (await allStats()).stats.reduce((sum, s) => sum + s.terminalAcked, 0);
  await enqueueBulk(url, templateJobId, n);
  const deadline = performance.now() + timeoutMs;
  let acked = 0;
  let lastAck = 0;
  while (performance.now() < deadline) {
    const { stats, failures } = await allStats();
    if (failures.length > 0) throw new Error(`lean agents failed: ${failures.join('; ')}`);
    acked = stats.reduce((sum, s) => sum + s.terminalAcked, 0) - before;
    lastAck = Math.max(...stats.map((s) => s.lastTerminalAckAt));
    if (acked >= n) break;
    await sleep(100);
  }
  const firstOffer = await withClient(url, async (client) =>
    Number(
      (
        await client.query(
          `select (extract(epoch from min(offered_at)) * 1000)::float8 as t from jobs where event_id = $1 and status <> 'queued'
              and created_at >= (select max(created_at) from jobs where event_id = $1)`,
          [eventId],
        )
      ).rows[0].t,
    ),
  );
  const complete = acked >= n;
  const end = complete ? lastAck : nowMs();
  return { jobs: acked, seconds: (end - firstOffer) / 1000, firstOffer, lastAck: end, complete };
}
