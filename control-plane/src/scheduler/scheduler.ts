import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { ScheduleSpec } from '../store/schema.ts';
import { fireWorkflow } from './workflow-fire.ts';
import { fireEvents, type InstantFired } from './fire-events.ts';
import { fanOutAgents, type RegisteredAgent } from '../queue/enqueue.ts';
import type { Cancelled } from '../queue/transitions.ts';
import { fireTimes, isScheduled, nextFire } from './schedule.ts';
import type { Leadership } from './leader.ts';

export interface SchedulerOptions {
  readonly db: Db;
  readonly leadership: Leadership;
  readonly leaseTtlMs: number;
  /** Runs or workflow executions were started (by id): work to dispatch. */
  readonly onRuns: (ids: readonly string[]) => void;
  /** Jobs a CONCURRENCY_REPLACE fire cancelled, after the commit: their agents must be told. */
  readonly onCancelled: (cancelled: readonly Cancelled[]) => void;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** How often the schedules are listed again when no instant is due sooner and nothing woke the scheduler. Default 1 s. */
  readonly tickMs?: number;
  /** The time now; tests move it. */
  readonly clock?: () => Date;
  /**
   * Postgres: fire the events under ALLOW in a transaction prepared ahead of their instant (see Due), and before
   * its commit flush the WAL written so far with this (store/wal.ts), so the commit itself is quick. Not for the
   * embedded store: its one connection would be held, idle, until the instant.
   */
  readonly prepareAhead?: { readonly flushWal: () => Promise<void> };
}

/** An event or a workflow with a schedule, as listed. */
interface Subject {
  readonly key: string;
  readonly id: string;
  readonly schedule: ScheduleSpec | null;
  readonly updatedAt: Date;
  readonly skipMissed: boolean;
  readonly firing: keyof Due;
}

/**
 * What is due at one instant. Events under ALLOW fire in a transaction prepared ahead of the instant: nothing
 * they decide depends on the time. FORBID and REPLACE decide on the runs still running, which may end in the
 * meantime, and REPLACE would hold the jobs it cancels locked: those events fire once the instant has come, as do
 * the workflows.
 */
interface Due {
  readonly prepared: string[];
  readonly atInstant: string[];
  readonly workflows: string[];
}

/** Fires beyond this many per event and pass are dropped (a schedule faster than the passes can serve). */
const MAX_FIRES_PER_TICK = 100;
/** After a leader change, a missed fire older than this is skipped. */
const CATCH_UP_WINDOW_MS = 24 * 3_600_000;
/** With MISSED_FIRE_SKIP, an instant reached later than this after a leader change counts as missed. */
const MISSED_AFTER_MS = 1_000;
/**
 * A pass starts a lead before the next instant: it checks the leadership, lists and plans the schedules, and
 * prepares the instant's transaction (fire-events.ts), then commits it when the instant comes. The lead follows
 * how long preparing took (twice the last, easing down slowly), within these bounds; it is also the longest the
 * fired events stay locked before the instant.
 */
const MIN_LEAD_MS = 100;
const MAX_LEAD_MS = 500;
/**
 * The longest the scheduler goes without listing the schedules and checking its leadership. Changes made through
 * the API wake it at once (the bus); this bounds how late a change whose message was lost is seen, and how soon a
 * replica takes over a lost leadership.
 */
const TICK_MS = 1_000;
/** A pass plans this far past its lead, so a timer that fires a little early still finds its instant. */
const PLAN_SLACK_MS = 20;

/**
 * Fires the schedules (cron, interval, one-shot) of events and workflows on
 * the replica that holds the leadership. The events due at one instant fire
 * together, in one transaction (fire-events.ts) or two (see Due); each
 * (event, instant) is recorded under a unique key in the transaction that
 * makes its run (or records the reason it made none), so a fire happens at
 * most once across leader changes and restarts. After taking the leadership, missed fires
 * collapse into one run now (the newest missed instant), or none with
 * MISSED_FIRE_SKIP.
 */
