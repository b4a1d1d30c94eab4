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
