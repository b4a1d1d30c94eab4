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
  readonly #bytesByLease = new Map<string, number>();
  readonly #waiters = new Set<() => void>();

  add(entry: OutboxEntry<M>): void {
    this.#entries.set(entry.key, entry);
    this.#bytesByLease.set(entry.leaseId, (this.#bytesByLease.get(entry.leaseId) ?? 0) + entry.bytes);
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
    return (this.#bytesByLease.get(leaseId) ?? 0) > 0 || [...this.#entries.values()].some((e) => e.leaseId === leaseId);
  }

  unackedBytes(leaseId: string): number {
    return this.#bytesByLease.get(leaseId) ?? 0;
  }

  /** Resolves when some entry is acknowledged (used for backpressure). */
  whenAcked(): Promise<void> {
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  #release(entry: OutboxEntry<M>): void {
    const left = (this.#bytesByLease.get(entry.leaseId) ?? 0) - entry.bytes;
    if (left > 0) this.#bytesByLease.set(entry.leaseId, left);
    else this.#bytesByLease.delete(entry.leaseId);
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }
}

export function refKey(ref: JobRef): string {
  return `${ref.jobId}/${ref.attempt}/${ref.leaseId}`;
}
