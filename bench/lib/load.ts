// Open-loop load: requests start on a fixed schedule whatever the previous ones do,
// so a slow response does not hide the queueing it causes (no coordinated omission).
import { setTimeout as sleep } from 'node:timers/promises';

export interface OpenLoopResult {
  readonly issued: number;
  readonly failed: number;
  /** Requests that could not start on time because maxInFlight were outstanding. */
  readonly late: number;
  readonly errors: string[];
}

export async function openLoop(
  ratePerSecond: number,
  durationMs: number,
  fire: (index: number) => Promise<void>,
  maxInFlight = 256,
): Promise<OpenLoopResult> {
  const interval = 1000 / ratePerSecond;
  const start = performance.now();
  const total = Math.floor((durationMs / 1000) * ratePerSecond);
  let inFlight = 0;
  let failed = 0;
  let late = 0;
  const errors: string[] = [];
  const pending = new Set<Promise<void>>();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait >= 1) await sleep(Math.floor(wait));
    while (inFlight >= maxInFlight) {
      late++;
      await Promise.race(pending);
    }
    inFlight++;
    const p: Promise<void> = fire(i)
      .catch((error) => {
        failed++;
        if (errors.length < 5) errors.push(String(error));
      })
      .finally(() => {
        inFlight--;
        pending.delete(p);
      });
    pending.add(p);
  }
  await Promise.all(pending);
  return { issued: total, failed, late, errors };
}
