// Order statistics for benchmark samples: never only an average.

export interface Summary {
  /** Number of samples. */
  readonly n: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const n = sorted.length;
  const mean = n === 0 ? NaN : sorted.reduce((sum, v) => sum + v, 0) / n;
  return {
    n,
    min: sorted[0] ?? NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[n - 1] ?? NaN,
    mean,
  };
}

/** Rounds for JSON and tables: 3 significant decimals below 10, fewer above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : 3;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** A rounded difference with its sign: +8, −13.4. */
export function signed(value: number): string {
  const r = round(value);
  return r < 0 ? `−${-r}` : `+${r}`;
}

export function roundSummary(s: Summary): Summary {
  return { n: s.n, min: round(s.min), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max), mean: round(s.mean) };
}

let clockOffset: number | undefined;

/**
 * performance.timeOrigin can be off the system's real-time clock by a
 * millisecond or more, which would skew comparisons with Postgres' now().
 * Date.now() is exact but whole milliseconds: catch the instants it ticks over.
 */
function calibrate(): number {
  const offsets: number[] = [];
  for (let i = 0; i < 7; i++) {
    const before = Date.now();
    let hi: number;
    let ms: number;
    do {
      hi = performance.now();
      ms = Date.now();
    } while (ms === before);
    offsets.push(ms - (performance.timeOrigin + hi));
  }
  offsets.sort((a, b) => a - b);
  return offsets[3]!;
}

/** Wall-clock milliseconds since the epoch with sub-millisecond resolution (same clock as Postgres' now()). */
export function nowMs(): number {
  clockOffset ??= calibrate();
  return performance.timeOrigin + performance.now() + clockOffset;
}
