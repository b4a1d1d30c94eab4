/**
 * When this replica may judge offers and leases. Right after it starts, and
 * again after it failed to store what agents sent (the database went away),
 * accepts, starts and heartbeats may be missing from the store: an offer that
 * looks unanswered may be running, a lease that looks expired may be alive.
 * The agents resend them when they reconnect (their outbox) and say what they
 * hold (resumeAttempts). Until they had time to, only offers made since the
 * store was back are requeued, and no lease is judged; otherwise the same
 * attempt could be offered, and started, a second time.
 */
export class ReconnectGrace {
  readonly #graceMs: number;
  #offersMadeSince = new Date(0);
  #judgeFrom = 0;
  /** A process just started knows nothing of what agents hold: nothing is judged before the first {@link begin}. */
  #storeLost = true;

  constructor(graceMs: number) {
    this.#graceMs = graceMs;
  }

  /** Something agents sent (or the housekeeping) could not be stored: the store may have been lost meanwhile. */
  storeFailed(): void {
    this.#storeLost = true;
  }

  /** Whether a store failure was seen since the last grace began: then call {@link begin} once the store answers. */
  get storeLost(): boolean {
    return this.#storeLost;
  }

  /** The store answers (again): a grace begins. `storeNow` is the database's clock, which stamps offers. */
  begin(storeNow: Date): void {
    this.#storeLost = false;
    this.#offersMadeSince = storeNow;
    this.#judgeFrom = Date.now() + this.#graceMs;
  }

  get leasesJudged(): boolean {
    return !this.#storeLost && Date.now() >= this.#judgeFrom;
  }

  /**
   * Which expired offers may go back to the queue now: none while the store is
   * lost (undefined), those made since the grace began, or all (`{}`).
   */
  get requeuableOffers(): { readonly madeSince?: Date } | undefined {
    if (this.#storeLost) return undefined;
    return this.leasesJudged ? {} : { madeSince: this.#offersMadeSince };
  }
}
