import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventRow } from '../store/schema.ts';
import { enqueueRun, fanOutAgents } from '../queue/enqueue.ts';
import { fireTimes } from './fire-times.ts';
import type { Leadership } from './leader.ts';

export interface SchedulerOptions {
  readonly db: Db;
  readonly leadership: Leadership;
  readonly leaseTtlMs: number;
  readonly onRun: (runId: string) => void;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** How often due schedules are looked for. Default 250 ms. */
  readonly tickMs?: number;
}

/** Fires beyond this many per event and tick are dropped (a schedule faster than the ticks can serve). */
const MAX_FIRES_PER_TICK = 100;
/** After a leader change, a missed fire older than this is skipped. */
const CATCH_UP_WINDOW_MS = 24 * 3_600_000;

/**
 * Fires cron schedules on the replica that holds the leadership. Each
 * (event, instant) is recorded under a unique key in the same transaction as
 * its run, so a fire happens at most once across leader changes and restarts.
 * After taking the leadership, missed fires collapse into one run now (the
 * newest missed instant); older ones are skipped.
 */
export class Scheduler {
  readonly #options: SchedulerOptions;
  /** Per event: the instant up to which its fires were handled, while leading. */
  readonly #handledUntil = new Map<string, Date>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #leading = false;

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  start(): void {
    this.#timer = setInterval(() => void this.tick(), this.#options.tickMs ?? 250);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#options.leadership.release();
  }

  async tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const leading = await this.#options.leadership.held();
      if (leading !== this.#leading) {
        this.#leading = leading;
        this.#handledUntil.clear();
        this.#options.log(leading ? 'scheduler leadership taken' : 'scheduler leadership lost');
      }
      if (!leading) return;
      const now = new Date();
      const events = await this.#options.db
        .selectFrom('events')
        .selectAll()
        .where('status', '=', 'active')
        .where('deleted_at', 'is', null)
        .where('schedule', 'is not', null)
        .execute();
      for (const event of events) await this.#fire(event, now);
    } catch (error) {
      this.#options.log('scheduler tick failed', { error: String(error) });
    } finally {
      this.#ticking = false;
    }
  }

  async #fire(event: EventRow, now: Date): Promise<void> {
    if (!event.schedule?.cron) return;
    let from = this.#handledUntil.get(event.id);
    let limit = MAX_FIRES_PER_TICK;
    if (!from) {
      // Catching up after taking the leadership: from the last recorded fire (or the last edit), one run for what was missed.
      const last = await this.#options.db.selectFrom('schedule_fires').select(sql<Date>`max(fire_at)`.as('at')).where('event_id', '=', event.id).executeTakeFirst();
      const edited = new Date(event.updated_at);
      from = last?.at && new Date(last.at) > edited ? new Date(last.at) : edited;
      // Only the newest missed instant runs, so a long outage need not be walked through second by second.
      if (now.getTime() - from.getTime() > CATCH_UP_WINDOW_MS) from = new Date(now.getTime() - CATCH_UP_WINDOW_MS);
      limit = 1;
    }
    const due = fireTimes(event.schedule, from, now, limit);
    this.#handledUntil.set(event.id, now);
    for (const at of due) await this.#fireOnce(event, at);
  }

  async #fireOnce(event: EventRow, at: Date): Promise<void> {
    const { db, leaseTtlMs } = this.#options;
    const agents = await fanOutAgents(db, leaseTtlMs);
    const runId = await db.transaction().execute(async (tx) => {
      const claimed = await tx
        .insertInto('schedule_fires')
        .values({ event_id: event.id, fire_at: at })
        .onConflict((oc) => oc.columns(['event_id', 'fire_at']).doNothing())
        .returning('event_id')
        .executeTakeFirst();
      if (!claimed) return undefined;
      const { run } = await enqueueRun(tx, event, { scheduledAt: at.toISOString() }, agents);
      await tx.updateTable('schedule_fires').set({ run_id: run.id }).where('event_id', '=', event.id).where('fire_at', '=', at).execute();
      return run.id;
    });
    if (runId) {
      this.#options.log('schedule fired', { eventId: event.id, runId, scheduledAt: at.toISOString(), lateMs: Date.now() - at.getTime() });
      this.#options.onRun(runId);
    }
  }
}
