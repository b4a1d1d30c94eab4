/** Postgres deadlock and serialization failures: the statement or transaction rolled back whole, so it can simply run again. */
const RETRYABLE = new Set(['40P01', '40001']);

/** Runs fn, again (up to `attempts` times in all) when it failed with a deadlock or a serialization failure. */
export async function retryConflicts<T>(fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts || !RETRYABLE.has((error as { code?: string }).code ?? '')) throw error;
    }
  }
}
