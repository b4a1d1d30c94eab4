import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { EventRow, EventStatus, ScheduleSpec, WorkflowRow } from '../store/schema.ts';
import { fireWorkflow } from './workflow-fire.ts';
import { fanOutAgents } from '../queue/enqueue.ts';
import { startRun } from '../queue/start-run.ts';
import type { Cancelled } from '../queue/transitions.ts';
import { fireTimes, isScheduled } from './schedule.ts';
import type { Leadership } from './leader.ts';

export interface SchedulerOptions {
  readonly db: Db;
  readonly leadership: Leadership;
  readonly leaseTtlMs: number;
  /** A run or a workflow execution was started (by id): work to dispatch. */
  readonly onRun: (id: string) => void;
  /** Jobs a CONCURRENCY_REPLACE fire cancelled, after the commit: their agents must be told. */
  readonly onCancelled: (cancelled: readonly Cancelled[]) => void;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** How often due schedules are looked for. Default 250 ms. */
  readonly tickMs?: number;
  /** The time now; tests move it. */
  readonly clock?: () => Date;
}

/** An event or a workflow with a schedule, as the scheduler walks it. */
interface Scheduled {
  readonly key: string;
  readonly schedule: ScheduleSpec | null;
  readonly updatedAt: Date;
  readonly skipMissed: boolean;
  lastFire(): Promise<Date | undefined>;
  fireOnce(at: Date): Promise<void>;
}

/** Fires beyond this many per event and tick are dropped (a schedule faster than the ticks can serve). */
const MAX_FIRES_PER_TICK = 100;
/** After a leader change, a missed fire older than this is skipped. */
const CATCH_UP_WINDOW_MS = 24 * 3_600_000;
/** With MISSED_FIRE_SKIP, an instant reached later than this after a leader change counts as missed. */
const MISSED_AFTER_MS = 1_000;

