import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import { retryConflicts } from '../store/retry.ts';

/** Rows per statement (two parameters each, far below Postgres's 65,535). */
const CHUNK = 5_000;

/**
 * Agents' heartbeats, written to `agents.last_heartbeat_at` together: one
 * UPDATE per interval for every agent heard from in it, instead of one per
 * heartbeat. Each row gets the instant its agent was heard from, so the
 * stored age is exact; other replicas see it at most one interval (plus the
 * write) later. A row never moves back (a stream that was replaced may still
 * be flushed after the new one wrote its connect time). Nothing is armed while
 * no heartbeat is pending.
 */
export class HeartbeatWriter {
  readonly #db: Db;
  readonly #intervalMs: number;
  readonly #onError: (error: unknown) => void;
  #pending = new Map<string, Date>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #stopped = false;

  constructor(db: Db, intervalMs: number, onError: (error: unknown) => void) {
    this.#db = db;
    this.#intervalMs = intervalMs;
    this.#onError = onError;
  }

  /** The agent was heard from now. */
  record(agentId: string, at = new Date()): void {
    this.#pending.set(agentId, at);
    this.#arm();
  }

  /** Writes what is pending now (and waits for a write under way). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#flushing) await this.#flushing;
    if (this.#pending.size === 0) return;
    const beats = this.#pending;
    this.#pending = new Map();
    this.#flushing = this.#write(beats).catch((error: unknown) => {
      // Kept for the next interval, unless the agent was heard from again since.
      for (const [id, at] of beats) if (!this.#pending.has(id)) this.#pending.set(id, at);
      this.#onError(error);
    });
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
      this.#arm();
    }
  }

  /** Writes what is pending; nothing is armed after this. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.flush();
  }

  #arm(): void {
    if (this.#stopped || this.#timer || this.#flushing || this.#pending.size === 0) return;
    this.#timer = setTimeout(() => void this.flush(), this.#intervalMs);
  }

  async #write(beats: ReadonlyMap<string, Date>): Promise<void> {
    // In id order, so two replicas' writes lock rows in the same order.
    const rows = [...beats].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = 0; i < rows.length; i += CHUNK) {
      const values = sql.join(rows.slice(i, i + CHUNK).map(([id, at]) => sql`(${id}, ${at}::timestamptz)`));
      await retryConflicts(() =>
        sql`update agents set last_heartbeat_at = beat.at from (values ${values}) as beat(id, at)
            where agents.id = beat.id and (agents.last_heartbeat_at is null or agents.last_heartbeat_at < beat.at)`.execute(this.#db),
      );
    }
  }
}
