import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import type { DeliveryRow } from '../store/schema.ts';
import { openChannel } from './channels.ts';
import { deliver } from './senders.ts';

export interface NotificationSenderOptions {
  readonly db: Db;
  readonly sealer: Sealer;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** Between passes while there is work (default 500 ms). */
  readonly pollMs?: number;
  /** After a pass that found nothing (default 10 s); `wake()` starts one sooner. */
  readonly idlePollMs?: number;
  /** Attempts before a delivery is given up as failed. */
  readonly maxAttempts?: number;
  /** Delay before the second attempt; doubled after each failure, up to maxDelayMs. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
}

const BATCH = 20;
/**
 * A claimed delivery not finished in this time (the replica died mid-send) is
 * taken again: at least once. Well above the senders' 15 s timeouts.
 */
const CLAIM_MS = 60_000;

export function retryDelayMs(attempts: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
}

/**
 * Delivers the notification outbox after the commits that wrote it. Rows are
 * claimed with a lease (SKIP LOCKED, so replicas share the work); a failed
 * attempt is tried again with exponential backoff, and each outcome is kept
 * on the row (status, attempts, last error).
 */
export class NotificationSender {
  readonly #options: NotificationSenderOptions;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<unknown> | undefined;
  #stopped = true;
  #passing = false;
  #wanted = false;

  constructor(options: NotificationSenderOptions) {
    this.#options = options;
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Deliveries may be due (the caller saw some): a pass now, not at the idle poll. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#passing) this.#wanted = true;
    else this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pass;
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), delayMs);
  }

  #tick(): void {
    this.#passing = true;
    this.#wanted = false;
    let found = 0;
    this.#pass = this.runOnce()
      .then((tried) => (found = tried))
      .catch((error: unknown) => this.#options.log('notification pass failed', { error: String(error) }))
      .finally(() => {
        this.#passing = false;
        if (this.#stopped) return;
        const busy = found > 0 || this.#wanted;
        this.#schedule(busy ? (this.#options.pollMs ?? 500) : (this.#options.idlePollMs ?? 10_000));
      });
  }

  /** One pass: claims what is due and tries each once. Returns how many were tried. */
  async runOnce(): Promise<number> {
    const { db } = this.#options;
    const claimed = await db
      .updateTable('notification_deliveries')
      .set({ locked_until: sql<Date>`now() + ${CLAIM_MS} * interval '1 millisecond'` })
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('notification_deliveries')
          .select('id')
          .where('status', '=', 'pending')
          .where('next_attempt_at', '<=', sql<Date>`now()`)
          .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', sql<Date>`now()`)]))
          .orderBy('next_attempt_at')
          .limit(BATCH)
          .forUpdate()
          .skipLocked(),
      )
      .returningAll()
      .execute();
    await Promise.all(claimed.map((row) => this.#attempt(row)));
    return claimed.length;
  }

  async #attempt(row: DeliveryRow): Promise<void> {
    const { db, sealer } = this.#options;
    const attempts = row.attempts + 1;
    let error = '';
    let permanent = false;
    try {
      const channel = await db.selectFrom('notification_channels').selectAll().where('id', '=', row.channel_id).executeTakeFirst();
      if (!channel || channel.deleted_at) {
        permanent = true;
        throw new Error('the channel was deleted');
      }
      await deliver(openChannel(sealer, channel), row.message, row.id);
    } catch (failure) {
      error = (failure as Error).message || String(failure);
    }
    const maxAttempts = this.#options.maxAttempts ?? 8;
    const failed = error !== '' && (permanent || attempts >= maxAttempts);
    const delay = retryDelayMs(attempts, this.#options.baseDelayMs ?? 1_000, this.#options.maxDelayMs ?? 300_000);
    await db
      .updateTable('notification_deliveries')
      .set({
        attempts,
        // A success keeps the error of the attempt before it, to show why it took several.
        ...(error ? { last_error: error } : {}),
        locked_until: null,
        status: error === '' ? 'delivered' : failed ? 'failed' : 'pending',
        ...(error === '' ? { delivered_at: sql<Date>`now()` } : {}),
        ...(error !== '' && !failed ? { next_attempt_at: sql<Date>`now() + ${delay} * interval '1 millisecond'` } : {}),
      })
      .where('id', '=', row.id)
      .execute();
    if (error) this.#options.log(failed ? 'notification failed for good' : 'notification attempt failed; will retry', { deliveryId: row.id, attempts, error });
  }
}
