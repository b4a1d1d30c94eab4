import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writevSync } from 'node:fs';
import { join } from 'node:path';
import { create, fromBinary } from '@bufbuild/protobuf';
import { binaryOnce } from '@cronium/proto/grpc';
import { ConnectRequestSchema, type ConnectRequest, type JobRef } from '@cronium/proto/agent/v1';

/** What a spool file held for one lease when the agent started. */
export interface RecoveredLease {
  readonly ref: JobRef;
  /** Status events and log chunks in the order they were produced; acks are not kept, so some may be resent (harmless). */
  readonly messages: readonly ConnectRequest[];
}

/**
 * The agent's durable buffer: one append-only file per lease under
 * `<dataDir>/spool`, holding the accept and every status event and log chunk
 * for it, so they survive an agent restart. Writes go straight to the file
 * (the page cache survives the process being killed); a lease's file is
 * removed once the control plane has acknowledged all of it.
 */
export class Spool {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #files = new Map<string, { fd: number; bytes: number }>();
  #totalBytes = 0;

  constructor(dataDir: string, maxBytes: number) {
    this.#dir = join(dataDir, 'spool');
    this.#maxBytes = maxBytes;
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  /** Bytes of unacknowledged results and logs held on disk. */
  get bytes(): number {
    return this.#totalBytes;
  }

  /** Why no new job may be taken, when the spool is full. */
  get fullReason(): string | undefined {
    return this.#totalBytes >= this.#maxBytes
      ? `the agent's spool is full (${Math.round(this.#totalBytes / 1048576)} MiB of ${Math.round(this.#maxBytes / 1048576)} MiB unacknowledged)`
      : undefined;
  }

  /** Starts the file of a newly accepted lease. */
  open(ref: JobRef): void {
    this.append(ref.leaseId, create(ConnectRequestSchema, { kind: { case: 'jobAccept', value: { job: ref } } }));
  }

  append(leaseId: string, message: ConnectRequest): void {
    let file = this.#files.get(leaseId);
    if (!file) {
      file = { fd: openSync(join(this.#dir, `${encodeURIComponent(leaseId)}.spool`), 'a', 0o600), bytes: 0 };
      this.#files.set(leaseId, file);
    }
    // Encoded once: the link sends these same bytes.
    const body = binaryOnce(ConnectRequestSchema, message);
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(body.length, 0);
    writevSync(file.fd, [length, body]);
    file.bytes += 4 + body.length;
    this.#totalBytes += 4 + body.length;
  }

  /** Everything for this lease is acknowledged (or fenced out): forget it. */
  release(leaseId: string): void {
    const file = this.#files.get(leaseId);
    if (file) {
      closeSync(file.fd);
      this.#totalBytes -= file.bytes;
      this.#files.delete(leaseId);
    }
    rmSync(join(this.#dir, `${encodeURIComponent(leaseId)}.spool`), { force: true });
  }

  /** Reads what an earlier process left; files are kept (and appended to) until released. */
  recover(): RecoveredLease[] {
    const leases: RecoveredLease[] = [];
    for (const name of readdirSync(this.#dir).filter((n) => n.endsWith('.spool'))) {
      const path = join(this.#dir, name);
      const bytes = readFileSync(path);
      const messages: ConnectRequest[] = [];
      let ref: JobRef | undefined;
      // A record cut short by a crash mid-write ends the file: everything before it is intact.
      for (let at = 0; at + 4 <= bytes.length; ) {
        const length = bytes.readUInt32BE(at);
        if (at + 4 + length > bytes.length) break;
        const message = fromBinary(ConnectRequestSchema, bytes.subarray(at + 4, at + 4 + length));
        if (message.kind.case === 'jobAccept') ref = message.kind.value.job;
        else messages.push(message);
        at += 4 + length;
      }
      if (!ref) {
        rmSync(path, { force: true });
        continue;
      }
      const leaseId = decodeURIComponent(name.slice(0, -'.spool'.length));
      const size = statSync(path).size;
      this.#files.set(leaseId, { fd: openSync(path, 'a', 0o600), bytes: size });
      this.#totalBytes += size;
      leases.push({ ref, messages });
    }
    return leases;
  }
}
