/** Token buckets by key (a token id, an email, an address): `capacity` at once, then `refillPerSecond`. */
export class RateLimiter {
  readonly capacity: number;
  readonly refillPerSecond: number;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: { capacity: number; refillPerSecond: number }) {
    this.capacity = options.capacity;
    this.refillPerSecond = options.refillPerSecond;
  }

  /** Takes one token; when none is left, how long until one is (ms). */
  take(key: string, now = Date.now()): { ok: true } | { ok: false; retryAfterMs: number } {
    const bucket = this.current(key, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((1 - bucket.tokens) / this.refillPerSecond) * 1000) };
  }

  /** Whether a token is there, without taking it (ms to wait, or 0). */
  waitMs(key: string, now = Date.now()): number {
    const bucket = this.current(key, now);
    return bucket.tokens >= 1 ? 0 : Math.ceil(((1 - bucket.tokens) / this.refillPerSecond) * 1000);
  }

  private current(key: string, now: number) {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= 50_000) this.prune(now);
      bucket = { tokens: this.capacity, at: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(this.capacity, bucket.tokens + ((now - bucket.at) / 1000) * this.refillPerSecond);
    bucket.at = now;
    return bucket;
  }

  /** Full buckets carry no state worth keeping. */
  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.refillPerSecond >= this.capacity) this.buckets.delete(key);
    }
  }
}

/**
 * Failures by key (an email, an address): `free` of them, then each further
 * one locks the key twice as long as the one before (from `baseMs`, at most
 * `maxMs`). A success, or an hour without failures, clears the key.
 */
export class FailureBackoff {
  readonly free: number;
  readonly baseMs: number;
  readonly maxMs: number;
  private readonly entries = new Map<string, { failures: number; last: number; until: number }>();
  private static readonly FORGET_MS = 3_600_000;

  constructor(options: { free: number; baseMs: number; maxMs: number }) {
    this.free = options.free;
    this.baseMs = options.baseMs;
    this.maxMs = options.maxMs;
  }

  /** How long the key must wait before its next try (ms), or 0. */
  waitMs(key: string, now = Date.now()): number {
    const entry = this.current(key, now);
    return entry ? Math.max(0, Math.ceil(entry.until - now)) : 0;
  }

  failed(key: string, now = Date.now()): void {
    if (this.entries.size >= 50_000) this.prune(now);
    const entry = this.current(key, now) ?? { failures: 0, last: now, until: 0 };
    entry.failures += 1;
    entry.last = now;
    if (entry.failures >= this.free) entry.until = now + Math.min(this.maxMs, this.baseMs * 2 ** (entry.failures - this.free));
    this.entries.set(key, entry);
  }

  succeeded(key: string): void {
    this.entries.delete(key);
  }

  private current(key: string, now: number) {
    const entry = this.entries.get(key);
    if (entry && now - entry.last > FailureBackoff.FORGET_MS) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private prune(now: number): void {
    for (const [key, entry] of this.entries) if (now - entry.last > FailureBackoff.FORGET_MS) this.entries.delete(key);
  }
}
