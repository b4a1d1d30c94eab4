import type { JobRef } from '@cronium/proto/agent/v1';

/** A message the control plane must acknowledge; kept and resent after reconnects until it is. */
export interface OutboxEntry<M> {
  readonly leaseId: string;
  readonly key: string;
  readonly message: M;
  readonly bytes: number;
}

/**
 * Status events and log chunks in the order they were produced. Acks remove
 * entries; a reconnect resends what is left, in order (logs before the
 * terminal status that follows them).
 */
export class Outbox<M> {
  readonly #entries = new Map<string, OutboxEntry<M>>();
  /** Per lease: entries waiting and their log bytes, so lookups stay O(1) on the hot path. */
  readonly #byLease = new Map<string, { count: number; bytes: number }>();
  readonly #waiters = new Set<() => void>();

  add(entry: OutboxEntry<M>): void {
    const previous = this.#entries.get(entry.key);
    if (previous) this.#release(previous);
    this.#entries.set(entry.key, entry);
    const lease = this.#byLease.get(entry.leaseId) ?? { count: 0, bytes: 0 };
    lease.count += 1;
    lease.bytes += entry.bytes;
    this.#byLease.set(entry.leaseId, lease);
  }

  ack(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#release(entry);
  }

  /** Acks every entry of a lease matching the predicate (cumulative log acks). */
  ackWhere(leaseId: string, predicate: (entry: OutboxEntry<M>) => boolean): void {
    for (const entry of this.#entries.values()) {
      if (entry.leaseId === leaseId && predicate(entry)) {
        this.#entries.delete(entry.key);
        this.#release(entry);
      }
    }
  }

  dropLease(leaseId: string): void {
    this.ackWhere(leaseId, () => true);
  }

  pending(): IterableIterator<OutboxEntry<M>> {
    return this.#entries.values();
  }

  has(leaseId: string): boolean {
    return this.#byLease.has(leaseId);
  }

  unackedBytes(leaseId: string): number {
    return this.#byLease.get(leaseId)?.bytes ?? 0;
  }

  /** Resolves when some entry is acknowledged (used for backpressure). */
  whenAcked(): Promise<void> {
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  #release(entry: OutboxEntry<M>): void {
    const lease = this.#byLease.get(entry.leaseId);
    if (lease) {
      lease.count -= 1;
      lease.bytes -= entry.bytes;
      if (lease.count <= 0) this.#byLease.delete(entry.leaseId);
    }
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }
}

export function refKey(ref: JobRef): string {
  return `${ref.jobId}/${ref.attempt}/${ref.leaseId}`;
}
