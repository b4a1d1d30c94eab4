import { sql } from 'kysely';
import type { Db } from '../store/database.ts';

/** What the periodic housekeeping (reaper, dispatch poll) could find to do. */
export interface QueueActivity {
  /** Jobs waiting for an agent (or for their retry time, or past their scheduling deadline). */
  readonly queued: boolean;
  /** Offers and leases that may run out. */
  readonly held: boolean;
  /** Runs not settled yet. */
  readonly openRuns: boolean;
  /** Notifications due for an attempt (and not claimed by a live sender). */
  readonly deliveries: boolean;
}

/**
 * One cheap statement (EXISTS on partial indexes): an idle cluster's
 * housekeeping reads this each second instead of running each of its sweeps.
 */
export async function queueActivity(db: Db): Promise<QueueActivity> {
  const { rows } = await sql<{ queued: boolean; held: boolean; open_runs: boolean; deliveries: boolean }>`
    select exists (select 1 from jobs where status = 'queued') as queued,
           exists (select 1 from jobs where status in ('offered', 'running')) as held,
           exists (select 1 from runs where status = 'running') as open_runs,
           exists (select 1 from notification_deliveries where status = 'pending' and next_attempt_at <= now()
                     and (locked_until is null or locked_until < now())) as deliveries`.execute(db);
  const row = rows[0]!;
  return { queued: row.queued, held: row.held, openRuns: row.open_runs, deliveries: row.deliveries };
}