export class Scheduler {
  readonly #options: SchedulerOptions;
  /** Per event: the instant up to which its fires were handled, while leading. */
  readonly #handledUntil = new Map<string, Date>();
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<number | undefined> | undefined;
  #stopped = false;
  /** Schedules changed during the pass under way: another pass follows at once. */
  #woken = false;
  #leading = false;
  #leadMs = MIN_LEAD_MS;

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  /**
   * Passes one after another: each wakes a lead before the next instant due,
   * when woken (schedules changed), or after tickMs when nothing comes sooner.
   */
  start(): void {
    void this.#loop();
  }

  /** Schedules were created, changed or removed: a pass now (which lists them again), not at the next tick. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#pass) {
      this.#woken = true;
      return;
    }
    clearTimeout(this.#timer);
    void this.#loop();
  }

  async #loop(): Promise<void> {
    this.#woken = false;
    const nextAt = await this.#run(this.#leadMs + PLAN_SLACK_MS);
    if (this.#stopped) return;
    const now = Date.now();
    const wake = this.#woken ? now : Math.min(now + (this.#options.tickMs ?? TICK_MS), nextAt === undefined ? Infinity : nextAt - this.#leadMs);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#loop(), Math.max(0, wake - now));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#pass;
    await this.#options.leadership.release();
  }

  /** Fires every instant due by now (the clock). */
  async tick(): Promise<void> {
    await this.#run(0);
  }

  /** One pass (none while another runs); returns the next instant due after it, if any. */
  async #run(aheadMs: number): Promise<number | undefined> {
    if (this.#pass) return undefined;
    this.#pass = this.#passAhead(aheadMs);
    try {
      return await this.#pass;
    } finally {
      this.#pass = undefined;
    }
  }

