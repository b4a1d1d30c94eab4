// Containers made and started ahead of the jobs that will use them: a repeat
// job of one image and limits skips the engine's create and start, its slow
// part. Each warm container serves one job and is then removed, like any
// other; only its start-up was paid in advance.

/** A started container waiting for its job, and how to throw it away unused. */
export interface Warm {
  discard(): Promise<void>;
}

export interface WarmPoolOptions {
  /** Ready containers kept per key. */
  readonly size: number;
  /** A key unused this long has its containers removed. */
  readonly idleMs: number;
  readonly onError?: (key: string, error: unknown) => void;
}

interface Entry<W extends Warm> {
  readonly ready: W[];
  readonly make: () => Promise<W>;
  making: number;
  lastUsed: number;
}

/** Warm containers by key (image, interpreter, limits, network): filled after the first job of a key, emptied when idle. */
export class WarmPool<W extends Warm> {
  readonly #options: WarmPoolOptions;
  readonly #entries = new Map<string, Entry<W>>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(1_000, Math.floor(options.idleMs / 2)));
    this.#sweeper.unref();
  }

  /**
   * A ready container for the key, if one is. Its place is filled at the next
   * keep(), which the caller makes after the job: making a container while the
   * job starts would slow the job down.
   */
  take(key: string): W | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    entry.lastUsed = Date.now();
    return entry.ready.shift();
  }

  /** From now on keep containers for this key warm, and fill its places (after a job of it ran). */
  keep(key: string, make: () => Promise<W>): void {
    if (this.#closed || this.#options.size <= 0) return;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { ready: [], make, making: 0, lastUsed: Date.now() };
      this.#entries.set(key, entry);
    }
    entry.lastUsed = Date.now();
    this.#fill(key, entry);
  }

  /** Ready containers per key (for tests and metrics). */
  readyCount(key: string): number {
    return this.#entries.get(key)?.ready.length ?? 0;
  }

  /** Tracks cleanup work done after a job returned, so close() can wait for it. */
  track(work: Promise<unknown>): void {
    const tracked = work.catch(() => {}).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    const ready = [...this.#entries.values()].flatMap((entry) => entry.ready.splice(0));
    this.#entries.clear();
    await Promise.all(ready.map((warm) => warm.discard().catch(() => {})));
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  #fill(key: string, entry: Entry<W>): void {
    while (!this.#closed && this.#entries.get(key) === entry && entry.ready.length + entry.making < this.#options.size) {
      entry.making++;
      this.track(
        entry.make().then(
          (warm) => {
            entry.making--;
            if (this.#closed || this.#entries.get(key) !== entry) return warm.discard();
            entry.ready.push(warm);
            return undefined;
          },
          (error: unknown) => {
            entry.making--;
            // A key that cannot be made (image gone, engine down) stops warming; its next cold job tries again.
            if (this.#entries.get(key) === entry) this.#drop(key, entry);
            this.#options.onError?.(key, error);
          },
        ),
      );
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.#entries) if (now - entry.lastUsed > this.#options.idleMs) this.#drop(key, entry);
  }

  #drop(key: string, entry: Entry<W>): void {
    this.#entries.delete(key);
    for (const warm of entry.ready.splice(0)) this.track(warm.discard());
  }
}