/**
 * Fires the schedules (cron, interval, one-shot) of events and workflows on the replica that holds the
 * leadership. Each (event, instant) is recorded under a unique key in the same
 * transaction as its run (or the reason it made none), so a fire happens at
 * most once across leader changes and restarts. After taking the leadership,
 * missed fires collapse into one run now (the newest missed instant), or none
 * with MISSED_FIRE_SKIP.
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
      const now = this.#options.clock?.() ?? new Date();
      const events = await this.#options.db
        .selectFrom('events')
        .selectAll()
        .where('status', '=', 'active')
        .where('deleted_at', 'is', null)
        .where('schedule', 'is not', null)
        .execute();
      const workflows = await this.#options.db
        .selectFrom('workflows')
        .selectAll()
        .where('status', '=', 'active')
        .where('deleted_at', 'is', null)
        .where('schedule', 'is not', null)
        .execute();
      const due: Scheduled[] = [
        ...events.map((event) => this.#eventSubject(event)),
        ...workflows.map((workflow) => this.#workflowSubject(workflow)),
      ];
      // A subject paused (or deleted) meanwhile starts again from the catch-up rules, not from where it stopped.
      const listed = new Set(due.map((subject) => subject.key));
      for (const key of this.#handledUntil.keys()) if (!listed.has(key)) this.#handledUntil.delete(key);
      for (const subject of due) await this.#fire(subject, now);
    } catch (error) {
      this.#options.log('scheduler tick failed', { error: String(error) });
    } finally {
      this.#ticking = false;
    }
  }

  #eventSubject(event: EventRow): Scheduled {
    return {
      key: `event:${event.id}`,
      schedule: event.schedule,
      updatedAt: new Date(event.updated_at),
      skipMissed: event.missed_fire_policy === 'skip',
      lastFire: async () =>
        (await this.#options.db.selectFrom('schedule_fires').select(sql<Date>`max(fire_at)`.as('at')).where('event_id', '=', event.id).executeTakeFirst())?.at ?? undefined,
      fireOnce: (at) => this.#fireOnce(event, at),
    };
  }

  #workflowSubject(workflow: WorkflowRow): Scheduled {
    return {
      key: `workflow:${workflow.id}`,
      schedule: workflow.schedule,
      updatedAt: new Date(workflow.updated_at),
      skipMissed: false,
      lastFire: async () =>
        (
          await this.#options.db
            .selectFrom('workflow_schedule_fires')
            .select(sql<Date>`max(fire_at)`.as('at'))
            .where('workflow_id', '=', workflow.id)
            .executeTakeFirst()
        )?.at ?? undefined,
      fireOnce: async (at) => {
        const fired = await fireWorkflow(this.#options.db, workflow.id, at);
        if (!fired) return;
        if ('reason' in fired) {
          this.#options.log('workflow schedule fire skipped', { workflowId: workflow.id, scheduledAt: at.toISOString(), reason: fired.reason });
          return;
        }
        this.#options.log('workflow schedule fired', { workflowId: workflow.id, executionId: fired.execution.id, scheduledAt: at.toISOString() });
        this.#options.onRun(fired.execution.id);
      },
    };
  }

  async #fire(subject: Scheduled, now: Date): Promise<void> {
    if (!isScheduled(subject.schedule)) return;
    let from = this.#handledUntil.get(subject.key);
    let limit = MAX_FIRES_PER_TICK;
    if (!from) {
      // Catching up after taking the leadership: from the last recorded fire (or the last edit), one run for what was missed.
      const last = await subject.lastFire();
      from = last && new Date(last) > subject.updatedAt ? new Date(last) : subject.updatedAt;
      // Only the newest missed instant runs, so a long outage need not be walked through second by second.
      if (now.getTime() - from.getTime() > CATCH_UP_WINDOW_MS) from = new Date(now.getTime() - CATCH_UP_WINDOW_MS);
      if (subject.skipMissed && now.getTime() - from.getTime() > MISSED_AFTER_MS) from = new Date(now.getTime() - MISSED_AFTER_MS);
      limit = 1;
    }
    const due = fireTimes(subject.schedule, from, now, limit);
    this.#handledUntil.set(subject.key, now);
    for (const at of due) await subject.fireOnce(at);
  }

  async #fireOnce(event: EventRow, at: Date): Promise<void> {
    const { db, leaseTtlMs } = this.#options;
    const agents = await fanOutAgents(db, leaseTtlMs);
    const outcome = await db.transaction().execute(async (tx) => {
      const claimed = await tx
        .insertInto('schedule_fires')
        .values({ event_id: event.id, fire_at: at })
        .onConflict((oc) => oc.columns(['event_id', 'fire_at']).doNothing())
        .returning('event_id')
        .executeTakeFirst();
      if (!claimed) return undefined;
      const fire = tx.updateTable('schedule_fires').where('event_id', '=', event.id).where('fire_at', '=', at);
      // Read again under the lock: an edit, a pause or the last allowed execution may have come since the list was read.
      const current = await tx.selectFrom('events').selectAll().where('id', '=', event.id).forUpdate().executeTakeFirst();
      const notActive = !current || current.status !== 'active' || current.deleted_at !== null;
      const limitReached = current && current.max_executions > 0 && current.execution_count >= current.max_executions;
      if (notActive || limitReached) {
        const reason = notActive ? 'the event is no longer active' : `maxExecutions (${current!.max_executions}) reached`;
        await fire.set({ skipped_reason: reason }).execute();
        return { reason };
      }
      const started = await startRun(tx, current, { scheduledAt: at.toISOString() }, agents);
      if (!started.started) {
        await fire.set({ skipped_reason: started.reason }).execute();
        return { reason: started.reason };
      }
      await fire.set({ run_id: started.run.id }).execute();
      await tx
        .updateTable('events')
        .set({
          execution_count: sql<number>`execution_count + 1`,
          status: sql<EventStatus>`case when max_executions > 0 and execution_count + 1 >= max_executions then 'paused' else status end`,
        })
        .where('id', '=', event.id)
        .execute();
      return { run: started.run, cancelled: started.cancelled };
    });
    if (!outcome) return;
    if ('reason' in outcome) {
      this.#options.log('schedule fire skipped', { eventId: event.id, scheduledAt: at.toISOString(), reason: outcome.reason });
      return;
    }
    this.#options.onCancelled(outcome.cancelled);
    this.#options.log('schedule fired', { eventId: event.id, runId: outcome.run.id, scheduledAt: at.toISOString(), lateMs: Date.now() - at.getTime() });
    this.#options.onRun(outcome.run.id);
  }
}