  /** Plans the instants due up to aheadMs from now, then fires each when it comes. */
  async #passAhead(aheadMs: number): Promise<number | undefined> {
    let preparingSince = performance.now();
    const passBegan = this.#now().getTime();
    try {
      const leading = await this.#options.leadership.held();
      if (leading !== this.#leading) {
        this.#leading = leading;
        this.#handledUntil.clear();
        this.#options.log(leading ? 'scheduler leadership taken' : 'scheduler leadership lost');
      }
      if (!leading) return undefined;
      const { instants, nextAt } = await this.#plan(this.#now(), aheadMs);
      let agents: Promise<readonly RegisteredAgent[]> | undefined;
      const loadAgents = (tx: Db) =>
        (agents ??= fanOutAgents(tx, this.#options.leaseTtlMs).catch((error: unknown) => {
          agents = undefined;
          throw error;
        }));
      for (const at of [...instants.keys()].sort((a, b) => a - b)) {
        const since = preparingSince;
        await this.#fireInstant(new Date(at), instants.get(at)!, loadAgents, () => this.#prepared(at, since, passBegan));
        preparingSince = performance.now();
      }
      return nextAt;
    } catch (error) {
      this.#options.log('scheduler tick failed', { error: String(error) });
      return undefined;
    }
  }

  /**
   * An instant's transaction is ready to commit (or, with nothing prepared, its fires are about to begin): learns
   * the lead from how long preparing took, says so when it ran past the instant, and waits for the instant.
   */
  async #prepared(at: number, preparingSince: number, passBegan: number): Promise<void> {
    const tookMs = performance.now() - preparingSince;
    const lateMs = this.#now().getTime() - at;
    // Catch-up fires (instants already past when the pass began) are late by nature; these were not meant to be.
    if (at > passBegan && lateMs > 0) {
      this.#options.log('schedule fires prepared after their instant', { scheduledAt: new Date(at).toISOString(), lateMs, preparedMs: Math.round(tookMs), leadMs: Math.round(this.#leadMs) });
    }
    this.#leadMs = Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, 2 * tookMs, 0.9 * this.#leadMs));
    // Not waited for: a flush that takes long (a busy disk) must not hold the commit past the instant.
    if (lateMs < 0) void this.#options.prepareAhead?.flushWal();
    await this.#waitFor(at);
  }

  #now(): Date {
    return this.#options.clock?.() ?? new Date();
  }

  /** Never early: a timer may fire a little before its time, so the last milliseconds are waited out turn by turn. */
  async #waitFor(at: number): Promise<void> {
    for (let left = at - this.#now().getTime(); left > 0; left = at - this.#now().getTime()) {
      await (left > 3 ? sleep(left - 2) : setImmediate());
    }
  }

  /** The instants due by now + aheadMs for every listed subject, and the first instant after them all. */
  async #plan(now: Date, aheadMs: number): Promise<{ instants: Map<number, Due>; nextAt: number | undefined }> {
    const subjects = await this.#list();
    // A subject paused (or deleted) meanwhile starts again from the catch-up rules, not from where it stopped.
    const listed = new Set(subjects.map((subject) => subject.key));
    for (const key of this.#handledUntil.keys()) if (!listed.has(key)) this.#handledUntil.delete(key);
    const lastFires = await this.#lastFires(subjects.filter((subject) => !this.#handledUntil.has(subject.key)));
    const instants = new Map<number, Due>();
    let nextAt: number | undefined;
    // Many subjects share a schedule and the instant they were handled until: each distinct question is worked out once.
    const memo = new Map<string, { due: Date[]; next: Date | undefined }>();
    for (const subject of subjects) {
      if (!isScheduled(subject.schedule)) continue;
      const window = this.#window(subject, now, aheadMs, lastFires.get(subject.key));
      const question = `${JSON.stringify(subject.schedule)} ${window.from.getTime()} ${window.until.getTime()} ${window.limit}`;
      let answer = memo.get(question);
      if (!answer) {
        answer = { due: fireTimes(subject.schedule, window.from, window.until, window.limit), next: nextFire(subject.schedule, window.until) };
        memo.set(question, answer);
      }
      this.#handledUntil.set(subject.key, window.until);
      for (const at of answer.due) {
        let due = instants.get(at.getTime());
        if (!due) instants.set(at.getTime(), (due = { prepared: [], atInstant: [], workflows: [] }));
        due[subject.firing].push(subject.id);
      }
      if (answer.next && (nextAt === undefined || answer.next.getTime() < nextAt)) nextAt = answer.next.getTime();
    }
    return { instants, nextAt };
  }

  /** The instants of a subject this pass handles: (from, until], at most limit. */
  #window(subject: Subject, now: Date, aheadMs: number, lastFire: Date | undefined): { from: Date; until: Date; limit: number } {
    const from = this.#handledUntil.get(subject.key);
    if (from) return { from, until: new Date(now.getTime() + aheadMs), limit: MAX_FIRES_PER_TICK };
    // Catching up after taking the leadership: from the last recorded fire (or the last edit), one run for what was
    // missed, now; the instants ahead are the next pass's.
    let since = lastFire && lastFire > subject.updatedAt ? lastFire : subject.updatedAt;
    // Only the newest missed instant runs, so a long outage need not be walked through second by second.
    if (now.getTime() - since.getTime() > CATCH_UP_WINDOW_MS) since = new Date(now.getTime() - CATCH_UP_WINDOW_MS);
    if (subject.skipMissed && now.getTime() - since.getTime() > MISSED_AFTER_MS) since = new Date(now.getTime() - MISSED_AFTER_MS);
    return { from: since, until: now, limit: 1 };
  }

  async #list(): Promise<Subject[]> {
    const { db } = this.#options;
    const events = await db
      .selectFrom('events')
      .select(['id', 'schedule', 'updated_at', 'missed_fire_policy', 'concurrency_policy'])
      .where('status', '=', 'active')
      .where('deleted_at', 'is', null)
      .where('schedule', 'is not', null)
      .execute();
    const workflows = await db
      .selectFrom('workflows')
      .select(['id', 'schedule', 'updated_at'])
      .where('status', '=', 'active')
      .where('deleted_at', 'is', null)
      .where('schedule', 'is not', null)
      .execute();
    return [
      ...events.map((event) => ({
        key: `event:${event.id}`,
        id: event.id,
        schedule: event.schedule,
        updatedAt: new Date(event.updated_at),
        skipMissed: event.missed_fire_policy === 'skip',
        firing: event.concurrency_policy === 'allow' ? ('prepared' as const) : ('atInstant' as const),
      })),
      ...workflows.map((workflow) => ({
        key: `workflow:${workflow.id}`,
        id: workflow.id,
        schedule: workflow.schedule,
        updatedAt: new Date(workflow.updated_at),
        skipMissed: false,
        firing: 'workflows' as const,
      })),
    ];
  }

  /** The newest recorded fire of each subject (by key), for those given. */
  async #lastFires(subjects: readonly Subject[]): Promise<Map<string, Date>> {
    const { db } = this.#options;
    const eventIds = subjects.filter((subject) => subject.firing !== 'workflows').map((subject) => subject.id);
    const workflowIds = subjects.filter((subject) => subject.firing === 'workflows').map((subject) => subject.id);
    const last = new Map<string, Date>();
    if (eventIds.length > 0) {
      const rows = await db.selectFrom('schedule_fires').select(['event_id', sql<Date>`max(fire_at)`.as('at')]).where('event_id', 'in', eventIds).groupBy('event_id').execute();
      for (const row of rows) last.set(`event:${row.event_id}`, new Date(row.at));
    }
    if (workflowIds.length > 0) {
      const rows = await db
        .selectFrom('workflow_schedule_fires')
        .select(['workflow_id', sql<Date>`max(fire_at)`.as('at')])
        .where('workflow_id', 'in', workflowIds)
        .groupBy('workflow_id')
        .execute();
      for (const row of rows) last.set(`workflow:${row.workflow_id}`, new Date(row.at));
    }
    return last;
  }

  /** `prepared` waits for the instant: the prepared transaction calls it just before its commit. */
  async #fireInstant(at: Date, due: Due, agents: (tx: Db) => Promise<readonly RegisteredAgent[]>, prepared: () => Promise<void>): Promise<void> {
    const ahead = this.#options.prepareAhead ? due.prepared : [];
    const atInstant = this.#options.prepareAhead ? due.atInstant : [...due.prepared, ...due.atInstant];
    if (ahead.length > 0) this.#report(at, await this.#fireEvents(at, ahead, agents, prepared));
    else await prepared();
    if (atInstant.length > 0) this.#report(at, await this.#fireEvents(at, atInstant, agents, async () => {}));
    for (const workflowId of due.workflows) await this.#fireWorkflow(workflowId, at);
  }

  /** All together; should that fail, one by one, so one event that cannot fire does not stop the others. */
  async #fireEvents(at: Date, eventIds: readonly string[], agents: (tx: Db) => Promise<readonly RegisteredAgent[]>, prepared: () => Promise<void>): Promise<InstantFired[]> {
    const { db, log } = this.#options;
    try {
      return [await fireEvents(db, at, eventIds, agents, prepared)];
    } catch (error) {
      if (eventIds.length === 1) throw error;
      log('schedule fires of one instant failed together; firing them one by one', { scheduledAt: at.toISOString(), events: eventIds.length, error: String(error) });
    }
    const fired: InstantFired[] = [];
    for (const eventId of eventIds) {
      try {
        fired.push(await fireEvents(db, at, [eventId], agents, prepared));
      } catch (error) {
        log('schedule fire failed', { eventId, scheduledAt: at.toISOString(), error: String(error) });
      }
    }
    return fired;
  }

  #report(at: Date, fired: readonly InstantFired[]): void {
    const { log, onCancelled, onRuns } = this.#options;
    const lateMs = Date.now() - at.getTime();
    for (const { skipped, cancelled } of fired) {
      for (const { eventId, reason } of skipped) log('schedule fire skipped', { eventId, scheduledAt: at.toISOString(), reason });
      if (cancelled.length > 0) onCancelled(cancelled);
    }
    const runIds = fired.flatMap(({ started }) => started.map((run) => run.runId));
    if (runIds.length === 0) return;
    log('schedule fired', { scheduledAt: at.toISOString(), runs: runIds.length, ...(runIds.length === 1 ? { runId: runIds[0] } : {}), lateMs });
    onRuns(runIds);
  }

  async #fireWorkflow(workflowId: string, at: Date): Promise<void> {
    const fired = await fireWorkflow(this.#options.db, workflowId, at);
    if (!fired) return;
    if ('reason' in fired) {
      this.#options.log('workflow schedule fire skipped', { workflowId, scheduledAt: at.toISOString(), reason: fired.reason });
      return;
    }
    this.#options.log('workflow schedule fired', { workflowId, executionId: fired.execution.id, scheduledAt: at.toISOString() });
    this.#options.onRuns([fired.execution.id]);
  }
}
